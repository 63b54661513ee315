//! The process's one rustls crypto provider: ring. Every TLS client and server of
//! vulngate (the webhook's port, kube, redis, oci-client, the scanners' reqwest clients)
//! runs on it. reqwest and oci-client are built without a provider of their own (their
//! `rustls` features would compile aws-lc-rs beside ring) and take the process default,
//! and reqwest panics when there is none, so every client is built through here.

/// Installs ring as the process default. Idempotent: a default already installed (by
/// an earlier call, or by an embedding program) is kept.
pub fn install_default_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// A reqwest client builder on the process provider.
pub fn http_client() -> reqwest::ClientBuilder {
    install_default_provider();
    reqwest::Client::builder()
}
