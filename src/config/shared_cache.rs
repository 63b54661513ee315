//! `cache.shared`: where the shared tier lives and how its entries are signed.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::ConfigError;

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

/// Where Redis is: exactly one of `url` (one node), `sentinel` or `cluster`; the
/// credentials, CA and timeout apply to every node of any of them.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RedisConfig {
    /// `redis://host:6379/0`, or `rediss://` for TLS. Credentials go in the
    /// `username`/`password` sources, not in the URL.
    #[serde(default)]
    pub url: Option<String>,
    /// A master found (and followed through failovers) by Redis Sentinel.
    #[serde(default)]
    pub sentinel: Option<SentinelConfig>,
    /// The URLs of some nodes of a Redis Cluster (the others are discovered).
    #[serde(default)]
    pub cluster: Option<Vec<String>>,
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
pub struct SentinelConfig {
    /// `redis://sentinel-0:26379`, or `rediss://` when the sentinels and the nodes
    /// speak TLS (one scheme for all).
    pub addresses: Vec<String>,
    /// The name the sentinels monitor the master under (`sentinel monitor NAME ...`).
    pub master_name: String,
    /// The sentinels' own ACL user and password, when they have them (the nodes'
    /// are `redis.username`/`redis.password`).
    #[serde(default)]
    pub username: Option<SecretSource>,
    #[serde(default)]
    pub password: Option<SecretSource>,
}

