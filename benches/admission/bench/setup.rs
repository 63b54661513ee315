//! Files of a benchmark run (certificate, scan summaries, namespaces, config, review
//! bodies) and the `vulngate serve` process.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::client::{self, Proto, Target};
use super::{CONTAINERS, Options, Result};

/// The real review the 1-container body is, and the template of the generated ones.
const FIXTURE: &str = "pod-create-digest-only-connaisseur.json";
/// The namespace the generated reviews are in (the fixture's own).
pub const NAMESPACE: &str = "test-connaisseur";

pub struct Files {
    pub config: PathBuf,
    pub namespaces: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
    pub ca_pem: Vec<u8>,
    /// (containers, AdmissionReview body) for every pod size of the matrix.
    pub bodies: Vec<(usize, Bytes)>,
    /// The fixture review, the template of generated bodies.
    pub template: Value,
}

/// `sha256:<hex>` of a name: a stable fake digest.
pub fn digest_of(name: &str) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(name.as_bytes())))
}

fn fixture() -> Result<Value> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/fixtures/admission")
        .join(FIXTURE);
    match std::fs::read(&path) {
        Ok(bytes) => Ok(serde_json::from_slice(&bytes)?),
        // Without the shared fixtures: a review of the same shape.
        Err(_) => Ok(json!({
            "kind": "AdmissionReview",
            "apiVersion": "admission.k8s.io/v1",
            "request": {
                "uid": "0c3331b6-1812-11ea-b3fc-02897404852e",
                "kind": {"group": "", "version": "v1", "kind": "Pod"},
                "resource": {"group": "", "version": "v1", "resource": "pods"},
                "namespace": NAMESPACE,
                "operation": "CREATE",
                "userInfo": {"username": "system:serviceaccount:kube-system:replicaset-controller",
                             "groups": ["system:serviceaccounts", "system:authenticated"]},
                "object": {"kind": "Pod", "apiVersion": "v1",
                    "metadata": {"generateName": "charlie-deployment-76fbf58b7d-", "labels": {"app": "test-connaisseur"}},
                    "spec": {"containers": [{"name": "test-connaisseur",
                        "image": "securesystemsengineering/charlie-image@sha256:91ac9b26df583762234c1cdb2fc930364754ccc59bc752a2bfe298d2ea68f9ff",
                        "ports": [{"containerPort": 5000, "protocol": "TCP"}],
                        "terminationMessagePath": "/dev/termination-log", "imagePullPolicy": "Always"}]}},
                "oldObject": null,
                "dryRun": false
            }
        })),
    }
}

/// The image of generated container `i` of set `set`.
pub fn generated_image(set: &str, i: usize) -> String {
    let name = format!("registry.example.com/{set}/app-{i}");
    format!("{name}@{}", digest_of(&name))
}

/// The template review with `images` as its containers and `uid` as its uid.
pub fn review_with(template: &Value, uid: &str, images: &[String]) -> Value {
    let mut review = template.clone();
    let first = review["request"]["object"]["spec"]["containers"][0].clone();
    let containers: Vec<Value> = images
        .iter()
        .enumerate()
        .map(|(i, image)| {
            let mut c = first.clone();
            c["name"] = json!(format!("app-{i}"));
            c["image"] = json!(image);
            c
        })
        .collect();
    review["request"]["uid"] = json!(uid);
    review["request"]["namespace"] = json!(NAMESPACE);
    review["request"]["object"]["spec"]["containers"] = json!(containers);
    review
}

fn summary_line(digest: &str, image: &str) -> String {
    format!(
        "  - {{digest: \"{digest}\", image: \"{image}\", status: complete, critical: 0, high: 1, medium: 3, low: 7, unknown: 0}}\n"
    )
}

pub fn write_summaries(path: &Path, entries: impl Iterator<Item = (String, String)>) -> Result<()> {
    let mut text = String::from("summaries:\n");
    for (digest, image) in entries {
        text.push_str(&summary_line(&digest, &image));
    }
    std::fs::write(path, text)?;
    Ok(())
}

/// A config for `vulngate serve` on loopback ports chosen by the system.
pub fn config_text(
    files_dir: &Path,
    scans: &Path,
    max_entries: usize,
    pending_ttl: &str,
) -> String {
    format!(
        r#"listen: 127.0.0.1:0
opsListen: 127.0.0.1:0
tls:
  certFile: {dir}/tls/tls.crt
  keyFile: {dir}/tls/tls.key
deadline: 8s
namespacesFile: {dir}/namespaces.yaml
policy:
  defaults: {{mode: enforce, limits: {{critical: 0, high: 0}}, unscanned: deny, onError: deny}}
  exemptNamespaces: [kube-system]
  exemptImages: ["registry.k8s.io/*"]
cache: {{ttl: 10m, pendingTtl: {pending_ttl}, maxEntries: {max_entries}}}
registries:
  - match: "*"
    scanner: {{file: {{path: {scans}}}}}
    registry: {{resolve: false}}
log: {{format: json, level: info}}
"#,
        dir = files_dir.display(),
        scans = scans.display(),
    )
}

const NAMESPACES: &str = r#"apiVersion: v1
kind: List
items:
  - kind: Namespace
    metadata: {name: default}
  - kind: Namespace
    metadata:
      name: test-connaisseur
      annotations:
        vulngate.io/max-critical: "0"
        vulngate.io/max-high: "2"
        vulngate.io/unscanned: deny
        vulngate.io/exempt-images: "registry.example.com/base/*"
  - kind: Namespace
    metadata:
      name: staging
      annotations: {vulngate.io/mode: warn}
  - kind: Namespace
    metadata:
      name: sandbox
      annotations: {vulngate.io/mode: "off"}
