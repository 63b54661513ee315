//! Retrying throttled calls: exponential backoff with jitter inside a budget.
//!
//! Only throttling is retried. A 5xx or a timeout is reported at once: the
//! review has one deadline, and the engine already bounds every call by it.

use std::future::Future;
use std::time::Duration;

use crate::config::retry::RetryConfig;
use crate::domain::scan_error::ScanError;

impl RetryConfig {
    /// Delay before retry number `attempt` (0-based): `initial * 2^attempt`, capped,
    /// then drawn uniformly from its upper half so that many clients spread out.
    /// A server's `Retry-After` is honoured up to `max_backoff`.
    pub fn delay(&self, attempt: u32, retry_after: Option<Duration>) -> Duration {
        if let Some(after) = retry_after {
            return after.min(self.max_backoff);
        }
        let factor = 1u32.checked_shl(attempt.min(20)).unwrap_or(u32::MAX);
        let full = self
            .initial_backoff
            .saturating_mul(factor)
            .min(self.max_backoff);
        let half = full / 2;
        half + half.mul_f64(jitter())
    }
}

/// A number in [0, 1), from the process's random hasher keys (no extra crate).
fn jitter() -> f64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    (h.finish() >> 11) as f64 / (1u64 << 53) as f64
}

/// What one try of a call gave.
pub(crate) enum Attempt<T> {
    Done(Result<T, ScanError>),
    /// Throttled: worth another try after a delay. The error is what is reported
    /// when the budget runs out.
    Throttled {
        error: ScanError,
        retry_after: Option<Duration>,
    },
}

/// Runs `op` until it is done or throttled more often than the budget allows.
pub(crate) async fn retry_throttled<T, F, Fut>(
    policy: &RetryConfig,
    mut op: F,
) -> Result<T, ScanError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Attempt<T>>,
{
    let mut attempt = 0u32;
    loop {
        match op().await {
            Attempt::Done(result) => return result,
            Attempt::Throttled { error, retry_after } => {
                if attempt >= policy.max_retries {
                    return Err(with_suffix(
                        error,
                        &format!(" (still throttled after {attempt} retries)"),
                    ));
                }
                tracing::debug!(attempt, "throttled; backing off");
                tokio::time::sleep(policy.delay(attempt, retry_after)).await;
                attempt += 1;
            }
        }
    }
}

fn with_suffix(error: ScanError, suffix: &str) -> ScanError {
    match error {
        ScanError::Unavailable { scanner, message } => ScanError::Unavailable {
            scanner,
            message: message + suffix,
        },
        ScanError::Config { scanner, message } => ScanError::Config {
            scanner,
            message: message + suffix,
        },
    }
}

/// `Retry-After` in seconds (the HTTP-date form is ignored: backoff applies).
pub(crate) fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    headers
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse::<u64>()
        .ok()
        .map(Duration::from_secs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[test]
    fn delays_grow_stay_capped_and_honour_retry_after() {
        let p = RetryConfig {
            max_retries: 5,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_millis(1000),
        };
        for _ in 0..50 {
            let d0 = p.delay(0, None);
            assert!(d0 >= Duration::from_millis(50) && d0 <= Duration::from_millis(100));
            let d2 = p.delay(2, None);
            assert!(d2 >= Duration::from_millis(200) && d2 <= Duration::from_millis(400));
            let d9 = p.delay(9, None);
            assert!(d9 >= Duration::from_millis(500) && d9 <= Duration::from_millis(1000));
        }
        assert_eq!(p.delay(0, Some(Duration::from_secs(60))), p.max_backoff);
        assert_eq!(
            p.delay(0, Some(Duration::from_millis(30))),
            Duration::from_millis(30)
        );
    }

    #[tokio::test]
    async fn gives_up_after_the_budget_and_says_so() {
        let p = RetryConfig {
            max_retries: 2,
            initial_backoff: Duration::from_millis(1),
            max_backoff: Duration::from_millis(2),
        };
        let calls = AtomicU32::new(0);
        let r: Result<(), _> = retry_throttled(&p, || async {
            calls.fetch_add(1, Ordering::SeqCst);
            Attempt::Throttled {
                error: ScanError::Unavailable {
                    scanner: "t",
                    message: "HTTP 429".into(),
                },
                retry_after: None,
            }
        })
        .await;
        assert_eq!(calls.load(Ordering::SeqCst), 3);
        let msg = r.unwrap_err().to_string();
        assert!(msg.contains("still throttled after 2 retries"), "{msg}");
    }
}
