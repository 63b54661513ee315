//! TLS: a generated local CA and serving certificate (ECDSA P-256), and a
//! certificate resolver that reloads the files when they change on disk.
//!
//! Reload polls the files' contents instead of watching paths: a Kubernetes
//! Secret volume swaps its `..data` symlink atomically, which inotify watches on
//! the file paths miss. Reading two small files a second costs nothing.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::ring::sign::any_supported_type;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};
use sha2::{Digest, Sha256};

use crate::metrics::Metrics;

mod error;
pub use error::TlsError;

pub(crate) const CA_FILE: &str = "ca.crt";
pub(crate) const CERT_FILE: &str = "tls.crt";
pub(crate) const KEY_FILE: &str = "tls.key";

/// Paths of a generated CA and serving certificate.
#[derive(Debug, Clone)]
pub struct GeneratedTls {
    pub ca_file: PathBuf,
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    pub origin: Origin,
}

/// Where the generated certificate in use came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// A valid set already in the directory.
    Reused,
    /// Written now: there was none (or none that loads).
    Generated,
    /// Written now over one that expired or was about to; says why.
    Replaced(String),
}

/// Writes a CA and a serving certificate for `localhost`, 127.0.0.1, ::1 and
/// `extra_names` into `dir`, unless a usable set that is valid for 30 more days is
/// already there.
pub fn generate(dir: &Path, extra_names: &[String]) -> Result<GeneratedTls, TlsError> {
    generate_valid_for(
        dir,
        extra_names,
        crate::config::serving::TlsConfig::default().regenerate_before,
    )
}

/// [`generate`], keeping a set already there only if it loads and does not expire
/// within `renew_before`.
pub(crate) fn generate_valid_for(
    dir: &Path,
    extra_names: &[String],
    renew_before: Duration,
) -> Result<GeneratedTls, TlsError> {
    let mut out = GeneratedTls {
        ca_file: dir.join(CA_FILE),
        cert_file: dir.join(CERT_FILE),
        key_file: dir.join(KEY_FILE),
        origin: Origin::Generated,
    };
    let existing = load_certified_key(&out.cert_file, &out.key_file)
        .ok()
        .filter(|_| out.ca_file.is_file());
    if let Some(existing) = existing {
        let renew_at = time::OffsetDateTime::now_utc() + renew_before;
        match chain_not_after(&existing.cert) {
            Some(not_after) if not_after > renew_at.unix_timestamp() => {
                out.origin = Origin::Reused;
                return Ok(out);
            }
            Some(not_after) => {
                let when = time::OffsetDateTime::from_unix_timestamp(not_after)
                    .ok()
                    .and_then(|t| {
                        t.format(&time::format_description::well_known::Rfc3339)
                            .ok()
                    })
                    .unwrap_or_else(|| not_after.to_string());
                let tense = if not_after <= time::OffsetDateTime::now_utc().unix_timestamp() {
                    "expired"
                } else {
                    "expires"
                };
                out.origin = Origin::Replaced(format!(
                    "the certificate in {} {tense} at {when}",
                    out.cert_file.display()
                ));
            }
            None => {
                out.origin = Origin::Replaced(format!(
                    "the expiry of the certificate in {} cannot be read",
                    out.cert_file.display()
                ));
            }
        }
    }
    std::fs::create_dir_all(dir).map_err(|source| TlsError::CreateDir {
        dir: dir.to_path_buf(),
        source,
    })?;

    let ca_key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "vulngate local CA");
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let (not_before, not_after) = validity(365);
    ca_params.not_before = not_before;
    ca_params.not_after = not_after;
    let ca_cert = ca_params.self_signed(&ca_key)?;
    let issuer = Issuer::new(ca_params, ca_key);

    let mut names = vec![
        "localhost".to_string(),
        "127.0.0.1".to_string(),
        "::1".to_string(),
    ];
    names.extend(extra_names.iter().cloned());
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    let mut params = CertificateParams::new(names)?;
    params
        .distinguished_name
        .push(DnType::CommonName, "vulngate");
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let (not_before, not_after) = validity(90);
    params.not_before = not_before;
    params.not_after = not_after;
    let cert = params.signed_by(&key, &issuer)?;

    write_private(&out.key_file, key.serialize_pem().as_bytes())?;
    write_file(&out.cert_file, cert.pem().as_bytes())?;
    write_file(&out.ca_file, ca_cert.pem().as_bytes())?;
    Ok(out)
}

fn validity(days: i64) -> (time::OffsetDateTime, time::OffsetDateTime) {
    let now = time::OffsetDateTime::now_utc();
    (
        now - time::Duration::hours(1),
        now + time::Duration::days(days),
    )
}

fn write_file(path: &Path, bytes: &[u8]) -> Result<(), TlsError> {
    std::fs::write(path, bytes).map_err(|source| write_error(path, source))
}

fn write_error(path: &Path, source: std::io::Error) -> TlsError {
    TlsError::Write {
        path: path.to_path_buf(),
        source,
    }
}

