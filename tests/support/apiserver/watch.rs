//! `GET ...?watch=1`: newline-delimited events after a resourceVersion, bookmarks, and
//! the `410 Expired` of a forgotten one.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{StatusCode, header};
use axum::response::Response;
use serde_json::{Value, json};
use tokio::sync::watch;

use super::Shared;
use super::http::{Filter, Target, bad_request, status};
use super::store::EventType;

const DEFAULT_WATCH_TIMEOUT_SECS: u64 = 1800;

pub(super) fn event_line(kind: &str, object: &Value) -> Bytes {
    let mut line = serde_json::to_vec(&json!({"type": kind, "object": object})).unwrap_or_default();
    line.push(b'\n');
    Bytes::from(line)
}

pub(super) fn expired_status(requested: u64, current: u64) -> Value {
    json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": format!("too old resource version: {requested} ({current})"),
        "reason": "Expired",
        "code": 410,
    })
}

pub(super) struct WatchCursor {
    pub(super) shared: Arc<Shared>,
    pub(super) filter: Filter,
    pub(super) kind: String,
    pub(super) last_rv: u64,
    pub(super) queue: VecDeque<Bytes>,
    pub(super) changed: watch::Receiver<u64>,
    pub(super) drops: watch::Receiver<u64>,
    pub(super) drop_generation: u64,
    pub(super) deadline: tokio::time::Instant,
    pub(super) bookmarks: bool,
    pub(super) done: bool,
}

impl Drop for WatchCursor {
    fn drop(&mut self) {
        self.shared.open_watches.fetch_sub(1, Ordering::SeqCst);
    }
}

impl WatchCursor {
    pub(super) fn bookmark(&self, rv: u64) -> Bytes {
        let metadata = json!({"resourceVersion": rv.to_string()});
        let api_version = &self.filter.api_version;
        event_line(
            "BOOKMARK",
            &json!({"kind": self.kind, "apiVersion": api_version, "metadata": metadata}),
        )
    }

    /// Queues the events after `last_rv` that this watch selects.
    pub(super) fn collect(&mut self) {
        let inner = self.shared.lock();
        if inner.watches_paused {
            return;
        }
        if self.last_rv < inner.compacted {
            // The events this watcher still needs are gone (it fell behind).
            self.queue
                .push_back(event_line("ERROR", &expired_status(self.last_rv, inner.rv)));
            self.done = true;
            return;
        }
        for e in inner
            .history
            .iter()
            .filter(|e| e.rv > self.last_rv && self.filter.in_scope(&e.key))
        {
            let kind = match e.kind {
                EventType::Deleted => "DELETED",
                EventType::Added => "ADDED",
                EventType::Modified => "MODIFIED",
            };
            self.queue.push_back(event_line(kind, &e.object));
        }
        self.last_rv = inner.rv;
    }

    pub(super) async fn next(&mut self) -> Option<Result<Bytes, std::io::Error>> {
        loop {
            if let Some(line) = self.queue.pop_front() {
                return Some(Ok(line));
            }
            if self.done {
                return None;
            }
            if *self.drops.borrow_and_update() != self.drop_generation {
                self.done = true;
                return Some(Err(std::io::Error::new(
                    std::io::ErrorKind::ConnectionAborted,
                    "watch dropped by the test",
                )));
            }
            self.changed.borrow_and_update();
            self.collect();
            if !self.queue.is_empty() {
                continue;
            }
            if tokio::time::Instant::now() >= self.deadline {
                if self.bookmarks {
                    let line = self.bookmark(self.last_rv);
                    self.queue.push_back(line);
                }
                self.done = true;
                continue;
            }
            tokio::select! {
                _ = self.changed.changed() => {}
                _ = self.drops.changed() => {}
                _ = tokio::time::sleep_until(self.deadline) => {}
            }
        }
    }
}

pub(super) fn start_watch(
    shared: Arc<Shared>,
    target: Target,
    query: &HashMap<String, String>,
) -> Response {
    let filter = Filter::new(&target);
    let flag = |name: &str| query.get(name).is_some_and(|v| v == "1" || v == "true");
    let bookmarks = flag("allowWatchBookmarks");
    let timeout = match query.get("timeoutSeconds").map(|t| t.parse::<u64>()) {
        None => DEFAULT_WATCH_TIMEOUT_SECS,
        Some(Ok(t)) => t,
        Some(Err(_)) => return bad_request("timeoutSeconds must be a non-negative integer"),
    };
    let requested = query
        .get("resourceVersion")
        .filter(|r| !r.is_empty() && *r != "0");
    let requested = match requested.map(|r| r.parse::<u64>()) {
        None => None,
        Some(Ok(rv)) => Some(rv),
        Some(Err(_)) => return bad_request("invalid resourceVersion"),
    };
    if let Some(rv) = requested {
        let inner = shared.lock();
        if inner.expired_watch_as_http && rv < inner.compacted {
            let current = inner.rv;
            return status(
                410,
                "Expired",
                format!("too old resource version: {rv} ({current})"),
                None,
            );
        }
    }
    let mut cursor = WatchCursor {
        changed: shared.changed.subscribe(),
        drops: shared.drops.subscribe(),
        drop_generation: *shared.drops.borrow(),
        shared: shared.clone(),
        kind: target.info.kind.clone(),
        filter,
        last_rv: 0,
        queue: VecDeque::new(),
        deadline: tokio::time::Instant::now() + Duration::from_secs(timeout),
        bookmarks,
        done: false,
    };
    shared.open_watches.fetch_add(1, Ordering::SeqCst);
    match requested {
        Some(rv) => cursor.last_rv = rv,
        None => {
            // No resourceVersion: the current state as ADDED events, then changes.
            let inner = shared.lock();
            for (_, object) in inner
                .objects
                .iter()
                .filter(|(k, _)| cursor.filter.in_scope(k))
            {
                cursor.queue.push_back(event_line("ADDED", object));
            }
            cursor.last_rv = inner.rv;
            drop(inner);
        }
    }
    let stream = futures::stream::unfold(cursor, |mut cursor| async move {
        let item = cursor.next().await?;
        Some((item, cursor))
    });
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from_stream(stream))
        .unwrap_or_else(|_| status(500, "InternalError", "response", None))
}
