//! Alibaba Cloud OpenAPI: the RPC-style transport that `cr` (Container Registry EE)
//! and `Sas` (Security Center) share: request signing (ACS3-HMAC-SHA256 and the older
//! HMAC-SHA1 "V1" RPC signature), credentials (access keys, STS token, RRSA) and a
//! client with the vendor's error model and throttling retries.

pub mod client;
pub(crate) mod credentials;
pub(crate) mod error;
pub(crate) mod scan_requests;
pub(crate) mod setup_error;
pub(crate) mod sign_v1;
pub(crate) mod sign_v3;

/// `yyyy-MM-ddTHH:mm:ssZ` in UTC, the timestamp form both signatures use.
pub fn timestamp(t: time::OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

/// A fresh random value: nonces and retry jitter. Not for key material.
pub(crate) fn random_u64() -> u64 {
    use std::collections::hash_map::RandomState;
    use std::hash::{BuildHasher, Hasher};
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut h = RandomState::new().build_hasher();
    h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    h.finish()
}

/// A unique per-request nonce (32 hex characters).
pub fn nonce() -> String {
    format!("{:016x}{:016x}", random_u64(), random_u64())
}

/// A JSON field as text.
pub(crate) fn json_str<'a>(v: &'a serde_json::Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(serde_json::Value::as_str)
}

/// A JSON count that may come as a number or as a numeric string (ACR's
/// `ListRepoTag.TotalCount` is a string).
pub(crate) fn json_u64(v: &serde_json::Value, key: &str) -> Option<u64> {
    match v.get(key)? {
        serde_json::Value::Number(n) => n.as_u64(),
        serde_json::Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// `sha256:abc` and `abc` name the same digest (ACR examples use both forms).
pub(crate) fn digest_hex(digest: &str) -> &str {
    digest.strip_prefix("sha256:").unwrap_or(digest)
}

pub(crate) fn same_digest(a: &str, b: &str) -> bool {
    digest_hex(a).eq_ignore_ascii_case(digest_hex(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamp_is_utc_second_precision() {
        let t = time::macros::datetime!(2023-03-13 16:34:30.5 +8);
        assert_eq!(timestamp(t), "2023-03-13T08:34:30Z");
    }

    #[test]
    fn nonces_differ() {
        assert_ne!(nonce(), nonce());
        assert_eq!(nonce().len(), 32);
    }
}
