//! The older RPC signature (`SignatureMethod=HMAC-SHA1`, `SignatureVersion=1.0`; the
//! vendor's docs call it "V2"). Every parameter, `SecurityToken` included, is signed:
//!
//! StringToSign = Method & enc("/") & enc(CanonicalQuery)
//! Signature    = Base64(HMAC-SHA1(AccessKeySecret + "&", StringToSign))

use base64::Engine;
use hmac::{Hmac, KeyInit, Mac};
use sha1::Sha1;

use crate::cloud::query::{canonical_query, percent_encode};

pub(crate) fn string_to_sign(method: &str, params: &[(String, String)]) -> String {
    format!(
        "{method}&{}&{}",
        percent_encode("/"),
        percent_encode(&canonical_query(params))
    )
}

/// Base64 HMAC-SHA1 of `data` under `key` (credentials-go's `ShaHmac1`).
pub(crate) fn hmac_sha1_base64(key: &str, data: &str) -> String {
    match Hmac::<Sha1>::new_from_slice(key.as_bytes()) {
        Ok(mut mac) => {
            mac.update(data.as_bytes());
            base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
        }
        // HMAC takes keys of any length; never reached.
        Err(_) => String::new(),
    }
}

/// The `Signature` parameter (not yet percent-encoded) of a request whose other
/// parameters are `params` (which must not contain `Signature`).
pub fn signature(method: &str, params: &[(String, String)], access_key_secret: &str) -> String {
    hmac_sha1_base64(
        &format!("{access_key_secret}&"),
        &string_to_sign(method, params),
    )
}

#[cfg(test)]
mod tests {
    //! Every V1 RPC vector published in scan-apis.md §A.3, byte for byte.
    use super::*;

    fn p(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn official_doc_vector_describe_dedicated_hosts() {
        let params = p(&[
            ("AccessKeyId", "testid"),
            ("Action", "DescribeDedicatedHosts"),
            ("Format", "JSON"),
            ("RegionId", "cn-beijing"),
            ("SignatureMethod", "HMAC-SHA1"),
            ("SignatureNonce", "edb2b34af0af9a6d14deaf7c1a5315eb"),
            ("SignatureVersion", "1.0"),
            ("Timestamp", "2023-03-13T08:34:30Z"),
            ("Version", "2014-05-26"),
        ]);
        assert_eq!(
            canonical_query(&params),
            "AccessKeyId=testid&Action=DescribeDedicatedHosts&Format=JSON&RegionId=cn-beijing&SignatureMethod=HMAC-SHA1&SignatureNonce=edb2b34af0af9a6d14deaf7c1a5315eb&SignatureVersion=1.0&Timestamp=2023-03-13T08%3A34%3A30Z&Version=2014-05-26"
        );
        assert_eq!(
            string_to_sign("GET", &params),
            "GET&%2F&AccessKeyId%3Dtestid%26Action%3DDescribeDedicatedHosts%26Format%3DJSON%26RegionId%3Dcn-beijing%26SignatureMethod%3DHMAC-SHA1%26SignatureNonce%3Dedb2b34af0af9a6d14deaf7c1a5315eb%26SignatureVersion%3D1.0%26Timestamp%3D2023-03-13T08%253A34%253A30Z%26Version%3D2014-05-26"
        );
        let sig = signature("GET", &params, "testsecret");
        assert_eq!(sig, "9NaGiOspFP5UPcwX8Iwt2YJXXuk=");
        assert_eq!(percent_encode(&sig), "9NaGiOspFP5UPcwX8Iwt2YJXXuk%3D");
    }

    #[test]
    fn sdk_vectors() {
        let params = p(&[("test", "ok")]);
        assert_eq!(string_to_sign("", &params), "&%2F&test%3Dok");
        assert_eq!(
            signature("", &params, "accessKeySecret"),
            "jHx/oHoHNrbVfhncHEvPdHXZwHU="
        );
        let params = p(&[("query", "test"), ("body", "test")]);
        assert_eq!(
            string_to_sign("GET", &params),
            "GET&%2F&body%3Dtest%26query%3Dtest"
        );
        assert_eq!(
            signature("GET", &params, "secret"),
            "XlUyV4sXjOuX5FnjUz9IF9tm5rU="
        );
    }

    #[test]
    fn raw_hmac_sha1_vectors() {
        assert_eq!(
            hmac_sha1_base64("secret", "source"),
            "Jv4yi8SobFhg5t1C7nWLbhBSFZQ="
        );
        assert_eq!(
            hmac_sha1_base64("secret", "中文"),
            "CqCYIa39h9SSWuXnTz8F5hh9UPA="
        );
    }

    fn cr_params() -> Vec<(String, String)> {
        p(&[
            ("AccessKeyId", "testid"),
            ("Action", "GetRepoTagScanSummary"),
            (
                "Digest",
                "sha256:815386ebbe9a3490f38785ab11bda34ec8dacf4634af77b8912832d4f85dca04",
            ),
            ("Format", "JSON"),
            ("InstanceId", "cri-xkx6vujuhay0abcd"),
            ("RepoId", "crr-xwvi3osiy4ffabcd"),
            ("SignatureMethod", "HMAC-SHA1"),
            ("SignatureNonce", "edb2b34af0af9a6d14deaf7c1a5315eb"),
            ("SignatureVersion", "1.0"),
            ("Tag", "1.24"),
            ("Timestamp", "2023-03-13T08:34:30Z"),
            ("Version", "2018-12-01"),
        ])
    }

    #[test]
    fn derived_vector_cr_get_repo_tag_scan_summary() {
        let params = cr_params();
        assert_eq!(
            string_to_sign("POST", &params),
            "POST&%2F&AccessKeyId%3Dtestid%26Action%3DGetRepoTagScanSummary%26Digest%3Dsha256%253A815386ebbe9a3490f38785ab11bda34ec8dacf4634af77b8912832d4f85dca04%26Format%3DJSON%26InstanceId%3Dcri-xkx6vujuhay0abcd%26RepoId%3Dcrr-xwvi3osiy4ffabcd%26SignatureMethod%3DHMAC-SHA1%26SignatureNonce%3Dedb2b34af0af9a6d14deaf7c1a5315eb%26SignatureVersion%3D1.0%26Tag%3D1.24%26Timestamp%3D2023-03-13T08%253A34%253A30Z%26Version%3D2018-12-01"
        );
        let sig = signature("POST", &params, "testsecret");
        assert_eq!(sig, "mxtsnBXz4BrNOq2evAv/lni7DLg=");
        assert_eq!(percent_encode(&sig), "mxtsnBXz4BrNOq2evAv%2Flni7DLg%3D");
    }

    #[test]
    fn derived_vector_cr_with_security_token() {
        let mut params = cr_params();
        params.push(("SecurityToken".into(), "CAIS-test-token/+==".into()));
        assert_eq!(
            signature("POST", &params, "testsecret"),
            "p/tWPIoZaok/M4bpAA1hT/imvY0="
        );
    }
}
