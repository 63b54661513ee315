//! Huawei Cloud: the SDK-HMAC-SHA256 signer, IAM tokens, error responses.

pub mod auth;
pub mod error;
pub mod iam;
pub mod signer;

/// The default endpoint of a Huawei Cloud service in a region, as the SDK's region
/// tables give it: `https://<service>.<region>.myhuaweicloud.com`, except the regions
/// of Huawei Cloud Europe, served under `myhuaweicloud.eu`.
pub fn default_endpoint(service: &str, region: &str) -> String {
    const EU_REGIONS: &[&str] = &["eu-west-101"];
    let domain = if EU_REGIONS.contains(&region) {
        "myhuaweicloud.eu"
    } else {
        "myhuaweicloud.com"
    };
    format!("https://{service}.{region}.{domain}")
}
