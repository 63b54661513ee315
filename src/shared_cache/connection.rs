//! One Redis, whatever its deployment: a single node, a master found by Sentinel, or
//! a Cluster. The tier sends every command through [`Connection`] and never sees which.
//!
//! Commands that work on all three: the tier only sends single-key GET, SET (with NX,
//! PX) and DEL, and PING; a cluster routes each by its key's slot. The one keyspace
//! walk, the purge, runs SCAN on every master of a cluster in turn (their addresses
//! from CLUSTER SLOTS), each node's cursor on its own node; the keys it finds are
//! deleted through the cluster client, which splits the DEL by slot.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures::future::BoxFuture;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::cluster::{ClusterClientBuilder, ClusterConfig};
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{RoutingInfo, SingleNodeRoutingInfo};
use redis::sentinel::{SentinelClient, SentinelClientBuilder, SentinelServerType};
use redis::{Cmd, FromRedisValue, IntoConnectionInfo, RedisResult, TlsCertificates, Value};

use crate::config::shared_cache::{RedisConfig, SentinelConfig, Topology};
use crate::secret::SecretSource;

use super::SharedCacheError;

pub enum Connection {
    Single(ConnectionManager),
    Sentinel(Box<SentinelMaster>),
    Cluster(ClusterConnection),
}

impl Connection {
    /// Reads the credentials and the CA and prepares the client; connects on first use.
    pub fn new(config: &RedisConfig) -> Result<Connection, SharedCacheError> {
        let credentials = Credentials::load(
            &config.username,
            &config.password,
            "cache.shared.redis.username",
            "cache.shared.redis.password",
        )?;
        let certificates = match &config.ca_file {
            Some(ca) => Some(TlsCertificates {
                client_tls: None,
                root_cert: Some(
                    std::fs::read(ca).map_err(|source| SharedCacheError::ReadCa {
                        path: ca.clone(),
                        source,
                    })?,
                ),
            }),
            None => None,
        };
        // For rediss://, rustls takes the process's provider.
        crate::crypto::install_default_provider();
        let manager_config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(config.timeout))
            .set_response_timeout(Some(config.timeout))
            .set_number_of_retries(2)
            .set_max_delay(Duration::from_secs(1));
        let failed = |source| client_error("cache.shared.redis", source);
        match config.topology()? {
            Topology::Single(url) => {
                let mut info = url
                    .into_connection_info()
                    .map_err(|source| client_error("cache.shared.redis.url", source))?;
                let settings = credentials.apply(info.redis_settings().clone());
                info = info.set_redis_settings(settings);
                let client = match certificates {
                    Some(certificates) => redis::Client::build_with_tls(info, certificates),
                    None => redis::Client::open(info),
                }
                .map_err(failed)?;
                ConnectionManager::new_lazy_with_config(client, manager_config)
                    .map(Connection::Single)
                    .map_err(failed)
            }
            Topology::Sentinel(sentinel) => {
                let tls = config.tls()?;
                let client = sentinel_client(sentinel, tls, &credentials, certificates)?;
                Ok(Connection::Sentinel(Box::new(SentinelMaster {
                    sentinel: tokio::sync::Mutex::new(client),
                    master: Mutex::new(None),
                    generations: AtomicU64::new(0),
                    manager_config,
                })))
            }
            Topology::Cluster(nodes) => {
                let mut builder = ClusterClientBuilder::new(nodes.iter().map(String::as_str))
                    .connection_timeout(config.timeout)
                    .response_timeout(config.timeout)
                    .retries(2);
                if let Some(user) = &credentials.username {
                    builder = builder.username(user.expose());
                }
                if let Some(password) = &credentials.password {
                    builder = builder.password(password.expose());
                }
                if let Some(certificates) = certificates {
                    builder = builder.certs(certificates);
                }
                let client = builder.build().map_err(failed)?;
                let cluster = ClusterConfig::new()
                    .set_connection_timeout(config.timeout)
                    .set_response_timeout(config.timeout);
                Ok(Connection::Cluster(
                    client.get_pending_async_connection_with_config(cluster),
                ))
            }
        }
    }

    /// One command, bounded by `timeout`; the error says what failed, never a secret.
    /// Boxed: the cluster client's futures are deep types, and every review's future
    /// would otherwise carry them.
    pub fn query<'a, T: FromRedisValue + Send + 'a>(
        &'a self,
        cmd: &'a Cmd,
        timeout: Duration,
    ) -> BoxFuture<'a, Result<T, SharedCacheError>> {
        Box::pin(self.query_unboxed(cmd, timeout))
    }

    async fn query_unboxed<T: FromRedisValue + Send>(
        &self,
        cmd: &Cmd,
        timeout: Duration,
    ) -> Result<T, SharedCacheError> {
        let outcome = match self {
            Connection::Single(manager) => {
                let mut manager = manager.clone();
                tokio::time::timeout(timeout, cmd.query_async::<T>(&mut manager)).await
            }
            Connection::Cluster(cluster) => {
                let mut cluster = cluster.clone();
                tokio::time::timeout(timeout, cmd.query_async::<T>(&mut cluster)).await
            }
            Connection::Sentinel(sentinel) => {
                return sentinel.query(cmd, timeout).await;
            }
        };
        flatten(outcome, timeout)
    }

    /// Deletes every key matching `pattern` on every master; returns how many.
    pub(crate) fn delete_matching<'a>(
        &'a self,
        pattern: &'a str,
    ) -> BoxFuture<'a, RedisResult<u64>> {
        Box::pin(self.delete_matching_unboxed(pattern))
    }

    async fn delete_matching_unboxed(&self, pattern: &str) -> RedisResult<u64> {
        match self {
            Connection::Single(manager) => {
                let mut manager = manager.clone();
                delete_matching_on(&mut manager, pattern, None).await
            }
            Connection::Sentinel(sentinel) => {
                let (generation, mut manager) = sentinel.master().await?;
                let deleted = delete_matching_on(&mut manager, pattern, None).await;
                if deleted.is_err() {
                    sentinel.forget(generation);
                }
                deleted
            }
            Connection::Cluster(cluster) => {
                let mut cluster = cluster.clone();
                let slots = cluster
                    .route_command(
                        redis::cmd("CLUSTER").arg("SLOTS").clone(),
                        RoutingInfo::SingleNode(SingleNodeRoutingInfo::Random),
                    )
                    .await?;
                let mut deleted = 0;
                for (host, port) in masters(slots)? {
                    let node =
                        RoutingInfo::SingleNode(SingleNodeRoutingInfo::ByAddress { host, port });
                    deleted += delete_matching_on(&mut cluster, pattern, Some(node)).await?;
                }
                Ok(deleted)
            }
        }
    }
}