"#;

pub fn write_files(dir: &Path, _options: &Options) -> Result<Files> {
    let tls = vulngate::tls::generate(&dir.join("tls"), &[])?;
    let ca_pem = std::fs::read(&tls.ca_file)?;
    let template = fixture()?;
    let fixture_image = template["request"]["object"]["spec"]["containers"][0]["image"]
        .as_str()
        .unwrap_or_default()
        .to_string();

    let mut bodies = Vec::new();
    let mut summaries = Vec::new();
    if let Some(digest) = fixture_image.split_once('@').map(|(_, d)| d.to_string()) {
        summaries.push((digest, fixture_image.clone()));
    }
    for n in CONTAINERS {
        let body = if n == 1 {
            serde_json::to_vec(&template)?
        } else {
            let images: Vec<String> = (0..n).map(|i| generated_image("bench", i)).collect();
            let uid = format!("bench-{n}-containers-0000-000000000000");
            serde_json::to_vec(&review_with(&template, &uid, &images))?
        };
        bodies.push((n, Bytes::from(body)));
    }
    let max = CONTAINERS.iter().copied().max().unwrap_or(1);
    for i in 0..max {
        let image = generated_image("bench", i);
        if let Some((name, digest)) = image.split_once('@') {
            summaries.push((digest.to_string(), name.to_string()));
        }
    }
    std::fs::create_dir_all(dir.join("scans"))?;
    write_summaries(&dir.join("scans/summaries.yaml"), summaries.into_iter())?;
    std::fs::write(dir.join("namespaces.yaml"), NAMESPACES)?;
    let config = dir.join("config.yaml");
    std::fs::write(
        &config,
        config_text(dir, &dir.join("scans"), 100_000, "30s"),
    )?;
    Ok(Files {
        config,
        namespaces: dir.join("namespaces.yaml"),
        cert: tls.cert_file,
        key: tls.key_file,
        ca_pem,
        bodies,
        template,
    })
}

/// A running `vulngate serve`.
pub struct Vulngate {
    pub child: Child,
    pub webhook: SocketAddr,
    pub ops: SocketAddr,
}

impl Vulngate {
    pub fn stop(&mut self) {
        // SIGTERM would drain; the benchmark is done with it.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Vulngate {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Starts `vulngate serve --config FILE`, its log in `<dir>/<config stem>.log`, and
/// reads the addresses it prints.
pub fn start_vulngate(bin: &Path, config: &Path, dir: &Path) -> Result<Vulngate> {
    let stem = config
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("vulngate");
    let log = std::fs::File::create(dir.join(format!("{stem}.log")))?;
    let mut child = Command::new(bin)
        .arg("serve")
        .arg("--config")
        .arg(config)
        .arg("--state-dir")
        .arg(dir.join("state"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::from(log))
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", bin.display()))?;
    let Some(stdout) = child.stdout.take() else {
        let _ = child.kill();
        return Err("no stdout from vulngate".into());
    };
    // "vulngate: webhook on https://ADDR/validate, health and metrics on http://OPS"
    let mut lines = BufReader::new(stdout).lines();
    let line = match lines.next() {
        Some(Ok(line)) => line,
        _ => {
            let _ = child.kill();
            let _ = child.wait();
            let log = std::fs::read_to_string(dir.join(format!("{stem}.log"))).unwrap_or_default();
            return Err(format!("vulngate did not start: {log}").into());
        }
    };
    std::thread::spawn(move || for _ in lines {});
    let addr = |after: &str, before: &str| -> Option<SocketAddr> {
        let rest = line.split_once(after)?.1;
        let end = rest.find(before).unwrap_or(rest.len());
        rest[..end].parse().ok()
    };
    match (addr("https://", "/validate"), addr("http://", " ")) {
        (Some(webhook), Some(ops)) => Ok(Vulngate {
            child,
            webhook,
            ops,
        }),
        _ => {
            let _ = child.kill();
            Err(format!("unexpected first line from vulngate: {line}").into())
        }
    }
}

/// Sends each body until vulngate answers it (the caches are then warm) and returns
/// its answers, which the baseline serves as fixed responses.
pub async fn warm_up(target: &Target, bodies: &[(usize, Bytes)]) -> Result<Vec<(usize, Bytes)>> {
    let started = Instant::now();
    let mut out = Vec::new();
    let mut sender = loop {
        match client::connect(target, Proto::Http1).await {
            Ok(s) => break s,
            Err(_) if started.elapsed() < Duration::from_secs(20) => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => return Err(e),
        }
    };
    for (containers, body) in bodies {
        let mut last = Bytes::new();
        for _ in 0..20 {
            let (status, bytes) = sender.send(target, body.clone()).await?;
            if !status.is_success() {
                return Err(format!(
                    "vulngate answered {status}: {}",
                    String::from_utf8_lossy(&bytes)
                )
                .into());
            }
            last = bytes;
        }
        let answer: Value = serde_json::from_slice(&last)?;
        if answer["response"]["allowed"] != json!(true) {
            return Err(
                format!("the {containers}-container review is not allowed: {answer}").into(),
            );
        }
        out.push((body.len(), last));
    }
    Ok(out)
}

/// Resident set size of a process, from /proc.
pub fn rss_kib(pid: u32) -> Option<u64> {
    status_field(pid, "VmRSS:")
}

/// Peak resident set size of a process, from /proc.
pub fn peak_rss_kib(pid: u32) -> Option<u64> {
    status_field(pid, "VmHWM:")
}

fn status_field(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}
