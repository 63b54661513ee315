//! The config file: cluster defaults, exemptions, cache, TLS and scanner routing.
//!
//! Every struct denies unknown keys, so a typo stops start-up with a message that
//! names the key instead of being silently ignored. Plain data: building scanners,
//! resolvers and clients from it is the wiring's job (src/app.rs).

pub mod alibaba;
mod error;
pub mod harbor;
pub mod huawei;
pub(crate) mod retry;
pub mod serving;
pub(crate) mod shared_cache;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use serving::{ConnectionsConfig, OpsConfig, ShutdownConfig, TlsConfig};

use crate::domain::rules::{ControllerPods, CountRule, Mode, OnError, UnscannedRule};
use crate::pattern::ImagePattern;

pub use error::{ConfigError, EndpointError};

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Config {
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// Plain-HTTP port for /healthz, /readyz and /metrics.
    #[serde(default = "default_ops_listen")]
    pub ops_listen: SocketAddr,
    #[serde(default)]
    pub tls: TlsConfig,
    /// One review never takes longer than this.
    #[serde(default = "default_deadline", with = "humantime_serde")]
    pub deadline: Duration,
    /// Policies from a file instead of the cluster's Namespaces.
    #[serde(default)]
    pub namespaces_file: Option<PathBuf>,
    #[serde(default)]
    pub policy: PolicyConfig,
    #[serde(default)]
    pub cache: CacheConfig,
    #[serde(default)]
    pub registries: Vec<RegistryRoute>,
    /// Credentials and platforms used when resolving tags on registries.
    #[serde(default)]
    pub resolution: ResolutionConfig,
    #[serde(default)]
    pub log: LogConfig,
    #[serde(default)]
    pub shutdown: ShutdownConfig,
    /// Timeouts and limits of client connections, on the webhook and the ops port.
    #[serde(default)]
    pub connections: ConnectionsConfig,
    /// Background audit of running pods in `vulngate serve`; absent means off.
    #[serde(default = "AuditConfig::off")]
    pub audit: AuditConfig,
    #[serde(default)]
    pub review: ReviewBounds,
    #[serde(default)]
    pub ops: OpsConfig,
    /// `POST /mutate`: rewrite tags to the digests judged (pin.rs); off by default.
    #[serde(default)]
    pub pin_digests: PinDigestsConfig,
}

/// `pinDigests: {enabled: true}` serves the mutating webhook that pins each allowed
/// image to the digest its tag resolved to; off, `POST /mutate` is a 404.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PinDigestsConfig {
    #[serde(default)]
    pub enabled: bool,
}

/// What one review may cost: each distinct image may mean registry and scanner calls.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ReviewBounds {
    /// Reviews naming more distinct images than this are denied (enforce) or allowed
    /// with a warning (warn) without judging any image.
    #[serde(default = "default_max_images")]
    pub max_images: usize,
}

impl Default for ReviewBounds {
    fn default() -> Self {
        ReviewBounds {
            max_images: default_max_images(),
        }
    }
}

fn default_max_images() -> usize {
    100
}

/// `audit: {interval: 10m}`: every interval, `vulngate serve` judges the running pods
/// as `vulngate audit` does, exports gauges and leaves Events on offending pods.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AuditConfig {
    /// `false` turns the audit off while keeping its settings.
    #[serde(default = "default_true")]
    pub enabled: bool,
    #[serde(default = "default_audit_interval", with = "humantime_serde")]
    pub interval: Duration,
}

impl AuditConfig {
    /// No `audit` key: off. (An `audit` key without `enabled` is on.)
    pub fn off() -> AuditConfig {
        AuditConfig {
            enabled: false,
            interval: default_audit_interval(),
        }
    }

    /// The period when the background audit is on.
    pub fn period(config: &Config) -> Option<Duration> {
        config.audit.enabled.then_some(config.audit.interval)
    }
}

