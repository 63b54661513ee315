//! Huawei Cloud `SDK-HMAC-SHA256` AK/SK request signing (APIG), written once.
//!
//! Canonicalization follows the Go SDK's `core/auth/signer/signer.go`:
//! - the canonical URI is the path with each segment escaped and a trailing `/`
//!   appended (the request itself is sent without it);
//! - query keys sorted, values of a repeated key sorted, each escaped;
//! - every header sent is signed except `content-type*` and names with `_`;
//! - the payload hash covers the exact body bytes;
//! - the key is the SK itself (no derivation).

use hmac::{KeyInit, Mac};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

use crate::cloud::query::{canonical_query, percent_encode};
use crate::secret::Secret;

pub(crate) const ALGORITHM: &str = "SDK-HMAC-SHA256";
pub(crate) const DATE_HEADER: &str = "X-Sdk-Date";

/// One request as it will be sent. `path` is decoded (`/v5/p/image/x`), query
/// pairs are decoded; the caller sends [`canonical_query`] (shared with Alibaba Cloud) as the query string so
/// that what is signed is what goes on the wire.
#[derive(Debug, Clone)]
pub(crate) struct SignRequest<'a> {
    pub method: &'a str,
    pub path: &'a str,
    pub query: &'a [(String, String)],
    /// Every header that will be sent (name, value); `Host` included when sent.
    pub headers: &'a [(String, String)],
    pub body: &'a [u8],
}

/// `X-Sdk-Date` value: `YYYYMMDDTHHMMSSZ` in UTC.
pub(crate) fn sdk_date(at: OffsetDateTime) -> String {
    let at = at.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}{:02}{:02}T{:02}{:02}{:02}Z",
        at.year(),
        u8::from(at.month()),
        at.day(),
        at.hour(),
        at.minute(),
        at.second()
    )
}

pub fn canonical_uri(path: &str) -> String {
    let mut uri = path
        .split('/')
        .map(percent_encode)
        .collect::<Vec<_>>()
        .join("/");
    if !uri.ends_with('/') {
        uri.push('/');
    }
    uri
}

/// Whether a header takes part in the signature (Go SDK rule).
pub(crate) fn is_signed_header(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    !lower.starts_with("content-type") && !lower.contains('_')
}

