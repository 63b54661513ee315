//! Registry credentials: docker `config.json` / `.dockercfg` parsing, docker's host
//! normalization, and the wrapper that keeps secrets out of logs and errors.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::SystemTime;

use base64::Engine as _;
use serde::Deserialize;
use sha2::{Digest as _, Sha256};

use super::credentials_error::CredentialsError;

pub use crate::secret::Secret;

/// How to authenticate to one registry host.
#[derive(Clone, PartialEq, Eq)]
pub enum Credential {
    /// User name and password: HTTP basic auth, or exchanged for a bearer token
    /// when the registry answers with a token challenge.
    Basic { username: String, password: Secret },
    /// A registry token (`registrytoken` in a docker config) sent as a bearer token.
    Bearer(Secret),
}

impl fmt::Debug for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Credential::Basic { username, .. } => write!(f, "Basic({username}, ***)"),
            Credential::Bearer(_) => f.write_str("Bearer(***)"),
        }
    }
}

impl Credential {
    pub(crate) fn to_registry_auth(&self) -> oci_client::secrets::RegistryAuth {
        use oci_client::secrets::RegistryAuth;
        match self {
            Credential::Basic { username, password } => {
                RegistryAuth::Basic(username.clone(), password.expose().to_string())
            }
            Credential::Bearer(token) => RegistryAuth::Bearer(token.expose().to_string()),
        }
    }

    /// A one-way fingerprint, so caches can keep results of different credentials
    /// apart without keeping another copy of the secret around.
    pub(crate) fn fingerprint(&self) -> String {
        let mut h = Sha256::new();
        match self {
            Credential::Basic { username, password } => {
                h.update(b"basic\0");
                h.update(username.as_bytes());
                h.update(b"\0");
                h.update(password.expose().as_bytes());
            }
            Credential::Bearer(token) => {
                h.update(b"bearer\0");
                h.update(token.expose().as_bytes());
            }
        }
        hex::encode(&h.finalize()[..16])
    }
}

/// A credential and where it came from (for messages: never the secret itself).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SourcedCredential {
    pub credential: Credential,
    /// e.g. `docker config file /etc/vulngate/config.json` or `Secret team-a/pull`.
    pub source: String,
}

/// Normalizes a registry key the way docker does (`ConvertToHostname`): drops the
/// scheme and any path, then names the registry as image references do
/// ([`crate::image::canonical_registry`]: lower case, no `:443`, Docker Hub is `docker.io`).
///
/// `https://index.docker.io/v1/` -> `docker.io`; `http://localhost:5000/v2/` ->
/// `localhost:5000`; `registry-1.docker.io` -> `docker.io`.
pub(crate) fn normalize_host(key: &str) -> String {
    let key = key.trim();
    let without_scheme = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(key);
    let host = without_scheme.split('/').next().unwrap_or(without_scheme);
    crate::image::canonical_registry(host)
}

/// The credentials of one docker config, by normalized host.
#[derive(Clone, Default, PartialEq, Eq)]
pub(crate) struct DockerConfig {
    by_host: BTreeMap<String, Credential>,
}

impl fmt::Debug for DockerConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DockerConfig")
            .field("hosts", &self.by_host.keys().collect::<Vec<_>>())
            .finish()
    }
}

#[derive(Deserialize)]
struct ConfigJson {
    #[serde(default)]
    auths: BTreeMap<String, AuthEntry>,
}

#[derive(Deserialize, Default)]
struct AuthEntry {
    #[serde(default)]
    auth: Option<String>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
    #[serde(default)]
    registrytoken: Option<String>,
}

impl AuthEntry {
    /// The credential of one entry; errors never quote the entry's content.
    fn credential(&self, host: &str) -> Result<Option<Credential>, CredentialsError> {
        if let Some(token) = self.registrytoken.as_deref().filter(|t| !t.is_empty()) {
            return Ok(Some(Credential::Bearer(Secret::new(token))));
        }
        if let (Some(u), Some(p)) = (&self.username, &self.password) {
            if !u.is_empty() {
                return Ok(Some(Credential::Basic {
                    username: u.clone(),
                    password: Secret::new(p.clone()),
                }));
            }
        }
        let Some(auth) = self.auth.as_deref().filter(|a| !a.is_empty()) else {
            return Ok(None);
        };
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(auth.trim())
            .map_err(|_| CredentialsError::AuthNotBase64 {
                host: host.to_string(),
            })?;
        let decoded = String::from_utf8(decoded).map_err(|_| CredentialsError::AuthNotUtf8 {
            host: host.to_string(),
        })?;
        let (username, password) =
            decoded
                .split_once(':')
                .ok_or_else(|| CredentialsError::AuthNotPair {
                    host: host.to_string(),
                })?;
        Ok(Some(Credential::Basic {
            username: username.to_string(),
            password: Secret::new(password),
        }))
    }
}

