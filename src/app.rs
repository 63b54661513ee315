//! Wiring: the config file turned into a running engine, certificate and logger.
//! Shared by every command so `serve`, `review` and `check` decide alike.

mod error;
pub mod scanners;

pub use error::{RouteError, StartupError};

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tracing_subscriber::fmt::writer::BoxMakeWriter;

use crate::config::{Config, LogConfig};
use crate::engine::{Engine, EngineParts};
use crate::kube_client::KubeClient;
use crate::metrics::Metrics;
use crate::namespaces::NamespaceSource;
use crate::namespaces::file::FileNamespaces;
use crate::registry::RegistryResolver;
use crate::resolve::DigestResolver;
use crate::shared_cache::SharedTier;
use crate::tls::{GeneratedTls, ReloadingCert, TlsError};

/// The files of the embedded default, written out so users can read and edit them.
const EMBEDDED: &[(&str, &str)] = &[
    ("config.yaml", include_str!("embedded/config.yaml")),
    ("namespaces.yaml", include_str!("embedded/namespaces.yaml")),
    (
        "example-review.json",
        include_str!("embedded/example-review.json"),
    ),
    (
        "scans/nginx-1.25.json",
        include_str!("embedded/scans/nginx-1.25.json"),
    ),
    (
        "scans/nginx-1.27-alpine.json",
        include_str!("embedded/scans/nginx-1.27-alpine.json"),
    ),
    (
        "scans/redis-7.2.json",
        include_str!("embedded/scans/redis-7.2.json"),
    ),
    (
        "scans/summaries.yaml",
        include_str!("embedded/scans/summaries.yaml"),
    ),
];

/// Writes the embedded default into `dir` (keeping files already there) and
/// returns the path of its config file.
pub(crate) fn write_embedded(dir: &Path) -> Result<PathBuf, StartupError> {
    for (name, content) in EMBEDDED {
        let path = dir.join(name);
        if path.exists() {
            continue;
        }
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|source| StartupError::CreateDir {
                path: parent.to_path_buf(),
                source,
            })?;
        }
        std::fs::write(&path, content).map_err(|source| StartupError::Write {
            path: path.clone(),
            source,
        })?;
    }
    Ok(dir.join("config.yaml"))
}

/// The config named on the command line, or the embedded default written to `state_dir`.
pub fn load_config(path: Option<&Path>, state_dir: &Path) -> Result<Config, StartupError> {
    let path = match path {
        Some(p) => p.to_path_buf(),
        None => write_embedded(state_dir)?,
    };
    Ok(Config::load(&path)?)
}

pub(crate) async fn namespace_source(
    config: &Config,
    kube: &KubeClient,
) -> Result<Arc<dyn NamespaceSource>, StartupError> {
    match &config.namespaces_file {
        Some(path) => Ok(Arc::new(FileNamespaces::load(path)?)),
        None => Ok(crate::namespaces::cluster_source(kube.get().await?)),
    }
}

/// The tag resolver the config asks for; `None` when no route resolves tags.
async fn registry_resolver(
    config: &Config,
    shared: Option<Arc<SharedTier>>,
    kube: &KubeClient,
) -> Result<Option<Arc<dyn DigestResolver>>, StartupError> {
    if !RegistryResolver::wanted(config) {
        return Ok(None);
    }
    let client = if config.resolution.use_image_pull_secrets {
        let client = kube.get().await;
        Some(client.map_err(StartupError::PullSecretsClient)?)
    } else {
        None
    };
    let resolver = RegistryResolver::from_config(config, client)?.with_shared(shared);
    Ok(Some(Arc::new(resolver)))
}

/// The engine of `config`, with a Kubernetes client of its own when it needs one.
pub async fn build_engine(config: &Config, metrics: Arc<Metrics>) -> Result<Engine, StartupError> {
    build_engine_with(config, metrics, &KubeClient::default()).await
}

