//! Deadlines and faults of the webhook's dependencies (scanner, registry, namespace
//! source), served by the real server code in-process with parts that misbehave.
//! Every review is answered, before the apiserver gives up, by the onError rule.

#[path = "support/in_process.rs"]
mod in_process;
#[path = "support/reliability.rs"]
mod support;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use in_process::*;
use support::*;

const FOREVER: Duration = Duration::from_secs(3600);

fn review(uid: &str, images: &[String]) -> Vec<u8> {
    let refs: Vec<&str> = images.iter().map(String::as_str).collect();
    pod_review(uid, "default", &refs)
}

fn policy(deadline: &str, on_error: &str) -> String {
    format!(
        "deadline: {deadline}\npolicy:\n  defaults: {{mode: enforce, limits: {{critical: 0, high: 0}}, unscanned: deny, onError: {on_error}}}\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn apiserver_timeout_shortens_the_configured_deadline() {
    let scanner = Arc::new(SlowScanner::new(FOREVER, vec![digest(1)]));
    let server = start(&policy("120s", "deny"), Parts::with_scanner(scanner)).await;
    let started = Instant::now();
    let resp = server
        .client
        .post(
            "/validate?timeout=10s",
            Some("application/json"),
            &review("u-deadline", &[image(1)]),
        )
        .await
        .unwrap();
    let elapsed = started.elapsed();
    assert_eq!(resp.status, 200);
    let v = resp.json();
    assert_eq!(v["response"]["uid"], "u-deadline");
    assert_eq!(v["response"]["allowed"], false);
    let message = v["response"]["status"]["message"].as_str().unwrap();
    assert!(message.contains("within the review deadline"), "{message}");
    assert!(message.contains("onError: deny"), "{message}");
    // The apiserver waits 10s; the configured deadline is 120s.
    assert!(
        elapsed < Duration::from_secs(10),
        "answered after {elapsed:?}"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn configured_deadline_bounds_a_slow_scanner_and_on_error_allow_warns() {
    let scanner = Arc::new(SlowScanner::new(FOREVER, vec![digest(1)]));
    let server = start(&policy("2s", "allow"), Parts::with_scanner(scanner)).await;
    for query in ["", "?timeout=bogus", "?timeout=30s"] {
        let resp = server
            .client
            .post(
                &format!("/validate{query}"),
                Some("application/json"),
                &review("u-allow", &[image(1), image(2)]),
            )
            .await
            .unwrap();
        let v = resp.json();
        assert_eq!(v["response"]["allowed"], true, "{v}");
        let warnings = v["response"]["warnings"].as_array().unwrap();
        assert_eq!(warnings.len(), 1, "only the slow image warns: {v}");
        assert!(warnings[0].as_str().unwrap().contains("onError: allow"));
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_slow_image_does_not_hold_up_other_reviews() {
    let scanner = Arc::new(SlowScanner::new(FOREVER, vec![digest(1)]));
    let server = start(&policy("60s", "deny"), Parts::with_scanner(scanner)).await;
    let client = server.client.clone();
    let slow = tokio::spawn(async move {
        client
            .post(
                "/validate?timeout=40s",
                Some("application/json"),
                &review("u-slow", &[image(1)]),
            )
            .await
    });
    for i in 0..5 {
        let resp = server
            .client
            .review(&review(&format!("u-fast-{i}"), &[image(2)]))
            .await;
        assert_eq!(resp.json()["response"]["allowed"], true);
    }
    assert!(
        !slow.is_finished(),
        "the slow review is still waiting on its scanner"
    );
    let resp = slow.await.unwrap().unwrap();
    assert_eq!(resp.json()["response"]["allowed"], false);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn scanner_errors_follow_on_error_and_are_remembered_for_failure_ttl() {
    let scanner = Arc::new(FailingScanner::default());
    let config = format!("{}cache: {{failureTtl: 1s}}\n", policy("5s", "deny"));
    let server = start(&config, Parts::with_scanner(scanner.clone())).await;
    let images = [image(3), image(4), image(5)];
    let deny = async |uid: String| {
        let v = server.client.review(&review(&uid, &images)).await.json();
        assert_eq!(v["response"]["allowed"], false);
        let message = v["response"]["status"]["message"].as_str().unwrap();
        assert!(message.contains("test unavailable: HTTP 503"), "{message}");
        assert!(message.contains("onError: deny"), "{message}");
    };
    for i in 0..3 {
        deny(format!("u-err-{i}")).await;
    }
    assert_eq!(
        scanner.calls.load(Ordering::SeqCst),
        3,
        "one call per failing image; the repeats within failureTtl call nothing"
    );
    tokio::time::sleep(Duration::from_millis(1200)).await;
    deny("u-err-after".into()).await;
    assert_eq!(
        scanner.calls.load(Ordering::SeqCst),
        6,
        "after failureTtl each image is asked again"
    );
    server.stop().await;

    let server = start(
        &policy("5s", "allow"),
        Parts::with_scanner(Arc::new(FailingScanner::default())),
    )
    .await;
    let v = server
        .client
        .review(&review("u-err-allow", &[image(3)]))
        .await
        .json();
    assert_eq!(v["response"]["allowed"], true);
    assert!(
        v["response"]["warnings"][0]
            .as_str()
            .unwrap()
            .contains("onError: allow")
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn registry_down_or_hanging_follows_on_error() {
    for (hang, on_error) in [
        (false, "deny"),
        (true, "deny"),
        (false, "allow"),
        (true, "allow"),
    ] {
        let mut parts = Parts::with_scanner(Arc::new(SlowScanner::new(FOREVER, vec![])));
        parts.resolver = Some(Arc::new(BrokenRegistry { hang }));
        let server = start(&policy("30s", on_error), parts).await;
        let resp = server
            .client
            .post(
                "/validate?timeout=3s",
                Some("application/json"),
                &pod_review("u-reg", "default", &["registry.example.com/app:1"]),
            )
            .await
            .unwrap();
        let v = resp.json();
        assert_eq!(
            v["response"]["allowed"],
            on_error == "allow",
            "hang {hang}: {v}"
        );
        let text = v.to_string();
        let expected = if hang {
            "within the review deadline"
        } else {
            "connection refused"
        };
        assert!(text.contains(expected), "hang {hang}: {text}");
        server.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn namespace_source_down_or_hanging_follows_on_error() {
    for (delay, on_error) in [
        (None, "deny"),
        (None, "allow"),
        (Some(FOREVER), "deny"),
        (Some(FOREVER), "allow"),
    ] {
        let parts = Parts {
            namespaces: Arc::new(BrokenNamespaces { delay }),
            ..Parts::with_scanner(Arc::new(SlowScanner::new(FOREVER, vec![])))
        };
        let server = start(&policy("60s", on_error), parts).await;
        let resp = server
            .client
            .post(
                "/validate?timeout=3s",
                Some("application/json"),
                &review("u-ns", &[image(4)]),
            )
            .await
            .unwrap();
        let v = resp.json();
        assert_eq!(v["response"]["uid"], "u-ns");
        assert_eq!(
            v["response"]["allowed"],
            on_error == "allow",
            "{delay:?}: {v}"
        );
        let text = v.to_string();
        assert!(text.contains("could not judge"), "{text}");
        server.stop().await;
    }
}

/// Finding 6 of issue 28: one review naming 1,000 distinct digests made hundreds of
/// scanner calls. Above `review.maxImages` nothing is asked.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_review_naming_more_distinct_images_than_the_cap_calls_no_scanner() {
    let scanner = Arc::new(FailingScanner::default());
    let server = start(&policy("5s", "deny"), Parts::with_scanner(scanner.clone())).await;
    let images: Vec<String> = (0..1000u32)
        .map(|i| {
            let digest = format!("sha256:{}{}", hex::encode(i.to_be_bytes()), "0".repeat(56));
            format!("registry.example.com/app@{digest}")
        })
        .collect();
    let v = server
        .client
        .review(&review("u-many", &images))
        .await
        .json();
    assert_eq!(v["response"]["allowed"], false, "{v}");
    let message = v["response"]["status"]["message"].as_str().unwrap();
    assert!(
        message.contains("it names 1000 distinct images, more than the 100 that one review may judge (review.maxImages)"),
        "{message}"
    );
    assert_eq!(scanner.calls.load(Ordering::SeqCst), 0);
    server.stop().await;
}
