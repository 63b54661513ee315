//! The Alibaba Cloud side of `vulngate precheck`, for pending images whose route is an
//! `acr` or `sas` scanner:
//!
//! - the estimate: Security Center `PublicPreCheckImageScanTask` (Sas 2018-12-03) with
//!   the images as filters (one repository and its digests, or its tags, per request)
//!   answers how many images a scan task would cover
//!   (`NeedAuthCount`) and how much scan quota it would consume (`ScanImageCount`);
//! - `--scan`: ACR `CreateRepoTagScanTask` per image for `acr` routes, Security Center
//!   `PublicCreateImageScanTask` for `sas` routes.
//!
//! Security Center is reached with the credentials of the group's own `sas` route, or for
//! an `acr` route of the first `sas` route of the config: ACR itself has no estimate.

use serde_json::Value;

use crate::cloud::alibaba::client::{Api, Method, RpcClient};
use crate::cloud::alibaba::scan_requests::sas_task_refusal;
use crate::cloud::alibaba::{digest_hex, json_str, json_u64};
use crate::config::alibaba::AcrConfig;
use crate::config::alibaba::SasConfig;
use crate::config::{Config, ScannerConfig};
use crate::scan::ScanTarget;
use crate::scan::acr::AcrScanner;
use crate::scan::sas::region_of_acr_host;
use crate::scan::setup_error::SetupError;

use super::Pending;

const SAS_VERSION: &str = "2018-12-03";
const CR_VERSION: &str = "2018-12-01";
/// Images per Security Center request: its filters are comma-separated lists in the URL.
const CHUNK: usize = 50;

static PRE_CHECK: Api = Api {
    action: "PublicPreCheckImageScanTask",
    method: Method::Post,
    ram_action: "yundun-sas:PublicPreCheckImageScanTask",
};
static CREATE_IMAGE_SCAN_TASK: Api = Api {
    action: "PublicCreateImageScanTask",
    method: Method::Post,
    ram_action: "yundun-sas:PublicCreateImageScanTask",
};
static CREATE_REPO_TAG_SCAN_TASK: Api = Api {
    action: "CreateRepoTagScanTask",
    method: Method::Post,
    ram_action: "cr:PutScan",
};

/// What a scan of some images would take, as Security Center estimates it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Estimate {
    /// `NeedAuthCount`: images the task would scan.
    pub images: u64,
    /// `ScanImageCount`: scan quota the task would consume.
    pub quota: u64,
    /// Images no request could name (neither digest nor tag known): not estimated.
    pub unnamed: u64,
}

/// The scan requests made for one group.
#[derive(Debug, Default)]
pub(crate) struct ScanOutcome {
    /// One line per request or skipped image, for people.
    pub lines: Vec<String>,
    pub requested: usize,
    pub failed: usize,
}

/// The Alibaba Cloud clients a precheck needs, built from the config's routes.
pub struct Alibaba<'a> {
    config: &'a Config,
    env: &'a dyn Fn(&str) -> Option<String>,
}

/// Whether a scanner kind is one of Alibaba Cloud's (has a quota estimate).
pub(crate) fn is_alibaba(scanner: &str) -> bool {
    scanner == crate::scan::acr::KIND || scanner == crate::scan::sas::KIND
}