fn write_private(path: &Path, bytes: &[u8]) -> Result<(), TlsError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(|source| write_error(path, source))?;
    f.write_all(bytes)
        .map_err(|source| write_error(path, source))
}

fn read_pair(cert_file: &Path, key_file: &Path) -> Result<(Vec<u8>, Vec<u8>), TlsError> {
    let cert = std::fs::read(cert_file).map_err(|source| TlsError::ReadCertificate {
        path: cert_file.to_path_buf(),
        source,
    })?;
    let key = std::fs::read(key_file).map_err(|source| TlsError::ReadKey {
        path: key_file.to_path_buf(),
        source,
    })?;
    Ok((cert, key))
}

/// The notAfter (unix seconds) of the first certificate of a chain: the serving one.
pub(crate) fn chain_not_after(chain: &[CertificateDer<'_>]) -> Option<i64> {
    let (_, cert) = x509_parser::parse_x509_certificate(chain.first()?.as_ref()).ok()?;
    Some(cert.validity().not_after.timestamp())
}

fn certified_key(cert_pem: &[u8], key_pem: &[u8]) -> Result<CertifiedKey, TlsError> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<_, _>>()
        .map_err(TlsError::CertificatePem)?;
    if chain.is_empty() {
        return Err(TlsError::NoCertificate);
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(TlsError::KeyPem)?;
    let signing_key = any_supported_type(&key).map_err(TlsError::UnsupportedKey)?;
    let certified = CertifiedKey::new(chain, signing_key);
    certified.keys_match().map_err(TlsError::KeyMismatch)?;
    Ok(certified)
}

pub(crate) fn load_certified_key(
    cert_file: &Path,
    key_file: &Path,
) -> Result<CertifiedKey, TlsError> {
    let (cert, key) = read_pair(cert_file, key_file)?;
    certified_key(&cert, &key)
}

/// The serving certificate, swapped in place when the files change.
#[derive(Debug)]
pub struct ReloadingCert {
    cert_file: PathBuf,
    key_file: PathBuf,
    current: RwLock<(Arc<CertifiedKey>, [u8; 32])>,
}

impl ReloadingCert {
    pub fn load(cert_file: &Path, key_file: &Path) -> Result<Arc<ReloadingCert>, TlsError> {
        let (cert, key) = read_pair(cert_file, key_file)?;
        let certified = certified_key(&cert, &key)?;
        Ok(Arc::new(ReloadingCert {
            cert_file: cert_file.to_path_buf(),
            key_file: key_file.to_path_buf(),
            current: RwLock::new((Arc::new(certified), fingerprint(&cert, &key))),
        }))
    }

    /// When the certificate served now expires (unix seconds), if it can be read.
    pub fn not_after(&self) -> Option<i64> {
        let current = self.current.read().ok()?;
        chain_not_after(&current.0.cert)
    }

    /// Reloads when the files' contents changed. A half-written pair (mid-rotation)
    /// keeps the current certificate and is tried again on the next poll.
    pub(crate) fn reload_if_changed(&self) -> Result<bool, TlsError> {
        let (cert, key) = read_pair(&self.cert_file, &self.key_file)?;
        let print = fingerprint(&cert, &key);
        if self.current.read().map(|c| c.1 == print).unwrap_or(false) {
            return Ok(false);
        }
        let certified = certified_key(&cert, &key)?;
        if let Ok(mut current) = self.current.write() {
            *current = (Arc::new(certified), print);
        }
        Ok(true)
    }

    /// Polls the files until the process ends; the expiry gauge follows.
    pub fn spawn_reloader(self: &Arc<Self>, every: Duration, metrics: Arc<Metrics>) {
        let this = Arc::clone(self);
        if let Some(at) = self.not_after() {
            metrics.tls_certificate_expires_at(at);
        }
        let reload = move || {
            let changed = this.reload_if_changed()?;
            if changed {
                if let Some(at) = this.not_after() {
                    metrics.tls_certificate_expires_at(at);
                }
                metrics.tls_reloaded();
            }
            Ok(changed)
        };
        spawn_poller("serving certificate", every, reload);
    }
}

/// Runs `reload` (blocking file reads) every `every` until the process ends, logging
/// a reload and, once per distinct error, a failure that keeps the current contents.
fn spawn_poller<R>(what: &'static str, every: Duration, reload: R)
where
    R: Fn() -> Result<bool, TlsError> + Send + Sync + 'static,
{
    let reload = Arc::new(reload);
    tokio::spawn(async move {
        let mut last_error = String::new();
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let reload = Arc::clone(&reload);
            match tokio::task::spawn_blocking(move || reload()).await {
                Ok(Ok(true)) => {
                    last_error.clear();
                    tracing::info!("{what} reloaded from disk");
                }
                Ok(Ok(false)) => last_error.clear(),
                Ok(Err(e)) => {
                    let e = e.to_string();
                    if e != last_error {
                        tracing::warn!(error = %e, "{what} not reloaded; keeping the current one");
                        last_error = e;
                    }
                }
                Err(e) => tracing::warn!(error = %e, "{what} reload task failed"),
            }
        }
    });
}

fn fingerprint(cert: &[u8], key: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(cert);
    h.update([0u8]);
    h.update(key);
    h.finalize().into()
}

impl ResolvesServerCert for ReloadingCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.current.read().ok().map(|c| Arc::clone(&c.0))
    }
}

