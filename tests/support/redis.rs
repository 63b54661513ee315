//! A real `redis-server` on 127.0.0.1, in a temp dir, on a free port: killed and
//! started again on the same port when a test says so; also as a replica, a sentinel
//! or the masters of a cluster. Installed by `tests/setup.d/redis.sh`.

#![allow(dead_code)]

use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub struct Redis {
    child: Option<Child>,
    pub port: u16,
    args: Vec<String>,
    pub dir: tempfile::TempDir,
    /// `--tls ...` arguments for redis-cli when the server speaks TLS.
    cli_tls: Vec<String>,
    /// `--user U --pass P` for redis-cli when the server needs them.
    cli_auth: Vec<String>,
}

/// TLS files written into the server's directory.
pub struct RedisTls {
    pub ca_pem: String,
}

fn installed(tool: &str) -> bool {
    Command::new(tool)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

impl Redis {
    /// A plain server without authentication.
    pub fn start() -> Redis {
        Redis::start_with(Vec::new(), Vec::new(), Vec::new())
    }

    /// A TLS-only server (certificate for 127.0.0.1 and localhost, from a CA made
    /// here) whose only usable user is `user` with `password`, limited to keys under
    /// `vulngate:` and the commands vulngate sends.
    pub fn start_tls_acl(user: &str, password: &str) -> (Redis, RedisTls) {
        let dir = tempfile::tempdir().expect("temp dir");
        let (ca, cert, key) = ca_and_server_cert();
        for (name, pem) in [("ca.crt", &ca), ("server.crt", &cert), ("server.key", &key)] {
            std::fs::write(dir.path().join(name), pem).expect("write TLS file");
        }
        let path = |name: &str| dir.path().join(name).display().to_string();
        let args = vec![
            "--tls-cert-file".into(),
            path("server.crt"),
            "--tls-key-file".into(),
            path("server.key"),
            "--tls-ca-cert-file".into(),
            path("ca.crt"),
            "--tls-auth-clients".into(),
            "no".into(),
            "--aclfile".into(),
            path("users.acl"),
        ];
        // The users in an ACL file: on redis-server's command line, `--user` takes
        // its rules as one quoted argument, which it refuses.
        let acl = format!(
            "user default off\nuser {user} on >{password} ~vulngate:* +get +set +del +scan +ping +hello +auth +client\n"
        );
        std::fs::write(dir.path().join("users.acl"), acl).expect("write ACL file");
        let cli_tls = vec!["--tls".into(), "--cacert".into(), path("ca.crt")];
        let cli_auth = vec![
            "--user".into(),
            user.into(),
            "--pass".into(),
            password.into(),
            "--no-auth-warning".into(),
        ];
        let redis = Redis::start_in(dir, args, cli_tls, cli_auth, true);
        (redis, RedisTls { ca_pem: ca })
    }

    fn start_with(args: Vec<String>, cli_tls: Vec<String>, cli_auth: Vec<String>) -> Redis {
        Redis::start_in(
            tempfile::tempdir().expect("temp dir"),
            args,
            cli_tls,
            cli_auth,
            false,
        )
    }

    /// A plain server replicating `master`.
    pub fn start_replica_of(master: &Redis) -> Redis {
        let replica = Redis::start_with(
            vec![
                "--replicaof".into(),
                "127.0.0.1".into(),
                master.port.to_string(),
            ],
            Vec::new(),
            Vec::new(),
        );
        wait_until("the replica in sync with its master", || {
            replica
                .cli_text(&["INFO", "replication"])
                .contains("master_link_status:up")
        });
        replica
    }

    /// A sentinel (quorum 1) watching `master` as `name`, which declares a master
    /// down after 500 ms without an answer; returns once it knows `replicas` replicas.
    pub fn start_sentinel(master: &Redis, name: &str, replicas: usize) -> Redis {
        let dir = tempfile::tempdir().expect("temp dir");
        // A sentinel needs a config file of its own: it rewrites it as it learns.
        let conf = dir.path().join("sentinel.conf");
        std::fs::write(
            &conf,
            format!(
                "sentinel monitor {name} 127.0.0.1 {port} 1\n\
                 sentinel down-after-milliseconds {name} 500\n\
                 sentinel failover-timeout {name} 5000\n",
                port = master.port
            ),
        )
        .expect("write sentinel.conf");
        let mut sentinel = Redis {
            child: None,
            port: 0,
            args: Vec::new(),
            dir,
            cli_tls: Vec::new(),
            cli_auth: Vec::new(),
        };
        sentinel.port = free_port();
        sentinel.args = vec![
            conf.display().to_string(),
            "--sentinel".into(),
            "--bind".into(),
            "127.0.0.1".into(),
            "--port".into(),
            sentinel.port.to_string(),
            "--dir".into(),
            sentinel.dir.path().display().to_string(),
        ];
        sentinel.start_again();
        wait_until("the sentinel knows the replicas", || {
            sentinel
                .cli_text(&["SENTINEL", "REPLICAS", name])
                .lines()
                .filter(|l| *l == "name")
                .count()
                >= replicas
        });
        sentinel
    }

    /// The port of the master this sentinel names for `name`.
    pub fn sentinel_master_port(&self, name: &str) -> u16 {
        let answer = self.cli_text(&["SENTINEL", "GET-MASTER-ADDR-BY-NAME", name]);
        answer
            .lines()
            .nth(1)
            .and_then(|p| p.trim().parse().ok())
            .unwrap_or_else(|| panic!("no master for {name}: {answer}"))
    }

    /// `masters` servers in cluster mode, made one cluster by `redis-cli --cluster
    /// create` (no replicas), returned once every node says the cluster is ok.
    pub fn start_cluster(masters: usize) -> Vec<Redis> {
        let nodes: Vec<Redis> = (0..masters)
            .map(|_| {
                Redis::start_with(
                    vec![
                        "--cluster-enabled".into(),
                        "yes".into(),
                        "--cluster-config-file".into(),
                        "nodes.conf".into(),
                    ],
                    Vec::new(),
                    Vec::new(),
                )
            })
            .collect();
        let addresses: Vec<String> = nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect();
        let mut create = vec!["--cluster", "create"];
        create.extend(addresses.iter().map(String::as_str));
        create.extend(["--cluster-replicas", "0", "--cluster-yes"]);
        let out = nodes[0].cli(&create);
        assert!(out.status.success(), "redis-cli --cluster create: {out:?}");
        for node in &nodes {
            wait_until("every node sees the cluster ok", || {
                node.cli_text(&["CLUSTER", "INFO"])
                    .contains("cluster_state:ok")
            });
        }
        nodes
    }

    fn start_in(
        dir: tempfile::TempDir,
        args: Vec<String>,
        cli_tls: Vec<String>,
        cli_auth: Vec<String>,
        tls: bool,
    ) -> Redis {
        assert!(
            installed("redis-server") && installed("redis-cli"),
            "redis-server and redis-cli are needed: run tests/setup.d/redis.sh"
        );
        let port = free_port();
        let mut full = vec![
            "--bind".to_string(),
            "127.0.0.1".into(),
            "--save".into(),
            "".into(),
            "--appendonly".into(),
            "no".into(),
            "--dir".into(),
            dir.path().display().to_string(),
        ];
        if tls {
            full.extend([
                "--port".into(),
                "0".into(),
                "--tls-port".into(),
                port.to_string(),
            ]);
        } else {
            full.extend(["--port".into(), port.to_string()]);
        }
        full.extend(args);
        let mut redis = Redis {
            child: None,
            port,
            args: full,
            dir,
            cli_tls,
            cli_auth,
        };
        redis.start_again();
        redis
    }

    /// Starts the server (again) on its port, empty, and waits until it answers.
    pub fn start_again(&mut self) {
        assert!(self.child.is_none(), "already running");
        let log = std::fs::File::create(self.log_path()).expect("redis log");
        let child = Command::new("redis-server")
            .args(&self.args)
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("start redis-server (tests/setup.d/redis.sh installs it)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "redis-server did not listen on {}: {}",
                self.port,
                std::fs::read_to_string(self.log_path()).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILL: no goodbye to the connected clients.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("redis.log")
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// `redis-cli` against this server.
    pub fn cli(&self, args: &[&str]) -> Output {
        Command::new("redis-cli")
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
            .args(&self.cli_tls)
            .args(&self.cli_auth)
            .args(args)
            .output()
            .expect("run redis-cli (tests/setup.d/redis.sh installs it)")
    }

    /// `redis-cli` output as text, trimmed.
    pub fn cli_text(&self, args: &[&str]) -> String {
        let out = self.cli(args);
        assert!(out.status.success(), "redis-cli {args:?}: {out:?}");
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// The keys matching `pattern`, sorted.
    pub fn keys(&self, pattern: &str) -> Vec<String> {
        let mut keys: Vec<String> = self
            .cli_text(&["--scan", "--pattern", pattern])
            .lines()
            .filter(|l| !l.is_empty())
            .map(String::from)
            .collect();
        keys.sort();
        keys
    }
}

/// Polls `check` (every 50 ms, up to 30 s) until it holds.
fn wait_until(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !check() {
        assert!(Instant::now() < deadline, "never: {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.kill();
    }
}

/// (CA PEM, server certificate PEM for 127.0.0.1 and localhost, server key PEM).
fn ca_and_server_cert() -> (String, String, String) {
    let ca_key = rcgen::KeyPair::generate().expect("ca key");
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("ca params");
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "vulngate test redis CA");
    let ca_cert = ca_params.self_signed(&ca_key).expect("ca cert");
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let key = rcgen::KeyPair::generate().expect("server key");
    let params =
        rcgen::CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])
            .expect("server params");
    let cert = params.signed_by(&key, &issuer).expect("server cert");
    (ca_cert.pem(), cert.pem(), key.serialize_pem())
}
