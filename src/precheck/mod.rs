//! `vulngate precheck`: the distinct images running in the cluster that have no finished
//! scan, grouped by registry and scanner, found by the same judgement as `vulngate audit`;
//! for Alibaba Cloud routes also the scan quota a scan of them would take, and with
//! `--scan` the scan requests themselves (`alibaba`).

pub(crate) mod alibaba;

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::audit::Report;
use crate::config::Config;
use crate::engine::Engine;
use crate::image::ImageRef;
use crate::progress::Progress;

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
pub(crate) type Groups = BTreeMap<(String, String), Vec<Pending>>;

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

/// Distinct images whose lookup failed (registry or scanner errors), with admission's
/// message: whether they have a finished scan is not known.
pub fn unknown(report: &Report) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for row in report.containers.iter().filter(|r| r.status == "error") {
        out.entry(row.image.clone())
            .or_insert_with(|| row.message.clone().unwrap_or_default());
    }
    out
}

/// The scan quota estimate of one group, or why there is none.
#[derive(Debug, Clone)]
pub enum Estimated {
    Quota(Estimate),
    Unavailable(String),
}

/// Estimates by group; groups on scanners without quota have none.
pub(crate) type Estimates = BTreeMap<(String, String), Estimated>;

pub fn render(
    groups: &Groups,
    estimates: &Estimates,
    unknown: &BTreeMap<String, String>,
) -> String {
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
                quota.unnamed += e.unnamed;
                let unnamed = match e.unnamed {
                    0 => String::new(),
                    n => format!(" ({n} image(s) with neither digest nor tag not included)"),
                };
                let _ = writeln!(
                    out,
                    "  scan quota estimate (Security Center): {} image(s) to scan, {} scan quota to consume{unnamed}",
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
    if !unknown.is_empty() {
        let _ = writeln!(
            out,
            "{} image(s) could not be looked up, so whether they have a finished scan is not known:",
            unknown.len()
        );
        for (image, message) in unknown {
            let _ = writeln!(out, "  {image}: {message}");
        }
    }
    let _ = writeln!(out, "{total} image(s) without a finished scan");
    out
}

/// What `vulngate precheck` was asked to do beyond listing.
#[derive(Debug, Clone, Copy, Default)]
pub struct RunOptions {
    /// Ask the scanners to scan the pending images.
    pub scan: bool,
    /// Without asking for a confirmation.
    pub yes: bool,
}

/// `vulngate precheck`: prints the pending images with Security Center's estimate; with
/// `scan`, asks the scanners to scan them once confirmed. Returns the exit status: 0 no
/// pending image, 1 some, 2 images that could not be looked up (and none pending), or
/// a refused or failed scan request.
pub async fn run(
    config: &Config,
    engine: &Engine,
    report: &Report,
    args: RunOptions,
    progress: Progress,
) -> Result<u8, String> {
    let groups = pending(engine, report);
    let env = |k: &str| std::env::var(k).ok();
    let alibaba = alibaba::Alibaba::new(config, &env);
    // (group, route) of every group on an Alibaba Cloud scanner.
    let cloud: Vec<(&(String, String), usize, &Vec<Pending>)> = groups
        .iter()
        .filter(|((_, scanner), _)| alibaba::is_alibaba(scanner))
        .filter_map(|(key, images)| Some((key, images.first()?.route?, images)))
        .collect();
    progress.set_message("estimating scan quota");
    let mut estimates = Estimates::new();
    let mut quota = alibaba::Estimate::default();
    for (key, route, images) in &cloud {
        let estimated = match alibaba.estimate(*route, images).await {
            Ok(e) => {
                quota.images += e.images;
                quota.quota += e.quota;
                Estimated::Quota(e)
            }
            Err(why) => Estimated::Unavailable(why),
        };
        estimates.insert((*key).clone(), estimated);
    }
    drop(progress);
    let unknown = unknown(report);
    print!("{}", render(&groups, &estimates, &unknown));
    // Images not looked up may or may not be scanned: the check is not complete.
    let pending_status = match (groups.is_empty(), unknown.is_empty()) {
        (false, _) => 1,
        (true, false) => 2,
        (true, true) => 0,
    };
    if !args.scan {
        return Ok(pending_status);
    }
    let to_scan: usize = cloud.iter().map(|(_, _, images)| images.len()).sum();
    if to_scan == 0 {
        println!("nothing to scan: no image without a finished scan is on an acr or sas route");
        return Ok(pending_status);
    }
    if !args.yes {
        use std::io::IsTerminal;
        if !std::io::stdin().is_terminal() {
            eprintln!(
                "vulngate: precheck --scan would ask the scanners to scan {to_scan} image(s), which uses scan quota; \
                 confirm with --yes (standard input is not a terminal to ask on)"
            );
            return Ok(2);
        }
        let estimate = if quota.quota > 0 || quota.images > 0 {
            format!(" (estimated scan quota: {})", quota.quota)
        } else {
            String::new()
        };
        eprint!("Ask the scanners to scan {to_scan} image(s){estimate}? [y/N] ");
        // Reading a terminal blocks: off the async workers.
        let answer = tokio::task::spawn_blocking(|| {
            let mut answer = String::new();
            std::io::stdin().read_line(&mut answer).map(|_| answer)
        })
        .await
        .map_err(|e| format!("cannot read the answer: {e}"))?
        .map_err(|e| format!("cannot read the answer: {e}"))?;
        if !matches!(answer.trim().to_ascii_lowercase().as_str(), "y" | "yes") {
            println!("no scan requested");
            return Ok(pending_status);
        }
    }
    let (mut requested, mut failed) = (0, 0);
    for ((registry, scanner), route, images) in &cloud {
        println!("{registry} (scanner {scanner}):");
        let outcome = alibaba.request_scans(*route, images).await;
        for line in &outcome.lines {
            println!("{line}");
        }
        requested += outcome.requested;
        failed += outcome.failed;
    }
    println!("scan requested for {requested} image(s), {failed} failed");
    Ok(if failed > 0 { 2 } else { pending_status })
}
