//! The shared tier: scan summaries learned by one replica, kept in Redis (or Valkey)
//! for the others, under the in-process summary cache.
//!
//! A replica that misses asks Redis; on a miss there it takes a short lock
//! (`SET NX PX`) and asks the scanner, while the other replicas poll for the entry
//! for up to `lockWait` and then ask the scanner themselves. Every entry is signed
//! ([`signed`]). Redis is only ever a shortcut: every operation is bounded by
//! `timeout`, a failure makes the replica skip Redis for a moment and go on with its
//! own cache and the scanner, and the client reconnects by itself.
//!
//! Client: the `redis` crate ([`connection`]): for one node its `ConnectionManager`
//! (one multiplexed connection that reconnects by itself), for Sentinel the same to
//! the master the sentinels name (asked again after a failure, so failovers are
//! followed), for a Cluster its async cluster connection; TLS through rustls with the
//! process's ring provider; Redis 6+/7 and Valkey.

mod connection;
mod error;
pub(crate) mod signed;
pub(crate) mod wire;

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use redis::{Cmd, FromRedisValue};
use sha2::{Digest, Sha256};

use crate::config::shared_cache::SharedCacheConfig;
use crate::config::{CacheConfig, RegistryRoute, ScannerConfig};
use crate::domain::scan_error::ScanError;
use crate::domain::summary::ScanSummary;
use crate::metrics::{Metrics, SharedEvent};
use crate::resolve::{Resolved, TagKey};
use connection::Connection;
pub use error::SharedCacheError;
use signed::{Signer, SigningKey};

/// After a failed operation, Redis is left alone this long: a review does not pay
/// one timeout per lookup while Redis is down or slow.
const PAUSE_AFTER_FAILURE: Duration = Duration::from_secs(1);
/// How often a replica waiting for another's scanner call looks for its entry.
const POLL_FIRST: Duration = Duration::from_millis(20);
const POLL_MAX: Duration = Duration::from_millis(100);

/// [`SharedTier::state`]: whether Redis answered the last operation.
const NOT_YET_USED: u8 = 0;
const UP: u8 = 1;
const DOWN: u8 = 2;

pub struct SharedTier {
    redis: Connection,
    signer: Signer,
    prefix: String,
    /// Per route, a hash of its registry pattern and scanner kind: the same on every
    /// replica whatever the order of the routes, and apart for different scanners.
    route_ids: Vec<String>,
    timeout: Duration,
    lock_ttl: Duration,
    lock_wait: Duration,
    ttl: Duration,
    pending_ttl: Duration,
    tag_ttl: Duration,
    /// Written into locks this replica holds, so it releases only its own.
    token: String,
    started: Instant,
    /// Milliseconds since `started` before which Redis is not asked.
    paused_until: AtomicU64,
    /// Changed together with the gauge, under the lock: with a bare atomic, a success
    /// and a failure finishing together could leave the gauge at "up" while the state
    /// said "down", and nothing would set it again until Redis answered.
    state: Mutex<u8>,
    metrics: Arc<Metrics>,
}

impl SharedTier {
    /// Reads the credentials and keys and prepares the client; does not connect
    /// (Redis may come up later: the tier starts "down" and connects on first use).
    pub fn new(
        shared: &SharedCacheConfig,
        cache: &CacheConfig,
        routes: &[RegistryRoute],
        metrics: Arc<Metrics>,
    ) -> Result<Arc<SharedTier>, SharedCacheError> {
        let keys = shared
            .hmac_keys
            .iter()
            .map(|k| {
                Ok(SigningKey {
                    id: k.id.clone(),
                    secret: k
                        .secret
                        .load()
                        .map_err(|source| SharedCacheError::HmacKey {
                            id: k.id.clone(),
                            source,
                        })?,
                })
            })
            .collect::<Result<Vec<_>, SharedCacheError>>()?;
        let signer = Signer::new(keys)?;
        let redis = Connection::new(&shared.redis)?;
        let route_ids = routes
            .iter()
            .map(|r| {
                let kind = match &r.scanner {
                    ScannerConfig::File(_) => "file",
                    ScannerConfig::Acr(_) => "acr",
                    ScannerConfig::Sas(_) => "sas",
                    ScannerConfig::Hss(_) => "hss",
                    ScannerConfig::Harbor(_) => "harbor",
                };
                let id = format!("{kind}\n{}", r.host_match.0);
                hex::encode(&Sha256::digest(id.as_bytes())[..6])
            })
            .collect();
        metrics.shared().set_up(false);
        let tier = Arc::new(SharedTier {
            redis,
            signer,
            prefix: shared.redis.key_prefix.clone(),
            route_ids,
            timeout: shared.redis.timeout,
            lock_ttl: shared.lock_ttl,
            lock_wait: shared.lock_wait,
            ttl: cache.ttl,
            pending_ttl: cache.pending_ttl,
            tag_ttl: cache.tag_ttl,
            token: random_token(),
            started: Instant::now(),
            paused_until: AtomicU64::new(0),
            state: Mutex::new(NOT_YET_USED),
            metrics,
        });
        // Connects now, in the background: the first cold review does not pay for
        // the connection (under a burst it could outlast `timeout`), and the gauge
        // tells from the start whether Redis answers.
        let warm = Arc::clone(&tier);
        tokio::spawn(async move {
            let _: Option<String> = warm.run(&redis::cmd("PING")).await;
        });
        Ok(tier)
    }

