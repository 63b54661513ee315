//! The one-shot commands (`vulngate audit`, `precheck`...) run as a user runs them:
//! the real binary with `--config DIR/config.yaml`, against the cluster a kubeconfig
//! names, off the async runtime (the fake servers run on it).

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

use super::webhook::BIN;

pub struct Cli {
    /// Holds `config.yaml`; the commands run in it.
    pub dir: PathBuf,
    pub kubeconfig: PathBuf,
}

impl Cli {
    /// `vulngate ARGS --config DIR/config.yaml`, standard input not a terminal.
    pub async fn run(&self, args: &[&str]) -> Output {
        let mut command = Command::new(BIN);
        command
            .args(args)
            .arg("--config")
            .arg(self.dir.join("config.yaml"));
        self.environment(&mut command).stdin(Stdio::null());
        tokio::task::spawn_blocking(move || command.output().expect("run vulngate"))
            .await
            .expect("join")
    }

    /// The same on a pseudo-terminal (script(1), from util-linux) that types `input`:
    /// stdout and stderr both go to the terminal and come back together as the
    /// transcript, in `stdout`.
    pub async fn run_on_terminal(&self, args: &[&str], input: &'static str) -> Output {
        let quote = |s: &str| format!("'{}'", s.replace('\'', "'\\''"));
        let config = self.dir.join("config.yaml");
        let mut line: Vec<String> = vec![quote(BIN)];
        line.extend(args.iter().map(|a| quote(a)));
        line.extend(["--config".to_string(), quote(&config.to_string_lossy())]);
        let mut command = Command::new("script");
        command.args(["-q", "-e", "-c", &line.join(" "), "/dev/null"]);
        self.environment(&mut command)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        tokio::task::spawn_blocking(move || {
            use std::io::Write;
            let mut child = command.spawn().expect("run script(1)");
            let mut stdin = child.stdin.take().expect("stdin");
            stdin.write_all(input.as_bytes()).expect("type the input");
            drop(stdin);
            child.wait_with_output().expect("script(1) output")
        })
        .await
        .expect("join")
    }

    fn environment<'a>(&self, command: &'a mut Command) -> &'a mut Command {
        command
            .current_dir(&self.dir)
            .env("KUBECONFIG", &self.kubeconfig)
            .env_remove("KUBERNETES_SERVICE_HOST")
            .env_remove("VULNGATE_LOG")
            .env_remove("VULNGATE_CONFIG")
    }
}
