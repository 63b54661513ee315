//! `vulngate precheck`: the distinct images running in the cluster that have no finished
//! scan, grouped by registry and scanner, found by the same judgement as `vulngate audit`.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::audit::Report;
use crate::engine::Engine;
use crate::image::ImageRef;

/// One image with no finished scan.
#[derive(Debug, Clone)]
pub struct Pending {
    /// The image as first written by a pod.
    pub image: String,
    pub digest: Option<String>,
    /// Why it counts as unscanned (admission's text).
    pub reason: String,
    /// Pods running it.
    pub pods: usize,
}

/// (registry, scanner kind or `none`) -> the images there without a finished scan.
pub type Groups = BTreeMap<(String, String), Vec<Pending>>;

pub fn pending(engine: &Engine, report: &Report) -> Groups {
    let mut by_key: BTreeMap<String, (String, String, Pending)> = BTreeMap::new();
    let mut pods: BTreeMap<String, std::collections::BTreeSet<(String, String)>> = BTreeMap::new();
    for row in report.containers.iter().filter(|r| r.status == "unscanned") {
        let key = row.digest.clone().unwrap_or_else(|| row.image.clone());
        pods.entry(key.clone())
            .or_default()
            .insert((row.namespace.clone(), row.pod.clone()));
        by_key.entry(key).or_insert_with(|| {
            let (registry, scanner) = match ImageRef::parse(&row.image) {
                Ok(image) => (
                    image.registry.clone(),
                    engine.scanner_for(&image).unwrap_or("none").to_string(),
                ),
                Err(_) => (String::new(), "none".to_string()),
            };
            let pending = Pending {
                image: row.image.clone(),
                digest: row.digest.clone(),
                reason: row.message.clone().unwrap_or_default(),
                pods: 0,
            };
            (registry, scanner, pending)
        });
    }
    let mut groups = Groups::new();
    for (key, (registry, scanner, mut pending)) in by_key {
        pending.pods = pods.get(&key).map_or(0, |p| p.len());
        groups.entry((registry, scanner)).or_default().push(pending);
    }
    groups
}

pub fn render(groups: &Groups) -> String {
    let mut out = String::new();
    let mut total = 0;
    for ((registry, scanner), images) in groups {
        total += images.len();
        let _ = writeln!(
            out,
            "{registry} (scanner {scanner}): {} image(s) without a finished scan",
            images.len()
        );
        for p in images {
            let digest = p
                .digest
                .as_deref()
                .map(|d| format!(" {d}"))
                .unwrap_or_default();
            let _ = writeln!(
                out,
                "  {}{digest} ({} pod(s)): {}",
                p.image, p.pods, p.reason
            );
        }
    }
    let _ = writeln!(out, "{total} image(s) without a finished scan");
    out
}