impl DockerConfig {
    /// Parses a `config.json` (`{"auths": {...}}`, the `.dockerconfigjson` of a
    /// `kubernetes.io/dockerconfigjson` Secret).
    pub(crate) fn from_config_json(bytes: &[u8]) -> Result<DockerConfig, CredentialsError> {
        let parsed: ConfigJson =
            serde_json::from_slice(bytes).map_err(|e| CredentialsError::NotConfigJson {
                line: e.line(),
                column: e.column(),
            })?;
        Self::from_entries(parsed.auths)
    }

    /// Parses a legacy `.dockercfg` (hosts at the top level, the content of a
    /// `kubernetes.io/dockercfg` Secret).
    pub(crate) fn from_dockercfg(bytes: &[u8]) -> Result<DockerConfig, CredentialsError> {
        let parsed: BTreeMap<String, AuthEntry> =
            serde_json::from_slice(bytes).map_err(|e| CredentialsError::NotDockercfg {
                line: e.line(),
                column: e.column(),
            })?;
        Self::from_entries(parsed)
    }

    pub(crate) fn from_file(path: &Path) -> Result<DockerConfig, CredentialsError> {
        let bytes = std::fs::read(path).map_err(|source| CredentialsError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_config_json(&bytes).map_err(|e| CredentialsError::InFile {
            path: path.to_path_buf(),
            source: Box::new(e),
        })
    }

    fn from_entries(
        entries: BTreeMap<String, AuthEntry>,
    ) -> Result<DockerConfig, CredentialsError> {
        let mut by_host = BTreeMap::new();
        for (key, entry) in entries {
            let host = normalize_host(&key);
            if let Some(cred) = entry.credential(&host)? {
                // The first entry of a host wins, as in docker's own lookup order.
                by_host.entry(host).or_insert(cred);
            }
        }
        Ok(DockerConfig { by_host })
    }

    /// The credential for `registry` (host[:port] as in the image reference).
    /// A credential is only ever used for the host it names.
    pub fn lookup(&self, registry: &str) -> Option<&Credential> {
        self.by_host.get(&normalize_host(registry))
    }
}

/// A docker config file that is read again when it changes on disk (a mounted
/// Secret is updated in place); a broken new version keeps the last good one.
pub(crate) struct DockerConfigFile {
    path: PathBuf,
    state: RwLock<(Option<SystemTime>, Arc<DockerConfig>)>,
}

impl DockerConfigFile {
    pub fn load(path: &Path) -> Result<DockerConfigFile, CredentialsError> {
        let modified = modified(path);
        let config = DockerConfig::from_file(path)?;
        Ok(DockerConfigFile {
            path: path.to_path_buf(),
            state: RwLock::new((modified, Arc::new(config))),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The config as it is on disk now (one `stat` when unchanged).
    pub fn current(&self) -> Arc<DockerConfig> {
        let now = modified(&self.path);
        if let Ok(state) = self.state.read() {
            if state.0 == now {
                return state.1.clone();
            }
        }
        let Ok(mut state) = self.state.write() else {
            // Poisoned only by a panic elsewhere; keep serving what was read.
            return Arc::new(DockerConfig::default());
        };
        if state.0 != now {
            match DockerConfig::from_file(&self.path) {
                Ok(config) => *state = (now, Arc::new(config)),
                Err(e) => {
                    tracing::warn!(error = %e, "docker config file changed but cannot be used; keeping the previous one");
                    state.0 = now;
                }
            }
        }
        state.1.clone()
    }
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(s: &str) -> String {
        base64::engine::general_purpose::STANDARD.encode(s)
    }

    #[test]
    fn docker_hub_keys_all_mean_docker_io() {
        for key in [
            "https://index.docker.io/v1/",
            "index.docker.io",
            "docker.io",
            "registry-1.docker.io",
            "https://registry-1.docker.io/v2/",
        ] {
            assert_eq!(normalize_host(key), "docker.io", "{key}");
        }
    }

    #[test]
    fn scheme_and_path_are_dropped_port_is_kept() {
        assert_eq!(
            normalize_host("http://localhost:5000/v2/"),
            "localhost:5000"
        );
        assert_eq!(normalize_host("localhost:5000"), "localhost:5000");
        assert_eq!(normalize_host("https://Quay.IO"), "quay.io");
        // The default port of https is the registry without a port, as in references.
        assert_eq!(
            normalize_host("https://reg.example.com:443/v2/"),
            "reg.example.com"
        );
        assert_eq!(normalize_host("DOCKER.IO:443"), "docker.io");
        assert_eq!(
            normalize_host("reg.example.com:8443/path"),
            "reg.example.com:8443"
        );
    }

    #[test]
    fn credential_is_used_only_for_the_host_it_names() {
        let json = format!(
            r#"{{"auths": {{
                "https://index.docker.io/v1/": {{"auth": "{}"}},
                "localhost:5000": {{"username": "u", "password": "p"}},
                "reg.example.com": {{"registrytoken": "tok"}}
            }}}}"#,
            b64("hub:hubpw")
        );
        let cfg = DockerConfig::from_config_json(json.as_bytes()).unwrap();
        assert_eq!(
            cfg.lookup("docker.io"),
            Some(&Credential::Basic {
                username: "hub".into(),
                password: Secret::new("hubpw")
            })
        );
        assert!(cfg.lookup("localhost:5000").is_some());
        // Same host, other port; other host: no credential.
        assert!(cfg.lookup("localhost:5001").is_none());
        assert!(cfg.lookup("localhost").is_none());
        assert!(cfg.lookup("evil.example.com").is_none());
        assert!(cfg.lookup("reg.example.com.evil.io").is_none());
        assert_eq!(
            cfg.lookup("reg.example.com"),
            Some(&Credential::Bearer(Secret::new("tok")))
        );
    }

