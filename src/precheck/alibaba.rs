//! The Alibaba Cloud side of `vulngate precheck`, for pending images whose route is an
//! `acr` or `sas` scanner:
//!
//! - the estimate: Security Center `PublicPreCheckImageScanTask` (Sas 2018-12-03) with
//!   the images as filters answers how many images a scan task would cover
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
use crate::config::{Config, ScannerConfig};
use crate::scan::acr::{AcrConfig, AcrScanner};
use crate::scan::sas::{region_of_acr_host, SasConfig};
use crate::scan::ScanTarget;

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
}

/// The scan requests made for one group.
#[derive(Debug, Default)]
pub struct ScanOutcome {
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
pub fn is_alibaba(scanner: &str) -> bool {
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
        let mut total = Estimate::default();
        for chunk in images.chunks(CHUNK) {
            let params = filters(self.scanner(route), sas, chunk);
            let answer = client
                .call(&PRE_CHECK, &params, client.deadline())
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
    pub async fn request_scans(&self, route: usize, images: &[Pending]) -> ScanOutcome {
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
        let (known, unknown): (Vec<Pending>, Vec<Pending>) =
            images.iter().cloned().partition(|p| p.digest.is_some());
        for p in &unknown {
            outcome
                .lines
                .push(format!("  skipped {}: its digest is not known", p.image));
        }
        for chunk in known.chunks(CHUNK) {
            let params = filters(self.scanner(route), sas, chunk);
            let answer = match client
                .call(&CREATE_IMAGE_SCAN_TASK, &params, client.deadline())
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

/// The Security Center filters naming `images` (comma-separated lists, as the API takes
/// them). A filter is sent only when every image has a value for it, so no image of
/// the chunk is filtered out; digests go as bare hex.
fn filters(
    route: Option<&ScannerConfig>,
    sas: &SasConfig,
    images: &[Pending],
) -> Vec<(&'static str, String)> {
    // The images' registry region: as configured on a sas route, else from an ACR EE
    // host name, else an acr route's own region. The instance: as configured.
    let (configured_region, fallback_region, instance) = match route {
        Some(ScannerConfig::Acr(acr)) => {
            (None, Some(acr.region.trim()), acr.instance_id.as_deref())
        }
        Some(ScannerConfig::Sas(s)) => (s.repo_region.as_deref(), None, s.instance_id.as_deref()),
        _ => (None, None, sas.instance_id.as_deref()),
    };
    let refs: Vec<_> = images.iter().filter_map(|p| p.reference.as_ref()).collect();
    let all = refs.len() == images.len();
    let mut params = vec![("RegistryTypes", "acr".to_string())];
    let mut add = |key: &'static str, values: Option<Vec<String>>| {
        if let Some(values) = values.filter(|v| !v.is_empty()) {
            let mut distinct: Vec<String> = Vec::new();
            for v in values {
                if !distinct.contains(&v) {
                    distinct.push(v);
                }
            }
            params.push((key, distinct.join(",")));
        }
    };
    let each = |f: &dyn Fn(&crate::image::ImageRef) -> Option<String>| -> Option<Vec<String>> {
        if !all {
            return None;
        }
        refs.iter().map(|r| f(r)).collect()
    };
    add(
        "RegionIds",
        each(&|r| {
            configured_region
                .map(str::to_string)
                .or_else(|| region_of_acr_host(r.host()))
                .or_else(|| fallback_region.map(str::to_string))
        }),
    );
    add(
        "InstanceIds",
        instance
            .map(str::trim)
            .filter(|i| !i.is_empty())
            .map(|i| vec![i.to_string()]),
    );
    add(
        "RepoNamespaces",
        each(&|r| r.repository.split_once('/').map(|(ns, _)| ns.to_string())),
    );
    add(
        "RepoNames",
        each(&|r| r.repository.split_once('/').map(|(_, n)| n.to_string())),
    );
    add("Tags", each(&|r| r.tag.clone()));
    add(
        "Digests",
        images
            .iter()
            .map(|p| p.digest.as_deref().map(|d| digest_hex(d).to_string()))
            .collect(),
    );
    params
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
        serde_yaml::from_str("region: cn-hangzhou\ninstanceId: cri-sas\n").expect("sas config")
    }

    fn param<'a>(params: &'a [(&str, String)], key: &str) -> Option<&'a str> {
        params
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v.as_str())
    }

    #[test]
    fn filters_name_every_image_and_leave_out_what_some_lack() {
        let host = "demo-registry.cn-hangzhou.cr.aliyuncs.com";
        let images = [
            pending(&format!("{host}/shop/web:1"), Some("sha256:aaaa")),
            pending(&format!("{host}/shop/api:2"), Some("sha256:bbbb")),
            pending(&format!("{host}/lab/web:1"), Some("sha256:cccc")),
        ];
        let sas = sas();
        let route = ScannerConfig::Sas(sas.clone());
        let params = filters(Some(&route), &sas, &images);
        let get = |k: &str| param(&params, k);
        assert_eq!(get("RegistryTypes"), Some("acr"));
        assert_eq!(get("RegionIds"), Some("cn-hangzhou"));
        assert_eq!(get("InstanceIds"), Some("cri-sas"));
        assert_eq!(get("RepoNamespaces"), Some("shop,lab"));
        assert_eq!(get("RepoNames"), Some("web,api"));
        assert_eq!(get("Tags"), Some("1,2"));
        assert_eq!(get("Digests"), Some("aaaa,bbbb,cccc"));

        // One image known only by digest: no Tags filter, or it would drop that image.
        let images = [
            pending(&format!("{host}/shop/web:1"), Some("sha256:aaaa")),
            pending(&format!("{host}/shop/api@sha256:{}", "b".repeat(64)), None),
        ];
        let params = filters(Some(&route), &sas, &images);
        let get = |k: &str| param(&params, k);
        assert_eq!(get("Digests"), None);
        assert_eq!(get("RepoNames"), Some("web,api"));
    }
}
