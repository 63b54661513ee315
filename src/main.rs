//! The `vulngate` command line: serve, review, check, audit, precheck.

use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, Subcommand};

use vulngate::app::{self, StartupError};
use vulngate::audit;
use vulngate::background_audit::BackgroundAudit;
use vulngate::config::Config;
use vulngate::decision::Effect;
use vulngate::domain::summary::Severity;
use vulngate::engine::Engine;
use vulngate::kube_client::{KubeClient, KubeClientError};
use vulngate::metrics::Metrics;
use vulngate::server::{self, AppState, ServeOptions};
use vulngate::tls::Origin;

/// `vulngate --version`: the crate version and the git revision it was built from
/// (src/build.rs).
const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (revision ",
    env!("VULNGATE_REVISION"),
    ")"
);

#[derive(Parser)]
#[command(
    name = "vulngate",
    version = VERSION,
    about = "Kubernetes admission webhook that denies images over their namespace's vulnerability limits"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the TLS admission webhook. Without --config: the embedded default
    /// (example scan reports and namespaces, a generated certificate, no cluster).
    Serve {
        #[command(flatten)]
        source: ConfigArgs,
        /// Overrides `listen` of the config (port 0 picks a free port).
        #[arg(long)]
        listen: Option<std::net::SocketAddr>,
        /// Overrides `opsListen` of the config.
        #[arg(long)]
        ops_listen: Option<std::net::SocketAddr>,
    },
    /// Decide one AdmissionReview (a file, or - for standard input) and print the response.
    Review {
        #[command(flatten)]
        source: ConfigArgs,
        file: PathBuf,
    },
    /// Decide bare image references for a namespace: exit 0 allowed, 1 denied.
    Check {
        #[command(flatten)]
        source: ConfigArgs,
        #[arg(long, short)]
        namespace: String,
        #[arg(required = true)]
        images: Vec<String>,
    },
    /// Judge the images of every running Pod against its namespace's current policy, as
    /// admission would judge the Pod created now. Exit 0: nothing over its limit;
    /// 1: some image shown is over a limit; 2: error.
    Audit {
        #[command(flatten)]
        source: ConfigArgs,
        /// Only this namespace (default: all).
        #[arg(long, short)]
        namespace: Option<String>,
        #[arg(long, short, value_enum, default_value_t = OutputFormat::Table)]
        output: OutputFormat,
        /// Only images with a vulnerability of this severity or worse.
        #[arg(long, value_enum)]
        severity: Option<SeverityArg>,
        /// Only containers with this verdict.
        #[arg(long, value_enum)]
        verdict: Option<VerdictArg>,
        /// Only containers whose image has no finished scan.
        #[arg(long)]
        unscanned: bool,
        /// Only images matching this pattern (`*` matches anything).
        #[arg(long)]
        image: Option<String>,
    },
    /// List the distinct images running in the cluster that have no finished scan,
    /// grouped by registry and scanner, with Security Center's scan quota estimate for
    /// acr and sas routes. Exit 0: none; 1: some; 2: error, or --scan refused or failed.
    Precheck {
        #[command(flatten)]
        source: ConfigArgs,
        /// Only this namespace (default: all).
        #[arg(long, short)]
        namespace: Option<String>,
        /// After the estimate, ask the scanners to scan the images (acr and sas routes;
        /// uses scan quota): confirmed on a terminal, or with --yes.
        #[arg(long)]
        scan: bool,
        /// With --scan: do not ask for confirmation.
        #[arg(long, requires = "scan")]
        yes: bool,
    },
}

/// Where a command's config comes from: a file, or the embedded default written into
/// the state directory.
#[derive(clap::Args)]
struct ConfigArgs {
    #[arg(long, env = "VULNGATE_CONFIG")]
    config: Option<PathBuf>,
    /// Where the embedded default and a generated certificate are written.
    #[arg(long, default_value = "vulngate-local")]
    state_dir: PathBuf,
}

impl ConfigArgs {
    fn load(&self) -> Result<Config, StartupError> {
        app::load_config(self.config.as_deref(), &self.state_dir)
    }