/// Lower-cased, sorted names of the signed headers, and their canonical lines.
fn signed_headers(headers: &[(String, String)]) -> (Vec<String>, String) {
    let mut signed: Vec<(String, String)> = headers
        .iter()
        .filter(|(n, _)| is_signed_header(n))
        .map(|(n, v)| (n.to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    signed.sort();
    let lines = signed
        .iter()
        .map(|(n, v)| format!("{n}:{v}\n"))
        .collect::<String>();
    (signed.into_iter().map(|(n, _)| n).collect(), lines)
}

pub(crate) fn canonical_request(req: &SignRequest<'_>) -> String {
    let (names, lines) = signed_headers(req.headers);
    format!(
        "{}\n{}\n{}\n{}\n{}\n{}",
        req.method.to_ascii_uppercase(),
        canonical_uri(req.path),
        canonical_query(req.query),
        lines,
        names.join(";"),
        hex::encode(Sha256::digest(req.body))
    )
}

pub(crate) fn string_to_sign(date: &str, canonical_request: &str) -> String {
    format!(
        "{ALGORITHM}\n{date}\n{}",
        hex::encode(Sha256::digest(canonical_request.as_bytes()))
    )
}

fn hmac_hex(key: &[u8], data: &str) -> String {
    // HMAC takes keys of any length, so this cannot fail.
    let mut mac = <hmac::Hmac<Sha256> as KeyInit>::new_from_slice(key)
        .unwrap_or_else(|_| unreachable!("HMAC accepts any key length"));
    mac.update(data.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

/// The `Authorization` header value for a request whose headers already carry
/// `X-Sdk-Date`. Errors only when that header is missing.
pub fn authorization(ak: &str, sk: &Secret, req: &SignRequest<'_>) -> Result<String, String> {
    let date = req
        .headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(DATE_HEADER))
        .map(|(_, v)| v.trim().to_string())
        .ok_or_else(|| format!("request to sign has no {DATE_HEADER} header"))?;
    let canonical = canonical_request(req);
    let signature = hmac_hex(sk.expose().as_bytes(), &string_to_sign(&date, &canonical));
    let (names, _) = signed_headers(req.headers);
    Ok(format!(
        "{ALGORITHM} Access={ak}, SignedHeaders={}, Signature={signature}",
        names.join(";")
    ))
}

#[cfg(test)]
mod tests {
    //! Every published SDK-HMAC-SHA256 vector of scan-apis.md §D.3, byte for byte.
    use super::*;

    fn h(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    fn sk() -> Secret {
        Secret::new("SecretKey")
    }

    #[test]
    fn go_test1_get_with_underscore_header_excluded() {
        let headers = h(&[
            ("X-Sdk-Date", "20060102T150405Z"),
            ("TEST_UNDERSCORE", "TEST_VALUE"),
        ]);
        let query = h(&[("limit", "1")]);
        let req = SignRequest {
            method: "GET",
            path: "/path",
            query: &query,
            headers: &headers,
            body: b"",
        };
        let canonical = canonical_request(&req);
        assert_eq!(
            canonical,
            "GET\n/path/\nlimit=1\nx-sdk-date:20060102T150405Z\n\nx-sdk-date\n\
             e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(
            string_to_sign("20060102T150405Z", &canonical),
            "SDK-HMAC-SHA256\n20060102T150405Z\n\
             85c3b7730f308aee452b16138a42a914397e43a8f0d732dfa521c0ef2afa98a4"
        );
        assert_eq!(
            authorization("AccessKey", &sk(), &req).unwrap(),
            "SDK-HMAC-SHA256 Access=AccessKey, SignedHeaders=x-sdk-date, \
             Signature=5a2ce64c865e0e6046321c6f3d5a77ba8413eeaf355c3166c03d58d02ac79624"
        );
    }

    #[test]
    fn go_test2_post_json_body_with_encoder_newline() {
        let headers = h(&[
            ("X-Sdk-Date", "20060102T150405Z"),
            ("TEST_UNDERSCORE", "TEST_VALUE"),
            ("Content-Type", "application/json"),
        ]);
        let query = h(&[("key", "value")]);
        let req = SignRequest {
            method: "POST",
            path: "/path",
            query: &query,
            headers: &headers,
            body: b"{\"Name\":\"test\",\"Id\":1}\n",
        };
        assert_eq!(
            authorization("AccessKey", &sk(), &req).unwrap(),
            "SDK-HMAC-SHA256 Access=AccessKey, SignedHeaders=x-sdk-date, \
             Signature=cecc2af119b18ab70b4d094c0750f3b42c02f254903179a0fc2cc72fc9db4f59"
        );
    }

    #[test]
    fn python_test_signer1_get_signs_host() {
        let headers = h(&[
            ("Host", "service.endpoint.myhuaweicloud.com"),
            ("X-Sdk-Date", "20200608T023900Z"),
        ]);
        let query = h(&[("size", "1")]);
        let req = SignRequest {
            method: "GET",
            path: "/resources",
            query: &query,
            headers: &headers,
            body: b"",
        };
        let canonical = canonical_request(&req);
        assert_eq!(
            canonical,
            "GET\n/resources/\nsize=1\nhost:service.endpoint.myhuaweicloud.com\n\
             x-sdk-date:20200608T023900Z\n\nhost;x-sdk-date\n\
             e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(
            string_to_sign("20200608T023900Z", &canonical),
            "SDK-HMAC-SHA256\n20200608T023900Z\n\
             de94dd1e1ccdb730b403ce35d7e14f7c7b04337f6def1c3a3a2ba936852b133f"
        );
        assert_eq!(
            authorization("AccessKey", &sk(), &req).unwrap(),
            "SDK-HMAC-SHA256 Access=AccessKey, SignedHeaders=host;x-sdk-date, \
             Signature=cfb4171acec81de07d50e53d57eb77edd537414d66ddb1d7d780f128e12cd842"
        );
    }

    #[test]
    fn python_test_signer2_post_body_without_newline() {
        let headers = h(&[
            ("Host", "service.endpoint.myhuaweicloud.com"),
            ("X-Sdk-Date", "20200608T023900Z"),
        ]);
        let query = h(&[("size", "1")]);
        let req = SignRequest {
            method: "POST",
            path: "/resources",
            query: &query,
            headers: &headers,
            body: b"{\"name\":\"test\",\"id\":1}",
        };
        assert_eq!(
            authorization("AccessKey", &sk(), &req).unwrap(),
            "SDK-HMAC-SHA256 Access=AccessKey, SignedHeaders=host;x-sdk-date, \
             Signature=436b1ac0a1ae03705934bb70ef2f2e09f7bfed2117d731a38235053199323a1f"
        );
    }

    #[test]
    fn canonical_query_vector_of_both_sdks() {
        let query = h(&[
            ("limit", "1"),
            ("enable", "true"),
            ("test", "一 (&=?!#%.*)"),
            ("path", "/tmp/123"),
            ("multi", "3"),
            ("multi", "1"),
            ("multi", "2"),
        ]);
        assert_eq!(
            canonical_query(&query),
            "enable=true&limit=1&multi=1&multi=2&multi=3&path=%2Ftmp%2F123&\
             test=%E4%B8%80%20%28%26%3D%3F%21%23%25.%2A%29"
        );
    }

    fn hss_headers() -> Vec<(String, String)> {
        h(&[
            ("Host", "hss.cn-north-4.myhuaweicloud.com"),
            ("X-Sdk-Date", "20200608T023900Z"),
            ("X-Project-Id", "0123456789abcdef0123456789abcdef"),
            ("Content-Type", "application/json"),
        ])
    }

    #[test]
    fn derived_hss_list_image_vulnerabilities() {
        let headers = hss_headers();
        let query = h(&[
            ("image_name", "nginx"),
            ("image_type", "private_image"),
            ("limit", "10"),
            ("namespace", "demo-org"),
            ("offset", "0"),
            ("repair_necessity", "immediate_repair"),
            ("tag_name", "1.25"),
        ]);
        let req = SignRequest {
            method: "GET",
            path: "/v5/0123456789abcdef0123456789abcdef/image/img-0001/vulnerabilities",
            query: &query,
            headers: &headers,
            body: b"",
        };
        assert_eq!(
            canonical_request(&req),
            "GET\n/v5/0123456789abcdef0123456789abcdef/image/img-0001/vulnerabilities/\n\
             image_name=nginx&image_type=private_image&limit=10&namespace=demo-org&offset=0&\
             repair_necessity=immediate_repair&tag_name=1.25\n\
             host:hss.cn-north-4.myhuaweicloud.com\n\
             x-project-id:0123456789abcdef0123456789abcdef\n\
             x-sdk-date:20200608T023900Z\n\n\
             host;x-project-id;x-sdk-date\n\
             e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(
            authorization("AccessKey", &sk(), &req).unwrap(),
            "SDK-HMAC-SHA256 Access=AccessKey, SignedHeaders=host;x-project-id;x-sdk-date, \
             Signature=51aa1961b9c582be7c8d5da8194dfc2fa00798694dff3754c3a3bce5d74bfad5"
        );
    }

    #[test]
    fn derived_hss_show_image_security_report_statistic() {
        let headers = hss_headers();
        let query = h(&[("security_report_type", "vulnerability")]);
        let body = br#"{"image_type":"private_image","namespace":"demo-org","image_name":"nginx","image_version":"1.25"}"#;
        assert_eq!(
            hex::encode(Sha256::digest(body)),
            "2c9abdf32531f5ce131d5a0b7190ee6082d676e57ee12cee8da304bb805a630a"
        );
        let req = SignRequest {
            method: "POST",
            path: "/v5/0123456789abcdef0123456789abcdef/image/security-report/statistic",
            query: &query,
            headers: &headers,
            body,
        };
        assert!(authorization("AccessKey", &sk(), &req).unwrap().ends_with(
            "Signature=241fc61f88be47d02003ee9dba9db8007e092204679799076c6e8b1ff0124947"
        ));
    }

    #[test]
    fn sdk_date_format_and_missing_date_is_an_error() {
        let at = time::macros::datetime!(2006-01-02 15:04:05 UTC);
        assert_eq!(sdk_date(at), "20060102T150405Z");
        let req = SignRequest {
            method: "GET",
            path: "/",
            query: &[],
            headers: &[],
            body: b"",
        };
        assert!(
            authorization("AccessKey", &sk(), &req)
                .unwrap_err()
                .contains("X-Sdk-Date")
        );
    }

    #[test]
    fn path_segments_are_escaped_and_root_stays_single_slash() {
        assert_eq!(canonical_uri("/"), "/");
        assert_eq!(canonical_uri("/a b/c:d"), "/a%20b/c%3Ad/");
        assert_eq!(canonical_uri("/already/"), "/already/");
    }
}
