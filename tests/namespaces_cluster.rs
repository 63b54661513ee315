//! The watch-backed namespace cache against a fake apiserver, through the real kube client.

mod support;

use std::collections::BTreeMap;
use std::future::Future;
use std::time::Duration;

use support::apiserver::{FakeApiServer, RequestRecord, namespace};
use vulngate::namespaces::NamespaceSource;
use vulngate::namespaces::cluster::ClusterNamespaces;

/// Bounded polling: generous, so a slow machine does not fail a correct cache.
const PATIENCE: Duration = Duration::from_secs(15);

async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        if check().await {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting until {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

async fn annotations(cache: &ClusterNamespaces, name: &str) -> Option<BTreeMap<String, String>> {
    cache
        .annotations(name)
        .await
        .expect("namespace lookup")
        .map(|a| (*a).clone())
}

fn is_namespace_list(r: &RequestRecord) -> bool {
    !r.watch && r.method == "GET" && r.path == "/api/v1/namespaces"
}

fn is_namespace_watch(r: &RequestRecord) -> bool {
    r.watch && r.path == "/api/v1/namespaces"
}

fn count(server: &FakeApiServer, f: fn(&RequestRecord) -> bool) -> usize {
    server.requests().iter().filter(|r| f(r)).count()
}

/// A server holding `shop` (max-high 3), and a cache that has synced from it.
async fn synced() -> (FakeApiServer, ClusterNamespaces) {
    let server = FakeApiServer::start().await;
    server.upsert(namespace(
        "shop",
        &[("vulngate.io/max-high", "3"), ("owner", "team-a")],
    ));
    let cache = ClusterNamespaces::new(server.client());
    eventually("the cache is ready", || async { cache.is_ready() }).await;
    eventually("the namespace watch is open", || async {
        server.open_watches() == 1
    })
    .await;
    (server, cache)
}

#[tokio::test]
async fn ready_only_after_the_initial_list_has_synced() {
    let server = FakeApiServer::start().await;
    server.upsert(namespace("shop", &[("vulngate.io/max-high", "3")]));
    // The apiserver refuses to list until told otherwise.
    server.fail_next_matching(usize::MAX, 500, is_namespace_list);
    let cache = ClusterNamespaces::new(server.client());

    eventually("the cache has tried to list twice", || async {
        count(&server, is_namespace_list) >= 2
    })
    .await;
    assert!(!cache.is_ready(), "ready without ever listing");

    server.clear_failures();
    server.fail_next_matching(1, 429, is_namespace_list);
    eventually("the cache is ready", || async { cache.is_ready() }).await;
    assert_eq!(
        annotations(&cache, "shop").await,
        Some(map(&[("vulngate.io/max-high", "3")]))
    );
    assert_eq!(
        server.request_count("/api/v1/namespaces/shop"),
        0,
        "a synced namespace is answered from the cache"
    );
}

#[tokio::test]
async fn keeps_only_vulngate_annotations() {
    let (server, cache) = synced().await;
    assert_eq!(
        annotations(&cache, "shop").await,
        Some(map(&[("vulngate.io/max-high", "3")]))
    );
    assert_eq!(server.request_count("/api/v1/namespaces/shop"), 0);
}

#[tokio::test]
async fn a_namespace_created_later_arrives_through_the_watch() {
    let (server, cache) = synced().await;
    server.upsert(namespace("late", &[("vulngate.io/mode", "warn")]));
    eventually("the watch delivers the new namespace", || async {
        cache.len() == 2
    })
    .await;
    assert_eq!(
        annotations(&cache, "late").await,
        Some(map(&[("vulngate.io/mode", "warn")]))
    );
    assert_eq!(server.request_count("/api/v1/namespaces/late"), 0);
}

#[tokio::test]
async fn a_namespace_the_watch_has_not_delivered_is_fetched_directly() {
    let (server, cache) = synced().await;
    server.pause_watches();
    server.upsert(namespace("fresh", &[("vulngate.io/max-critical", "0")]));

    assert_eq!(
        annotations(&cache, "fresh").await,
        Some(map(&[("vulngate.io/max-critical", "0")]))
    );
    assert_eq!(server.request_count("/api/v1/namespaces/fresh"), 1);
    assert_eq!(cache.len(), 1, "the watch was held back");

    // A failing direct fetch is an error, not "no such namespace".
    server.upsert(namespace("flaky", &[]));
    server.fail_next_matching(1, 500, |r| r.path == "/api/v1/namespaces/flaky");
    assert!(cache.annotations("flaky").await.is_err());

    // An apiserver that does not answer makes a lookup error too, not a hung review.
    server.upsert(namespace("silent", &[]));
    server.fail_next_matching(1, 0, |r| r.path == "/api/v1/namespaces/silent");
    let lookup = tokio::time::timeout(PATIENCE, cache.annotations("silent")).await;
    assert!(
        matches!(lookup, Ok(Err(_))),
        "an unanswered fetch gives up with an error"
    );

    server.resume_watches();
    eventually("the watch catches up", || async { cache.len() == 4 }).await;
}

#[tokio::test]
async fn a_namespace_that_does_not_exist_is_none() {
    let (server, cache) = synced().await;
    assert_eq!(annotations(&cache, "nowhere").await, None);
    assert_eq!(server.request_count("/api/v1/namespaces/nowhere"), 1);
    // Not a namespace name at all: answered without asking the apiserver.
    assert_eq!(annotations(&cache, "../secrets").await, None);
    assert_eq!(annotations(&cache, "").await, None);
    assert!(
        server
            .requests()
            .iter()
            .all(|r| !r.path.contains("secrets") && r.path != "/api/v1/namespaces/")
    );
}

#[tokio::test]
async fn annotation_changes_are_applied() {
    let (server, cache) = synced().await;
    server.annotate(
        "v1",
        "namespaces",
        None,
        "shop",
        "vulngate.io/max-high",
        Some("5"),
    );
    server.annotate(
        "v1",
        "namespaces",
        None,
        "shop",
        "vulngate.io/mode",
        Some("warn"),
    );
    eventually("the new annotations are seen", || async {
        annotations(&cache, "shop").await
            == Some(map(&[
                ("vulngate.io/max-high", "5"),
                ("vulngate.io/mode", "warn"),
            ]))
    })
    .await;
    server.annotate(
        "v1",
        "namespaces",
        None,
        "shop",
        "vulngate.io/max-high",
        None,
    );
    eventually("the removed annotation is gone", || async {
        annotations(&cache, "shop").await == Some(map(&[("vulngate.io/mode", "warn")]))
    })
    .await;
}

#[tokio::test]
async fn a_dropped_watch_keeps_serving_from_the_cache_and_resumes() {
    let (server, cache) = synced().await;
    let watches_before = count(&server, is_namespace_watch);
    // Connections drop and the apiserver refuses new watches until told otherwise.
    server.fail_next_matching(usize::MAX, 500, is_namespace_watch);
    server.drop_watches();
    eventually("the cache has tried to watch again", || async {
        count(&server, is_namespace_watch) > watches_before && server.open_watches() == 0
    })
    .await;

    server.annotate(
        "v1",
        "namespaces",
        None,
        "shop",
        "vulngate.io/max-high",
        Some("9"),
    );
    assert!(
        cache.is_ready(),
        "a synced cache stays ready while the watch is down"
    );
    assert_eq!(
        annotations(&cache, "shop").await,
        Some(map(&[("vulngate.io/max-high", "3")])),
        "served from the cache, as last synced"
    );
    assert_eq!(server.request_count("/api/v1/namespaces/shop"), 0);

    let lists_before = count(&server, is_namespace_list);
    server.clear_failures();
    eventually("the change made while disconnected is seen", || async {
        annotations(&cache, "shop").await == Some(map(&[("vulngate.io/max-high", "9")]))
    })
    .await;
    assert_eq!(
        count(&server, is_namespace_list),
        lists_before,
        "resumed from the last resourceVersion, no re-list needed"
    );
    server.upsert(namespace("after", &[("vulngate.io/mode", "off")]));
    eventually("later changes are seen", || async { cache.len() == 2 }).await;
    assert!(cache.is_ready());
}

#[tokio::test]
async fn gone_forces_a_relist() {
    gone_forces_a_relist_when(false).await;
}

#[tokio::test]
async fn gone_as_an_http_status_also_forces_a_relist() {
    gone_forces_a_relist_when(true).await;
}

/// The cache misses events while disconnected, and the apiserver has forgotten them: it
/// answers the resumed watch with 410 Gone, as a watch event or (`http_410`) an HTTP status.
async fn gone_forces_a_relist_when(http_410: bool) {
    let (server, cache) = synced().await;
    server.expire_watches_with_http_410(http_410);
    server.upsert(namespace("old", &[("vulngate.io/mode", "warn")]));
    eventually("old is cached", || async { cache.len() == 2 }).await;

    let watches_before = count(&server, is_namespace_watch);
    server.fail_next_matching(usize::MAX, 500, is_namespace_watch);
    server.drop_watches();
    eventually("the cache has tried to watch again", || async {
        count(&server, is_namespace_watch) > watches_before
    })
    .await;
    server.delete("v1", "namespaces", None, "old");
    server.upsert(namespace("new", &[("vulngate.io/mode", "off")]));
    // The events the cache missed are forgotten: resuming is impossible.
    server.compact();
    let lists_before = count(&server, is_namespace_list);
    server.clear_failures();

    eventually("the re-listed state replaces the cache", || async {
        cache.len() == 2 && annotations(&cache, "old").await.is_none()
    })
    .await;
    assert!(
        count(&server, is_namespace_list) > lists_before,
        "410 Gone led to a re-list"
    );
    assert_eq!(
        annotations(&cache, "new").await,
        Some(map(&[("vulngate.io/mode", "off")]))
    );
    assert_eq!(server.request_count("/api/v1/namespaces/new"), 0);
    assert!(cache.is_ready());
}

#[tokio::test]
async fn a_namespace_deleted_and_recreated_shows_its_new_annotations() {
    let (server, cache) = synced().await;
    server.delete("v1", "namespaces", None, "shop");
    server.upsert(namespace("shop", &[("vulngate.io/max-high", "7")]));
    eventually("the recreated namespace's annotations apply", || async {
        annotations(&cache, "shop").await == Some(map(&[("vulngate.io/max-high", "7")]))
    })
    .await;

    // Again while the watch is down: the missed DELETED and ADDED replay on resume.
    let watches_before = count(&server, is_namespace_watch);
    server.fail_next_matching(usize::MAX, 500, is_namespace_watch);
    server.drop_watches();
    eventually("the cache has tried to watch again", || async {
        count(&server, is_namespace_watch) > watches_before
    })
    .await;
    server.delete("v1", "namespaces", None, "shop");
    server.upsert(namespace("shop", &[("vulngate.io/max-medium", "1")]));
    server.clear_failures();
    eventually("the second incarnation's annotations apply", || async {
        annotations(&cache, "shop").await == Some(map(&[("vulngate.io/max-medium", "1")]))
    })
    .await;
}
