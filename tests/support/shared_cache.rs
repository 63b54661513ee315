//! The vulngate side of the shared-tier tests: replicas of `vulngate serve` in front
//! of a Harbor double, the reviews sent to them and what they tell on /metrics.
//! Included with `#[path]` next to `harbor_server` by the test files that use it.

#![allow(dead_code)]

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::harbor_server::{self, HarborServer};
use crate::support;
use crate::support::webhook::{Webhook, object_with_pod_spec, pod_spec, review};

pub const HARBOR_HOST: &str = "harbor.example.test";
pub const HMAC_KEY: &str = "a-test-hmac-key-of-32-bytes-0001";

pub const NAMESPACES: &str = r#"---
kind: Namespace
metadata:
  name: shop
  annotations: {vulngate.io/max-critical: "0", vulngate.io/max-high: "50"}
"#;

/// A Harbor whose digests `label` have `critical` critical vulnerabilities.
pub async fn harbor(digests: &[(&str, u64)], latency: Duration) -> HarborServer {
    let harbor = HarborServer::start().await;
    for (label, critical) in digests {
        add(&harbor, label, *critical);
    }
    if !latency.is_zero() {
        harbor.set_fault(Some(harbor_server::Fault::Slow(latency)));
    }
    harbor
}

pub fn add(harbor: &HarborServer, label: &str, critical: u64) {
    let digest = support::webhook::digest(label);
    let summary = json!({"total": critical, "summary": {"Critical": critical}});
    harbor.add(
        "library",
        "app",
        &digest,
        harbor_server::scanned(&digest, "Success", Some(summary)),
    );
}

/// Artifact lookups the scanner double answered: one per scanner call.
pub fn scanner_calls(harbor: &HarborServer) -> usize {
    harbor
        .state
        .raw_paths
        .lock()
        .unwrap()
        .iter()
        .filter(|p| !p.ends_with("/additions/vulnerabilities"))
        .count()
}

/// `shared` is the YAML of `cache.shared` (indented under it).
pub const PURGE_TOKEN: &str = "purge-token-31";

pub fn config(harbor_url: &str, shared: &str) -> String {
    format!(
        r#"listen: 127.0.0.1:0
opsListen: 127.0.0.1:0
tls: {{generateDir: tls}}
deadline: 5s
namespacesFile: namespaces.yaml
policy: {{defaults: {{onError: deny}}}}
cache:
  shared:
{shared}
registries:
  - match: "{HARBOR_HOST}"
    scanner:
      harbor:
        url: "{harbor_url}"
        username: "{robot}"
        password: {{file: secrets/harbor-robot}}
        vulnerabilityDetails: false
    registry: {{resolve: false}}
log: {{format: json, level: info}}
ops: {{purge: {{enabled: true, tokenFile: secrets/purge-token}}}}
"#,
        robot = harbor_server::ROBOT,
    )
}

