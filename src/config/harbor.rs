//! `scanner: {harbor: ...}`.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::retry::RetryConfig;
use crate::secret::SecretSource;

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HarborConfig {
    /// Base URL of Harbor, e.g. `https://harbor.example.com`.
    pub url: String,
    /// Robot account name, e.g. `robot$vulngate` (project robots: `robot$<project>+<name>`).
    pub username: String,
    /// The robot account's secret: `{file: /path}` or `{env: NAME}`.
    pub password: SecretSource,
    /// PEM CA bundle trusted for Harbor's certificate, beside the system roots.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    #[serde(default = "default_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    #[serde(default)]
    pub retry: RetryConfig,
    /// Read each finished scan's vulnerability report (one more call per digest) for
    /// `count: fixable`, `allow-cves` and `grace-days`.
    #[serde(default = "super::default_vulnerability_details")]
    pub vulnerability_details: bool,
}

fn default_timeout() -> Duration {
    Duration::from_secs(5)
}

impl HarborConfig {
    pub(crate) fn rebase_paths(&mut self, base: &std::path::Path) {
        self.password.rebase(base);
        if let Some(ca) = self.ca_file.as_mut() {
            if ca.is_relative() {
                *ca = base.join(&*ca);
            }
        }
    }
}