    /// The config and engine of a one-shot command, which logs only warnings (stdout
    /// is kept for its answer).
    async fn one_shot(&self, kube: &KubeClient) -> Result<(Config, Engine), StartupError> {
        let config = self.load()?;
        let _direct = app::init_logging(&config.log, Some("warn"), app::LogWriter::Direct);
        let engine = app::build_engine_with(&config, Arc::new(Metrics::new()), kube).await?;
        Ok((config, engine))
    }
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum OutputFormat {
    Table,
    Json,
    Csv,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum SeverityArg {
    Critical,
    High,
    Medium,
    Low,
    Unknown,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum VerdictArg {
    Denied,
    Warn,
    Allowed,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    vulngate::crypto::install_default_provider();
    let runtime = match vulngate::server::runtime() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("vulngate: cannot start the runtime: {e}");
            return ExitCode::from(2);
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("vulngate: {e}");
            ExitCode::from(2)
        }
    }
}

/// Why a command failed: the one line `main` prints.
#[derive(Debug, thiserror::Error)]
enum CommandError {
    #[error(transparent)]
    Startup(#[from] StartupError),
    #[error(transparent)]
    Kubernetes(#[from] KubeClientError),
    #[error("cannot read standard input: {0}")]
    Stdin(std::io::Error),
    #[error("cannot read {}: {source}", path.display())]
    Input {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Review(#[from] vulngate::admission::BadReview),
    /// Listing the pods or the precheck failed; their message says how.
    #[error("{0}")]
    Failed(String),
}

async fn run(cli: Cli) -> Result<ExitCode, CommandError> {
    match cli.command {
        Command::Serve {
            source,
            listen,
            ops_listen,
        } => Ok(serve(source, listen, ops_listen).await?),
        Command::Review { source, file } => {
            let body = read_input(&file)?;
            let (_, engine) = source.one_shot(&KubeClient::default()).await?;
            let out = engine.review(&body, None).await?;
            println!("{}", String::from_utf8_lossy(&out));
            Ok(ExitCode::SUCCESS)
        }
        Command::Audit {
            source,
            namespace,
            output,
            severity,
            verdict,
            unscanned,
            image,
        } => {
            let options = audit::AuditOptions {
                namespace,
                severity: severity.map(|s| match s {
                    SeverityArg::Critical => Severity::Critical,
                    SeverityArg::High => Severity::High,
                    SeverityArg::Medium => Severity::Medium,
                    SeverityArg::Low => Severity::Low,
                    SeverityArg::Unknown => Severity::Unknown,
                }),
                verdict: verdict.map(|v| match v {
                    VerdictArg::Denied => Effect::Deny,
                    VerdictArg::Warn => Effect::Warn,
                    VerdictArg::Allowed => Effect::Allow,
                }),
                unscanned,
                image,
            };
            audit_command(AuditArgs {
                source,
                output,
                options,
                precheck: None,
            })
            .await
        }
        Command::Precheck {
            source,
            namespace,
            scan,
            yes,
        } => {
            audit_command(AuditArgs {
                source,
                output: OutputFormat::Table,
                // Every row: precheck picks the unscanned ones itself, and tells which
                // images could not be looked up at all.
                options: audit::AuditOptions {
                    namespace,
                    ..audit::AuditOptions::default()
                },
                precheck: Some(vulngate::precheck::RunOptions { scan, yes }),
            })
            .await
        }
        Command::Check {
            source,
            namespace,
            images,
        } => {
            let (_, engine) = source.one_shot(&KubeClient::default()).await?;
            let response = engine.decide_images(&namespace, &images).await;
            for w in &response.warnings {
                println!("warning: {w}");
            }
            if response.allowed {
                println!(
                    "allowed: {} image(s) for namespace {namespace}",
                    images.len()
                );
                Ok(ExitCode::SUCCESS)
            } else {
                println!("{}", response.message.unwrap_or_default());
                Ok(ExitCode::from(1))
            }
        }
    }
}

struct AuditArgs {
    source: ConfigArgs,
    output: OutputFormat,
    options: audit::AuditOptions,
    /// Report images without a finished scan instead of the audit.
    precheck: Option<vulngate::precheck::RunOptions>,
}

async fn audit_command(args: AuditArgs) -> Result<ExitCode, CommandError> {
    let kube = KubeClient::default();
    let (config, engine) = args.source.one_shot(&kube).await?;
    let client = kube.get().await?;
    let pods = audit::running_pods(client, args.options.namespace.as_deref())
        .await
        .map_err(CommandError::Failed)?;
    // Let a cluster namespace cache sync first (it answers meanwhile by direct GETs).
    let waited = std::time::Instant::now();
    while !engine.namespaces_ready() && waited.elapsed() < Duration::from_secs(10) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Drawn on stderr only when it is a terminal; cleared before the report is printed.
    let progress = vulngate::progress::Progress::new(pods.len(), "judging running pods");
    let report = audit::audit_with_progress(&engine, &pods, &args.options, Some(&progress)).await;
    if let Some(precheck) = args.precheck {
        let code = vulngate::precheck::run(&config, &engine, &report, precheck, progress)
            .await
            .map_err(CommandError::Failed)?;
        return Ok(ExitCode::from(code));
    }
    drop(progress);
    match args.output {
        OutputFormat::Table => print!("{}", audit::render_table(&report)),
        OutputFormat::Json => println!("{}", audit::render_json(&report)),
        OutputFormat::Csv => {
            print!("{}", audit::render_csv(&report));
            eprintln!("{}", report.summary.line());
        }
    }
    Ok(if report.any_over_limit() {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

fn read_input(file: &PathBuf) -> Result<Vec<u8>, CommandError> {
    if file.as_os_str() == "-" {
        let mut buf = Vec::new();
        std::io::stdin()
            .read_to_end(&mut buf)
            .map_err(CommandError::Stdin)?;
        Ok(buf)
    } else {
        std::fs::read(file).map_err(|source| CommandError::Input {
            path: file.clone(),
            source,
        })
    }
}

async fn serve(
    source: ConfigArgs,
    listen: Option<std::net::SocketAddr>,
    ops_listen: Option<std::net::SocketAddr>,
) -> Result<ExitCode, StartupError> {
    let embedded = source.config.is_none();
    let state_dir = &source.state_dir;
    let mut config = source.load()?;
    config.listen = listen.unwrap_or(config.listen);
    config.ops_listen = ops_listen.unwrap_or(config.ops_listen);
    // Kept to the end: dropping it writes out the last queued lines.
    let _log = app::init_logging(&config.log, None, app::LogWriter::Batched);
    let open_file_limit = vulngate::connections::raise_open_file_limit();
    let metrics = Arc::new(Metrics::new());
    let kube = KubeClient::default();
    let engine = Arc::new(app::build_engine_with(&config, Arc::clone(&metrics), &kube).await?);
    let (cert, generated) = app::serving_cert(&config, state_dir)?;
    cert.spawn_reloader(Duration::from_secs(1), Arc::clone(&metrics));
    let client_ca = match &config.tls.client_ca_file {
        Some(file) => {
            let ca = vulngate::tls::ReloadingClientCa::load(file)?;
            ca.spawn_reloader(Duration::from_secs(1));
            Some(ca)
        }
        None => None,
    };
    // Stops the background audit as soon as shutdown begins.
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut audit_task = None;
    if let Some(interval) = vulngate::config::AuditConfig::period(&config) {
        let audit = BackgroundAudit::new(Arc::clone(&engine), interval, kube.clone());
        audit_task = Some(tokio::spawn(audit.run(stop_rx)));
        tracing::info!(interval = %humantime::format_duration(interval), "background audit on");
    }
    let purge = vulngate::purge::PurgeAccess::from_config(&config.ops.purge);
    let pin_digests = config.pin_digests.enabled;
    let state = AppState::with_pinning(engine, purge, pin_digests);
    let options = ServeOptions {
        listen: config.listen,
        ops_listen: config.ops_listen,
        drain_delay: config.shutdown.drain_delay,
        grace: config.shutdown.grace,
        request_timeout: config.deadline + Duration::from_secs(15),
        connections: config.connections.clone(),
        open_file_limit,
        client_ca,
    };
    let announce = |webhook: std::net::SocketAddr, ops: std::net::SocketAddr| {
        println!(
            "vulngate: webhook on https://{webhook}/validate, health and metrics on http://{ops}"
        );
        if pin_digests {
            println!("vulngate: pinning images to their digests on https://{webhook}/mutate");
        }
        if let Some(g) = &generated {
            if let Origin::Replaced(why) = &g.origin {
                tracing::warn!(reason = %why, "generated certificate replaced by a new one");
                println!("vulngate: generated a new CA and certificate: {why}");
            }
            println!("vulngate: generated TLS CA {}", g.ca_file.display());
        }
        if embedded {
            let dir = state_dir.display();
            println!("vulngate: embedded default in {dir}/ (config.yaml, namespaces.yaml, scans/)");
            println!(
                "try: curl --cacert {dir}/tls/ca.crt -H 'Content-Type: application/json' --data @{dir}/example-review.json https://localhost:{}/validate",
                webhook.port()
            );
        }
    };
    let shutdown = async move {
        shutdown_signal().await;
        let _ = stop_tx.send(true);
    };
    server::serve(options, state, cert, shutdown, announce).await?;
    if let Some(task) = audit_task {
        // Told to stop when shutdown began; a run in flight is abandoned, not awaited.
        let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
    }
    Ok(ExitCode::SUCCESS)
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "cannot watch SIGTERM");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}
