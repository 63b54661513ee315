//! The serving certificate rotated the way a Kubernetes Secret volume rotates it,
//! under a load of reviews: no request fails, new connections get the new
//! certificate, and the expiry gauge follows. A generated certificate that has
//! expired is replaced at start.

#[path = "support/reliability.rs"]
mod support;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
use sha2::{Digest, Sha256};
use support::*;
use tokio::io::AsyncWriteExt;

struct Ca {
    issuer: Issuer<'static, KeyPair>,
    pem: String,
}

fn ca() -> Ca {
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    let cert = params.self_signed(&key).unwrap();
    Ca {
        pem: cert.pem(),
        issuer: Issuer::new(params, key),
    }
}

/// A serving certificate for localhost: (cert PEM, key PEM, SHA-256 of the cert DER).
fn leaf(ca: &Ca) -> (String, String, [u8; 32]) {
    leaf_until(ca, days_from_now(365))
}

/// Whole seconds, as a certificate stores them.
fn days_from_now(days: i64) -> time::OffsetDateTime {
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    time::OffsetDateTime::from_unix_timestamp(now + days * 86_400).unwrap()
}

fn leaf_until(ca: &Ca, not_after: time::OffsetDateTime) -> (String, String, [u8; 32]) {
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut params = CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    params.not_before = days_from_now(-100);
    params.not_after = not_after;
    let cert = params.signed_by(&key, &ca.issuer).unwrap();
    let print = Sha256::digest(cert.der()).into();
    (cert.pem(), key.serialize_pem(), print)
}

/// A Secret volume: `..<timestamp>/` holding the files, `..data` -> it, and
/// `tls.crt` -> `..data/tls.crt`, `tls.key` -> `..data/tls.key`.
struct SecretVolume {
    dir: PathBuf,
    generation: u32,
}

impl SecretVolume {
    fn create(dir: &Path, cert: &str, key: &str) -> SecretVolume {
        std::fs::create_dir_all(dir).unwrap();
        let mut v = SecretVolume {
            dir: dir.to_path_buf(),
            generation: 0,
        };
        v.rotate(cert, key);
        for name in ["tls.crt", "tls.key"] {
            std::os::unix::fs::symlink(format!("..data/{name}"), dir.join(name)).unwrap();
        }
        v
    }

    /// What the kubelet's atomic writer does: a new timestamped directory,
    /// `..data_tmp` -> it, renamed over `..data`, then the old directory removed.
    fn rotate(&mut self, cert: &str, key: &str) {
        self.generation += 1;
        let name = format!("..2026_11_23_12_00_00.{:09}", self.generation);
        let ts = self.dir.join(&name);
        std::fs::create_dir(&ts).unwrap();
        std::fs::write(ts.join("tls.crt"), cert).unwrap();
        std::fs::write(ts.join("tls.key"), key).unwrap();
        let tmp = self.dir.join("..data_tmp");
        std::os::unix::fs::symlink(&name, &tmp).unwrap();
        let old = std::fs::read_link(self.dir.join("..data")).ok();
        std::fs::rename(&tmp, self.dir.join("..data")).unwrap();
        if let Some(old) = old {
            std::fs::remove_dir_all(self.dir.join(old)).unwrap();
        }
    }
}

