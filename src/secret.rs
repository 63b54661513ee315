//! Secrets (keys, passwords, tokens) and where they are read from.
//!
//! A [`Secret`] never prints its value: `Debug` shows `***` and there is no
//! `Display`, so a secret cannot slip into a log line, an error or a response
//! through formatting. The value is reached only through [`Secret::expose`].

use std::fmt;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

mod error;
pub use error::SecretError;

#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// The value, for the one place that must send it (a signature, a header).
    pub(crate) fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// Where a credential is read from; the config never holds the value itself.
///
/// YAML: `{file: /etc/vulngate/hss/sk}` or `{env: HUAWEICLOUD_SDK_SK}`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(
    rename_all = "camelCase",
    deny_unknown_fields,
    try_from = "SecretSourceMap"
)]
pub enum SecretSource {
    /// A file (a mounted Kubernetes Secret); surrounding white space is dropped.
    File(PathBuf),
    /// An environment variable of the vulngate process.
    Env(String),
}

/// The one-key map form, read as a struct so that a wrong or missing key gets the
/// message below rather than a generic enum error.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct SecretSourceMap {
    file: Option<PathBuf>,
    env: Option<String>,
}

impl TryFrom<SecretSourceMap> for SecretSource {
    type Error = String;

    fn try_from(m: SecretSourceMap) -> Result<Self, String> {
        match (m.file, m.env) {
            (Some(f), None) => Ok(SecretSource::File(f)),
            (None, Some(e)) if !e.is_empty() => Ok(SecretSource::Env(e)),
            (None, Some(_)) => Err("env: the variable name is empty".into()),
            _ => Err("write the credential's source as {file: PATH} or {env: NAME}".into()),
        }
    }
}

impl SecretSource {
    /// Reads the value now. Files are read on every call so that a rotated
    /// Secret is picked up without a restart. Errors name the source, never the value.
    pub fn load(&self) -> Result<Secret, SecretError> {
        let value = match self {
            SecretSource::File(path) => {
                std::fs::read_to_string(path).map_err(|source| SecretError::ReadFile {
                    path: path.clone(),
                    source,
                })?
            }
            SecretSource::Env(name) => {
                std::env::var(name).map_err(|_| SecretError::EnvUnset { name: name.clone() })?
            }
        };
        let value = value.trim();
        if value.is_empty() {
            return Err(SecretError::Empty { from: self.clone() });
        }
        Ok(Secret::new(value))
    }

    /// `file /path` or `env NAME`, for messages.
    pub(crate) fn describe(&self) -> String {
        match self {
            SecretSource::File(path) => format!("file {}", path.display()),
            SecretSource::Env(name) => format!("environment variable {name}"),
        }
    }

    /// Rebases a relative file path onto the config file's directory.
    pub(crate) fn rebase(&mut self, base: &std::path::Path) {
        if let SecretSource::File(path) = self {
            if path.is_relative() {
                *path = base.join(&*path);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_are_written_as_one_key_maps() {
        let f: SecretSource = serde_saphyr::from_str("{file: /etc/x}").unwrap();
        assert_eq!(f, SecretSource::File("/etc/x".into()));
        for bad in ["hunter2", "{value: hunter2}", "{file: /a, env: B}", "{}"] {
            assert!(
                serde_saphyr::from_str::<SecretSource>(bad).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn debug_never_shows_the_value() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s:?}"), "***");
        assert_eq!(format!("{:?}", Some(s.clone())), "Some(***)");
        assert_eq!(s.expose(), "hunter2");
    }

    #[test]
    fn file_source_trims_and_reports_missing_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sk");
        std::fs::write(&path, "  value-1\n").unwrap();
        let source = SecretSource::File(path.clone());
        assert_eq!(source.load().unwrap().expose(), "value-1");
        std::fs::write(&path, "\n").unwrap();
        assert!(source.load().unwrap_err().to_string().contains("is empty"));
        let missing = SecretSource::File(dir.path().join("nope"));
        assert!(
            missing
                .load()
                .unwrap_err()
                .to_string()
                .contains("cannot read credential file")
        );
        let env: SecretSource =
            serde_saphyr::from_str("{env: VULNGATE_TEST_SURELY_UNSET_VAR}").unwrap();
        assert!(env.load().unwrap_err().to_string().contains("is not set"));
    }
}