    #[test]
    fn legacy_dockercfg_is_read() {
        let json = format!(r#"{{"localhost:5000": {{"auth": "{}"}}}}"#, b64("a:b:c"));
        let cfg = DockerConfig::from_dockercfg(json.as_bytes()).unwrap();
        // The password may itself contain colons.
        assert_eq!(
            cfg.lookup("localhost:5000"),
            Some(&Credential::Basic {
                username: "a".into(),
                password: Secret::new("b:c")
            })
        );
    }

    #[test]
    fn secrets_never_print() {
        let c = Credential::Basic {
            username: "alice".into(),
            password: Secret::new("hunter2"),
        };
        assert!(!format!("{c:?}").contains("hunter2"));
        assert!(!format!("{:?}", Credential::Bearer(Secret::new("tok123"))).contains("tok123"));
        let json = format!(
            r#"{{"auths": {{"h": {{"auth": "{}"}}}}}}"#,
            b64("alice:hunter2")
        );
        let cfg = DockerConfig::from_config_json(json.as_bytes()).unwrap();
        assert!(!format!("{cfg:?}").contains("hunter2"));
    }

    #[test]
    fn bad_input_is_a_clear_error_without_the_secret() {
        let err = DockerConfig::from_config_json(br#"{"auths": {"h": {"auth": "%%hunter2"}}}"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("not base64"), "{err}");
        assert!(!err.contains("hunter2"));
        let err = DockerConfig::from_config_json(br#"{"auths": {"h": {"auth": 7}}}"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("not a docker config.json"), "{err}");
        let no_colon = format!(r#"{{"auths": {{"h": {{"auth": "{}"}}}}}}"#, b64("hunter2"));
        let err = DockerConfig::from_config_json(no_colon.as_bytes())
            .unwrap_err()
            .to_string();
        assert!(!err.contains("hunter2"), "{err}");
    }

    #[test]
    fn a_broken_new_config_file_keeps_the_last_good_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.json");
        std::fs::write(
            &path,
            r#"{"auths": {"h:1": {"username": "u", "password": "p"}}}"#,
        )
        .unwrap();
        let file = DockerConfigFile::load(&path).unwrap();
        assert!(file.current().lookup("h:1").is_some());
        std::fs::write(&path, "{not json").unwrap();
        let later = SystemTime::now() + std::time::Duration::from_secs(5);
        std::fs::File::options()
            .write(true)
            .open(&path)
            .and_then(|f| f.set_modified(later))
            .unwrap();
        assert!(file.current().lookup("h:1").is_some());
    }
}