async fn served_fingerprint(client: &Client) -> [u8; 32] {
    let tls = client.connect().await.expect("handshake");
    let der = tls.get_ref().1.peer_certificates().unwrap()[0].clone();
    Sha256::digest(der.as_ref()).into()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rotation_under_load_fails_no_request_and_serves_the_new_certificate() {
    let authority = ca();
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("secret");
    let ca_file = dir.path().join("ca.crt");
    std::fs::write(&ca_file, &authority.pem).unwrap();
    let (cert, key, first_print) = leaf(&authority);
    let mut volume = SecretVolume::create(&secret, &cert, &key);
    let yaml = config_yaml(dir.path(), "").replace(
        &format!("  generateDir: {}\n", dir.path().join("tls").display()),
        &format!(
            "  certFile: {}\n  keyFile: {}\n",
            secret.join("tls.crt").display(),
            secret.join("tls.key").display()
        ),
    );
    assert!(yaml.contains("certFile"), "{yaml}");
    let server = ServerProcess::start_with(dir, &yaml, Some(ca_file));
    assert_eq!(served_fingerprint(&server.client).await, first_print);

    let stop = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let mut load = Vec::new();
    for worker in 0..4 {
        let (client, stop, ok, failed) = (
            server.client.clone(),
            Arc::clone(&stop),
            Arc::clone(&ok),
            Arc::clone(&failed),
        );
        load.push(tokio::spawn(async move {
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                // Five reviews on one keep-alive connection, then a new connection.
                let outcome: std::io::Result<()> = async {
                    let mut tls = client.connect().await?;
                    for _ in 0..5 {
                        n += 1;
                        let uid = format!("w{worker}-{n}");
                        let body = pod_review(&uid, "default", &[ALLOWED_IMAGE]);
                        tls.write_all(&request_bytes(
                            "/validate",
                            Some("application/json"),
                            &body,
                            true,
                        ))
                        .await?;
                        let resp = read_response(&mut tls).await?;
                        if resp.status == 200 && resp.json()["response"]["uid"] == uid.as_str() {
                            ok.fetch_add(1, Ordering::Relaxed);
                        } else {
                            eprintln!("worker {worker}: {} {}", resp.status, resp.text());
                            failed.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    Ok(())
                }
                .await;
                if let Err(e) = outcome {
                    eprintln!("worker {worker}: {e}");
                    failed.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }

    let mut expected = first_print;
    let mut last_not_after = 0;
    for round in 0..3 {
        tokio::time::sleep(Duration::from_millis(700)).await;
        if round == 1 {
            // A broken pair (the key of another certificate) is not loaded: the
            // current certificate keeps being served, and nothing fails.
            let (cert_a, _, _) = leaf(&authority);
            let (_, key_b, _) = leaf(&authority);
            volume.rotate(&cert_a, &key_b);
            tokio::time::sleep(Duration::from_secs(3)).await;
            assert_eq!(served_fingerprint(&server.client).await, expected);
        }
        let not_after = days_from_now(100 + round);
        last_not_after = not_after.unix_timestamp();
        let (cert, key, print) = leaf_until(&authority, not_after);
        volume.rotate(&cert, &key);
        let client = server.client.clone();
        let served = eventually(PATIENCE, || {
            let client = client.clone();
            async move { served_fingerprint(&client).await == print }
        })
        .await;
        assert!(
            served,
            "rotation {round}: new connections never got the new certificate"
        );
        expected = print;
    }
    tokio::time::sleep(Duration::from_millis(700)).await;
    stop.store(true, Ordering::Relaxed);
    for task in load {
        task.await.unwrap();
    }
    let (ok, failed) = (ok.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    eprintln!("reviews during rotation: {ok} ok, {failed} failed");
    assert_eq!(
        failed, 0,
        "{failed} failed requests during rotation ({ok} ok)"
    );
    assert!(ok > 20, "the load ran ({ok} reviews)");
    let (_, metrics) = server.ops_get("/metrics").await.unwrap();
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("vulngate_tls_certificate_reloads_total") && !l.ends_with(" 0")),
        "reloads are counted: {metrics}"
    );
    assert_eq!(
        expiry_gauge(&server).await,
        last_not_after,
        "the expiry gauge follows the served certificate"
    );
}

async fn expiry_gauge(server: &ServerProcess) -> i64 {
    let (_, metrics) = server.ops_get("/metrics").await.unwrap();
    metrics
        .lines()
        .find_map(|l| l.strip_prefix("vulngate_tls_certificate_expiry_timestamp_seconds "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no expiry gauge: {metrics}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_expired_generated_certificate_is_replaced_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let tls = dir.path().join("tls");
    std::fs::create_dir_all(&tls).unwrap();
    let authority = ca();
    let (cert, key, expired_print) = leaf_until(&authority, days_from_now(-1));
    std::fs::write(tls.join("ca.crt"), &authority.pem).unwrap();
    std::fs::write(tls.join("tls.crt"), cert).unwrap();
    std::fs::write(tls.join("tls.key"), key).unwrap();
    let yaml = config_yaml(dir.path(), "");
    // The client trusts what is in tls/ca.crt once the server has started, and
    // checks the validity period: only a new, valid certificate passes.
    let server = ServerProcess::start_with(dir, &yaml, None);
    server.client.assert_serving().await;
    assert_ne!(served_fingerprint(&server.client).await, expired_print);
    let expiry = expiry_gauge(&server).await;
    assert!(
        expiry > days_from_now(80).unix_timestamp(),
        "the new certificate is valid for months: expires at {expiry}"
    );
}
