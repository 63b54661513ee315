//! The shared tier on a Redis Sentinel (master, replica, one sentinel) and on a
//! Redis Cluster (three masters), real `redis-server` processes
//! (tests/setup.d/redis.sh) and real `vulngate serve` replicas, all on loopback:
//! failovers are followed without a failed review, one scanner call per digest
//! across replicas whatever the topology, and a purge reaches every master.

mod support;

#[path = "support/harbor_server.rs"]
mod harbor_server;
#[path = "support/redis.rs"]
mod redis;
#[path = "support/shared_cache.rs"]
mod shared;

use std::time::Duration;

use redis::Redis;
use shared::*;

const MASTER_NAME: &str = "vulngate-cache";

fn sentinel_shared(sentinel: &Redis) -> String {
    format!(
        "    redis:\n      sentinel: {{addresses: [\"redis://127.0.0.1:{}\"], masterName: {MASTER_NAME}}}\n      timeout: 250ms\n    hmacKeys: [{{id: k1, secret: {{file: secrets/hmac}}}}]\n",
        sentinel.port
    )
}

/// `nodes`: some of the cluster's nodes; the client finds the others.
fn cluster_shared(nodes: &[&Redis]) -> String {
    let urls: Vec<String> = nodes.iter().map(|n| format!("\"{}\"", n.url())).collect();
    format!(
        "    redis:\n      cluster: [{}]\n      timeout: 250ms\n    hmacKeys: [{{id: k1, secret: {{file: secrets/hmac}}}}]\n",
        urls.join(", ")
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sentinel_found_master_is_shared_and_a_failover_is_followed_without_a_failed_review() {
    let mut master = Redis::start();
    let replica = Redis::start_replica_of(&master);
    let sentinel = Redis::start_sentinel(&master, MASTER_NAME, 1);
    let labels: Vec<String> = (0..3000).map(|i| format!("load-{i}")).collect();
    let mut digests: Vec<(&str, u64)> = labels.iter().map(|l| (l.as_str(), 0)).collect();
    digests.push(("learned", 3));
    let harbor = harbor(&digests, Duration::from_millis(5)).await;
    let webhooks = replicas(
        2,
        &config(&harbor.url(), &sentinel_shared(&sentinel)),
        &files(&[]),
    );

    // Learned by one replica, kept on the master the sentinel names, read by the other.
    let clients = [webhooks[0].client(true), webhooks[1].client(true)];
    assert_eq!(
        decide(&webhooks[0], &clients[0], "a", "learned").await,
        Ok(false)
    );
    assert_eq!(master.keys("vulngate:summary:*").len(), 1);
    assert_eq!(
        decide(&webhooks[1], &clients[1], "b", "learned").await,
        Ok(false)
    );
    assert_eq!(
        scanner_calls(&harbor),
        1,
        "the second replica read it from Redis"
    );
    assert_eq!(
        metric(
            &webhooks[1],
            "vulngate_shared_cache_events_total{event=\"hit\"}"
        ),
        Some(1.0),
        "{}",
        webhooks[1].stderr()
    );

    // The master dies under load; the sentinel promotes the replica.
    let load = Load::start(&webhooks, &labels, 4);
    load.runs_on("load under way", 40).await;
    master.kill();
    shared::eventually(
        "the sentinel promoted the replica",
        Duration::from_secs(30),
        async || sentinel.sentinel_master_port(MASTER_NAME) == replica.port,
    )
    .await;
    load.runs_on("reviews after the failover", 80).await;
    let failures = load.stop().await;
    assert!(failures.is_empty(), "failed reviews: {failures:?}");

    // Without a restart, both replicas use the new master.
    eventually_shared_again(&harbor, &webhooks[0], &webhooks[1], |pattern| {
        replica.keys(pattern).len()
    })
    .await;
    for webhook in &webhooks {
        assert_eq!(webhook.ops_get("/readyz").0, 200);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_of_three_masters_makes_one_scanner_call_per_digest_and_a_purge_empties_every_master()
 {
    let nodes = Redis::start_cluster(3);
    // Enough digests that their keys land on more than one master.
    let labels: Vec<String> = (0..12).map(|i| format!("cold-{i}")).collect();
    let digests: Vec<(&str, u64)> = labels.iter().map(|l| (l.as_str(), 1)).collect();
    // Slow enough that both replicas miss while the first call is under way.
    let harbor = harbor(&digests, Duration::from_millis(400)).await;
    let webhooks = replicas(
        2,
        &config(&harbor.url(), &cluster_shared(&[&nodes[0], &nodes[1]])),
        &files(&[]),
    );
    let targets: Vec<(String, reqwest::Client)> = webhooks
        .iter()
        .map(|w| (w.base.clone(), w.client(true)))
        .collect();

    let reviews = (0..240).map(|i| {
        let (base, client) = targets[i % 2].clone();
        let label = labels[i % labels.len()].clone();
        tokio::spawn(async move { decide_at(&base, &client, &format!("r{i}"), &label).await })
    });
    for decided in futures::future::join_all(reviews).await {
        assert_eq!(decided.unwrap(), Ok(false), "1 critical over a limit of 0");
    }
    assert_eq!(
        scanner_calls(&harbor),
        labels.len(),
        "one call per digest across two replicas"
    );
    let stored: Vec<usize> = nodes
        .iter()
        .map(|n| n.keys("vulngate:summary:*").len())
        .collect();
    assert_eq!(stored.iter().sum::<usize>(), labels.len(), "{stored:?}");
    assert!(
        stored.iter().filter(|n| **n > 0).count() >= 2,
        "entries spread over the masters: {stored:?}"
    );
    for webhook in &webhooks {
        assert_eq!(metric(webhook, "vulngate_shared_cache_up"), Some(1.0));
    }

    // One purge empties every master, not only the node the replica talks to first.
    assert_eq!(
        webhooks[0].ops_post_bearer("/cache/purge", PURGE_TOKEN).0,
        200
    );
    for node in &nodes {
        assert_eq!(node.keys("vulngate:*"), Vec::<String>::new());
    }
    // The other replica, its own cache purged too, asks the scanner again.
    assert_eq!(
        webhooks[1].ops_post_bearer("/cache/purge", PURGE_TOKEN).0,
        200
    );
    let (base, client) = &targets[1];
    assert_eq!(
        decide_at(base, client, "after", &labels[0]).await,
        Ok(false)
    );
    assert_eq!(scanner_calls(&harbor), labels.len() + 1);
}