    /// The summary of `digest` on `route` (whose scanner is `kind`): from Redis, or from `call` (the
    /// scanner) made by this replica or, while it holds the lock, by another one.
    pub async fn summary<F, Fut>(
        &self,
        route: usize,
        kind: &'static str,
        digest: &str,
        call: F,
    ) -> Result<Arc<ScanSummary>, ScanError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Arc<ScanSummary>, ScanError>>,
    {
        let Some(route_id) = self.route_ids.get(route) else {
            return call().await;
        };
        let key = format!("{}summary:{route_id}:{digest}", self.prefix);
        let lock = format!("{}lock:{route_id}:{digest}", self.prefix);
        let waited_since = Instant::now();
        let mut poll = POLL_FIRST;
        let mut counted_wait = false;
        loop {
            match self.read_summary(&key, kind).await {
                Lookup::Found(summary) => {
                    self.metrics.shared().event(SharedEvent::Hit);
                    return Ok(summary);
                }
                Lookup::Unreachable => return call().await,
                Lookup::Absent => {}
            }
            match self.try_lock(&lock).await {
                Some(true) => {
                    // The previous holder may have written the entry and let go
                    // between our read and our lock: read again before calling.
                    if let Lookup::Found(summary) = self.read_summary(&key, kind).await {
                        self.unlock(&lock).await;
                        self.metrics.shared().event(SharedEvent::Hit);
                        return Ok(summary);
                    }
                    self.metrics.shared().event(SharedEvent::Miss);
                    let result = call().await;
                    if let Ok(summary) = &result {
                        self.write_summary(&key, summary).await;
                    }
                    // After an error, a waiting replica tries at once rather than
                    // at lockTtl.
                    self.unlock(&lock).await;
                    return result;
                }
                Some(false) => {}
                None => return call().await,
            }
            if !counted_wait {
                self.metrics.shared().event(SharedEvent::LockWait);
                counted_wait = true;
            }
            if waited_since.elapsed() + poll > self.lock_wait {
                self.metrics.shared().event(SharedEvent::LockWaitExpired);
                return call().await;
            }
            tokio::time::sleep(poll).await;
            poll = (poll * 2).min(POLL_MAX);
        }
    }

    /// A tag's resolution another replica made with the same credential.
    pub async fn tag(&self, key: &TagKey) -> Option<Resolved> {
        let key = self.tag_key(key);
        let value: String = self
            .run::<Option<String>>(redis::cmd("GET").arg(&key))
            .await??;
        match self.signer.open(&key, &value, self.tag_ttl) {
            Ok(body) => match wire::decode_resolved(body) {
                Some(resolved) => return Some(resolved),
                None => self.rejected(&key, signed::Rejected::Malformed),
            },
            Err(rejected) => self.rejected(&key, rejected),
        }
        None
    }

    pub(crate) async fn remember_tag(&self, key: &TagKey, resolved: &Resolved) {
        let key = self.tag_key(key);
        let value = self.signer.seal(&key, &wire::encode_resolved(resolved));
        let _: Option<()> = self
            .run(
                redis::cmd("SET")
                    .arg(&key)
                    .arg(value)
                    .arg("PX")
                    .arg(millis(self.tag_ttl)),
            )
            .await;
    }

    /// Tags are kept per credential (its one-way fingerprint), as in the local cache:
    /// a resolution seen with one pod's pull secret never answers for another's.
    fn tag_key(&self, key: &TagKey) -> String {
        let parts = [
            key.host.as_str(),
            key.repository.as_str(),
            key.tag.as_str(),
            key.credential.as_deref().unwrap_or(""),
        ];
        let id = Sha256::digest(parts.join("\n").as_bytes());
        format!("{}tag:{}", self.prefix, hex::encode(id))
    }

    fn rejected(&self, key: &str, rejected: signed::Rejected) {
        self.metrics.shared().rejected(rejected.as_str());
        // The key names a route hash and a digest (or a hash), never a secret.
        tracing::warn!(
            key,
            reason = rejected.as_str(),
            "shared cache entry failed its integrity check: ignored"
        );
    }

