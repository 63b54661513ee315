//! Storage: objects by key, one global resourceVersion, the event history watches resume
//! from, list snapshots for `continue`, and the injected failures.

use std::collections::{BTreeMap, HashMap, VecDeque};

use serde_json::{Value, json};

use super::{ObjectKey, RequestRecord};

#[derive(Debug, Clone)]
pub(super) struct ResourceInfo {
    pub(super) kind: String,
    pub(super) namespaced: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum EventType {
    Added,
    Modified,
    Deleted,
}

#[derive(Debug, Clone)]
pub(super) struct HistoryEvent {
    pub(super) rv: u64,
    pub(super) kind: EventType,
    pub(super) key: ObjectKey,
    pub(super) object: Value,
}

pub(super) struct Snapshot {
    pub(super) rv: u64,
    pub(super) remaining: Vec<Value>,
}

pub(super) type Matcher = Box<dyn Fn(&RequestRecord) -> bool + Send + Sync>;

pub(super) struct FailRule {
    pub(super) remaining: usize,
    pub(super) code: u16,
    pub(super) matcher: Option<Matcher>,
}

pub(super) struct Inner {
    pub(super) resources: HashMap<(String, String), ResourceInfo>,
    pub(super) objects: BTreeMap<ObjectKey, Value>,
    pub(super) rv: u64,
    pub(super) history: VecDeque<HistoryEvent>,
    pub(super) history_limit: usize,
    /// Events at or below this resourceVersion are forgotten: watching from an older one
    /// is `410 Gone`.
    pub(super) compacted: u64,
    pub(super) snapshots: HashMap<String, Snapshot>,
    pub(super) snapshot_order: VecDeque<String>,
    pub(super) next_id: u64,
    pub(super) failures: VecDeque<FailRule>,
    pub(super) requests: Vec<RequestRecord>,
    pub(super) watches_paused: bool,
    pub(super) expired_watch_as_http: bool,
}

/// The resources vulngate and its tests read and write.
pub(super) fn default_resources() -> HashMap<(String, String), ResourceInfo> {
    // (apiVersion, plural, kind, namespaced)
    let table: &[(&str, &str, &str, bool)] = &[
        ("v1", "namespaces", "Namespace", false),
        ("v1", "pods", "Pod", true),
        ("v1", "serviceaccounts", "ServiceAccount", true),
        ("v1", "secrets", "Secret", true),
        ("v1", "events", "Event", true),
        ("events.k8s.io/v1", "events", "Event", true),
    ];
    table
        .iter()
        .map(|(av, plural, kind, namespaced)| {
            (
                (av.to_string(), plural.to_string()),
                ResourceInfo {
                    kind: kind.to_string(),
                    namespaced: *namespaced,
                },
            )
        })
        .collect()
}

impl Inner {
    pub(super) fn key_of(&self, object: &Value) -> Option<(ObjectKey, ResourceInfo)> {
        let api_version = object["apiVersion"].as_str()?;
        let kind = object["kind"].as_str()?;
        let ((av, plural), info) = self
            .resources
            .iter()
            .find(|((av, _), info)| av == api_version && info.kind == kind)?;
        let name = object["metadata"]["name"].as_str()?;
        let namespace = if info.namespaced {
            object["metadata"]["namespace"]
                .as_str()
                .unwrap_or("default")
        } else {
            ""
        };
        Some((
            ObjectKey {
                api_version: av.clone(),
                plural: plural.clone(),
                namespace: namespace.into(),
                name: name.into(),
            },
            info.clone(),
        ))
    }