/// Limits by key: `critical`, `high`, `medium`, `low`, `unknown`, `total`, and the
/// extra counts some scanners have (`malicious-files`, `baseline-risks`, ...).
pub(crate) type LimitsConfig = std::collections::BTreeMap<String, u64>;

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PolicyDefaults {
    #[serde(default = "default_mode")]
    pub mode: Mode,
    #[serde(default = "default_limits")]
    pub limits: LimitsConfig,
    #[serde(default = "default_unscanned")]
    pub unscanned: UnscannedRule,
    #[serde(default = "default_on_error")]
    pub on_error: OnError,
    /// Which vulnerabilities the limits count: `all`, or only those with a fix (`fixable`).
    #[serde(default)]
    pub count: CountRule,
    /// Accepted vulnerability ids, each optionally `until YYYY-MM-DD`.
    #[serde(default)]
    pub allow_cves: Vec<String>,
    /// Vulnerabilities published fewer than this many days ago do not count yet.
    #[serde(default)]
    pub grace_days: Option<u32>,
    /// A scan older than this counts as no scan.
    #[serde(default, with = "humantime_serde")]
    pub max_scan_age: Option<Duration>,
    /// Pods that a built-in controller creates from an already judged template.
    #[serde(default = "default_controller_pods")]
    pub controller_pods: ControllerPods,
}