/// Which of `url`, `sentinel` or `cluster` a valid config names.
pub enum Topology<'a> {
    Single(&'a str),
    Sentinel(&'a SentinelConfig),
    Cluster(&'a [String]),
}

impl RedisConfig {
    /// The one topology the config names, or an error naming the keys to fix.
    pub fn topology(&self) -> Result<Topology<'_>, ConfigError> {
        match (&self.url, &self.sentinel, &self.cluster) {
            (Some(url), None, None) => Ok(Topology::Single(url)),
            (None, Some(sentinel), None) => Ok(Topology::Sentinel(sentinel)),
            (None, None, Some(nodes)) => Ok(Topology::Cluster(nodes)),
            (None, None, None) => Err(ConfigError::invalid(
                "cache.shared.redis",
                "one of url, sentinel or cluster is needed",
            )),
            _ => Err(ConfigError::invalid(
                "cache.shared.redis",
                "only one of url, sentinel or cluster (they name different deployments)",
            )),
        }
    }

    /// The URLs the client is given, with the key each comes from.
    fn urls(&self) -> Result<Vec<(String, &str)>, ConfigError> {
        Ok(match self.topology()? {
            Topology::Single(url) => vec![("cache.shared.redis.url".to_string(), url)],
            Topology::Sentinel(sentinel) => {
                if sentinel.addresses.is_empty() {
                    return Err(ConfigError::invalid(
                        "cache.shared.redis.sentinel.addresses",
                        "at least one sentinel",
                    ));
                }
                if sentinel.master_name.is_empty() {
                    return Err(ConfigError::invalid(
                        "cache.shared.redis.sentinel.masterName",
                        "must not be empty",
                    ));
                }
                sentinel
                    .addresses
                    .iter()
                    .enumerate()
                    .map(|(i, a)| {
                        (
                            format!("cache.shared.redis.sentinel.addresses[{i}]"),
                            a.as_str(),
                        )
                    })
                    .collect()
            }
            Topology::Cluster(nodes) => {
                if nodes.is_empty() {
                    return Err(ConfigError::invalid(
                        "cache.shared.redis.cluster",
                        "at least one node URL",
                    ));
                }
                nodes
                    .iter()
                    .enumerate()
                    .map(|(i, n)| (format!("cache.shared.redis.cluster[{i}]"), n.as_str()))
                    .collect()
            }
        })
    }

    /// Whether the nodes speak TLS (`rediss://`); every URL must say the same.
    pub fn tls(&self) -> Result<bool, ConfigError> {
        let urls = self.urls()?;
        let mut tls = None;
        for (key, url) in &urls {
            if !(url.starts_with("redis://") || url.starts_with("rediss://")) {
                return Err(ConfigError::invalid(
                    key.clone(),
                    "must start with redis:// or rediss://",
                ));
            }
            // A password in the URL would end up in the ConfigMap and in error messages.
            if url::Url::parse(url).is_ok_and(|u| u.password().is_some()) {
                return Err(ConfigError::invalid(
                    key.clone(),
                    "put the password in cache.shared.redis.password ({file: ...}), not in the URL",
                ));
            }
            let this = url.starts_with("rediss://");
            if tls.is_some_and(|t| t != this) {
                return Err(ConfigError::invalid(
                    key.clone(),
                    "every URL uses the same scheme (all redis:// or all rediss://)",
                ));
            }
            tls = Some(this);
        }
        Ok(tls.unwrap_or(false))
    }
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
    pub fn validate(&self, deadline: Duration) -> Result<(), ConfigError> {
        let tls = self.redis.tls()?;
        if self.redis.ca_file.is_some() && !tls {
            return Err(ConfigError::invalid(
                "cache.shared.redis.caFile",
                "only used with rediss:// URLs",
            ));
        }
        if self.redis.timeout.is_zero() {
            return Err(ConfigError::invalid(
                "cache.shared.redis.timeout",
                "must be greater than zero",
            ));
        }
        if self.hmac_keys.is_empty() {
            return Err(ConfigError::invalid(
                "cache.shared.hmacKeys",
                "at least one key is needed (entries are signed)",
            ));
        }
        for (i, key) in self.hmac_keys.iter().enumerate() {
            if key.id.is_empty() || !key.id.bytes().all(|b| b.is_ascii_graphic()) {
                return Err(ConfigError::invalid(
                    format!("cache.shared.hmacKeys[{i}].id"),
                    "a short printable name such as k1",
                ));
            }
        }
        // The wait must leave the review time to ask the scanner itself.
        if self.lock_wait.saturating_add(self.redis.timeout) >= deadline {
            return Err(ConfigError::invalid(
                "cache.shared.lockWait",
                format!(
                    "{} plus the Redis timeout must stay below the deadline ({})",
                    humantime::format_duration(self.lock_wait),
                    humantime::format_duration(deadline)
                ),
            ));
        }
        if self.lock_ttl < self.lock_wait {
            return Err(ConfigError::invalid(
                "cache.shared.lockTtl",
                "must be at least lockWait",
            ));
        }
        Ok(())
    }

    pub(crate) fn rebase_paths(&mut self, base: &Path) {
        if let Some(ca) = self.redis.ca_file.as_mut().filter(|p| p.is_relative()) {
            *ca = base.join(&*ca);
        }
        let sentinel = self
            .redis
            .sentinel
            .as_mut()
            .map(|s| [&mut s.username, &mut s.password]);
        for source in [&mut self.redis.username, &mut self.redis.password]
            .into_iter()
            .chain(sentinel.into_iter().flatten())
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

#[cfg(test)]
mod tests {
    use super::*;

    fn validated(redis: &str) -> Result<SharedCacheConfig, String> {
        let yaml = format!("redis: {redis}\nhmacKeys: [{{id: k1, secret: {{file: k}}}}]\n");
        let config: SharedCacheConfig = serde_saphyr::from_str(&yaml).map_err(|e| e.to_string())?;
        config
            .validate(Duration::from_secs(10))
            .map_err(|e| e.to_string())?;
        Ok(config)
    }

    #[test]
    fn exactly_one_of_url_sentinel_or_cluster() {
        let none = validated("{timeout: 250ms}").unwrap_err();
        assert!(none.contains("one of url, sentinel or cluster"), "{none}");
        let two =
            validated(r#"{url: "redis://a:6379/0", cluster: ["redis://b:6379"]}"#).unwrap_err();
        assert!(
            two.contains("only one of url, sentinel or cluster"),
            "{two}"
        );
        assert!(validated(r#"{url: "redis://a:6379/0"}"#).is_ok());
        let sentinel = validated(
            r#"{sentinel: {addresses: ["redis://s:26379"], masterName: m, password: {file: p}}}"#,
        )
        .unwrap();
        assert!(matches!(
            sentinel.redis.topology(),
            Ok(Topology::Sentinel(s)) if s.master_name == "m" && s.password.is_some()
        ));
        let cluster = validated(r#"{cluster: ["redis://a:6379", "redis://b:6379"]}"#).unwrap();
        assert!(matches!(cluster.redis.topology(), Ok(Topology::Cluster(n)) if n.len() == 2));
    }

    #[test]
    fn sentinel_and_cluster_lists_are_checked_and_name_the_bad_entry() {
        let unknown = validated(r#"{sentinel: {addresses: [], master: m}}"#).unwrap_err();
        assert!(unknown.contains("unknown field `master`"), "{unknown}");
        let empty = validated(r#"{sentinel: {addresses: [], masterName: m}}"#).unwrap_err();
        assert!(
            empty.contains("sentinel.addresses: at least one"),
            "{empty}"
        );
        let no_name =
            validated(r#"{sentinel: {addresses: ["redis://s:1"], masterName: ""}}"#).unwrap_err();
        assert!(no_name.contains("sentinel.masterName"), "{no_name}");
        let mixed = validated(r#"{cluster: ["rediss://a:6379", "redis://b:6379"]}"#).unwrap_err();
        assert!(
            mixed.starts_with("cache.shared.redis.cluster[1]:"),
            "{mixed}"
        );
        assert!(mixed.contains("same scheme"), "{mixed}");
        let password =
            validated(r#"{sentinel: {addresses: ["redis://:hunter2@s:1"], masterName: m}}"#)
                .unwrap_err();
        assert!(password.contains("sentinel.addresses[0]"), "{password}");
        assert!(!password.contains("hunter2"), "{password}");
        let ca = validated(r#"{cluster: ["redis://a:6379"], caFile: ca.pem}"#).unwrap_err();
        assert!(ca.contains("caFile: only used with rediss://"), "{ca}");
        assert!(validated(r#"{cluster: ["rediss://a:6379"], caFile: ca.pem}"#).is_ok());
        let empty = validated("{cluster: []}").unwrap_err();
        assert!(empty.contains("cluster: at least one node"), "{empty}");
    }
}