impl<'a> Alibaba<'a> {
    pub fn new(config: &'a Config, env: &'a dyn Fn(&str) -> Option<String>) -> Alibaba<'a> {
        Alibaba { config, env }
    }

    fn scanner(&self, route: usize) -> Option<&'a ScannerConfig> {
        self.config.registries.get(route).map(|r| &r.scanner)
    }

    /// The `sas` route whose Security Center answers for `route`: itself, or the first.
    fn security_center(&self, route: usize) -> Result<(&'a SasConfig, RpcClient), String> {
        let sas = match self.scanner(route) {
            Some(ScannerConfig::Sas(sas)) => sas,
            _ => self
                .config
                .registries
                .iter()
                .find_map(|r| match &r.scanner {
                    ScannerConfig::Sas(sas) => Some(sas),
                    _ => None,
                })
                .ok_or_else(|| {
                    "no sas route is configured: the estimate comes from Security Center \
                     (PublicPreCheckImageScanTask) and needs the credentials of a \
                     `scanner: {sas: ...}` route"
                        .to_string()
                })?,
        };
        let client = RpcClient::new("Sas", SAS_VERSION, &sas.client_settings(), self.env)
            .map_err(|e| format!("Security Center client: {e}"))?;
        Ok((sas, client))
    }

    /// Security Center's estimate for the images of one route.
    pub async fn estimate(&self, route: usize, images: &[Pending]) -> Result<Estimate, String> {
        let (sas, client) = self.security_center(route)?;
        let (requests, unnamed) = named_requests(self.scanner(route), sas, images, true);
        let mut total = Estimate {
            unnamed: unnamed.len() as u64,
            ..Estimate::default()
        };
        for request in &requests {
            let answer = client
                .call(&PRE_CHECK, &request.params, client.deadline())
                .await
                .map_err(|e| e.to_string())?;
            let data = answer.get("Data").unwrap_or(&Value::Null);
            let (Some(images), Some(quota)) = (
                json_u64(data, "NeedAuthCount"),
                json_u64(data, "ScanImageCount"),
            ) else {
                return Err(format!(
                    "Sas PublicPreCheckImageScanTask: answer without Data.NeedAuthCount and Data.ScanImageCount (RequestId {})",
                    json_str(&answer, "RequestId").unwrap_or("none")
                ));
            };
            total.images += images;
            total.quota += quota;
        }
        Ok(total)
    }

    /// Asks the route's scanner to scan the images.
    pub(crate) async fn request_scans(&self, route: usize, images: &[Pending]) -> ScanOutcome {
        match self.scanner(route) {
            Some(ScannerConfig::Acr(acr)) => self.acr_scans(acr, images).await,
            Some(ScannerConfig::Sas(_)) => self.sas_scans(route, images).await,
            _ => ScanOutcome::default(),
        }
    }

    async fn acr_scans(&self, acr: &AcrConfig, images: &[Pending]) -> ScanOutcome {
        let mut outcome = ScanOutcome::default();
        let clients = AcrScanner::with_env(acr, self.env).and_then(|scanner| {
            RpcClient::new("cr", CR_VERSION, &acr.client_settings(), self.env)
                .map(|client| (scanner, client))
                .map_err(SetupError::from)
        });
        let (scanner, client) = match clients {
            Ok(c) => c,
            Err(e) => {
                outcome.failed = images.len();
                outcome.lines.push(format!("  cannot ask ACR to scan: {e}"));
                return outcome;
            }
        };
        for p in images {
            let (Some(reference), Some(digest)) = (&p.reference, &p.digest) else {
                outcome
                    .lines
                    .push(format!("  skipped {}: its digest is not known", p.image));
                continue;
            };
            let target = ScanTarget {
                image: reference,
                digest,
            };
            let ids = match scanner.scan_task_ids(&target).await {
                Ok(Some(ids)) => ids,
                Ok(None) => {
                    outcome.lines.push(format!(
                        "  skipped {} {digest}: ACR does not hold this image",
                        p.image
                    ));
                    continue;
                }
                Err(e) => {
                    outcome.failed += 1;
                    outcome
                        .lines
                        .push(format!("  could not ask ACR to scan {}: {e}", p.image));
                    continue;
                }
            };
            let [instance, repo_id, tag, acr_digest] = ids;
            let params = [
                ("InstanceId", instance),
                ("RepoId", repo_id),
                ("Tag", tag),
                ("Digest", acr_digest),
            ];
            match client
                .call(&CREATE_REPO_TAG_SCAN_TASK, &params, client.deadline())
                .await
            {
                Ok(_) => {
                    outcome.requested += 1;
                    outcome
                        .lines
                        .push(format!("  asked ACR to scan {} {digest}", p.image));
                }
                Err(e) => {
                    outcome.failed += 1;
                    outcome
                        .lines
                        .push(format!("  could not ask ACR to scan {}: {e}", p.image));
                }
            }
        }
        outcome
    }

    async fn sas_scans(&self, route: usize, images: &[Pending]) -> ScanOutcome {
        let mut outcome = ScanOutcome::default();
        let (sas, client) = match self.security_center(route) {
            Ok(c) => c,
            Err(e) => {
                outcome.failed = images.len();
                outcome
                    .lines
                    .push(format!("  cannot ask Security Center to scan: {e}"));
                return outcome;
            }
        };
        // A task is named by its images' digests: one without a known digest cannot be asked for.
        let (requests, unknown) = named_requests(self.scanner(route), sas, images, false);
        for p in &unknown {
            outcome
                .lines
                .push(format!("  skipped {}: its digest is not known", p.image));
        }
        for request in &requests {
            let chunk = &request.images;
            let answer = match client
                .call(&CREATE_IMAGE_SCAN_TASK, &request.params, client.deadline())
                .await
            {
                Ok(a) => a,
                Err(e) => {
                    outcome.failed += chunk.len();
                    outcome.lines.push(format!(
                        "  could not ask Security Center to scan {} image(s): {e}",
                        chunk.len()
                    ));
                    continue;
                }
            };
            let data = answer.get("Data").unwrap_or(&Value::Null);
            let field = |k: &str| json_str(data, k).unwrap_or("-").to_string();
            match sas_task_refusal(&answer) {
                None => {
                    outcome.requested += chunk.len();
                    outcome.lines.push(format!(
                        "  asked Security Center to scan {} image(s): task {}, status {}",
                        chunk.len(),
                        field("TaskId"),
                        field("Status")
                    ));
                }
                Some((why, _)) => {
                    outcome.failed += chunk.len();
                    outcome.lines.push(format!(
                        "  no scan task for {} image(s): {why}",
                        chunk.len()
                    ));
                }
            }
        }
        outcome
    }
}