impl Default for PolicyDefaults {
    fn default() -> Self {
        PolicyDefaults {
            mode: default_mode(),
            limits: default_limits(),
            unscanned: default_unscanned(),
            on_error: default_on_error(),
            count: CountRule::All,
            allow_cves: Vec::new(),
            grace_days: None,
            max_scan_age: None,
            controller_pods: default_controller_pods(),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PolicyConfig {
    #[serde(default)]
    pub defaults: PolicyDefaults,
    #[serde(default = "default_exempt_namespaces")]
    pub exempt_namespaces: Vec<String>,
    #[serde(default)]
    pub exempt_images: Vec<ImagePattern>,
    /// A file of cluster-wide accepted vulnerabilities (a mounted ConfigMap), in the
    /// syntax of `vulngate.io/allow-cves`, entries separated by commas or new lines.
    #[serde(default)]
    pub accepted_cves_file: Option<PathBuf>,
}

impl Default for PolicyConfig {
    fn default() -> Self {
        PolicyConfig {
            defaults: PolicyDefaults::default(),
            exempt_namespaces: default_exempt_namespaces(),
            exempt_images: Vec::new(),
            accepted_cves_file: None,
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CacheConfig {
    /// How often a cached summary of a finished scan is checked against its scanner
    /// (replaced when the scanner answers differently).
    #[serde(default = "default_cache_ttl", with = "humantime_serde")]
    pub ttl: Duration,
    /// How long a summary of an unfinished scan (scanning, not scanned) is kept.
    #[serde(default = "default_pending_ttl", with = "humantime_serde")]
    pub pending_ttl: Duration,
    #[serde(default = "default_max_entries")]
    pub max_entries: u64,
    /// How long a tag -> digest resolution is kept.
    #[serde(default = "default_tag_ttl", with = "humantime_serde")]
    pub tag_ttl: Duration,
    /// A tier shared by every replica, under this one's (Redis; off when absent).
    #[serde(default)]
    pub shared: Option<crate::config::shared_cache::SharedCacheConfig>,
    /// How long a failed scanner call is remembered, so repeats of a review do not call
    /// a failing scanner again for each image; `0s` remembers none.
    #[serde(default = "default_failure_ttl", with = "humantime_serde")]
    pub failure_ttl: Duration,
}

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig {
            ttl: default_cache_ttl(),
            pending_ttl: default_pending_ttl(),
            max_entries: default_max_entries(),
            tag_ttl: default_tag_ttl(),
            shared: None,
            failure_ttl: default_failure_ttl(),
        }
    }
}

/// Which scanner holds the summaries of images from registries matching `match`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RegistryRoute {
    /// Registry host pattern: `*`, `*.cr.aliyuncs.com`, `swr.*.myhuaweicloud.com`, `localhost:5000`.
    #[serde(rename = "match")]
    pub host_match: HostPattern,
    pub scanner: ScannerConfig,
    /// How to reach the registry for tag resolution; `None` means defaults (HTTPS).
    #[serde(default)]
    pub registry: Option<RegistryAccess>,
    /// Scanner calls per second on this route, whoever asks (no limit when absent).
    #[serde(default)]
    pub max_requests_per_second: Option<f64>,
    /// Scanner calls under way at once on this route (no limit when absent).
    #[serde(default)]
    pub max_concurrent: Option<u32>,
}

/// Connection settings of one registry, for tag -> digest resolution.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RegistryAccess {
    /// Resolve tags on this registry at all (off: only digests and scanner tag maps).
    #[serde(default = "default_true")]
    pub resolve: bool,
    /// Plain HTTP instead of HTTPS (a local registry).
    #[serde(default)]
    pub plain_http: bool,
    /// PEM CA bundle trusted for this registry.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Ask this host instead (as containerd's hosts.toml does), e.g. `mirror.local:5000`.
    #[serde(default)]
    pub mirror: Option<String>,
    #[serde(default, with = "humantime_serde")]
    pub timeout: Option<Duration>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ResolutionConfig {
    /// A docker `config.json` (the content of a dockerconfigjson Secret, mounted).
    #[serde(default)]
    pub docker_config_file: Option<PathBuf>,
    /// Also use the pod's and its ServiceAccount's imagePullSecrets (needs RBAC on Secrets).
    #[serde(default)]
    pub use_image_pull_secrets: bool,
    /// Platforms judged for multi-arch images when the index itself has no summary.
    #[serde(default = "default_platforms")]
    pub platforms: Vec<String>,
}

impl Default for ResolutionConfig {
    fn default() -> Self {
        ResolutionConfig {
            docker_config_file: None,
            use_image_pull_secrets: false,
            platforms: default_platforms(),
        }
    }
}

/// One scanner, written as a one-key map: `{file: {...}}`, `{hss: {...}}`, `{harbor: {...}}`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub enum ScannerConfig {
    File(FileScannerConfig),
    /// Huawei Cloud HSS, for SWR images (`docs/scanners-huawei-harbor.md`).
    Hss(crate::config::huawei::HssConfig),
    /// Harbor v2.0 scan overviews and vulnerability reports (`docs/scanners-huawei-harbor.md`).
    Harbor(crate::config::harbor::HarborConfig),
    /// Alibaba Cloud Container Registry EE (`scanner: {acr: {region: cn-hangzhou, ...}}`).
    Acr(crate::config::alibaba::AcrConfig),
    /// Alibaba Cloud Security Center (`scanner: {sas: {region: cn-hangzhou, ...}}`).
    Sas(crate::config::alibaba::SasConfig),
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FileScannerConfig {
    /// A summaries file, a Trivy JSON report, or a directory of them.
    pub path: PathBuf,
    /// How often the files are checked for changes (and read again when they changed);
    /// `0s` reads them only at start.
    #[serde(default = "default_file_reload", with = "humantime_serde")]
    pub reload_interval: Duration,
}

fn default_file_reload() -> Duration {
    Duration::from_secs(10)
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LogConfig {
    /// `json` or `text`.
    #[serde(default = "default_log_format")]
    pub format: String,
    /// A tracing filter such as `info` or `vulngate=debug`.
    #[serde(default = "default_log_level")]
    pub level: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            format: default_log_format(),
            level: default_log_level(),
        }
    }
}

/// A registry host pattern where `*` stands for any run of characters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct HostPattern(pub String);

impl HostPattern {
    pub fn matches(&self, host: &str) -> bool {
        crate::pattern::wildcard_match(&self.0, host)
    }
}

impl<'de> Deserialize<'de> for HostPattern {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        if s.is_empty() || s.contains(['/', ' ', '@']) {
            return Err(serde::de::Error::custom(format!(
                "registry pattern {s:?} must be a host name pattern such as \"*.example.com\" or \"*\""
            )));
        }
        // A literal host is named as image references name it (`index.docker.io` is
        // `docker.io`, `:443` dropped); a wildcard is only lower-cased.
        if s.contains('*') {
            Ok(HostPattern(s.to_ascii_lowercase()))
        } else {
            Ok(HostPattern(crate::image::canonical_registry(&s)))
        }
    }
}

impl Config {
    /// Loads and validates a config file. Relative paths inside it are taken
    /// relative to the file's directory.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        Config::from_yaml(&text, base).map_err(|e| ConfigError::InFile {
            path: path.to_path_buf(),
            source: Box::new(e),
        })
    }

    /// Parses config text; errors name the offending key (`policy.defaults.limits: ...`).
    pub fn from_yaml(text: &str, base: &Path) -> Result<Config, ConfigError> {
        let mut path = None;
        let parsed =
            serde_saphyr::with_deserializer_from_str_with_options(text, yaml_options(), |de| {
                serde_path_to_error::deserialize(de).map_err(|e| {
                    path = Some(e.path().to_string());
                    e.into_inner()
                })
            });
        let mut config: Config = parsed.map_err(|source| {
            let inner = source.to_string();
            // "." is the root, "?" a place serde_path_to_error could not follow.
            let key = path.filter(|path| path != "." && path != "?" && !inner.starts_with(path));
            ConfigError::Yaml {
                key,
                source: Box::new(source),
            }
        })?;
        config.validate()?;
        config.rebase_paths(base);
        Ok(config)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        for key in self.policy.defaults.limits.keys() {
            if !crate::domain::limits::LimitKey::is_known(key) {
                return Err(ConfigError::invalid(
                    format!("policy.defaults.limits.{key}"),
                    format!(
                        "unknown limit; use one of {}",
                        crate::domain::limits::LimitKey::known_list()
                    ),
                ));
            }
        }
        for (i, entry) in self.policy.defaults.allow_cves.iter().enumerate() {
            crate::domain::accepted::parse_entry(entry)
                .map_err(|e| ConfigError::invalid(format!("policy.defaults.allowCves[{i}]"), e))?;
        }
        if self.deadline.is_zero() {
            return Err(ConfigError::invalid(
                "deadline",
                "must be greater than zero",
            ));
        }
        if self.cache.max_entries == 0 {
            return Err(ConfigError::invalid(
                "cache.maxEntries",
                "must be greater than zero",
            ));
        }
        if let Some(shared) = &self.cache.shared {
            shared.validate(self.deadline)?;
        }
        if self.tls.cert_file.is_some() != self.tls.key_file.is_some() {
            return Err(ConfigError::invalid(
                "tls",
                "certFile and keyFile go together",
            ));
        }
        self.connections.validate()?;
        for (i, route) in self.registries.iter().enumerate() {
            match &route.scanner {
                // hss and harbor check their settings when the scanner is built.
                ScannerConfig::File(_) | ScannerConfig::Hss(_) | ScannerConfig::Harbor(_) => {}
                ScannerConfig::Acr(c) => c.validate(&format!("registries[{i}].scanner.acr"))?,
                ScannerConfig::Sas(c) => c.validate(&format!("registries[{i}].scanner.sas"))?,
            }
        }
        // Each run lists every pod: shorter periods would load the apiserver for nothing.
        if self.audit.interval < MIN_AUDIT_INTERVAL {
            return Err(ConfigError::invalid(
                "audit.interval",
                format!(
                    "{} is too short; use at least 1s (10m is a good start)",
                    humantime::format_duration(self.audit.interval)
                ),
            ));
        }
        if self.review.max_images == 0 {
            return Err(ConfigError::invalid(
                "review.maxImages",
                "must be greater than zero",
            ));
        }
        if self.ops.purge.enabled && self.ops.purge.token_file.is_none() {
            return Err(ConfigError::invalid(
                "ops.purge",
                "enabled needs tokenFile (a file holding the bearer token)",
            ));
        }
        if self.registries.is_empty() {
            return Err(ConfigError::invalid(
                "registries",
                "at least one route is needed (match: \"*\" for all)",
            ));
        }
        Ok(())
    }

    fn rebase_paths(&mut self, base: &Path) {
        let rebase = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        self.tls.cert_file.as_mut().map(rebase);
        self.tls.key_file.as_mut().map(rebase);
        self.tls.generate_dir.as_mut().map(rebase);
        self.tls.client_ca_file.as_mut().map(rebase);
        self.namespaces_file.as_mut().map(rebase);
        self.policy.accepted_cves_file.as_mut().map(rebase);
        self.resolution.docker_config_file.as_mut().map(rebase);
        if let Some(shared) = &mut self.cache.shared {
            shared.rebase_paths(base);
        }
        self.ops.purge.token_file.as_mut().map(rebase);
        for route in &mut self.registries {
            match &mut route.scanner {
                ScannerConfig::File(f) => rebase(&mut f.path),
                ScannerConfig::Hss(h) => h.rebase_paths(base),
                ScannerConfig::Harbor(h) => h.rebase_paths(base),
                ScannerConfig::Acr(c) => c.rebase_paths(base),
                ScannerConfig::Sas(c) => c.rebase_paths(base),
            }
            if let Some(ca) = route.registry.as_mut().and_then(|r| r.ca_file.as_mut()) {
                rebase(ca);
            }
        }
    }
}

