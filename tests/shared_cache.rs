//! The shared tier with a real `redis-server` (tests/setup.d/redis.sh) and the real
//! `vulngate serve` processes as replicas, all on loopback: one scanner call per
//! digest across replicas, signed entries, Redis outages, TLS with an ACL user.

mod support;

#[path = "support/harbor_server.rs"]
mod harbor_server;
#[path = "support/redis.rs"]
mod redis;
#[path = "support/shared_cache.rs"]
mod shared;

use std::time::Duration;

use support::webhook::{Webhook, object_with_pod_spec, pod_spec, review};

use redis::Redis;
use shared::*;

fn plain_shared(redis: &Redis) -> String {
    format!(
        "    redis: {{url: \"{}\", timeout: 250ms}}\n    hmacKeys: [{{id: k1, secret: {{file: secrets/hmac}}}}]\n",
        redis.url()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_make_one_scanner_call_for_a_thousand_concurrent_reviews() {
    let redis = Redis::start();
    // Slow enough that every replica misses while the first call is under way.
    let harbor = harbor(&[("cold", 2)], Duration::from_millis(400)).await;
    let webhooks = replicas(
        3,
        &config(&harbor.url(), &plain_shared(&redis)),
        &files(&[]),
    );
    let bases: Vec<String> = webhooks.iter().map(|w| w.base.clone()).collect();
    let clients: Vec<reqwest::Client> = webhooks.iter().map(|w| w.client(true)).collect();

    let reviews = (0..1000).map(|i| {
        let (base, client) = (bases[i % 3].clone(), clients[i % 3].clone());
        tokio::spawn(async move { decide_at(&base, &client, &format!("r{i}"), "cold").await })
    });
    for decided in futures::future::join_all(reviews).await {
        assert_eq!(decided.unwrap(), Ok(false), "2 critical over a limit of 0");
    }
    assert_eq!(scanner_calls(&harbor), 1, "one call across three replicas");
    let calls: f64 = webhooks
        .iter()
        .map(|w| {
            metric(
                w,
                "vulngate_scanner_calls_total{scanner=\"harbor\",outcome=\"ok\"}",
            )
            .unwrap_or(0.0)
        })
        .sum();
    assert_eq!(calls, 1.0);
    let waited: f64 = webhooks
        .iter()
        .map(|w| {
            metric(w, "vulngate_shared_cache_events_total{event=\"lock_wait\"}").unwrap_or(0.0)
        })
        .sum();
    assert_eq!(
        waited, 2.0,
        "the two other replicas waited for the lock holder"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_summary_learned_by_one_replica_answers_the_others_and_a_purge_reaches_redis() {
    let redis = Redis::start();
    let harbor = harbor(&[("learned", 0), ("other", 0)], Duration::ZERO).await;
    let webhooks = replicas(
        3,
        &config(&harbor.url(), &plain_shared(&redis)),
        &files(&[]),
    );
    let client = webhooks[0].client(true);
    assert_eq!(
        decide(&webhooks[0], &client, "a", "learned").await,
        Ok(true)
    );
    assert_eq!(scanner_calls(&harbor), 1);
    for (i, webhook) in webhooks.iter().enumerate().skip(1) {
        let client = webhook.client(true);
        assert_eq!(
            decide(webhook, &client, &format!("b{i}"), "learned").await,
            Ok(true)
        );
        assert_eq!(
            metric(webhook, "vulngate_shared_cache_events_total{event=\"hit\"}"),
            Some(1.0),
            "{}",
            webhook.stderr()
        );
        assert_eq!(metric(webhook, "vulngate_shared_cache_up"), Some(1.0));
    }
    assert_eq!(scanner_calls(&harbor), 1, "the others read it from Redis");
    assert_eq!(redis.keys("vulngate:summary:*").len(), 1);

    // A purge on one replica empties Redis too: the next replica asks the scanner.
    assert_eq!(
        webhooks[0].ops_post_bearer("/cache/purge", PURGE_TOKEN).0,
        200
    );
    assert!(redis.keys("vulngate:summary:*").is_empty());
    let (fresh, client) = (&webhooks[1], webhooks[1].client(true));
    assert_eq!(fresh.ops_post_bearer("/cache/purge", PURGE_TOKEN).0, 200);
    assert_eq!(decide(fresh, &client, "c", "learned").await, Ok(true));
    assert_eq!(scanner_calls(&harbor), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_entry_is_ignored_counted_and_logged_without_the_key() {
    let redis = Redis::start();
    let harbor = harbor(&[("bad", 5)], Duration::ZERO).await;
    let webhooks = replicas(
        2,
        &config(&harbor.url(), &plain_shared(&redis)),
        &files(&[]),
    );
    let client = webhooks[0].client(true);
    assert_eq!(decide(&webhooks[0], &client, "a", "bad").await, Ok(false));
    let keys = redis.keys("vulngate:summary:*");
    assert_eq!(keys.len(), 1);
    // Whoever can write to Redis turns "5 critical" into "0", keeping the MAC.
    let genuine = redis.cli_text(&["GET", &keys[0]]);
    assert!(genuine.contains("\"critical\":5"), "{genuine}");
    let forged = genuine.replace("\"critical\":5", "\"critical\":0");
    assert_eq!(redis.cli_text(&["SET", &keys[0], &forged]), "OK");

    let other = &webhooks[1];
    let client = other.client(true);
    assert_eq!(
        decide(other, &client, "b", "bad").await,
        Ok(false),
        "still denied"
    );
    assert_eq!(scanner_calls(&harbor), 2, "the forged entry was not used");
    // Counted (once per read: before and after taking the lock).
    assert!(
        metric(
            other,
            "vulngate_shared_cache_rejected_entries_total{reason=\"bad_signature\"}"
        )
        .is_some_and(|n| n >= 1.0)
    );
    let logs = other.stderr();
    assert!(logs.contains("failed its integrity check"), "{logs}");
    assert!(!logs.contains(HMAC_KEY));

    // An entry in no format at all: rejected as malformed, the replica's own answer
    // replaced it in Redis.
    let restored = redis.cli_text(&["GET", &keys[0]]);
    assert!(restored.contains("\"critical\":5"), "{restored}");
    assert_eq!(redis.cli_text(&["SET", &keys[0], "{\"critical\":0}"]), "OK");
    let third = Webhook::start(&config(&harbor.url(), &plain_shared(&redis)), &files(&[]));
    let client = third.client(true);
    assert_eq!(decide(&third, &client, "c", "bad").await, Ok(false));
    assert!(
        metric(
            &third,
            "vulngate_shared_cache_rejected_entries_total{reason=\"malformed\"}"
        )
        .is_some_and(|n| n >= 1.0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_killed_during_load_fails_no_review_and_the_tier_recovers() {
    let mut redis = Redis::start();
    // More digests than the load uses: it runs until told to stop, so it goes on
    // through the kill, the outage and the restart however slow the machine is.
    let labels: Vec<String> = (0..3000).map(|i| format!("load-{i}")).collect();
    let digests: Vec<(&str, u64)> = labels.iter().map(|l| (l.as_str(), 0)).collect();
    let harbor = harbor(&digests, Duration::from_millis(5)).await;
    let webhooks = replicas(
        2,
        &config(&harbor.url(), &plain_shared(&redis)),
        &files(&[]),
    );
    let load = Load::start(&webhooks, &labels, 4);
    load.runs_on("load under way", 40).await;
    redis.kill();
    load.runs_on("reviews while Redis is down", 80).await;
    // Each replica's gauge goes down with its next lookup after a failure; a reply
    // already on its way when Redis died may land after the first failure (and Redis
    // is left alone for a second after each), so the gauge is polled, not read once.
    for webhook in webhooks.iter() {
        eventually(
            "the gauge down while Redis is down",
            Duration::from_secs(30),
            async || metric(webhook, "vulngate_shared_cache_up") == Some(0.0),
        )
        .await;
        assert_eq!(
            webhook.ops_get("/readyz").0,
            200,
            "readiness does not depend on Redis"
        );
    }
    redis.start_again();
    // The load goes on after the restart, while the replicas reconnect.
    load.runs_on("reviews after the restart", 80).await;
    let failures = load.stop().await;
    assert!(failures.is_empty(), "failed reviews: {failures:?}");

    // Back: the gauges say so, and a summary learned by one replica answers the
    // other without a scanner call.
    eventually_shared_again(&harbor, &webhooks[0], &webhooks[1], |pattern| {
        redis.keys(pattern).len()
    })
    .await;
    assert!(
        metric(
            &webhooks[0],
            "vulngate_shared_cache_events_total{event=\"error\"}"
        )
        .unwrap_or(0.0)
            >= 1.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_with_an_acl_user_and_password_and_a_wrong_password_only_loses_the_tier() {
    const USER: &str = "vulngate";
    const PASSWORD: &str = "redis-password-Q7w9-secret";
    let (redis, tls) = Redis::start_tls_acl(USER, PASSWORD);
    let harbor = harbor(&[("tls", 0)], Duration::ZERO).await;
    let shared = |password_file: &str| {
        format!(
            "    redis:\n      url: \"rediss://localhost:{}/0\"\n      caFile: secrets/redis-ca.crt\n      username: {{file: secrets/redis-user}}\n      password: {{file: {password_file}}}\n      timeout: 500ms\n    hmacKeys: [{{id: k1, secret: {{file: secrets/hmac}}}}]\n",
            redis.port
        )
    };
    let files = files(&[
        ("secrets/redis-ca.crt", tls.ca_pem.clone()),
        ("secrets/redis-user", format!("{USER}\n")),
        ("secrets/redis-password", format!("{PASSWORD}\n")),
        ("secrets/wrong-password", "not-the-password\n".to_string()),
    ]);
    let good = replicas(
        2,
        &config(&harbor.url(), &shared("secrets/redis-password")),
        &files,
    );
    let client = good[0].client(true);
    assert_eq!(decide(&good[0], &client, "a", "tls").await, Ok(true));
    let client = good[1].client(true);
    assert_eq!(decide(&good[1], &client, "b", "tls").await, Ok(true));
    assert_eq!(
        scanner_calls(&harbor),
        1,
        "the second replica read it over TLS"
    );
    assert_eq!(metric(&good[1], "vulngate_shared_cache_up"), Some(1.0));
    assert_eq!(redis.keys("vulngate:summary:*").len(), 1);

    // A wrong password: reviews go on with the scanner, the gauge says why.
    let wrong = Webhook::start(
        &config(&harbor.url(), &shared("secrets/wrong-password")),
        &files,
    );
    let client = wrong.client(true);
    assert_eq!(decide(&wrong, &client, "c", "tls").await, Ok(true));
    assert_eq!(scanner_calls(&harbor), 2);
    assert_eq!(metric(&wrong, "vulngate_shared_cache_up"), Some(0.0));
    let logs = wrong.stderr();
    assert!(logs.contains("shared cache unreachable"), "{logs}");
    for secret in ["not-the-password", PASSWORD, HMAC_KEY] {
        assert!(!logs.contains(secret), "a secret in the logs: {logs}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tag_resolved_by_one_replica_resolves_it_for_another_while_the_registry_is_down() {
    use support::registry::{Registry, RegistryAuth};
    let redis = Redis::start();
    let mut registry = Registry::start(RegistryAuth::None).await;
    let host = registry.host();
    let digest = registry.push_image("shop/app", "1", "amd64").await;
    let config = format!(
        r#"listen: 127.0.0.1:0
opsListen: 127.0.0.1:0
tls: {{generateDir: tls}}
deadline: 5s
namespacesFile: namespaces.yaml
cache:
  shared:
{shared}
registries:
  - match: "127.0.0.1:*"
    scanner: {{file: {{path: scans}}}}
    registry: {{plainHttp: true, timeout: 2s}}
log: {{format: json, level: info}}
"#,
        shared = plain_shared(&redis)
    );
    let files = files(&[(
        "scans/summaries.yaml",
        format!("summaries:\n  - {{digest: \"{digest}\", high: 0, critical: 0}}\n"),
    )]);
    let webhooks = replicas(2, &config, &files);
    let image = format!("{host}/shop/app:1");
    let tagged = review(
        "t",
        "Pod",
        "CREATE",
        "shop",
        object_with_pod_spec("Pod", pod_spec(&[("app", &image)])),
        None,
    );
    let client = webhooks[0].client(true);
    let first = webhooks[0].review(&client, &tagged).await;
    assert_eq!(first["allowed"], true, "{first}");
    assert_eq!(redis.keys("vulngate:tag:*").len(), 1);

    // The registry gone, the other replica still knows the tag's digest.
    registry.stop();
    let client = webhooks[1].client(true);
    let second = webhooks[1].review(&client, &tagged).await;
    assert_eq!(second["allowed"], true, "{second}");
}
