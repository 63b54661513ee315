//! `tls.clientCAFile`: only clients with a certificate that CA signed (the apiserver,
//! configured through its AdmissionConfiguration) get past the TLS handshake of the
//! webhook port; the CA file is reloaded when it changes.

#[path = "support/reliability.rs"]
mod support;

use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use support::*;

struct Ca {
    issuer: Issuer<'static, KeyPair>,
    pem: String,
}

fn ca(name: &str) -> Ca {
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.distinguished_name.push(DnType::CommonName, name);
    let cert = params.self_signed(&key).unwrap();
    Ca {
        pem: cert.pem(),
        issuer: Issuer::new(params, key),
    }
}

/// A client certificate as the apiserver's kubeConfigFile names one.
fn client_identity(ca: &Ca) -> (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>) {
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params
        .distinguished_name
        .push(DnType::CommonName, "kube-apiserver");
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let cert = params.signed_by(&key, &ca.issuer).unwrap();
    let key = PrivateKeyDer::from_pem_slice(key.serialize_pem().as_bytes()).unwrap();
    (vec![cert.der().clone()], key)
}

/// A client of `server` that trusts its CA and presents `identity`, if any.
fn client(
    server: &ServerProcess,
    identity: Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>,
) -> Client {
    let server_ca = std::fs::read(server.dir.path().join("tls/ca.crt")).unwrap();
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&server_ca) {
        roots.add(cert.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let mut config = match identity {
        Some((chain, key)) => builder.with_client_auth_cert(chain, key).unwrap(),
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    config.resumption = rustls::client::Resumption::disabled();
    Client {
        addr: server.client.addr,
        tls: Arc::new(config),
    }
}

/// A review over `client`: its status, or the error that stopped it.
async fn try_review(client: &Client, uid: &str) -> Result<u16, String> {
    let body = pod_review(uid, "default", &[ALLOWED_IMAGE]);
    client
        .post("/validate", Some("application/json"), &body)
        .await
        .map(|r| r.status)
        .map_err(|e| e.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn only_clients_with_a_certificate_of_the_client_ca_are_served() {
    let apiserver_ca = ca("apiserver client CA");
    let other_ca = ca("someone else's CA");
    let dir = tempfile::tempdir().unwrap();
    let client_ca_file = dir.path().join("client-ca.crt");
    std::fs::write(&client_ca_file, &apiserver_ca.pem).unwrap();
    let generate_dir = format!("  generateDir: {}\n", dir.path().join("tls").display());
    let yaml = config_yaml(dir.path(), "").replace(
        &generate_dir,
        &format!(
            "{generate_dir}  clientCAFile: {}\n",
            client_ca_file.display()
        ),
    );
    assert!(yaml.contains("clientCAFile"), "{yaml}");
    let server = ServerProcess::start_with(dir, &yaml, None);

    let apiserver = client(&server, Some(client_identity(&apiserver_ca)));
    let anonymous = client(&server, None);
    let stranger = client(&server, Some(client_identity(&other_ca)));
    assert_eq!(try_review(&apiserver, "u-apiserver").await, Ok(200));
    let refused = try_review(&anonymous, "u-anonymous").await;
    assert!(
        refused.is_err(),
        "a client without a certificate was answered: {refused:?}"
    );
    let refused = try_review(&stranger, "u-stranger").await;
    assert!(
        refused.is_err(),
        "a client with another CA's certificate was answered: {refused:?}"
    );

    // The CA file replaced (a rotated Secret): the new CA's clients are let in,
    // the old one's are not.
    std::fs::write(&client_ca_file, &other_ca.pem).unwrap();
    let (new, old) = (stranger.clone(), apiserver.clone());
    let switched = eventually(PATIENCE, || {
        let (new, old) = (new.clone(), old.clone());
        async move {
            try_review(&new, "u-new").await == Ok(200) && try_review(&old, "u-old").await.is_err()
        }
    })
    .await;
    assert!(switched, "the client CA file was not reloaded");
    // The ops port stays plain HTTP for probes and scrapes.
    assert_eq!(server.ops_get("/healthz").await.map(|r| r.0), Some(200));
}
