//! ACS3-HMAC-SHA256, Alibaba Cloud's V3 request signature (the SDK default).
//!
//! CanonicalRequest = Method \n "/" \n CanonicalQuery \n CanonicalHeaders \n SignedHeaders \n PayloadHash
//! where CanonicalHeaders are `host`, `content-type` and every `x-acs-*` header, lower-cased,
//! trimmed, sorted, each line ending in `\n` (so a blank line precedes SignedHeaders).
//! Signature = hex(HMAC-SHA256(AccessKeySecret, "ACS3-HMAC-SHA256\n" + hex(sha256(CanonicalRequest)))).

use std::collections::BTreeMap;

use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};

use crate::cloud::query::canonical_query;

pub(crate) const ALGORITHM: &str = "ACS3-HMAC-SHA256";
/// `x-acs-content-sha256` of an empty body (every RPC call vulngate makes).
pub(crate) const EMPTY_BODY_SHA256: &str =
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

pub(crate) fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

fn is_signed(lower_name: &str) -> bool {
    lower_name == "host" || lower_name == "content-type" || lower_name.starts_with("x-acs-")
}

/// Canonical header block and the `SignedHeaders` list. A header name given twice
/// (in any case) has its values sorted and joined with `,`, as the Go SDK does.
pub fn canonical_headers<N: AsRef<str>, V: AsRef<str>>(headers: &[(N, V)]) -> (String, String) {
    let mut grouped: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (name, value) in headers {
        let name = name.as_ref().trim().to_ascii_lowercase();
        if is_signed(&name) {
            grouped
                .entry(name)
                .or_default()
                .push(value.as_ref().trim().to_string());
        }
    }
    let mut block = String::new();
    for (name, values) in &mut grouped {
        values.sort();
        block.push_str(name);
        block.push(':');
        block.push_str(&values.join(","));
        block.push('\n');
    }
    let signed = grouped.keys().cloned().collect::<Vec<_>>().join(";");
    (block, signed)
}

/// The canonical request of an RPC-style call (path always `/`).
pub(crate) fn canonical_request<N: AsRef<str>, V: AsRef<str>>(
    method: &str,
    query: &[(String, String)],
    headers: &[(N, V)],
    payload_sha256: &str,
) -> (String, String) {
    let (block, signed) = canonical_headers(headers);
    let request = format!(
        "{method}\n/\n{}\n{block}\n{signed}\n{payload_sha256}",
        canonical_query(query)
    );
    (request, signed)
}

pub(crate) fn string_to_sign(canonical_request: &str) -> String {
    format!("{ALGORITHM}\n{}", sha256_hex(canonical_request.as_bytes()))
}

pub fn signature(access_key_secret: &str, string_to_sign: &str) -> String {
    // HMAC accepts keys of any length, so this cannot fail; fall back to an empty
    // signature (rejected by the server) rather than panic.
    match Hmac::<Sha256>::new_from_slice(access_key_secret.as_bytes()) {
        Ok(mut mac) => {
            mac.update(string_to_sign.as_bytes());
            hex::encode(mac.finalize().into_bytes())
        }
        Err(_) => String::new(),
    }
}

/// The `Authorization` header value for a request.
pub fn authorization<N: AsRef<str>, V: AsRef<str>>(
    method: &str,
    query: &[(String, String)],
    headers: &[(N, V)],
    payload_sha256: &str,
    access_key_id: &str,
    access_key_secret: &str,
) -> String {
    let (request, signed) = canonical_request(method, query, headers, payload_sha256);
    let sig = signature(access_key_secret, &string_to_sign(&request));
    format!("{ALGORITHM} Credential={access_key_id},SignedHeaders={signed},Signature={sig}")
}

#[cfg(test)]
mod tests {
    //! Every ACS3 vector published in scan-apis.md §A.4, byte for byte.
    use super::*;

