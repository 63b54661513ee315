//! Cache freshness through the real binary: a `file` scanner whose report changes in
//! place (as a ConfigMap volume does) is read again, the cached summary is checked
//! against it within `cache.ttl` and replaced by the newer scan; a broken file keeps
//! the previous summaries deciding; `POST /cache/purge` drops a digest. A summaries
//! file of 100,000 digests loads within the chart's default memory limit.

mod support;

use std::time::{Duration, Instant};

use serde_json::Value;
use support::webhook::{Webhook, digest, object_with_pod_spec, pod_spec, review};

const PURGE_TOKEN: &str = "freshness-purge-token";

fn config() -> String {
    r#"listen: 127.0.0.1:0
opsListen: 127.0.0.1:0
tls: {generateDir: tls}
deadline: 5s
namespacesFile: namespaces.yaml
cache: {ttl: 300ms}
ops: {purge: {enabled: true, tokenFile: purge-token}}
registries:
  - match: "*"
    scanner: {file: {path: scans, reloadInterval: 100ms}}
    registry: {resolve: false}
log: {format: json, level: info}
"#
    .to_string()
}

fn summaries(high: u64) -> String {
    format!(
        "summaries:\n  - {{digest: \"{}\", high: {high}}}\n",
        digest("app")
    )
}

/// Replaces a file the way the kubelet updates a volume: write aside, rename over.
fn replace(webhook: &Webhook, name: &str, content: &str) {
    let path = webhook.dir.path().join(name);
    let aside = path.with_extension("tmp");
    std::fs::write(&aside, content).expect("write");
    std::fs::rename(&aside, &path).expect("rename");
}

async fn decide(webhook: &Webhook, client: &reqwest::Client, uid: &str) -> Value {
    let image = format!("registry.example.com/shop/app@{}", digest("app"));
    let object = object_with_pod_spec("Pod", pod_spec(&[("app", &image)]));
    webhook
        .review(client, &review(uid, "Pod", "CREATE", "prod", object, None))
        .await
}

/// Reviews until one is decided `allowed`, or gives up after 20 s.
async fn until_allowed_is(webhook: &Webhook, client: &reqwest::Client, allowed: bool) -> Value {
    let started = Instant::now();
    let mut n = 0;
    loop {
        n += 1;
        let r = decide(webhook, client, &format!("poll-{n}")).await;
        if r["allowed"] == allowed || started.elapsed() > Duration::from_secs(20) {
            return r;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_newer_scan_in_a_changed_report_replaces_the_cached_summary() {
    let webhook = Webhook::start(
        &config(),
        &[
            ("scans/summaries.yaml", summaries(0)),
            (
                "namespaces.yaml",
                "kind: Namespace\nmetadata: {name: prod, annotations: {vulngate.io/max-high: \"0\"}}\n"
                    .to_string(),
            ),
            ("purge-token", format!("{PURGE_TOKEN}\n")),
        ],
    );
    let client = webhook.client(false);
    let first = decide(&webhook, &client, "first").await;
    assert_eq!(first["allowed"], true, "{first}");

    // A rescan found three highs: the change reaches the decision without a restart.
    replace(&webhook, "scans/summaries.yaml", &summaries(3));
    let r = until_allowed_is(&webhook, &client, false).await;
    assert_eq!(r["allowed"], false, "the newer scan was never used: {r}");
    let message = r["status"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("high"), "{message}");
    let (_, metrics) = webhook.ops_get("/metrics");
    assert!(
        metrics.contains("vulngate_summary_cache_refreshes_total{result=\"changed\"}"),
        "{metrics}"
    );
    assert!(webhook.stderr().contains("summaries reloaded"));

    // A report that no longer parses: the last good summaries keep deciding.
    replace(&webhook, "scans/summaries.yaml", "summaries: [{digest: 12");
    let started = Instant::now();
    while !webhook.stderr().contains("could not be read") {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the broken report was never reported: {}",
            webhook.stderr()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(400)).await;
    let r = decide(&webhook, &client, "after-broken").await;
    assert_eq!(r["allowed"], false, "{r}");
    assert!(
        r["status"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("high")
    );

    // Fixed again, and purged by the operator: the next review asks the scanner at once.
    replace(&webhook, "scans/summaries.yaml", &summaries(0));
    let purge = |d: &str| webhook.ops_post_bearer(&format!("/cache/purge?digest={d}"), PURGE_TOKEN);
    let (status, body) = purge(&digest("other"));
    assert_eq!((status, body.trim()), (200, "purged 0 entries"));
    let r = until_allowed_is(&webhook, &client, true).await;
    assert_eq!(r["allowed"], true, "{r}");
    let (status, body) = purge(&digest("app"));
    assert_eq!((status, body.trim()), (200, "purged 1 entries"));
}

/// The chart's default memory limit of the webhook container.
const CHART_MEMORY_LIMIT_KIB: i64 = 256 * 1024;

#[test]
fn a_summaries_file_of_100000_digests_loads_within_the_charts_memory_limit() {
    let dir = tempfile::tempdir().expect("tmp");
    std::fs::create_dir(dir.path().join("scans")).expect("mkdir");
    // The benchmark's file: one flow mapping per digest.
    let mut text = String::from("summaries:\n");
    for i in 0..100_000 {
        let name = format!("registry.example.com/mem/img-{i}");
        text.push_str(&format!(
            "  - {{digest: \"{}\", image: \"{name}:1\", status: complete, critical: 0, high: 1, medium: 3, low: 7, unknown: 0}}\n",
            digest(&name)
        ));
    }
    std::fs::write(dir.path().join("scans/summaries.yaml"), text).expect("write");
    std::fs::write(
        dir.path().join("namespaces.yaml"),
        "kind: Namespace\nmetadata: {name: prod}\n",
    )
    .expect("write");
    std::fs::write(
        dir.path().join("config.yaml"),
        "namespacesFile: namespaces.yaml\nregistries:\n  - match: \"*\"\n    scanner: {file: {path: scans}}\n    registry: {resolve: false}\n",
    )
    .expect("write");
    let last = "registry.example.com/mem/img-99999";
    // Reaped by wait4 below, which also gives its peak RSS.
    #[allow(clippy::zombie_processes)]
    let child = std::process::Command::new(support::webhook::BIN)
        .current_dir(dir.path())
        .args(["check", "--config", "config.yaml", "-n", "prod"])
        .arg(format!("{last}:1"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn vulngate");
    // The child's own peak RSS, from the kernel when it is reaped.
    let mut status = 0;
    // SAFETY: an all-zero rusage is a valid value for wait4 to fill in.
    #[allow(unsafe_code, reason = "zeroed rusage, see SAFETY")]
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: waits for our own child, with pointers to live locals.
    #[allow(unsafe_code, reason = "libc wait4, see SAFETY")]
    let pid = unsafe { libc::wait4(child.id() as i32, &mut status, 0, &mut usage) };
    assert_eq!(pid, child.id() as i32, "wait4 failed");
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 1,
        "the image of the last entry is found (by its tag) and denied (high 1 > 0): status {status}"
    );
    assert!(
        usage.ru_maxrss < CHART_MEMORY_LIMIT_KIB,
        "loading the file peaked at {} KiB, over the chart's 256 MiB limit",
        usage.ru_maxrss
    );
}
