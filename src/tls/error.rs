//! What can go wrong with the serving certificate and the client CA; each error names
//! the file it is about.

use std::path::PathBuf;

use rustls::pki_types::pem;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot create {}: {source}", dir.display())]
    CreateDir {
        dir: PathBuf,
        source: std::io::Error,
    },
    #[error("certificate generation failed: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("cannot write {}: {source}", path.display())]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot read certificate {}: {source}", path.display())]
    ReadCertificate {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot read key {}: {source}", path.display())]
    ReadKey {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("bad certificate PEM: {0}")]
    CertificatePem(pem::Error),
    #[error("no certificate in the certificate file")]
    NoCertificate,
    #[error("bad private key PEM: {0}")]
    KeyPem(pem::Error),
    #[error("unsupported private key: {0}")]
    UnsupportedKey(rustls::Error),
    #[error("certificate and key do not match: {0}")]
    KeyMismatch(rustls::Error),
    #[error("cannot read client CA {}: {source}", path.display())]
    ReadClientCa {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("client CA {}: bad PEM: {source}", path.display())]
    ClientCaPem { path: PathBuf, source: pem::Error },
    #[error("client CA {}: {source}", path.display())]
    ClientCaCertificate {
        path: PathBuf,
        source: rustls::Error,
    },
    #[error("client CA {}: no certificate in it", path.display())]
    ClientCaEmpty { path: PathBuf },
    #[error("client CA {}: {source}", path.display())]
    ClientVerifier {
        path: PathBuf,
        source: rustls::server::VerifierBuilderError,
    },
    #[error("TLS configuration: {0}")]
    Protocols(rustls::Error),
}
