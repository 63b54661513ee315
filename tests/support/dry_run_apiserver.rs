//! An HTTPS stand-in for the one kube-apiserver call the chart's `helm test` Pod makes:
//! `POST /api/v1/namespaces/NS/pods?dryRun=All` with its ServiceAccount token. Like the
//! apiserver, it checks the token, sends an AdmissionReview to each webhook of the
//! rendered ValidatingWebhookConfiguration whose rules match pods CREATE (at its
//! `clientConfig.service.path`, trusting only its `caBundle`) and answers 201 with the
//! Pod, or 403 with the Status `admission webhook "NAME" denied the request: MESSAGE`.
//! Namespace selectors are not evaluated: the test namespace is one vulngate checks.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde_json::{Value, json};

/// Where the fake reaches a webhook Service, and how it trusts it.
pub struct WebhookTarget {
    pub name: String,
    pub url: String,
    pub client: reqwest::Client,
}

pub struct DryRunApiserver {
    pub port: u16,
    /// PEM of the CA the Pod trusts (its ServiceAccount volume's `ca.crt`).
    pub ca_pem: Vec<u8>,
    task: tokio::task::JoinHandle<()>,
}

impl DryRunApiserver {
    /// Serves on a free loopback port with a certificate for 127.0.0.1 made in `dir`.
    pub async fn start(dir: &Path, token: &str, webhooks: Vec<WebhookTarget>) -> Self {
        let tls = vulngate::tls::generate(dir, &[]).expect("apiserver certificate");
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&tls.cert_file)
            .expect("cert")
            .collect::<Result<_, _>>()
            .expect("cert PEM");
        let key = PrivateKeyDer::from_pem_file(&tls.key_file).expect("key PEM");
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("TLS versions")
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .expect("server config");
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
            .await
            .expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let state = Arc::new((format!("Bearer {token}"), webhooks));
        let task = tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let (acceptor, state) = (acceptor.clone(), Arc::clone(&state));
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let service = hyper::service::service_fn(move |req| {
                        let state = Arc::clone(&state);
                        async move { Ok::<_, hyper::Error>(handle(req, &state.0, &state.1).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tls), service)
                        .await;
                });
            }
        });
        DryRunApiserver {
            port,
            ca_pem: std::fs::read(&tls.ca_file).expect("CA"),
            task,
        }
    }
}

impl Drop for DryRunApiserver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn status(code: u16, reason: &str, message: &str) -> Response<Full<Bytes>> {
    let body = json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": message, "reason": reason, "code": code});
    reply(code, &body)
}

fn reply(code: u16, body: &Value) -> Response<Full<Bytes>> {
    Response::builder()
        .status(code)
        .header("Content-Type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .expect("response")
}

async fn handle(
    req: Request<hyper::body::Incoming>,
    bearer: &str,
    webhooks: &[WebhookTarget],
) -> Response<Full<Bytes>> {
    let authorized = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        == Some(bearer);
    if !authorized {
        return status(401, "Unauthorized", "Unauthorized");
    }
    let path = req.uri().path().to_string();
    let dry_run = req.uri().query().unwrap_or("").contains("dryRun=All");
    let namespace = path
        .strip_prefix("/api/v1/namespaces/")
        .and_then(|rest| rest.strip_suffix("/pods"));
    let (Some(namespace), true) = (namespace.map(str::to_string), req.method() == "POST") else {
        return status(
            404,
            "NotFound",
            &format!("{} {path}: not served here", req.method()),
        );
    };
    if !dry_run {
        return status(400, "BadRequest", "only dry runs are served here");
    }
    let body = match req.into_body().collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => return status(400, "BadRequest", &e.to_string()),
    };
    let mut pod: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => return status(400, "BadRequest", &e.to_string()),
    };
    pod["metadata"]["namespace"] = json!(namespace);
    let review = json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "dry-run-1",
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "requestKind": {"group": "", "version": "v1", "kind": "Pod"},
            "requestResource": {"group": "", "version": "v1", "resource": "pods"},
            "name": pod["metadata"]["name"],
            "namespace": namespace,
            "operation": "CREATE",
            "userInfo": {"username": "system:serviceaccount:vulngate:vulngate-test"},
            "object": pod,
            "oldObject": null,
            "dryRun": true,
            "options": {"apiVersion": "meta.k8s.io/v1", "kind": "CreateOptions", "dryRun": ["All"]}
        }
    });
    for webhook in webhooks {
        let answer = webhook
            .client
            .post(&webhook.url)
            .header("Content-Type", "application/json")
            .body(review.to_string())
            .send()
            .await;
        let out: Value = match answer {
            Ok(r) => r.json().await.unwrap_or(Value::Null),
            Err(e) => {
                let message = format!(
                    "Internal error occurred: failed calling webhook \"{}\": {e}",
                    webhook.name
                );
                return status(500, "InternalError", &message);
            }
        };
        if out["response"]["allowed"] != true {
            let message = format!(
                "admission webhook \"{}\" denied the request: {}",
                webhook.name,
                out["response"]["status"]["message"].as_str().unwrap_or("")
            );
            return status(403, "Forbidden", &message);
        }
    }
    reply(201, &review["request"]["object"])
}
