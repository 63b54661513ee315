//! The Helm chart (charts/vulngate) and the plain manifests rendered from it (manifests/).
//!
//! Shells out to `helm` and `kubernetes-validate`, which tests/setup.d/helm.sh installs into
//! .tools/bin (tests/run.sh runs it and puts .tools/bin on PATH). A missing tool fails the
//! test with a message naming that script; nothing here is skipped.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use base64::Engine as _;
use serde_json::Value;
use vulngate::config::{Config, ScannerConfig};
use vulngate::domain::limits::LimitKey;
use vulngate::domain::rules::{ControllerPods, Mode};
use vulngate::policy::NamespacePolicy;

#[path = "../support/chart.rs"]
mod chart_support;

use chart_support::*;

// One test binary, one file per concern.
mod config;
mod pod_security;
mod rbac;
mod readme;
mod rendering;
mod schema;
mod tls_modes;
mod webhook;

/// (apiGroup, resource, verb) triples a Role or ClusterRole grants.
fn rbac_grants(role: &Value) -> BTreeSet<(String, String, String)> {
    let mut out = BTreeSet::new();
    for rule in role["rules"].as_array().into_iter().flatten() {
        for g in str_list(&rule["apiGroups"]) {
            for r in str_list(&rule["resources"]) {
                for v in str_list(&rule["verbs"]) {
                    out.insert((g.clone(), r.clone(), v));
                }
            }
        }
    }
    out
}