/// The CAs whose client certificates the webhook port accepts (`tls.clientCAFile`),
/// read again when the file changes.
#[derive(Debug)]
pub struct ReloadingClientCa {
    file: PathBuf,
    current: RwLock<(Arc<dyn ClientCertVerifier>, [u8; 32])>,
}

impl ReloadingClientCa {
    pub fn load(file: &Path) -> Result<Arc<ReloadingClientCa>, TlsError> {
        let pem = read_client_ca(file)?;
        let verifier = client_verifier(&pem, file)?;
        Ok(Arc::new(ReloadingClientCa {
            file: file.to_path_buf(),
            current: RwLock::new((verifier, fingerprint(&pem, &[]))),
        }))
    }

    /// Reloads when the file's contents changed; a file that does not parse keeps
    /// the current CAs.
    pub(crate) fn reload_if_changed(&self) -> Result<bool, TlsError> {
        let pem = read_client_ca(&self.file)?;
        let print = fingerprint(&pem, &[]);
        if self.current.read().map(|c| c.1 == print).unwrap_or(false) {
            return Ok(false);
        }
        let verifier = client_verifier(&pem, &self.file)?;
        if let Ok(mut current) = self.current.write() {
            *current = (verifier, print);
        }
        Ok(true)
    }

    pub fn spawn_reloader(self: &Arc<Self>, every: Duration) {
        let this = Arc::clone(self);
        spawn_poller("client CA", every, move || this.reload_if_changed());
    }

    fn verifier(&self) -> Result<Arc<dyn ClientCertVerifier>, rustls::Error> {
        self.current
            .read()
            .map(|c| Arc::clone(&c.0))
            .map_err(|_| rustls::Error::General("client CA lock poisoned".into()))
    }
}

fn read_client_ca(file: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(file).map_err(|source| TlsError::ReadClientCa {
        path: file.to_path_buf(),
        source,
    })
}

fn client_verifier(pem: &[u8], file: &Path) -> Result<Arc<dyn ClientCertVerifier>, TlsError> {
    let path = || file.to_path_buf();
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(pem) {
        let cert = cert.map_err(|source| TlsError::ClientCaPem {
            path: path(),
            source,
        })?;
        roots
            .add(cert)
            .map_err(|source| TlsError::ClientCaCertificate {
                path: path(),
                source,
            })?;
    }
    if roots.is_empty() {
        return Err(TlsError::ClientCaEmpty { path: path() });
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
        .build()
        .map_err(|source| TlsError::ClientVerifier {
            path: path(),
            source,
        })
}

impl ClientCertVerifier for ReloadingClientCa {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        true
    }

    /// No hints: the names would be stale after a reload, and a Go client (the
    /// apiserver) sends its one certificate when the list is empty.
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.verifier()?
            .verify_client_cert(end_entity, intermediates, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.verifier()?.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.verifier()?.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.verifier()
            .map(|v| v.supported_verify_schemes())
            .unwrap_or_default()
    }
}

/// A TLS 1.2/1.3 server config with ALPN for HTTP/2 and HTTP/1.1; with `client_ca`,
/// clients must present a certificate it signed.
pub fn server_config(
    cert: Arc<ReloadingCert>,
    client_ca: Option<Arc<ReloadingClientCa>>,
) -> Result<rustls::ServerConfig, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(TlsError::Protocols)?;
    let builder = match client_ca {
        Some(ca) => builder.with_client_cert_verifier(ca),
        None => builder.with_no_client_auth(),
    };
    let mut config = builder.with_cert_resolver(cert);
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_certificate_loads_and_is_reused() {
        let dir = tempfile::tempdir().unwrap();
        let month = Duration::from_secs(30 * 24 * 3600);
        let first = generate_valid_for(dir.path(), &["vulngate.svc".into()], month).unwrap();
        assert_eq!(first.origin, Origin::Generated);
        let pem = std::fs::read(&first.cert_file).unwrap();
        let again = generate(dir.path(), &[]).unwrap();
        assert_eq!(again.origin, Origin::Reused);
        assert_eq!(pem, std::fs::read(&again.cert_file).unwrap());
        // Valid 90 days: asked to be good for 100 more, it is generated again.
        let renewed =
            generate_valid_for(dir.path(), &[], Duration::from_secs(100 * 24 * 3600)).unwrap();
        assert!(
            matches!(&renewed.origin, Origin::Replaced(why) if why.contains("expires at")),
            "{:?}",
            renewed.origin
        );
        assert_ne!(pem, std::fs::read(&renewed.cert_file).unwrap());
        let cert = ReloadingCert::load(&first.cert_file, &first.key_file).unwrap();
        assert!(!cert.reload_if_changed().unwrap());
        std::fs::write(&first.key_file, b"garbage").unwrap();
        assert!(cert.reload_if_changed().is_err());
    }
}