/// SCAN (on `node`, when a cluster's) and DEL what it finds.
async fn delete_matching_on<C>(
    connection: &mut C,
    pattern: &str,
    node: Option<RoutingInfo>,
) -> RedisResult<u64>
where
    C: Routed,
{
    let mut cursor: u64 = 0;
    let mut deleted = 0u64;
    loop {
        let mut scan = redis::cmd("SCAN");
        scan.arg(cursor)
            .arg("MATCH")
            .arg(pattern)
            .arg("COUNT")
            .arg(500);
        let (next, keys): (u64, Vec<String>) =
            redis::from_redis_value(connection.send(scan, node.clone()).await?)?;
        if !keys.is_empty() {
            let n: u64 = redis::cmd("DEL").arg(&keys).query_async(connection).await?;
            deleted += n;
        }
        if next == 0 {
            return Ok(deleted);
        }
        cursor = next;
    }
}

/// A connection a command can be sent to, on a given node when it is a cluster's.
trait Routed: redis::aio::ConnectionLike + Send {
    async fn send(&mut self, cmd: Cmd, node: Option<RoutingInfo>) -> RedisResult<Value>;
}

impl Routed for ConnectionManager {
    async fn send(&mut self, cmd: Cmd, _node: Option<RoutingInfo>) -> RedisResult<Value> {
        cmd.query_async(self).await
    }
}

impl Routed for ClusterConnection {
    async fn send(&mut self, cmd: Cmd, node: Option<RoutingInfo>) -> RedisResult<Value> {
        match node {
            Some(node) => self.route_command(cmd, node).await,
            None => cmd.query_async(self).await,
        }
    }
}

/// The masters' addresses in a CLUSTER SLOTS answer (each slot range: start, end,
/// then the master as [host, port, id, ...], then its replicas).
fn masters(slots: Value) -> RedisResult<Vec<(String, u16)>> {
    let ranges: Vec<Vec<Value>> = redis::from_redis_value(slots)?;
    let mut masters = Vec::new();
    for range in ranges {
        let Some(master) = range.into_iter().nth(2) else {
            continue;
        };
        let node: Vec<Value> = redis::from_redis_value(master)?;
        let mut node = node.into_iter();
        let (Some(host), Some(port)) = (node.next(), node.next()) else {
            continue;
        };
        let address: (String, u16) = (
            redis::from_redis_value(host)?,
            redis::from_redis_value(port)?,
        );
        if !masters.contains(&address) {
            masters.push(address);
        }
    }
    Ok(masters)
}

/// The master the sentinels name, through a connection manager of its own that is
/// dropped after a failure: the next command asks the sentinels again, so a failover
/// (the old master gone, or demoted and answering READONLY) is followed without a
/// restart.
pub(crate) struct SentinelMaster {
    sentinel: tokio::sync::Mutex<SentinelClient>,
    /// The current master's manager, with a generation so that a failure reported by a
    /// command sent to an older one does not drop a newer one.
    master: Mutex<Option<(u64, ConnectionManager)>>,
    generations: AtomicU64,
    manager_config: ConnectionManagerConfig,
}

