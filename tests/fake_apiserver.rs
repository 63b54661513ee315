//! The fake apiserver speaks the wire protocol the real one does; these tests keep it honest
//! with plain HTTP, as any client would see it.

mod support;

use std::time::Duration;

use serde_json::{Value, json};
use support::apiserver::{FakeApiServer, namespace};

const PATIENCE: Duration = Duration::from_secs(10);

fn http() -> reqwest::Client {
    vulngate::crypto::http_client().build().unwrap()
}

async fn get(server: &FakeApiServer, path_and_query: &str) -> (u16, Value) {
    let response = http()
        .get(format!("{}{path_and_query}", server.url()))
        .send()
        .await
        .expect("request");
    let code = response.status().as_u16();
    (code, response.json().await.expect("JSON body"))
}

async fn send(
    server: &FakeApiServer,
    method: reqwest::Method,
    path: &str,
    content_type: &str,
    body: Value,
) -> (u16, Value) {
    let response = http()
        .request(method, format!("{}{path}", server.url()))
        .header("content-type", content_type)
        .body(body.to_string())
        .send()
        .await
        .expect("request");
    let code = response.status().as_u16();
    (code, response.json().await.expect("JSON body"))
}

/// Reads newline-delimited JSON watch events.
struct WatchReader {
    response: reqwest::Response,
    buffer: Vec<u8>,
}

impl WatchReader {
    async fn open(server: &FakeApiServer, path_and_query: &str) -> Self {
        let response = http()
            .get(format!("{}{path_and_query}", server.url()))
            .send()
            .await
            .expect("watch request");
        assert_eq!(response.status().as_u16(), 200);
        Self {
            response,
            buffer: Vec::new(),
        }
    }

    /// The next event, or `None` when the server ended the stream.
    async fn next(&mut self) -> Option<Value> {
        tokio::time::timeout(PATIENCE, async {
            loop {
                if let Some(i) = self.buffer.iter().position(|b| *b == b'\n') {
                    let line: Vec<u8> = self.buffer.drain(..=i).collect();
                    return Some(serde_json::from_slice(&line).expect("a JSON event per line"));
                }
                match self.response.chunk().await.expect("watch body") {
                    Some(chunk) => self.buffer.extend_from_slice(&chunk),
                    None => {
                        assert!(self.buffer.is_empty(), "stream ended mid-line");
                        return None;
                    }
                }
            }
        })
        .await
        .expect("a watch event or the end of the stream in time")
    }
}

#[tokio::test]
async fn list_has_the_real_shape_and_paginates_a_consistent_snapshot() {
    let server = FakeApiServer::start().await;
    for name in ["a", "b", "c"] {
        server.upsert(namespace(name, &[]));
    }
    let (code, list) = get(&server, "/api/v1/namespaces").await;
    assert_eq!(code, 200);
    assert_eq!(list["kind"], "NamespaceList");
    assert_eq!(list["apiVersion"], "v1");
    assert_eq!(
        list["metadata"]["resourceVersion"],
        server.resource_version().to_string()
    );
    let names: Vec<&str> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["metadata"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["a", "b", "c"]);

    let (_, page1) = get(&server, "/api/v1/namespaces?limit=2").await;
    assert_eq!(page1["items"].as_array().unwrap().len(), 2);
    assert_eq!(page1["metadata"]["remainingItemCount"], 1);
    let token = page1["metadata"]["continue"].as_str().unwrap().to_string();
    server.upsert(namespace("d", &[])); // after the snapshot: not on page 2
    let (_, page2) = get(
        &server,
        &format!("/api/v1/namespaces?limit=2&continue={token}"),
    )
    .await;
    assert_eq!(page2["items"][0]["metadata"]["name"], "c");
    assert_eq!(page2["items"].as_array().unwrap().len(), 1);
    assert_eq!(
        page2["metadata"]["resourceVersion"],
        page1["metadata"]["resourceVersion"]
    );
    assert!(page2["metadata"].get("continue").is_none());

    server.compact();
    let (code, gone) = get(
        &server,
        &format!("/api/v1/namespaces?limit=2&continue={token}"),
    )
    .await;
    assert_eq!(code, 410);
    assert_eq!(gone["reason"], "Expired");
}

