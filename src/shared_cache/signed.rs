//! Signed entries: whoever can write to the Redis must not be able to turn
//! "5 critical" into "0". Each value is `<key id>\n<hex HMAC-SHA256>\n<written at, unix
//! ms>\n<body>`; the MAC covers the Redis key, the time and the body, so an entry can
//! neither be edited, nor moved to another digest, nor replayed after its lifetime.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hmac::{KeyInit, Mac};
use sha2::Sha256;

use crate::secret::Secret;

use super::SharedCacheError;

type HmacSha256 = hmac::Hmac<Sha256>;

pub(crate) struct SigningKey {
    pub id: String,
    pub secret: Secret,
}

/// Why an entry was not used. Never carries the entry or a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Rejected {
    /// Not in the entry format at all.
    Malformed,
    /// Signed with a key id this replica does not have.
    UnknownKey,
    /// The MAC does not match: edited, forged or moved from another key.
    BadSignature,
    /// Older than its lifetime (a replayed entry) or written in the future.
    Stale,
}

impl Rejected {
    pub fn as_str(self) -> &'static str {
        match self {
            Rejected::Malformed => "malformed",
            Rejected::UnknownKey => "unknown_key",
            Rejected::BadSignature => "bad_signature",
            Rejected::Stale => "stale",
        }
    }
}

/// Clocks of replicas differ a little; an entry this far "in the future" is still fine.
const CLOCK_SKEW: Duration = Duration::from_secs(60);

pub(crate) struct Signer {
    /// The first key signs; all are accepted.
    keys: Vec<SigningKey>,
}

impl Signer {
    pub fn new(keys: Vec<SigningKey>) -> Result<Signer, SharedCacheError> {
        if keys.is_empty() {
            return Err(SharedCacheError::NoHmacKey);
        }
        if let Some(short) = keys.iter().find(|k| k.secret.expose().len() < 16) {
            return Err(SharedCacheError::ShortHmacKey {
                id: short.id.clone(),
            });
        }
        Ok(Signer { keys })
    }

    pub(crate) fn seal(&self, redis_key: &str, body: &str) -> String {
        self.seal_at(redis_key, body, now_ms())
    }

    fn seal_at(&self, redis_key: &str, body: &str, written_ms: u64) -> String {
        let key = &self.keys[0];
        let mac = mac(&key.secret, redis_key, written_ms, body);
        format!("{}\n{}\n{written_ms}\n{body}", key.id, hex::encode(mac))
    }

    /// The body of `value` read from `redis_key`, if it is signed by one of our keys
    /// and no older than `max_age`.
    pub fn open<'v>(
        &self,
        redis_key: &str,
        value: &'v str,
        max_age: Duration,
    ) -> Result<&'v str, Rejected> {
        let mut parts = value.splitn(4, '\n');
        let (Some(id), Some(mac_hex), Some(written), Some(body)) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(Rejected::Malformed);
        };
        let written_ms: u64 = written.parse().map_err(|_| Rejected::Malformed)?;
        let claimed = hex::decode(mac_hex).map_err(|_| Rejected::Malformed)?;
        let key = self
            .keys
            .iter()
            .find(|k| k.id == id)
            .ok_or(Rejected::UnknownKey)?;
        let check = mac_state(&key.secret, redis_key, written_ms, body);
        // Constant time: a timing difference must not help a forger.
        check
            .verify_slice(&claimed)
            .map_err(|_| Rejected::BadSignature)?;
        let now = now_ms();
        let age = Duration::from_millis(now.saturating_sub(written_ms));
        let ahead = Duration::from_millis(written_ms.saturating_sub(now));
        if age > max_age.saturating_add(CLOCK_SKEW) || ahead > CLOCK_SKEW {
            return Err(Rejected::Stale);
        }
        Ok(body)
    }
}

fn mac_state(secret: &Secret, redis_key: &str, written_ms: u64, body: &str) -> HmacSha256 {
    // HMAC takes keys of any length: this cannot fail.
    let mut mac = <HmacSha256 as KeyInit>::new_from_slice(secret.expose().as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC accepts any key length"));
    for part in [
        redis_key.as_bytes(),
        b"\n",
        written_ms.to_string().as_bytes(),
        b"\n",
    ] {
        mac.update(part);
    }
    mac.update(body.as_bytes());
    mac
}

fn mac(secret: &Secret, redis_key: &str, written_ms: u64, body: &str) -> Vec<u8> {
    mac_state(secret, redis_key, written_ms, body)
        .finalize()
        .into_bytes()
        .to_vec()
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signer(keys: &[(&str, &str)]) -> Signer {
        Signer::new(
            keys.iter()
                .map(|(id, s)| SigningKey {
                    id: id.to_string(),
                    secret: Secret::new(*s),
                })
                .collect(),
        )
        .unwrap()
    }

    const KEY: &str = "0123456789abcdef0123";
    const HOUR: Duration = Duration::from_secs(3600);

    #[test]
    fn a_sealed_entry_opens_under_its_own_key_only() {
        let s = signer(&[("k1", KEY)]);
        let sealed = s.seal("p:summary:0:sha256:aa", "{\"high\":5}");
        assert_eq!(
            s.open("p:summary:0:sha256:aa", &sealed, HOUR),
            Ok("{\"high\":5}")
        );
        // Moved to another digest's key: rejected.
        assert_eq!(
            s.open("p:summary:0:sha256:bb", &sealed, HOUR),
            Err(Rejected::BadSignature)
        );
    }

    #[test]
    fn edited_forged_unknown_and_replayed_entries_are_rejected() {
        let s = signer(&[("k1", KEY)]);
        let key = "p:summary:0:sha256:aa";
        let sealed = s.seal(key, "{\"high\":5}");
        let edited = sealed.replace("\"high\":5", "\"high\":0");
        assert_eq!(s.open(key, &edited, HOUR), Err(Rejected::BadSignature));
        let forged = format!("k1\n{}\n1\n{{}}", "00".repeat(32));
        assert_eq!(s.open(key, &forged, HOUR), Err(Rejected::BadSignature));
        let other = signer(&[("k9", "another-key-of-16-bytes")]).seal(key, "{}");
        assert_eq!(s.open(key, &other, HOUR), Err(Rejected::UnknownKey));
        assert_eq!(s.open(key, "0 critical", HOUR), Err(Rejected::Malformed));
        let old = s.seal_at(key, "{}", now_ms() - 3 * 3600 * 1000);
        assert_eq!(s.open(key, &old, HOUR), Err(Rejected::Stale));
    }

    #[test]
    fn an_old_key_still_opens_while_a_new_one_signs() {
        let old = signer(&[("k1", KEY)]);
        let rotated = signer(&[("k2", "the-new-key-16-bytes"), ("k1", KEY)]);
        let sealed = old.seal("k", "{}");
        assert_eq!(rotated.open("k", &sealed, HOUR), Ok("{}"));
        assert!(rotated.seal("k", "{}").starts_with("k2\n"));
    }

    #[test]
    fn short_keys_are_refused() {
        let err = Signer::new(vec![SigningKey {
            id: "k1".into(),
            secret: Secret::new("xyz9"),
        }]);
        assert!(
            err.is_err_and(|e| e.to_string().contains("k1") && !e.to_string().contains("xyz9"))
        );
    }
}
