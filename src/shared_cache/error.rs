//! What can go wrong with the shared tier: preparing the client (errors name the
//! config key to fix) and talking to Redis. Never a password or key value.

use std::path::PathBuf;
use std::time::Duration;

use crate::config::ConfigError;
use crate::secret::SecretError;

#[derive(Debug, thiserror::Error)]
pub enum SharedCacheError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A username or password that could not be read; `key` is its config key.
    #[error("{key}: {source}")]
    Credential {
        key: &'static str,
        source: SecretError,
    },
    #[error("cache.shared.redis.caFile {}: {source}", path.display())]
    ReadCa {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The Redis client refused the settings under `key`.
    #[error("{key}: {source}")]
    Client {
        key: String,
        source: redis::RedisError,
    },
    #[error("hmacKeys {id}: {source}")]
    HmacKey { id: String, source: SecretError },
    #[error("no HMAC key")]
    NoHmacKey,
    #[error("HMAC key {id} is shorter than 16 bytes; use a random key (e.g. openssl rand -hex 32)")]
    ShortHmacKey { id: String },
    #[error("{0}")]
    Redis(redis::RedisError),
    #[error("no answer within {}", humantime::format_duration(*.0))]
    Timeout(Duration),
    #[error("shared cache purge: {0}")]
    Purge(Box<SharedCacheError>),
}