const MIN_AUDIT_INTERVAL: Duration = Duration::from_secs(1);

fn default_audit_interval() -> Duration {
    Duration::from_secs(600)
}
fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8443))
}
fn default_ops_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8080))
}
fn default_deadline() -> Duration {
    Duration::from_secs(8)
}
fn default_controller_pods() -> ControllerPods {
    ControllerPods::Warn
}
fn default_mode() -> Mode {
    Mode::Enforce
}
fn default_limits() -> LimitsConfig {
    [("critical".to_string(), 0), ("high".to_string(), 0)]
        .into_iter()
        .collect()
}
fn default_unscanned() -> UnscannedRule {
    UnscannedRule::Deny
}
fn default_on_error() -> OnError {
    OnError::Deny
}
fn default_exempt_namespaces() -> Vec<String> {
    vec!["kube-system".to_string()]
}
fn default_cache_ttl() -> Duration {
    Duration::from_secs(600)
}
fn default_pending_ttl() -> Duration {
    Duration::from_secs(30)
}
fn default_max_entries() -> u64 {
    100_000
}
fn default_tag_ttl() -> Duration {
    Duration::from_secs(60)
}
fn default_failure_ttl() -> Duration {
    Duration::from_secs(5)
}
fn default_platforms() -> Vec<String> {
    vec!["linux/amd64".to_string(), "linux/arm64".to_string()]
}
/// Serde default of the `vulnerabilityDetails` switch of `acr` and `harbor`.
fn default_vulnerability_details() -> bool {
    true
}

fn default_true() -> bool {
    true
}
fn default_log_format() -> String {
    "json".to_string()
}
fn default_log_level() -> String {
    "info".to_string()
}

/// serde-saphyr's defaults, but YAML 1.2 booleans only (`enabled: yes` is an error, not
/// `true`), and no source snippet in errors: they name the key and its line.
fn yaml_options() -> serde_saphyr::Options {
    let mut options = serde_saphyr::Options::default();
    options.strict_booleans = true;
    options.with_snippet = false;
    options
}

#[cfg(test)]
mod tests;
