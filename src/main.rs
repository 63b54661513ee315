//! The `vulngate` command line: serve, review, check.

use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, Subcommand};

use vulngate::app;
use vulngate::metrics::Metrics;
use vulngate::server::{self, AppState, ServeOptions};

#[derive(Parser)]
#[command(
    name = "vulngate",
    version,
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
        #[arg(long, env = "VULNGATE_CONFIG")]
        config: Option<PathBuf>,
        /// Where the embedded default and a generated certificate are written.
        #[arg(long, default_value = "vulngate-local")]
        state_dir: PathBuf,
        /// Overrides `listen` of the config (port 0 picks a free port).
        #[arg(long)]
        listen: Option<std::net::SocketAddr>,
        /// Overrides `opsListen` of the config.
        #[arg(long)]
        ops_listen: Option<std::net::SocketAddr>,
    },
    /// Decide one AdmissionReview (a file, or - for standard input) and print the response.
    Review {
        #[arg(long, env = "VULNGATE_CONFIG")]
        config: Option<PathBuf>,
        #[arg(long, default_value = "vulngate-local")]
        state_dir: PathBuf,
        file: PathBuf,
    },
    /// Decide bare image references for a namespace: exit 0 allowed, 1 denied.
    Check {
        #[arg(long, env = "VULNGATE_CONFIG")]
        config: Option<PathBuf>,
        #[arg(long, default_value = "vulngate-local")]
        state_dir: PathBuf,
        #[arg(long, short)]
        namespace: String,
        #[arg(required = true)]
        images: Vec<String>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
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

async fn run(cli: Cli) -> Result<ExitCode, String> {
    match cli.command {
        Command::Serve {
            config,
            state_dir,
            listen,
            ops_listen,
        } => serve(config, state_dir, listen, ops_listen).await,
        Command::Review {
            config,
            state_dir,
            file,
        } => {
            let config = app::load_config(config.as_deref(), &state_dir)?;
            app::init_logging(&config.log, Some("warn"));
            let body = read_input(&file)?;
            let engine = app::build_engine(&config, Arc::new(Metrics::new())).await?;
            let out = engine
                .review(&body, None)
                .await
                .map_err(|e| e.to_string())?;
            println!("{}", String::from_utf8_lossy(&out));
            Ok(ExitCode::SUCCESS)
        }
        Command::Check {
            config,
            state_dir,
            namespace,
            images,
        } => {
            let config = app::load_config(config.as_deref(), &state_dir)?;
            app::init_logging(&config.log, Some("warn"));
            let engine = app::build_engine(&config, Arc::new(Metrics::new())).await?;
            let verdict = engine.check_images(&namespace, &images).await;
            for w in &verdict.warnings {
                println!("warning: {w}");
            }
            if verdict.allowed {
                println!(
                    "allowed: {} image(s) for namespace {namespace}",
                    images.len()
                );
                Ok(ExitCode::SUCCESS)
            } else {
                println!("{}", verdict.message.unwrap_or_default());
                Ok(ExitCode::from(1))
            }
        }
    }
}

fn read_input(file: &PathBuf) -> Result<Vec<u8>, String> {
    if file.as_os_str() == "-" {
        let mut buf = Vec::new();
        std::io::stdin()
            .read_to_end(&mut buf)
            .map_err(|e| format!("cannot read standard input: {e}"))?;
        Ok(buf)
    } else {
        std::fs::read(file).map_err(|e| format!("cannot read {}: {e}", file.display()))
    }
}

async fn serve(
    config_path: Option<PathBuf>,
    state_dir: PathBuf,
    listen: Option<std::net::SocketAddr>,
    ops_listen: Option<std::net::SocketAddr>,
) -> Result<ExitCode, String> {
    let embedded = config_path.is_none();
    let mut config = app::load_config(config_path.as_deref(), &state_dir)?;
    config.listen = listen.unwrap_or(config.listen);
    config.ops_listen = ops_listen.unwrap_or(config.ops_listen);
    app::init_logging(&config.log, None);
    let metrics = Arc::new(Metrics::new());
    let engine = Arc::new(app::build_engine(&config, Arc::clone(&metrics)).await?);
    let (cert, generated) = app::serving_cert(&config, &state_dir)?;
    cert.spawn_reloader(Duration::from_secs(1), Arc::clone(&metrics));
    let state = AppState::new(engine);
    let options = ServeOptions {
        listen: config.listen,
        ops_listen: config.ops_listen,
        drain_delay: config.shutdown.drain_delay,
        grace: config.shutdown.grace,
        request_timeout: config.deadline + Duration::from_secs(15),
    };
    let announce = |webhook: std::net::SocketAddr, ops: std::net::SocketAddr| {
        println!(
            "vulngate: webhook on https://{webhook}/validate, health and metrics on http://{ops}"
        );
        if let Some(g) = &generated {
            println!("vulngate: generated TLS CA {}", g.ca_file.display());
        }
        if embedded {
            let dir = state_dir.display();
            println!("vulngate: embedded default in {dir}/ (config.yaml, namespaces.yaml, scans/)");
            println!("try: curl --cacert {dir}/tls/ca.crt -H 'Content-Type: application/json' --data @{dir}/example-review.json https://localhost:{}/validate", webhook.port());
        }
    };
    server::serve(options, state, cert, shutdown_signal(), announce).await?;
    Ok(ExitCode::SUCCESS)
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
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