    /// Deletes one digest's summaries (every route) or all of vulngate's keys;
    /// returns how many were deleted.
    pub async fn purge(&self, digest: Option<&str>) -> Result<u64, SharedCacheError> {
        let pattern = match digest {
            Some(d) if d.bytes().all(|b| b.is_ascii_alphanumeric() || b == b':') => {
                format!("{}summary:*:{d}", self.prefix)
            }
            Some(_) => return Ok(0),
            None => format!("{}*", self.prefix),
        };
        // A purge walks the keyspace (of every master): more time than one lookup,
        // still bounded.
        let bound = self.timeout.saturating_mul(20);
        let walk = self.redis.delete_matching(&pattern);
        match tokio::time::timeout(bound, walk).await {
            Ok(Ok(n)) => Ok(n),
            Ok(Err(e)) => Err(SharedCacheError::Purge(Box::new(SharedCacheError::Redis(
                e,
            )))),
            Err(_) => Err(SharedCacheError::Purge(Box::new(
                SharedCacheError::Timeout(bound),
            ))),
        }
    }

    async fn read_summary(&self, key: &str, kind: &'static str) -> Lookup {
        let Some(value) = self.run::<Option<String>>(redis::cmd("GET").arg(key)).await else {
            return Lookup::Unreachable;
        };
        let Some(value) = value else {
            return Lookup::Absent;
        };
        let max_age = self.ttl.max(self.pending_ttl);
        let summary = match self.signer.open(key, &value, max_age) {
            Ok(body) => wire::decode_summary(body, kind).ok_or(signed::Rejected::Malformed),
            Err(rejected) => Err(rejected),
        };
        match summary {
            Ok(summary) => Lookup::Found(summary),
            Err(rejected) => {
                self.rejected(key, rejected);
                Lookup::Absent
            }
        }
    }

    async fn write_summary(&self, key: &str, summary: &ScanSummary) {
        let lifetime = if summary.status.is_pending() {
            self.pending_ttl
        } else {
            self.ttl
        };
        let value = self.signer.seal(key, &wire::encode_summary(summary));
        let _: Option<()> = self
            .run(
                redis::cmd("SET")
                    .arg(key)
                    .arg(value)
                    .arg("PX")
                    .arg(millis(lifetime)),
            )
            .await;
    }

    /// `Some(true)` when this replica now holds the lock, `Some(false)` when another
    /// does, `None` when Redis did not answer.
    async fn try_lock(&self, lock: &str) -> Option<bool> {
        let set: Option<String> = self
            .run(
                redis::cmd("SET")
                    .arg(lock)
                    .arg(&self.token)
                    .arg("NX")
                    .arg("PX")
                    .arg(millis(self.lock_ttl)),
            )
            .await?;
        Some(set.is_some())
    }

    async fn unlock(&self, lock: &str) {
        // Only our own lock: one that expired and was taken over is someone else's.
        let holder: Option<Option<String>> = self.run(redis::cmd("GET").arg(lock)).await;
        if holder.flatten().as_deref() == Some(self.token.as_str()) {
            let _: Option<u64> = self.run(redis::cmd("DEL").arg(lock)).await;
        }
    }

    /// One command, bounded by `timeout`; `None` when Redis failed or is paused.
    async fn run<T: FromRedisValue + Send>(&self, cmd: &Cmd) -> Option<T> {
        let now = self.started.elapsed().as_millis() as u64;
        if now < self.paused_until.load(Ordering::Relaxed) {
            return None;
        }
        match self.redis.query(cmd, self.timeout).await {
            Ok(value) => {
                if self.enter(UP) {
                    tracing::info!("shared cache reachable");
                }
                Some(value)
            }
            Err(e) => {
                self.failed(&e.to_string());
                None
            }
        }
    }

    /// Sets the state and its gauge; `true` when it changed.
    fn enter(&self, new: u8) -> bool {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if *state == new {
            return false;
        }
        *state = new;
        self.metrics.shared().set_up(new == UP);
        true
    }

    fn failed(&self, error: &str) {
        self.metrics.shared().event(SharedEvent::Error);
        let resume = self.started.elapsed() + PAUSE_AFTER_FAILURE;
        self.paused_until
            .store(resume.as_millis() as u64, Ordering::Relaxed);
        // Once per outage, not once per lookup.
        if self.enter(DOWN) {
            tracing::warn!(
                error,
                "shared cache unreachable: going on with the local cache and the scanners"
            );
        } else {
            tracing::debug!(error, "shared cache still unreachable");
        }
    }
}

enum Lookup {
    Found(Arc<ScanSummary>),
    Absent,
    Unreachable,
}

fn millis(d: Duration) -> u64 {
    d.as_millis().clamp(1, u64::MAX as u128) as u64
}

fn random_token() -> String {
    let mut bytes = [0u8; 16];
    // Uniqueness, not secrecy: the time and the process id are enough as a fallback.
    if getrandom_fill(&mut bytes).is_err() {
        let seed = format!("{:?}{}", std::time::SystemTime::now(), std::process::id());
        bytes.copy_from_slice(&Sha256::digest(seed.as_bytes())[..16]);
    }
    hex::encode(bytes)
}

fn getrandom_fill(bytes: &mut [u8]) -> std::io::Result<()> {
    use std::io::Read;
    std::fs::File::open("/dev/urandom")?.read_exact(bytes)
}
