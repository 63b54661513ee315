//! How vulngate serves: the ops port's endpoints, shutdown, connection limits, TLS.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::ConfigError;

/// The ops port's optional endpoints.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OpsConfig {
    #[serde(default)]
    pub purge: PurgeConfig,
}

/// `POST /cache/purge`: off unless enabled, and then only with the bearer token of
/// `tokenFile` (read at each request, so a rotated Secret takes effect).
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PurgeConfig {
    #[serde(default)]
    pub enabled: bool,
    #[serde(default)]
    pub token_file: Option<PathBuf>,
}

/// How a SIGTERM is handled.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ShutdownConfig {
    /// Keep serving, with readiness false, this long so the Service stops sending here.
    #[serde(default, with = "humantime_serde")]
    pub drain_delay: Duration,
    /// Longest wait for in-flight reviews once the listener is closed.
    #[serde(default = "default_grace", with = "humantime_serde")]
    pub grace: Duration,
}

impl Default for ShutdownConfig {
    fn default() -> Self {
        ShutdownConfig {
            drain_delay: Duration::ZERO,
            grace: default_grace(),
        }
    }
}

/// `connections:`: what one client may hold. Every timeout and limit applies to the
/// webhook port; the ops port has the same timeouts and its own, smaller budgets.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ConnectionsConfig {
    /// From accept to the first complete request head, TLS handshake included.
    #[serde(default = "default_first_request_timeout", with = "humantime_serde")]
    pub first_request_timeout: Duration,
    /// A connection without a request in flight is closed after this (HTTP/1.1
    /// keep-alive between requests, HTTP/2 without open streams). Longer than the
    /// apiserver's own idle timeout (90 s), so it is the client that closes first.
    #[serde(default = "default_idle_timeout", with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// A connection is asked to close (HTTP/2 GOAWAY, HTTP/1.1 after its answer) at
    /// this age, so clients spread over new replicas.
    #[serde(default = "default_max_connection_age", with = "humantime_serde")]
    pub max_connection_age: Duration,
    /// HTTP/2 PING interval; a peer that does not answer within `keepAliveTimeout`
    /// is disconnected.
    #[serde(default = "default_keep_alive_interval", with = "humantime_serde")]
    pub keep_alive_interval: Duration,
    #[serde(default = "default_keep_alive_timeout", with = "humantime_serde")]
    pub keep_alive_timeout: Duration,
    /// Concurrent HTTP/2 streams per connection.
    #[serde(default = "default_max_concurrent_streams")]
    pub max_concurrent_streams: u32,
    /// Largest request head (HTTP/1.1 buffer, HTTP/2 header list), at least 8192.
    #[serde(default = "default_max_header_bytes")]
    pub max_header_bytes: u32,
    /// Open connections on the webhook port; absent: derived from the open-file limit.
    #[serde(default)]
    pub max_connections: Option<usize>,
    /// Open webhook connections from one client address.
    #[serde(default = "default_max_connections_per_peer")]
    pub max_connections_per_peer: usize,
    /// Open connections on the ops port (probes and scrapes need few).
    #[serde(default = "default_ops_max_connections")]
    pub ops_max_connections: usize,
    /// Open ops connections from one client address.
    #[serde(default = "default_ops_max_connections_per_peer")]
    pub ops_max_connections_per_peer: usize,
}

impl Default for ConnectionsConfig {
    fn default() -> Self {
        ConnectionsConfig {
            first_request_timeout: default_first_request_timeout(),
            idle_timeout: default_idle_timeout(),
            max_connection_age: default_max_connection_age(),
            keep_alive_interval: default_keep_alive_interval(),
            keep_alive_timeout: default_keep_alive_timeout(),
            max_concurrent_streams: default_max_concurrent_streams(),
            max_header_bytes: default_max_header_bytes(),
            max_connections: None,
            max_connections_per_peer: default_max_connections_per_peer(),
            ops_max_connections: default_ops_max_connections(),
            ops_max_connections_per_peer: default_ops_max_connections_per_peer(),
        }
    }
}

impl ConnectionsConfig {
    /// hyper asserts a buffer of at least 8 KiB; anything else zero would refuse every client.
    pub fn validate(&self) -> Result<(), ConfigError> {
        for (key, value) in [
            ("firstRequestTimeout", self.first_request_timeout),
            ("idleTimeout", self.idle_timeout),
            ("maxConnectionAge", self.max_connection_age),
            ("keepAliveInterval", self.keep_alive_interval),
            ("keepAliveTimeout", self.keep_alive_timeout),
        ] {
            if value.is_zero() {
                return Err(ConfigError::invalid(
                    format!("connections.{key}"),
                    "must be greater than zero",
                ));
            }
        }
        if self.max_header_bytes < 8192 {
            return Err(ConfigError::invalid(
                "connections.maxHeaderBytes",
                format!("{} is too small; use at least 8192", self.max_header_bytes),
            ));
        }
        for (key, value) in [
            ("maxConcurrentStreams", self.max_concurrent_streams as usize),
            ("maxConnections", self.max_connections.unwrap_or(1)),
            ("maxConnectionsPerPeer", self.max_connections_per_peer),
            ("opsMaxConnections", self.ops_max_connections),
            (
                "opsMaxConnectionsPerPeer",
                self.ops_max_connections_per_peer,
            ),
        ] {
            if value == 0 {
                return Err(ConfigError::invalid(
                    format!("connections.{key}"),
                    "must be greater than zero",
                ));
            }
        }
        Ok(())
    }
}

fn default_first_request_timeout() -> Duration {
    Duration::from_secs(10)
}
fn default_idle_timeout() -> Duration {
    Duration::from_secs(120)
}
fn default_max_connection_age() -> Duration {
    Duration::from_secs(3600)
}
fn default_keep_alive_interval() -> Duration {
    Duration::from_secs(30)
}
fn default_keep_alive_timeout() -> Duration {
    Duration::from_secs(10)
}
fn default_max_concurrent_streams() -> u32 {
    256
}
fn default_max_header_bytes() -> u32 {
    64 * 1024
}
fn default_max_connections_per_peer() -> usize {
    256
}
fn default_ops_max_connections() -> usize {
    256
}
fn default_ops_max_connections_per_peer() -> usize {
    16
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TlsConfig {
    /// Serving certificate and key (PEM); reloaded when they change on disk.
    /// When both are absent, vulngate generates a CA and certificate into `generateDir`.
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    /// Where a generated CA and certificate are written.
    pub generate_dir: Option<PathBuf>,
    /// Extra DNS names for a generated certificate (localhost is always in it).
    #[serde(default)]
    pub generate_names: Vec<String>,
    /// A generated certificate that expires within this margin is generated again at start.
    #[serde(default = "default_regenerate_before", with = "humantime_serde")]
    pub regenerate_before: Duration,
    /// CA bundle (PEM) of the clients allowed on the webhook port: with it, a client
    /// without a certificate it signed is refused at the handshake. Reloaded when it
    /// changes on disk.
    #[serde(default, rename = "clientCAFile")]
    pub client_ca_file: Option<PathBuf>,
}

impl Default for TlsConfig {
    fn default() -> Self {
        TlsConfig {
            cert_file: None,
            key_file: None,
            generate_dir: None,
            generate_names: Vec::new(),
            regenerate_before: default_regenerate_before(),
            client_ca_file: None,
        }
    }
}

fn default_regenerate_before() -> Duration {
    Duration::from_secs(30 * 24 * 3600)
}

fn default_grace() -> Duration {
    Duration::from_secs(20)
}
