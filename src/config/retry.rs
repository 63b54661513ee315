//! `retry:` of the `hss` and `harbor` scanners (the backoff itself is in scan/backoff.rs).

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// `retry:` in a scanner's config.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RetryConfig {
    /// How many times one throttled call is retried (0: never).
    #[serde(default = "default_retries")]
    pub max_retries: u32,
    /// Delay before the first retry; doubled each time, with jitter.
    #[serde(default = "default_initial", with = "humantime_serde")]
    pub initial_backoff: Duration,
    /// Upper bound of one delay, also of a server's `Retry-After`.
    #[serde(default = "default_max", with = "humantime_serde")]
    pub max_backoff: Duration,
}

impl Default for RetryConfig {
    fn default() -> Self {
        RetryConfig {
            max_retries: default_retries(),
            initial_backoff: default_initial(),
            max_backoff: default_max(),
        }
    }
}

fn default_retries() -> u32 {
    3
}
fn default_initial() -> Duration {
    Duration::from_millis(200)
}
fn default_max() -> Duration {
    Duration::from_secs(2)
}