/// One Security Center request and the images it names.
struct Named<'p> {
    params: Vec<(&'static str, String)>,
    images: Vec<&'p Pending>,
}

/// Security Center requests that name exactly `images`. The service combines its
/// filters (comma-separated lists) field by field, so a request names one repository
/// (its region, instance, namespace and name) and either digests or, for images whose
/// digest is not known, tags: never a cross product of several repositories and tags.
/// With `by_tag: false` images without a digest are left out. Returns the requests
/// and the images no request can name (no reference, or neither digest nor tag).
fn named_requests<'p>(
    route: Option<&ScannerConfig>,
    sas: &SasConfig,
    images: &'p [Pending],
    by_tag: bool,
) -> (Vec<Named<'p>>, Vec<&'p Pending>) {
    // The images' registry region: as configured on a sas route, else from an ACR EE
    // host name, else an acr route's own region. The instance: as configured.
    let (configured_region, fallback_region, instance) = match route {
        Some(ScannerConfig::Acr(acr)) => {
            (None, Some(acr.region.trim()), acr.instance_id.as_deref())
        }
        Some(ScannerConfig::Sas(s)) => (
            s.product.repo_region.as_deref(),
            None,
            s.instance_id.as_deref(),
        ),
        _ => (None, None, sas.instance_id.as_deref()),
    };
    let instance = instance.map(str::trim).filter(|i| !i.is_empty());
    // (region, namespace, name, by digest) -> the images, in order of appearance.
    type Key = (Option<String>, Option<String>, Option<String>, bool);
    let mut groups: Vec<(Key, Vec<&'p Pending>)> = Vec::new();
    let mut unnamed = Vec::new();
    for p in images {
        let Some(reference) = &p.reference else {
            unnamed.push(p);
            continue;
        };
        let by_digest = p.digest.is_some();
        if !by_digest && (!by_tag || reference.tag.is_none()) {
            unnamed.push(p);
            continue;
        }
        let region = configured_region
            .map(str::to_string)
            .or_else(|| region_of_acr_host(reference.host()))
            .or_else(|| fallback_region.map(str::to_string));
        let (namespace, name) = match reference.repository.split_once('/') {
            Some((ns, n)) => (Some(ns.to_string()), Some(n.to_string())),
            None => (None, None),
        };
        let key = (region, namespace, name, by_digest);
        match groups.iter_mut().find(|(k, _)| *k == key) {
            Some((_, members)) => members.push(p),
            None => groups.push((key, vec![p])),
        }
    }
    let mut requests = Vec::new();
    for ((region, namespace, name, by_digest), members) in groups {
        for chunk in members.chunks(CHUNK) {
            let mut params = vec![("RegistryTypes", "acr".to_string())];
            params.extend(region.clone().map(|r| ("RegionIds", r)));
            params.extend(instance.map(|i| ("InstanceIds", i.to_string())));
            params.extend(namespace.clone().map(|n| ("RepoNamespaces", n)));
            params.extend(name.clone().map(|n| ("RepoNames", n)));
            let values: Vec<String> = chunk
                .iter()
                .filter_map(|p| match by_digest {
                    true => p.digest.as_deref().map(|d| digest_hex(d).to_string()),
                    false => p.reference.as_ref().and_then(|r| r.tag.clone()),
                })
                .collect();
            let mut distinct: Vec<String> = Vec::new();
            for v in values {
                if !distinct.contains(&v) {
                    distinct.push(v);
                }
            }
            params.push((
                if by_digest { "Digests" } else { "Tags" },
                distinct.join(","),
            ));
            requests.push(Named {
                params,
                images: chunk.to_vec(),
            });
        }
    }
    (requests, unnamed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::ImageRef;

    fn pending(image: &str, digest: Option<&str>) -> Pending {
        Pending {
            image: image.into(),
            reference: ImageRef::parse(image).ok(),
            route: Some(0),
            digest: digest.map(str::to_string),
            reason: String::new(),
            pods: 1,
        }
    }

    fn sas() -> SasConfig {
        serde_saphyr::from_str("region: cn-hangzhou\ninstanceId: cri-sas\n").expect("sas config")
    }

    fn param<'a>(params: &'a [(&str, String)], key: &str) -> Option<&'a str> {
        params
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v.as_str())
    }

    #[test]
    fn every_request_names_one_repository_and_its_digests_or_tags() {
        let host = "demo-registry.cn-hangzhou.cr.aliyuncs.com";
        let images = [
            pending(&format!("{host}/shop/web:1"), Some("sha256:aaaa")),
            pending(&format!("{host}/shop/api:2"), Some("sha256:bbbb")),
            pending(&format!("{host}/shop/web:3"), Some("sha256:cccc")),
            pending(&format!("{host}/shop/api:4"), None),
            pending(&format!("{host}/shop/api@sha256:{}", "d".repeat(64)), None),
        ];
        let sas = sas();
        let route = ScannerConfig::Sas(sas.clone());
        let (requests, unnamed) = named_requests(Some(&route), &sas, &images, true);
        let got: Vec<Vec<Option<&str>>> = requests
            .iter()
            .map(|r| {
                [
                    "RegistryTypes",
                    "RegionIds",
                    "InstanceIds",
                    "RepoNamespaces",
                    "RepoNames",
                    "Tags",
                    "Digests",
                ]
                .iter()
                .map(|k| param(&r.params, k))
                .collect()
            })
            .collect();
        let r = |name, tags, digests| {
            vec![
                Some("acr"),
                Some("cn-hangzhou"),
                Some("cri-sas"),
                Some("shop"),
                Some(name),
                tags,
                digests,
            ]
        };
        assert_eq!(
            got,
            [
                r("web", None, Some("aaaa,cccc")),
                r("api", None, Some("bbbb")),
                r("api", Some("4"), None),
            ]
        );
        assert_eq!(requests[0].images.len(), 2);
        assert_eq!(unnamed.len(), 1, "neither digest nor tag");

        // Scan requests name digests only.
        let (requests, unnamed) = named_requests(Some(&route), &sas, &images, false);
        assert_eq!(requests.len(), 2);
        assert_eq!(unnamed.len(), 2);
    }
}