#[tokio::test]
async fn watch_streams_changes_after_a_resource_version_and_ends_with_a_bookmark() {
    let server = FakeApiServer::start().await;
    server.upsert(namespace("before", &[]));
    let rv = server.resource_version();
    let mut watch = WatchReader::open(
        &server,
        &format!("/api/v1/namespaces?watch=1&resourceVersion={rv}&allowWatchBookmarks=true&timeoutSeconds=2"),
    )
    .await;
    server.upsert(namespace("shop", &[("vulngate.io/mode", "warn")]));
    server.annotate(
        "v1",
        "namespaces",
        None,
        "shop",
        "vulngate.io/mode",
        Some("off"),
    );
    server.delete("v1", "namespaces", None, "shop");

    let added = watch.next().await.unwrap();
    assert_eq!(added["type"], "ADDED");
    assert_eq!(added["object"]["kind"], "Namespace");
    assert_eq!(added["object"]["metadata"]["name"], "shop");
    let modified = watch.next().await.unwrap();
    assert_eq!(modified["type"], "MODIFIED");
    assert_eq!(
        modified["object"]["metadata"]["annotations"]["vulngate.io/mode"],
        "off"
    );
    let deleted = watch.next().await.unwrap();
    assert_eq!(deleted["type"], "DELETED");
    let bookmark = watch.next().await.unwrap();
    assert_eq!(bookmark["type"], "BOOKMARK");
    assert_eq!(
        bookmark["object"]["metadata"]["resourceVersion"],
        server.resource_version().to_string()
    );
    assert_eq!(watch.next().await, None, "timeoutSeconds ends the stream");

    // Watching pods in one namespace sees only that namespace's pods.
    let mut pods = WatchReader::open(&server, "/api/v1/namespaces/before/pods?watch=true").await;
    server.upsert(json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "x", "namespace": "elsewhere"}}));
    server.upsert(json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "before"}}));
    let event = pods.next().await.unwrap();
    assert_eq!(event["object"]["metadata"]["name"], "p");
}

#[tokio::test]
async fn watch_from_a_forgotten_resource_version_is_410_gone() {
    let server = FakeApiServer::start().await;
    server.upsert(namespace("a", &[]));
    let old = server.resource_version();
    server.upsert(namespace("b", &[]));
    server.compact();
    let mut watch = WatchReader::open(
        &server,
        &format!("/api/v1/namespaces?watch=1&resourceVersion={old}"),
    )
    .await;
    let error = watch.next().await.unwrap();
    assert_eq!(error["type"], "ERROR");
    let status = &error["object"];
    assert_eq!(status["kind"], "Status");
    assert_eq!(status["apiVersion"], "v1");
    assert_eq!(status["status"], "Failure");
    assert_eq!(status["reason"], "Expired");
    assert_eq!(status["code"], 410);
    assert_eq!(watch.next().await, None);
}

