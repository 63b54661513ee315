//! Scans asked for on a miss (`scanOnMissing`): ACR `CreateRepoTagScanTask` and
//! Security Center `PublicCreateImageScanTask` start paid scans, so they are
//! rate-limited per scanner, and a refusal by Security Center holds further requests
//! back for a while instead of asking again at every lookup. Every "no" comes with a
//! reason the review's response and log can show.

use std::num::NonZeroU32;
use std::sync::Mutex;
use std::time::Duration;

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use serde_json::Value;
use tokio::time::Instant;

use super::json_str;
use crate::config::alibaba::ScanRequestLimit;

/// How long Security Center is not asked again after it refused a task.
/// Running-task cap: tasks finish within minutes.
const HOLD_AFTER_CAP: Duration = Duration::from_secs(60);
/// The region does not support scan tasks: that does not change soon.
const HOLD_AFTER_UNSUPPORTED: Duration = Duration::from_secs(3600);

/// Why Security Center did not create the task a `PublicCreateImageScanTask` answer
/// is about, with how long to wait before asking again; `None` when it was created.
/// `Data.CanCreate=false` is its running-task cap, `Data.Result` other than
/// `SUCCESS` (`TASK_NOT_SUPPORT_REGION`) a task it will not run.
pub(crate) fn sas_task_refusal(answer: &Value) -> Option<(String, Duration)> {
    let data = answer.get("Data").unwrap_or(&Value::Null);
    let request_id = json_str(answer, "RequestId").unwrap_or("none");
    if data.get("CanCreate").and_then(Value::as_bool) == Some(false) {
        return Some((
            format!(
                "Security Center created no scan task: it runs as many as it allows at once \
                 (CanCreate=false, RequestId {request_id})"
            ),
            HOLD_AFTER_CAP,
        ));
    }
    match json_str(data, "Result") {
        Some(result) if !result.eq_ignore_ascii_case("SUCCESS") => {
            let hold = if result.eq_ignore_ascii_case("TASK_NOT_SUPPORT_REGION") {
                HOLD_AFTER_UNSUPPORTED
            } else {
                HOLD_AFTER_CAP
            };
            Some((
                format!(
                    "Security Center created no scan task: result {result} (RequestId {request_id})"
                ),
                hold,
            ))
        }
        _ => None,
    }
}

/// The gate every scan request of one scanner passes.
pub(crate) struct ScanRequestGate {
    limit: ScanRequestLimit,
    limiter: DefaultDirectRateLimiter,
    /// After a refusal: no request before this instant, and why.
    held: Mutex<Option<(Instant, String)>>,
}

impl std::fmt::Debug for ScanRequestGate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScanRequestGate")
            .field("limit", &self.limit)
            .finish_non_exhaustive()
    }
}

impl ScanRequestGate {
    pub fn new(limit: ScanRequestLimit) -> ScanRequestGate {
        let max = NonZeroU32::new(limit.max).unwrap_or(NonZeroU32::MIN);
        let period = (limit.per / max.get()).max(Duration::from_nanos(1));
        let quota = Quota::with_period(period)
            .unwrap_or_else(|| Quota::per_minute(max))
            .allow_burst(max);
        ScanRequestGate {
            limit,
            limiter: RateLimiter::direct(quota),
            held: Mutex::new(None),
        }
    }

    /// `Ok` when a scan may be asked for now (and counts it), else why not.
    pub(crate) fn permit(&self) -> Result<(), String> {
        if let Some((until, why)) = self.held.lock().map_or(None, |held| held.clone()) {
            let now = Instant::now();
            if now < until {
                return Err(format!(
                    "no scan was requested: {why}; asking again in {}",
                    humantime::format_duration(Duration::from_secs((until - now).as_secs().max(1)))
                ));
            }
        }
        self.limiter.check().map_err(|_| {
            format!(
                "no scan was requested: the scanner's limit of {} was reached",
                self.limit.describe()
            )
        })
    }

    /// The service refused a request: hold the next ones back for `hold`.
    pub fn refused(&self, why: &str, hold: Duration) {
        if let Ok(mut held) = self.held.lock() {
            *held = Some((Instant::now() + hold, why.to_string()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn refusals_are_read_from_the_answer() {
        let created = json!({"Data": {"CanCreate": true, "Result": "SUCCESS", "TaskId": "t"}});
        assert!(sas_task_refusal(&created).is_none());
        assert!(sas_task_refusal(&json!({"Data": {"TaskId": "t"}})).is_none());
        let (why, hold) =
            sas_task_refusal(&json!({"RequestId": "R1", "Data": {"CanCreate": false}})).unwrap();
        assert!(
            why.contains("CanCreate=false") && why.contains("R1"),
            "{why}"
        );
        assert_eq!(hold, HOLD_AFTER_CAP);
        let (why, hold) = sas_task_refusal(
            &json!({"Data": {"CanCreate": true, "Result": "TASK_NOT_SUPPORT_REGION"}}),
        )
        .unwrap();
        assert!(why.contains("TASK_NOT_SUPPORT_REGION"), "{why}");
        assert_eq!(hold, HOLD_AFTER_UNSUPPORTED);
    }

    #[tokio::test]
    async fn the_limit_and_a_refusal_say_why() {
        let gate = ScanRequestGate::new(ScanRequestLimit {
            max: 3,
            per: Duration::from_secs(3600),
        });
        for _ in 0..3 {
            gate.permit().unwrap();
        }
        let why = gate.permit().unwrap_err();
        assert!(why.contains("limit of 3 scan request(s) per 1h"), "{why}");

        let gate = ScanRequestGate::new(ScanRequestLimit::default());
        gate.refused("Security Center said no", Duration::from_secs(60));
        let why = gate.permit().unwrap_err();
        assert!(why.contains("Security Center said no"), "{why}");
        gate.refused("again", Duration::ZERO);
        gate.permit().unwrap();
    }

    #[test]
    fn limits_are_validated() {
        let zero = ScanRequestLimit {
            max: 0,
            per: Duration::from_secs(60),
        };
        assert!(
            zero.validate("sas")
                .unwrap_err()
                .to_string()
                .contains("sas.scanRequests.max")
        );
        let never = ScanRequestLimit {
            max: 1,
            per: Duration::ZERO,
        };
        assert!(never.validate("acr").is_err());
        assert!(ScanRequestLimit::default().validate("acr").is_ok());
    }
}