    fn q(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn official_doc_vector_run_instances() {
        let query = q(&[
            (
                "ImageId",
                "win2019_1809_x64_dtc_zh-cn_40G_alibase_20230811.vhd",
            ),
            ("RegionId", "cn-shanghai"),
        ]);
        let headers = [
            ("host", "ecs.cn-shanghai.aliyuncs.com"),
            ("x-acs-action", "RunInstances"),
            ("x-acs-version", "2014-05-26"),
            ("x-acs-date", "2023-10-26T10:22:32Z"),
            ("x-acs-signature-nonce", "3156853299f313e23d1673dc12e1703d"),
            ("x-acs-content-sha256", EMPTY_BODY_SHA256),
        ];
        let (request, signed) = canonical_request("POST", &query, &headers, EMPTY_BODY_SHA256);
        assert_eq!(
            request,
            "POST\n/\nImageId=win2019_1809_x64_dtc_zh-cn_40G_alibase_20230811.vhd&RegionId=cn-shanghai\n\
             host:ecs.cn-shanghai.aliyuncs.com\nx-acs-action:RunInstances\n\
             x-acs-content-sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855\n\
             x-acs-date:2023-10-26T10:22:32Z\nx-acs-signature-nonce:3156853299f313e23d1673dc12e1703d\n\
             x-acs-version:2014-05-26\n\n\
             host;x-acs-action;x-acs-content-sha256;x-acs-date;x-acs-signature-nonce;x-acs-version\n\
             e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(
            string_to_sign(&request),
            "ACS3-HMAC-SHA256\n7ea06492da5221eba5297e897ce16e55f964061054b7695beedaac1145b1e259"
        );
        assert_eq!(
            signed,
            "host;x-acs-action;x-acs-content-sha256;x-acs-date;x-acs-signature-nonce;x-acs-version"
        );
        assert_eq!(
            authorization(
                "POST",
                &query,
                &headers,
                EMPTY_BODY_SHA256,
                "YourAccessKeyId",
                "YourAccessKeySecret"
            ),
            "ACS3-HMAC-SHA256 Credential=YourAccessKeyId,SignedHeaders=host;x-acs-action;x-acs-content-sha256;x-acs-date;x-acs-signature-nonce;x-acs-version,Signature=06563a9e1b43f5dfe96b81484da74bceab24a1d853912eee15083a6f0f3283c0"
        );
    }

    const SDK_HASH: &str = "55e12e91650d2fec56ec74e1d3e4ddbfce2ef3a65890c2a19ecf88a307e76a23";

    fn sdk_sig(method: &str, query: &[(String, String)], headers: &[(&str, &str)]) -> String {
        let (request, _) = canonical_request(method, query, headers, SDK_HASH);
        signature("secret", &string_to_sign(&request))
    }

    #[test]
    fn sdk_vector_go_duplicate_headers_joined() {
        let query = q(&[("test", "ok"), ("empty", "")]);
        let headers = [("x-acs-test", "http"), ("x-acs-TEST", "https")];
        let (request, _) = canonical_request("", &query, &headers, SDK_HASH);
        assert_eq!(
            request,
            "\n/\nempty=&test=ok\nx-acs-test:http,https\n\nx-acs-test\n55e12e91650d2fec56ec74e1d3e4ddbfce2ef3a65890c2a19ecf88a307e76a23"
        );
        assert_eq!(
            string_to_sign(&request),
            "ACS3-HMAC-SHA256\nde5b11a1e2e756c1d859871395fe0b6d47f2564e88a5477eb586c03c6fc105ff"
        );
        assert_eq!(
            authorization("", &query, &headers, SDK_HASH, "acesskey", "secret"),
            "ACS3-HMAC-SHA256 Credential=acesskey,SignedHeaders=x-acs-test,Signature=4ab59fffe3c5738ff8a2729f90cc04fe18b02a4b15b2102cbaf92f9ff3df2ea3"
        );
    }

    #[test]
    fn sdk_vector_python_get() {
        let query = q(&[("test", "ok"), ("empty", "")]);
        let headers = [("x-acs-test", "http"), ("x-acs-TEST", "https")];
        assert_eq!(
            sdk_sig("GET", &query, &headers),
            "d16b30a7699ae9e43875b13195b2f81bcc3ed10c14a9b5eb780e51619aa50be1"
        );
    }

    // Java, C# and PHP keep one value per header name in their maps; the vectors are
    // reproduced by handing the signer the header as those maps hold it.
    #[test]
    fn sdk_vector_java_single_value() {
        let query = q(&[("test", "ok"), ("empty", "")]);
        assert_eq!(
            sdk_sig("GET", &query, &[("x-acs-test", "http")]),
            "02e81f9f3cc8839151b0c7278024cbc4bfc9fa786085a0b8305f825f17b5dae7"
        );
    }

    #[test]
    fn sdk_vector_csharp_comma_space() {
        let query = q(&[("test", "ok"), ("empty", "")]);
        assert_eq!(
            sdk_sig("GET", &query, &[("x-acs-test", "http, https")]),
            "be2046c5e1d69e715fec81597bb8f72330a7eab002d5cacd434dec1cb9be74ab"
        );
    }

    #[test]
    fn sdk_vectors_php() {
        let query = q(&[("test", "ok"), ("empty", "")]);
        assert_eq!(
            sdk_sig("", &query, &[("x-acs-test", "https")]),
            "0a0f89a45f1ec3537a2d1a1046c71b95513a8f1f02526056968da19b99a5b914"
        );
        assert_eq!(
            sdk_sig("", &[], &[("x-acs-test", "https")]),
            "af6d32deb090ae85a21d7183055cf18dca17751da96979cdf964f8f0853e9dd2"
        );
    }

    fn cr_query() -> Vec<(String, String)> {
        q(&[
            (
                "Digest",
                "sha256:815386ebbe9a3490f38785ab11bda34ec8dacf4634af77b8912832d4f85dca04",
            ),
            ("InstanceId", "cri-xkx6vujuhay0abcd"),
            ("RepoId", "crr-xwvi3osiy4ffabcd"),
            ("Tag", "1.24"),
        ])
    }

    fn cr_headers() -> Vec<(&'static str, &'static str)> {
        vec![
            ("host", "cr.cn-hangzhou.aliyuncs.com"),
            ("x-acs-action", "GetRepoTagScanSummary"),
            ("x-acs-version", "2018-12-01"),
            ("x-acs-date", "2023-10-26T10:22:32Z"),
            ("x-acs-signature-nonce", "3156853299f313e23d1673dc12e1703d"),
            ("x-acs-content-sha256", EMPTY_BODY_SHA256),
            ("accept", "application/json"), // not signed
        ]
    }

    #[test]
    fn derived_vector_cr_get_repo_tag_scan_summary() {
        let (request, _) = canonical_request("POST", &cr_query(), &cr_headers(), EMPTY_BODY_SHA256);
        assert_eq!(
            request.lines().nth(2),
            Some(
                "Digest=sha256%3A815386ebbe9a3490f38785ab11bda34ec8dacf4634af77b8912832d4f85dca04&InstanceId=cri-xkx6vujuhay0abcd&RepoId=crr-xwvi3osiy4ffabcd&Tag=1.24"
            )
        );
        assert_eq!(
            string_to_sign(&request),
            "ACS3-HMAC-SHA256\nc1f82634e21c0b872a5ac00d7470cb5234fb460790d555f29a76855b442aaf7c"
        );
        assert_eq!(
            authorization(
                "POST",
                &cr_query(),
                &cr_headers(),
                EMPTY_BODY_SHA256,
                "YourAccessKeyId",
                "YourAccessKeySecret"
            ),
            "ACS3-HMAC-SHA256 Credential=YourAccessKeyId,SignedHeaders=host;x-acs-action;x-acs-content-sha256;x-acs-date;x-acs-signature-nonce;x-acs-version,Signature=5dd62a2fd56dfdc3d6287fc56e8fe329021673e6bbb8e40112d4b5ddb3a67427"
        );
    }

    #[test]
    fn derived_vector_cr_with_sts_token() {
        let mut headers = cr_headers();
        headers.push(("x-acs-accesskey-id", "STS.YourAccessKeyId"));
        headers.push(("x-acs-security-token", "CAIS-test-token/+=="));
        let auth = authorization(
            "POST",
            &cr_query(),
            &headers,
            EMPTY_BODY_SHA256,
            "STS.YourAccessKeyId",
            "YourAccessKeySecret",
        );
        assert!(auth.contains("SignedHeaders=host;x-acs-accesskey-id;x-acs-action;x-acs-content-sha256;x-acs-date;x-acs-security-token;x-acs-signature-nonce;x-acs-version,"), "{auth}");
        assert!(
            auth.ends_with(
                ",Signature=9c4239ab1b0697b601224d3b12399b527cf26d0b482cf2ef96d3665b392f6a38"
            ),
            "{auth}"
        );
    }

    #[test]
    fn empty_body_hash() {
        assert_eq!(sha256_hex(b""), EMPTY_BODY_SHA256);
    }
}