    pub(super) fn next_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    /// Server-set fields of a new object.
    pub(super) fn fill_new(&mut self, mut object: Value, key: &ObjectKey) -> Value {
        let id = self.next_id();
        let kind = self
            .resources
            .get(&(key.api_version.clone(), key.plural.clone()))
            .map(|i| i.kind.clone())
            .unwrap_or_default();
        if !object.is_object() {
            object = json!({});
        }
        object["apiVersion"] = json!(key.api_version);
        object["kind"] = json!(kind);
        if !object["metadata"].is_object() {
            object["metadata"] = json!({});
        }
        let meta = &mut object["metadata"];
        meta["name"] = json!(key.name);
        if key.namespace.is_empty() {
            if let Some(m) = meta.as_object_mut() {
                m.remove("namespace");
            }
        } else {
            meta["namespace"] = json!(key.namespace);
        }
        meta["uid"] = json!(format!("00000000-0000-4000-8000-{id:012}"));
        meta["creationTimestamp"] = json!(now_rfc3339());
        meta["generation"] = json!(1);
        object
    }

    /// Stores `object` under `key` with a new resourceVersion and records the event.
    pub(super) fn write(&mut self, key: ObjectKey, old: Option<Value>, mut object: Value) -> Value {
        self.rv += 1;
        let rv = self.rv;
        object["metadata"]["resourceVersion"] = json!(rv.to_string());
        let kind = if old.is_some() {
            EventType::Modified
        } else {
            EventType::Added
        };
        self.objects.insert(key.clone(), object.clone());
        self.record(HistoryEvent {
            rv,
            kind,
            key,
            object: object.clone(),
        });
        object
    }

    /// Removes an object (and, for a namespace, everything in it).
    pub(super) fn remove(&mut self, key: &ObjectKey) -> Option<Value> {
        let mut removed = self.objects.remove(key)?;
        self.rv += 1;
        let rv = self.rv;
        removed["metadata"]["resourceVersion"] = json!(rv.to_string());
        self.record(HistoryEvent {
            rv,
            kind: EventType::Deleted,
            key: key.clone(),
            object: removed.clone(),
        });
        if key.api_version == "v1" && key.plural == "namespaces" {
            let inside: Vec<ObjectKey> = self
                .objects
                .keys()
                .filter(|k| k.namespace == key.name)
                .cloned()
                .collect();
            for k in inside {
                self.remove(&k);
            }
        }
        Some(removed)
    }

    pub(super) fn record(&mut self, event: HistoryEvent) {
        self.history.push_back(event);
        self.trim_history();
    }

    pub(super) fn trim_history(&mut self) {
        while self.history.len() > self.history_limit {
            if let Some(e) = self.history.pop_front() {
                self.compacted = e.rv;
            }
        }
    }

    pub(super) fn failure_for(&mut self, record: &RequestRecord) -> Option<u16> {
        let index = self.failures.iter().position(|rule| {
            rule.remaining > 0 && rule.matcher.as_ref().is_none_or(|m| m(record))
        })?;
        let rule = &mut self.failures[index];
        rule.remaining -= 1;
        let code = rule.code;
        if rule.remaining == 0 {
            self.failures.remove(index);
        }
        Some(code)
    }

    pub(super) fn namespace_exists(&self, name: &str) -> bool {
        self.objects.contains_key(&ObjectKey::namespace(name))
    }
}

pub(super) fn now_rfc3339() -> String {
    let now = time::OffsetDateTime::now_utc();
    let now = now.replace_nanosecond(0).unwrap_or(now);
    now.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// Keeps the server-owned fields of `old` on a replacement object.
pub(super) fn copy_identity(old: &Value, new: &mut Value) {
    for field in ["uid", "creationTimestamp", "generation"] {
        match old["metadata"].get(field) {
            Some(v) => new["metadata"][field] = v.clone(),
            None => {
                if let Some(m) = new["metadata"].as_object_mut() {
                    m.remove(field);
                }
            }
        }
    }
    new["apiVersion"] = old["apiVersion"].clone();
    new["kind"] = old["kind"].clone();
    new["metadata"]["name"] = old["metadata"]["name"].clone();
    if let Some(ns) = old["metadata"].get("namespace") {
        new["metadata"]["namespace"] = ns.clone();
    }
}
