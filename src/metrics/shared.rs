//! The shared tier's series: what its lookups found, entries that failed their
//! integrity check, and whether Redis answers.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// What one shared-tier step found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SharedEvent {
    /// The summary was in Redis: no scanner call.
    Hit,
    /// Not in Redis: this replica took the lock and asks the scanner.
    Miss,
    /// A Redis operation failed or timed out.
    Error,
    /// Another replica holds the lock: this one waits for its entry.
    LockWait,
    /// The wait ended without an entry: this replica asks the scanner itself.
    LockWaitExpired,
}

impl SharedEvent {
    fn as_str(self) -> &'static str {
        match self {
            SharedEvent::Hit => "hit",
            SharedEvent::Miss => "miss",
            SharedEvent::Error => "error",
            SharedEvent::LockWait => "lock_wait",
            SharedEvent::LockWaitExpired => "lock_wait_expired",
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EventLabel {
    event: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    reason: &'static str,
}

pub struct SharedMetrics {
    events: Family<EventLabel, Counter>,
    rejected: Family<ReasonLabel, Counter>,
    up: Gauge,
}

impl SharedMetrics {
    pub(crate) fn register(registry: &mut Registry) -> SharedMetrics {
        let events = Family::<EventLabel, Counter>::default();
        registry.register(
            "shared_cache_events",
            "Shared cache (Redis) lookups by event (hit, miss, error, lock_wait, lock_wait_expired)",
            events.clone(),
        );
        let rejected = Family::<ReasonLabel, Counter>::default();
        registry.register(
            "shared_cache_rejected_entries",
            "Shared cache entries ignored because they failed the integrity check, by reason (malformed, unknown_key, bad_signature, stale)",
            rejected.clone(),
        );
        let up = Gauge::default();
        registry.register(
            "shared_cache_up",
            "1 while the shared cache's Redis answers, 0 while it does not (reviews then go on with the local cache)",
            up.clone(),
        );
        SharedMetrics {
            events,
            rejected,
            up,
        }
    }

    pub fn event(&self, event: SharedEvent) {
        self.events
            .get_or_create(&EventLabel {
                event: event.as_str(),
            })
            .inc();
    }

    pub fn rejected(&self, reason: &'static str) {
        self.rejected.get_or_create(&ReasonLabel { reason }).inc();
    }

    pub(crate) fn set_up(&self, up: bool) {
        self.up.set(i64::from(up));
    }
}
