//! The config's `registries` turned into scanners: the one place that builds a
//! scanner from its config.

use std::sync::Arc;

use crate::config::{RegistryRoute, ScannerConfig};
use crate::scan::acr::AcrScanner;
use crate::scan::file::FileScanner;
use crate::scan::harbor::HarborScanner;
use crate::scan::hss::HssScanner;
use crate::scan::rate_limit::RateLimited;
use crate::scan::sas::SasScanner;
use crate::scan::{Route, Scanner, ScannerRouter};

use super::{RouteError, StartupError};

/// Builds the scanner a route names. Errors say what to fix in the config
/// (a missing credential file, a bad endpoint), prefixed by the kind.
pub fn build_scanner(config: &ScannerConfig) -> Result<Arc<dyn Scanner>, RouteError> {
    match config {
        ScannerConfig::File(f) => {
            let scanner = Arc::new(FileScanner::load(&f.path)?);
            if !f.reload_interval.is_zero() {
                scanner.watch(f.reload_interval);
            }
            Ok(scanner)
        }
        ScannerConfig::Hss(c) => HssScanner::new(c)
            .map(|s| Arc::new(s) as Arc<dyn Scanner>)
            .map_err(RouteError::Hss),
        ScannerConfig::Harbor(c) => HarborScanner::new(c)
            .map(|s| Arc::new(s) as Arc<dyn Scanner>)
            .map_err(RouteError::Harbor),
        ScannerConfig::Acr(c) => {
            let scanner = AcrScanner::new(c).map_err(RouteError::Acr)?;
            tracing::info!(
                credentials = scanner.credential_source(),
                "acr scanner ready"
            );
            Ok(Arc::new(scanner))
        }
        ScannerConfig::Sas(c) => Ok(Arc::new(SasScanner::new(c).map_err(RouteError::Sas)?)),
    }
}

/// The router of the config's `registries`: each route's scanner, rate limited.
pub(crate) fn scanner_router(routes: &[RegistryRoute]) -> Result<ScannerRouter, StartupError> {
    let mut built = Vec::with_capacity(routes.len());
    for (index, route) in routes.iter().enumerate() {
        let scanner = build_scanner(&route.scanner)
            .and_then(|s| {
                RateLimited::wrap(s, route.max_requests_per_second, route.max_concurrent)
                    .map_err(RouteError::Limits)
            })
            .map_err(|source| StartupError::Route {
                index,
                pattern: route.host_match.0.clone(),
                source,
            })?;
        built.push(Route {
            index,
            pattern: route.host_match.clone(),
            scanner,
        });
    }
    Ok(ScannerRouter::from_routes(built))
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::config::{Config, ScannerConfig};

    #[test]
    fn routes_in_the_config_file_are_validated_and_rebased() {
        let yaml = r#"
registries:
  - match: "*.cr.aliyuncs.com"
    scanner:
      acr:
        region: cn-hangzhou
        credentials:
          accessKeyIdFile: keys/id
          accessKeySecretFile: keys/secret
          rrsa: {tokenFile: tokens/rrsa}
  - match: "*"
    scanner: {sas: {region: ap-southeast-1, signatureVersion: v1, credentials: {accessKeyIdFile: id, accessKeySecretFile: secret}}}
"#;
        let config = Config::from_yaml(yaml, Path::new("/etc/vulngate")).unwrap();
        let ScannerConfig::Acr(acr) = &config.registries[0].scanner else {
            panic!("acr route expected");
        };
        assert_eq!(
            acr.credentials.access_key_id_file.as_deref(),
            Some(Path::new("/etc/vulngate/keys/id"))
        );
        let rrsa = acr.credentials.rrsa.as_ref().unwrap();
        assert_eq!(
            rrsa.token_file.as_deref(),
            Some(Path::new("/etc/vulngate/tokens/rrsa"))
        );
        // Files are read at call time, so the scanners build without them.
        for route in &config.registries {
            let scanner = super::build_scanner(&route.scanner).unwrap();
            assert!(["acr", "sas"].contains(&scanner.kind()));
        }

        let half = "registries:\n  - match: \"*\"\n    scanner: {acr: {region: cn-hangzhou, credentials: {accessKeyIdFile: id}}}\n";
        let err = Config::from_yaml(half, Path::new("/"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("registries[0].scanner.acr.credentials"),
            "{err}"
        );
        let inline = "registries:\n  - match: \"*\"\n    scanner: {sas: {region: cn-hangzhou, accessKeySecret: oops}}\n";
        let err = Config::from_yaml(inline, Path::new("/"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("accessKeySecret"), "{err}");
        let bad_endpoint = "registries:\n  - match: \"*\"\n    scanner: {acr: {region: cn-hangzhou, endpoint: \"ftp://x\"}}\n";
        let err = Config::from_yaml(bad_endpoint, Path::new("/"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("registries[0].scanner.acr.endpoint"), "{err}");
    }

    /// The example in docs/scanners-alibaba.md is a valid config.
    #[test]
    fn documented_example_parses() {
        let doc = include_str!("../../docs/scanners-alibaba.md");
        let start = doc.find("```yaml\n").expect("yaml example") + "```yaml\n".len();
        let end = start + doc[start..].find("```").expect("end of the example");
        let config =
            crate::config::Config::from_yaml(&doc[start..end], std::path::Path::new("/")).unwrap();
        assert_eq!(config.registries.len(), 2);
        let crate::config::ScannerConfig::Acr(acr) = &config.registries[0].scanner else {
            panic!("first route is acr");
        };
        assert!(acr.credentials.rrsa.is_some());
        let sas = &config.registries[1].scanner;
        assert!(matches!(sas, crate::config::ScannerConfig::Sas(_)));
        assert_eq!(super::build_scanner(sas).unwrap().kind(), "sas");
    }
}