impl SentinelMaster {
    async fn query<T: FromRedisValue + Send>(
        &self,
        cmd: &Cmd,
        timeout: Duration,
    ) -> Result<T, SharedCacheError> {
        let attempt = async {
            let (generation, mut manager) = self.master().await?;
            let answer = cmd.query_async::<T>(&mut manager).await;
            if answer.is_err() {
                self.forget(generation);
            }
            answer
        };
        let outcome = tokio::time::timeout(timeout, attempt).await;
        if outcome.is_err() {
            // No answer in time: the master may be unreachable without refusing.
            self.forget_current();
        }
        flatten(outcome, timeout)
    }

    /// The current master's manager, asking the sentinels when there is none.
    async fn master(&self) -> RedisResult<(u64, ConnectionManager)> {
        if let Some(current) = self.current() {
            return Ok(current);
        }
        // One lookup at a time; those who waited take its result.
        let mut sentinel = self.sentinel.lock().await;
        if let Some(current) = self.current() {
            return Ok(current);
        }
        let client = sentinel.async_get_client().await?;
        let manager = ConnectionManager::new_lazy_with_config(client, self.manager_config.clone())?;
        let generation = self.generations.fetch_add(1, Ordering::Relaxed);
        let mut master = self.master.lock().unwrap_or_else(|e| e.into_inner());
        *master = Some((generation, manager.clone()));
        Ok((generation, manager))
    }

    fn current(&self) -> Option<(u64, ConnectionManager)> {
        self.master
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn forget(&self, generation: u64) {
        let mut master = self.master.lock().unwrap_or_else(|e| e.into_inner());
        if master.as_ref().is_some_and(|(g, _)| *g == generation) {
            *master = None;
        }
    }

    fn forget_current(&self) {
        *self.master.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }
}

fn flatten<T>(
    outcome: Result<RedisResult<T>, tokio::time::error::Elapsed>,
    timeout: Duration,
) -> Result<T, SharedCacheError> {
    match outcome {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(e)) => Err(SharedCacheError::Redis(e)),
        Err(_) => Err(SharedCacheError::Timeout(timeout)),
    }
}

fn client_error(key: impl Into<String>, source: redis::RedisError) -> SharedCacheError {
    SharedCacheError::Client {
        key: key.into(),
        source,
    }
}

/// A sentinel client for the master named `masterName`: the sentinels' own
/// credentials, the nodes' credentials, TLS to both when the URLs say `rediss://`.
fn sentinel_client(
    sentinel: &SentinelConfig,
    tls: bool,
    nodes: &Credentials,
    certificates: Option<TlsCertificates>,
) -> Result<SentinelClient, SharedCacheError> {
    let own = Credentials::load(
        &sentinel.username,
        &sentinel.password,
        "cache.shared.redis.sentinel.username",
        "cache.shared.redis.sentinel.password",
    )?;
    let addresses = sentinel
        .addresses
        .iter()
        .enumerate()
        .map(|(i, a)| {
            a.as_str()
                .into_connection_info()
                .map(|info| info.addr().clone())
                .map_err(|source| {
                    client_error(
                        format!("cache.shared.redis.sentinel.addresses[{i}]"),
                        source,
                    )
                })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let failed = |source| client_error("cache.shared.redis.sentinel", source);
    let mut builder =
        SentinelClientBuilder::new(addresses, &sentinel.master_name, SentinelServerType::Master)
            .map_err(failed)?;
    if let Some(user) = &own.username {
        builder = builder.set_client_to_sentinel_username(user.expose());
    }
    if let Some(password) = &own.password {
        builder = builder.set_client_to_sentinel_password(password.expose());
    }
    if let Some(user) = &nodes.username {
        builder = builder.set_client_to_redis_username(user.expose());
    }
    if let Some(password) = &nodes.password {
        builder = builder.set_client_to_redis_password(password.expose());
    }
    if tls {
        builder = builder.set_client_to_redis_tls_mode(redis::TlsMode::Secure);
        if let Some(certificates) = certificates {
            builder = builder
                .set_client_to_sentinel_certificates(certificates.clone())
                .set_client_to_redis_certificates(certificates);
        }
    }
    builder.build().map_err(failed)
}

/// A username and password read from their sources.
struct Credentials {
    username: Option<crate::secret::Secret>,
    password: Option<crate::secret::Secret>,
}

impl Credentials {
    fn load(
        username: &Option<SecretSource>,
        password: &Option<SecretSource>,
        username_key: &'static str,
        password_key: &'static str,
    ) -> Result<Credentials, SharedCacheError> {
        let load = |source: &Option<SecretSource>, key: &'static str| {
            source
                .as_ref()
                .map(|s| {
                    s.load()
                        .map_err(|source| SharedCacheError::Credential { key, source })
                })
                .transpose()
        };
        Ok(Credentials {
            username: load(username, username_key)?,
            password: load(password, password_key)?,
        })
    }

    fn apply(&self, mut settings: redis::RedisConnectionInfo) -> redis::RedisConnectionInfo {
        if let Some(user) = &self.username {
            settings = settings.set_username(user.expose());
        }
        if let Some(password) = &self.password {
            settings = settings.set_password(password.expose());
        }
        settings
    }
}
