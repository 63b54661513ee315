//! `cache.shared`: where the shared tier lives and how its entries are signed.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::secret::SecretSource;

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SharedCacheConfig {
    pub redis: RedisConfig,
    /// Signs and checks every entry; the first key signs, every key is accepted
    /// (so a new key can be rolled out before the old one is dropped).
    pub hmac_keys: Vec<HmacKeyConfig>,
    /// Longest a replica holds the "I am asking the scanner" lock of one digest.
    #[serde(default = "default_lock_ttl", with = "humantime_serde")]
    pub lock_ttl: Duration,
    /// Longest the other replicas wait for the lock holder's entry before asking
    /// the scanner themselves.
    #[serde(default = "default_lock_wait", with = "humantime_serde")]
    pub lock_wait: Duration,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RedisConfig {
    /// `redis://host:6379/0`, or `rediss://` for TLS. Credentials go in the
    /// `username`/`password` sources, not in the URL.
    pub url: String,
    /// PEM CA bundle trusted for `rediss://` (else the system's roots).
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// ACL user (Redis 6+); without it, `AUTH` uses the password alone.
    #[serde(default)]
    pub username: Option<SecretSource>,
    #[serde(default)]
    pub password: Option<SecretSource>,
    /// Prefix of every key vulngate writes, so one Redis can serve several clusters.
    #[serde(default = "default_key_prefix")]
    pub key_prefix: String,
    /// Bound on every Redis operation (connecting included).
    #[serde(default = "default_timeout", with = "humantime_serde")]
    pub timeout: Duration,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HmacKeyConfig {
    /// Written into each entry, so a reader knows which key to check it with.
    pub id: String,
    pub secret: SecretSource,
}

impl SharedCacheConfig {
    /// Errors name the key to fix; `deadline` is the config's review deadline.
    pub fn validate(&self, deadline: Duration) -> Result<(), String> {
        let url = &self.redis.url;
        if !(url.starts_with("redis://") || url.starts_with("rediss://")) {
            return Err("cache.shared.redis.url: must start with redis:// or rediss://".into());
        }
        // A password in the URL would end up in the ConfigMap and in error messages.
        if url::Url::parse(url).is_ok_and(|u| u.password().is_some()) {
            return Err(
                "cache.shared.redis.url: put the password in cache.shared.redis.password ({file: ...}), not in the URL"
                    .into(),
            );
        }
        if self.redis.ca_file.is_some() && !url.starts_with("rediss://") {
            return Err("cache.shared.redis.caFile: only used with a rediss:// URL".into());
        }
        if self.redis.timeout.is_zero() {
            return Err("cache.shared.redis.timeout: must be greater than zero".into());
        }
        if self.hmac_keys.is_empty() {
            return Err(
                "cache.shared.hmacKeys: at least one key is needed (entries are signed)".into(),
            );
        }
        for (i, key) in self.hmac_keys.iter().enumerate() {
            if key.id.is_empty() || !key.id.bytes().all(|b| b.is_ascii_graphic()) {
                return Err(format!(
                    "cache.shared.hmacKeys[{i}].id: a short printable name such as k1"
                ));
            }
        }
        // The wait must leave the review time to ask the scanner itself.
        if self.lock_wait.saturating_add(self.redis.timeout) >= deadline {
            return Err(format!(
                "cache.shared.lockWait: {} plus the Redis timeout must stay below the deadline ({})",
                humantime::format_duration(self.lock_wait),
                humantime::format_duration(deadline)
            ));
        }
        if self.lock_ttl < self.lock_wait {
            return Err("cache.shared.lockTtl: must be at least lockWait".into());
        }
        Ok(())
    }

    pub fn rebase_paths(&mut self, base: &Path) {
        if let Some(ca) = self.redis.ca_file.as_mut().filter(|p| p.is_relative()) {
            *ca = base.join(&*ca);
        }
        for source in [&mut self.redis.username, &mut self.redis.password]
            .into_iter()
            .flatten()
        {
            source.rebase(base);
        }
        for key in &mut self.hmac_keys {
            key.secret.rebase(base);
        }
    }
}

fn default_key_prefix() -> String {
    "vulngate:".to_string()
}
fn default_timeout() -> Duration {
    Duration::from_millis(250)
}
fn default_lock_ttl() -> Duration {
    Duration::from_secs(10)
}
fn default_lock_wait() -> Duration {
    Duration::from_secs(3)
}