pub fn files(extra: &[(&'static str, String)]) -> Vec<(&'static str, String)> {
    let mut files = vec![
        ("namespaces.yaml", NAMESPACES.to_string()),
        ("secrets/purge-token", format!("{PURGE_TOKEN}\n")),
        (
            "secrets/harbor-robot",
            format!("{}\n", harbor_server::ROBOT_SECRET),
        ),
        ("secrets/hmac", format!("{HMAC_KEY}\n")),
    ];
    files.extend_from_slice(extra);
    files
}

pub fn replicas(n: usize, config: &str, files: &[(&'static str, String)]) -> Vec<Webhook> {
    (0..n).map(|_| Webhook::start(config, files)).collect()
}

pub fn pod(uid: &str, label: &str) -> Value {
    let image = format!(
        "{HARBOR_HOST}/library/app@{}",
        support::webhook::digest(label)
    );
    review(
        uid,
        "Pod",
        "CREATE",
        "shop",
        object_with_pod_spec("Pod", pod_spec(&[("app", &image)])),
        None,
    )
}

/// The decision on a pod of `label`'s image: `Ok(allowed)`, or `Err` with the message
/// of a review that could not be decided (a scanner or lookup error).
pub async fn decide(
    webhook: &Webhook,
    client: &reqwest::Client,
    uid: &str,
    label: &str,
) -> Result<bool, String> {
    decide_at(&webhook.base, client, uid, label).await
}

/// [`decide`] by the replica's address (a `Webhook` stays with the test's task).
pub async fn decide_at(
    base: &str,
    client: &reqwest::Client,
    uid: &str,
    label: &str,
) -> Result<bool, String> {
    let sent = client
        .post(format!("{base}/validate?timeout=10s"))
        .header("Content-Type", "application/json")
        .body(pod(uid, label).to_string())
        .send()
        .await
        .map_err(|e| format!("review not answered: {e}"))?;
    let out: Value = sent.json().await.map_err(|e| format!("response: {e}"))?;
    let response = &out["response"];
    let allowed = response["allowed"].as_bool().unwrap_or(false);
    let message = response["status"]["message"]
        .as_str()
        .unwrap_or("")
        .to_string();
    // A denial for counts names the limit; anything else is a failed lookup.
    if allowed || message.contains("critical") {
        Ok(allowed)
    } else {
        Err(message)
    }
}

/// A sample of `/metrics`, `None` when absent.
pub fn metric(webhook: &Webhook, sample: &str) -> Option<f64> {
    let (_, text) = webhook.ops_get("/metrics");
    text.lines()
        .find_map(|l| l.strip_prefix(sample)?.trim().parse().ok())
}

/// Waits (without blocking the runtime's threads) until `check` holds.
pub async fn eventually(what: &str, within: Duration, mut check: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !check().await {
        assert!(Instant::now() < deadline, "never: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Reviews of ever new digests (so every one goes through the shared tier), spread
/// over the replicas by a few workers, until told to stop: it goes on through a kill,
/// an outage or a failover however slow the machine is.
pub struct Load {
    next: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    workers: Vec<tokio::task::JoinHandle<(usize, Vec<String>)>>,
    labels: usize,
}

impl Load {
    /// `labels` are digests the scanner knows with 0 critical (more than the load uses).
    pub fn start(webhooks: &[Webhook], labels: &[String], workers: usize) -> Load {
        use std::sync::atomic::Ordering::SeqCst;
        let next = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let workers = (0..workers)
            .map(|w| {
                let webhook = &webhooks[w % webhooks.len()];
                let (base, client) = (webhook.base.clone(), webhook.client(true));
                let (next, stop) = (next.clone(), stop.clone());
                let labels = labels.to_vec();
                tokio::spawn(async move {
                    let mut failures = Vec::new();
                    let mut done = 0;
                    while !stop.load(SeqCst) {
                        let i = next.fetch_add(1, SeqCst);
                        let Some(label) = labels.get(i) else { break };
                        if let Err(message) =
                            decide_at(&base, &client, &format!("u{i}"), label).await
                        {
                            failures.push(message);
                        }
                        done += 1;
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                    (done, failures)
                })
            })
            .collect();
        Load {
            next,
            stop,
            workers,
            labels: labels.len(),
        }
    }

    /// Reviews started so far.
    pub fn progress(&self) -> usize {
        self.next.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Waits until `more` reviews were started after this call.
    pub async fn runs_on(&self, what: &str, more: usize) {
        let from = self.progress();
        eventually(what, Duration::from_secs(30), async || {
            self.progress() > from + more
        })
        .await;
    }

    /// Stops the workers; asserts the load did not run out of digests (it ran through
    /// everything the test did meanwhile) and returns the failed reviews' messages.
    pub async fn stop(self) -> Vec<String> {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        let (mut done, mut failures) = (0, Vec::new());
        for worker in self.workers {
            let (n, f) = worker.await.expect("load worker");
            done += n;
            failures.extend(f);
        }
        assert!(done < self.labels, "the load ran out of digests: {done}");
        failures
    }
}

/// Waits until the tier works again on both replicas: a new digest reviewed by
/// `first` is stored in Redis (`stored` counts the keys matching a pattern) and
/// answers `second` without a scanner call. Each try reviews a new digest (one
/// already reviewed is answered by the local cache and would not reach Redis again);
/// each replica reconnects at its own pace.
pub async fn eventually_shared_again(
    harbor: &HarborServer,
    first: &Webhook,
    second: &Webhook,
    stored: impl Fn(&str) -> usize,
) {
    let clients = [first.client(true), second.client(true)];
    let mut tries = 0;
    eventually(
        "the tier back up on both replicas",
        Duration::from_secs(30),
        async || {
            tries += 1;
            let learned = format!("after-{tries}");
            add(harbor, &learned, 0);
            assert_eq!(
                decide(first, &clients[0], &format!("p{tries}"), &learned).await,
                Ok(true)
            );
            let key = format!("vulngate:summary:*:{}", support::webhook::digest(&learned));
            if metric(first, "vulngate_shared_cache_up") != Some(1.0) || stored(&key) != 1 {
                return false;
            }
            let before = scanner_calls(harbor);
            assert_eq!(
                decide(second, &clients[1], &format!("q{tries}"), &learned).await,
                Ok(true)
            );
            scanner_calls(harbor) == before
                && metric(second, "vulngate_shared_cache_up") == Some(1.0)
        },
    )
    .await;
}