/// The engine of `config`, sharing the process's Kubernetes client `kube`.
pub async fn build_engine_with(
    config: &Config,
    metrics: Arc<Metrics>,
    kube: &KubeClient,
) -> Result<Engine, StartupError> {
    crate::crypto::install_default_provider();
    let namespaces = namespace_source(config, kube).await?;
    let router = scanners::scanner_router(&config.registries)?;
    let shared = match &config.cache.shared {
        Some(shared) => Some(SharedTier::new(
            shared,
            &config.cache,
            &config.registries,
            Arc::clone(&metrics),
        )?),
        None => None,
    };
    let resolver = registry_resolver(config, shared.clone(), kube).await?;
    let mut engine = Engine::new(
        config,
        EngineParts {
            namespaces,
            router,
            resolver,
            metrics,
        },
    );
    if let Some(shared) = shared {
        engine.set_shared_cache(shared);
    }
    if config.namespaces_file.is_none() {
        // Policies come from the cluster, so Events can go there too.
        let client = kube.get().await.map_err(StartupError::EventsClient)?;
        engine.set_events(crate::events::Events::new(client));
    }
    if let Some(path) = &config.policy.accepted_cves_file {
        let text =
            std::fs::read_to_string(path).map_err(|source| StartupError::AcceptedCvesFile {
                path: path.clone(),
                source,
            })?;
        let source = crate::policy::Source::File(path.display().to_string());
        let (entries, problems) = crate::policy::allowlist::parse_list(&text, &source);
        if let Some(problem) = problems.first() {
            return Err(StartupError::AcceptedCve(problem.clone()));
        }
        engine.add_accepted(entries);
    }
    Ok(engine)
}

/// The serving certificate: the configured files, or a generated CA and certificate.
pub fn serving_cert(
    config: &Config,
    state_dir: &Path,
) -> Result<(Arc<ReloadingCert>, Option<GeneratedTls>), TlsError> {
    match (&config.tls.cert_file, &config.tls.key_file) {
        (Some(cert), Some(key)) => Ok((ReloadingCert::load(cert, key)?, None)),
        _ => {
            let dir = config
                .tls
                .generate_dir
                .clone()
                .unwrap_or_else(|| state_dir.join("tls"));
            let generated = crate::tls::generate_valid_for(
                &dir,
                &config.tls.generate_names,
                config.tls.regenerate_before,
            )?;
            let cert = ReloadingCert::load(&generated.cert_file, &generated.key_file)?;
            Ok((cert, Some(generated)))
        }
    }
}

/// Where log lines are written from: the thread that logs, or a writer thread.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogWriter {
    /// Each line written to stderr by the thread that logs it (one-shot commands).
    Direct,
    /// Lines gathered in memory and written to stderr in batches by a thread of
    /// their own (the server; see [`crate::log_writer`]).
    Batched,
}

/// Keeps the batched writer; dropping it writes out every gathered line.
#[must_use = "dropping the guard stops the log writer"]
pub struct LogGuard(#[allow(dead_code)] Option<crate::log_writer::WriterGuard>);

/// Logs go to stderr, so `review` and `check` keep stdout for their answer.
/// `level` overrides the config's level (the one-shot commands log only warnings);
/// `VULNGATE_LOG` overrides both.
pub fn init_logging(log: &LogConfig, level: Option<&str>, writer: LogWriter) -> LogGuard {
    use tracing_subscriber::EnvFilter;
    let level = level.unwrap_or(log.level.as_str());
    let filter = EnvFilter::try_from_env("VULNGATE_LOG").unwrap_or_else(|_| EnvFilter::new(level));
    let batched = match writer {
        LogWriter::Direct => None,
        LogWriter::Batched => match crate::log_writer::batched_stderr() {
            Ok(batched) => Some(batched),
            Err(e) => {
                eprintln!("vulngate: cannot start the log writer thread ({e}): logging directly");
                None
            }
        },
    };
    let (make_writer, guard) = match batched {
        Some((writer, guard)) => (BoxMakeWriter::new(writer), Some(guard)),
        None => (BoxMakeWriter::new(std::io::stderr), None),
    };
    // Colours only for a person at a terminal: in a file or a log collector they are
    // escape sequences in the middle of the text.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(make_writer);
    if log.format == "json" {
        let _ = builder
            .event_format(crate::log_format::JsonLines)
            .try_init();
    } else {
        let _ = builder.try_init();
    }
    LogGuard(guard)
}
