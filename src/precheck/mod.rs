//! `vulngate precheck`: the distinct images running in the cluster that have no finished
//! scan, grouped by registry and scanner, found by the same judgement as `vulngate audit`;
//! for Alibaba Cloud routes also the scan quota a scan of them would take, and with
//! `--scan` the scan requests themselves (`alibaba`).

pub mod alibaba;

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::audit::Report;
use crate::engine::Engine;
use crate::image::ImageRef;

pub use alibaba::Estimate;

/// One image with no finished scan.
#[derive(Debug, Clone)]
pub struct Pending {
    /// The image as first written by a pod.
    pub image: String,
    /// The same, parsed (`None` for a reference that does not parse).
    pub reference: Option<ImageRef>,
    /// Index of the config's `registries` route that holds its scans.
    pub route: Option<usize>,
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
            let reference = ImageRef::parse(&row.image).ok();
            let (registry, scanner, route) = match &reference {
                Some(image) => (
                    image.registry.clone(),
                    engine.scanner_for(image).unwrap_or("none").to_string(),
                    engine.route_index(image),
                ),
                None => (String::new(), "none".to_string(), None),
            };
            let pending = Pending {
                image: row.image.clone(),
                reference,
                route,
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

/// The scan quota estimate of one group, or why there is none.
#[derive(Debug, Clone)]
pub enum Estimated {
    Quota(Estimate),
    Unavailable(String),
}

/// Estimates by group; groups on scanners without quota have none.
pub type Estimates = BTreeMap<(String, String), Estimated>;

pub fn render(groups: &Groups, estimates: &Estimates) -> String {
    let mut out = String::new();
    let mut total = 0;
    let mut quota = Estimate::default();
    let mut estimated_groups = 0;
    for (key, images) in groups {
        let (registry, scanner) = key;
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
        match estimates.get(key) {
            Some(Estimated::Quota(e)) => {
                estimated_groups += 1;
                quota.images += e.images;
                quota.quota += e.quota;
                let _ = writeln!(
                    out,
                    "  scan quota estimate (Security Center): {} image(s) to scan, {} scan quota to consume",
                    e.images, e.quota
                );
            }
            Some(Estimated::Unavailable(why)) => {
                let _ = writeln!(out, "  scan quota estimate unavailable: {why}");
            }
            None => {}
        }
    }
    if estimated_groups > 0 {
        let _ = writeln!(
            out,
            "scan quota estimate: {} image(s) to scan, {} scan quota to consume (Security Center PublicPreCheckImageScanTask)",
            quota.images, quota.quota
        );
    }
    let _ = writeln!(out, "{total} image(s) without a finished scan");
    out
}