#[tokio::test]
async fn objects_are_created_read_updated_and_deleted_with_real_errors() {
    let server = FakeApiServer::start().await;
    let (code, missing) = get(&server, "/api/v1/namespaces/shop").await;
    assert_eq!(code, 404);
    assert_eq!(missing["kind"], "Status");
    assert_eq!(missing["reason"], "NotFound");
    assert_eq!(missing["message"], "namespaces \"shop\" not found");
    assert_eq!(
        missing["details"],
        json!({"name": "shop", "kind": "namespaces"})
    );

    let post = reqwest::Method::POST;
    let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}});
    let (code, _) = send(
        &server,
        post.clone(),
        "/api/v1/namespaces/shop/pods",
        "application/json",
        pod.clone(),
    )
    .await;
    assert_eq!(code, 404, "no pods in a namespace that does not exist");

    let (code, created) = send(
        &server,
        post.clone(),
        "/api/v1/namespaces",
        "application/json",
        namespace("shop", &[]),
    )
    .await;
    assert_eq!(code, 201);
    assert!(created["metadata"]["uid"].is_string());
    let (code, again) = send(
        &server,
        post.clone(),
        "/api/v1/namespaces",
        "application/json",
        namespace("shop", &[]),
    )
    .await;
    assert_eq!(code, 409);
    assert_eq!(again["reason"], "AlreadyExists");

    let (code, _) = send(
        &server,
        post.clone(),
        "/api/v1/namespaces/shop/pods",
        "application/json",
        pod,
    )
    .await;
    assert_eq!(code, 201);
    let (code, patched) = send(
        &server,
        reqwest::Method::PATCH,
        "/api/v1/namespaces/shop",
        "application/merge-patch+json",
        json!({"metadata": {"annotations": {"vulngate.io/max-high": "2"}}}),
    )
    .await;
    assert_eq!(code, 200);
    assert_eq!(
        patched["metadata"]["annotations"]["vulngate.io/max-high"],
        "2"
    );

    for path in [
        "/api/v1/namespaces/shop/events",
        "/apis/events.k8s.io/v1/namespaces/shop/events",
    ] {
        let event = json!({"metadata": {"name": "denied.1"}, "reason": "Denied"});
        let (code, created) = send(&server, post.clone(), path, "application/json", event).await;
        assert_eq!(code, 201, "{path}");
        assert_eq!(created["metadata"]["namespace"], "shop");
    }

    assert!(server.delete("v1", "namespaces", None, "shop").is_some());
    assert_eq!(get(&server, "/api/v1/namespaces/shop").await.0, 404);
    assert!(
        server.list("v1", "pods").is_empty(),
        "a namespace takes its objects with it"
    );
}

#[tokio::test]
async fn injected_failures_and_request_counts() {
    let server = FakeApiServer::start().await;
    server.fail_next(1, 429);
    server.fail_next(1, 500);
    let response = http()
        .get(format!("{}/api/v1/namespaces", server.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 429);
    assert!(response.headers().get("retry-after").is_some());
    assert_eq!(get(&server, "/api/v1/namespaces").await.0, 500);
    assert_eq!(get(&server, "/api/v1/namespaces").await.0, 200);
    assert_eq!(server.request_count("/api/v1/namespaces"), 3);
}

#[tokio::test]
async fn the_kube_client_reads_what_the_server_writes() {
    use k8s_openapi::api::core::v1::Pod;
    use kube::api::{Api, ListParams, PostParams};

    let server = FakeApiServer::start().await;
    server.upsert(namespace("default", &[]));
    let pods: Api<Pod> = Api::default_namespaced(server.client());
    let mut pod: Pod =
        serde_json::from_value(json!({"metadata": {"name": "web", "labels": {"app": "web"}}}))
            .unwrap();
    pods.create(&PostParams::default(), &pod).await.unwrap();
    pod.metadata.name = Some("db".into());
    pod.metadata.labels = Some([("app".to_string(), "db".to_string())].into());
    pods.create(&PostParams::default(), &pod).await.unwrap();

    let listed = pods.list(&ListParams::default()).await.unwrap();
    let names: Vec<_> = listed
        .items
        .iter()
        .map(|p| p.metadata.name.as_deref())
        .collect();
    assert_eq!(names, [Some("db"), Some("web")]);
    assert!(pods.get_opt("nope").await.unwrap().is_none());
    let err = pods.create(&PostParams::default(), &pod).await.unwrap_err();
    assert!(matches!(err, kube::Error::Api(s) if s.is_already_exists()));
}
