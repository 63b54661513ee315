//! The percent-encoding and canonical query both vendors sign (Alibaba Cloud's
//! ACS3 and V1 signatures, Huawei Cloud's SDK-HMAC-SHA256): RFC 3986 unreserved
//! characters kept, sorted `key=value` pairs.

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

/// RFC 3986: everything but `A-Z a-z 0-9 - _ . ~` becomes `%XX` (upper-case hex), so
/// space is `%20` (never `+`), `*` is `%2A`, `/` is `%2F` and `~` stays.
const RFC3986: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

pub(crate) fn percent_encode(s: &str) -> String {
    utf8_percent_encode(s, RFC3986).to_string()
}

/// `enc(k)=enc(v)` pairs sorted by encoded key (byte order), joined with `&`.
/// Used both as the signed canonical query and as the query actually sent, so the
/// server re-canonicalizes exactly what was signed.
pub fn canonical_query<K: AsRef<str>, V: AsRef<str>>(params: &[(K, V)]) -> String {
    let mut pairs: Vec<(String, String)> = params
        .iter()
        .map(|(k, v)| (percent_encode(k.as_ref()), percent_encode(v.as_ref())))
        .collect();
    pairs.sort();
    pairs
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn published_encoding_vectors() {
        // scan-apis.md A.4: encoding check and the SDK's getEncodeParam vector.
        assert_eq!(percent_encode("a b*c~d/e+f:g"), "a%20b%2Ac~d%2Fe%2Bf%3Ag");
        assert_eq!(percent_encode("a/b/c/ test"), "a%2Fb%2Fc%2F%20test");
        assert_eq!(percent_encode("中"), "%E4%B8%AD");
    }

    #[test]
    fn empty_values_keep_their_equals_sign() {
        assert_eq!(
            canonical_query(&[("test", "ok"), ("empty", "")]),
            "empty=&test=ok"
        );
        assert_eq!(canonical_query::<&str, &str>(&[]), "");
    }
}
