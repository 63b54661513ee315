//! The container image: built by `bash manifests/image/build.sh` FROM scratch,
//! reproducible, small, pushed to a real registry and read back by digest; then run the
//! way the chart's Deployment runs it (tests/support/pod.rs): the rendered container
//! with its user, read-only root, dropped capabilities, args, env, ports and volumes.
//!
//! Needs podman, runc, skopeo and binutils (tests/setup.d/image.sh), docker-registry
//! (tests/setup.d/registry.sh) and helm (tests/setup.d/helm.sh); fails naming the
//! script when one is missing. The first run builds the release binary (minutes).

mod support;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::container::{BuiltImage, Podman, push, root, skopeo};
use support::dry_run_apiserver::{DryRunApiserver, WebhookTarget};
use support::pod::{Pod, Rendered};
use support::registry::{Registry, RegistryAuth, free_port};
use support::webhook::{fixtures_dir, object_with_pod_spec, pod_spec, review};

const MIB: u64 = 1024 * 1024;

fn image_name(label: &str) -> String {
    format!("localhost/vulngate-test-{label}:{}", std::process::id())
}

fn git(args: &[&str]) -> String {
    let out = Command::new("git")
        .args(args)
        .current_dir(root())
        .output()
        .expect("git");
    assert!(out.status.success(), "git {args:?}");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Every file of an image's layers, as `tar` lists them.
fn layer_files(oci_dir: &Path, manifest: &Value) -> Vec<String> {
    let mut files = vec![];
    for layer in manifest["layers"].as_array().expect("layers") {
        let digest = layer["digest"].as_str().expect("layer digest");
        let blob = oci_dir
            .join("blobs/sha256")
            .join(digest.trim_start_matches("sha256:"));
        let out = Command::new("tar")
            .arg("-tzf")
            .arg(&blob)
            .output()
            .expect("tar");
        assert!(out.status.success(), "tar -tzf {}", blob.display());
        files.extend(
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .map(|l| l.trim_start_matches("./").to_string()),
        );
    }
    files
}

#[tokio::test]
async fn the_image_is_reproducible_small_and_reads_back_from_a_registry_by_digest() {
    // Two builds at once, as two CI jobs (or this file's two tests) may run them.
    let (first, second) = std::thread::scope(|s| {
        let a = s.spawn(|| BuiltImage::build(&image_name("a")));
        let b = s.spawn(|| BuiltImage::build(&image_name("b")));
        (
            a.join().expect("first build"),
            b.join().expect("second build"),
        )
    });
    assert_eq!(
        first.id, second.id,
        "two builds of one commit give different images"
    );

    let registry = Registry::start(RegistryAuth::None).await;
    let host = registry.host();
    let pushed = push(&first.name, &format!("{host}/vulngate:first"));
    let again = push(&second.name, &format!("{host}/vulngate:second"));
    assert_eq!(pushed, again, "one commit, one image digest");

    // Read back by digest alone: the manifest, its config, every layer.
    let by_digest = format!("docker://{host}/vulngate@{pushed}");
    let manifest: Value = serde_json::from_str(&skopeo(&[
        "inspect",
        "--raw",
        "--tls-verify=false",
        &by_digest,
    ]))
    .expect("manifest JSON");
    let compressed: u64 = manifest["layers"]
        .as_array()
        .expect("layers")
        .iter()
        .chain([&manifest["config"]])
        .map(|d| d["size"].as_u64().expect("size"))
        .sum();
    eprintln!(
        "image {pushed}: {:.1} MiB compressed; build took {:.0?} (release build included when not fresh)",
        compressed as f64 / MIB as f64,
        first.took
    );
    assert!(
        compressed < 25 * MIB,
        "the image is {compressed} bytes compressed (target: under 25 MiB)"
    );

    let config: Value = serde_json::from_str(&skopeo(&[
        "inspect",
        "--config",
        "--tls-verify=false",
        &by_digest,
    ]))
    .expect("config JSON");
    let c = &config["config"];
    assert_eq!(c["Entrypoint"], json!(["/usr/local/bin/vulngate"]), "{c}");
    assert_eq!(c["User"], "65532:65532", "{c}");
    let ports: BTreeSet<&str> = c["ExposedPorts"]
        .as_object()
        .expect("ExposedPorts")
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(ports, BTreeSet::from(["8080/tcp", "8443/tcp"]));
    let label = |k: &str| c["Labels"][format!("org.opencontainers.image.{k}")].clone();
    assert_eq!(label("version"), env!("CARGO_PKG_VERSION"));
    assert_eq!(label("revision"), git(&["rev-parse", "HEAD"]));
    assert_eq!(label("licenses"), "Apache-2.0");
    assert!(label("source").as_str().is_some_and(|s| !s.is_empty()));
    // `created` is the commit time, in the label and in the image config alike.
    let epoch: i64 = git(&["log", "-1", "--format=%ct"])
        .parse()
        .expect("commit time");
    let commit_time = time::OffsetDateTime::from_unix_timestamp(epoch)
        .expect("time")
        .format(&time::format_description::well_known::Rfc3339)
        .expect("RFC 3339");
    assert_eq!(label("created"), commit_time.as_str());
    let created = time::OffsetDateTime::parse(
        config["created"].as_str().expect("created"),
        &time::format_description::well_known::Rfc3339,
    )
    .expect("created is RFC 3339");
    assert_eq!(created.unix_timestamp(), epoch);

    // Pulled back whole, by digest, it is the same image, and holds only the binary,
    // its libraries, CA certificates and passwd/group: no shell, no package manager.
    let oci = tempfile::tempdir().expect("temp dir");
    skopeo(&[
        "copy",
        "--quiet",
        "--src-tls-verify=false",
        &by_digest,
        &format!("oci:{}:pulled", oci.path().display()),
    ]);
    let index: Value = serde_json::from_str(
        &std::fs::read_to_string(oci.path().join("index.json")).expect("index.json"),
    )
    .expect("index JSON");
    assert_eq!(index["manifests"][0]["digest"], pushed.as_str());
    let files = layer_files(oci.path(), &manifest);
    for needed in [
        "usr/local/bin/vulngate",
        "etc/passwd",
        "etc/group",
        "etc/ssl/certs/ca-certificates.crt",
        "lib64/ld-linux-x86-64.so.2",
        "lib/x86_64-linux-gnu/libc.so.6",
    ] {
        assert!(
            files.iter().any(|f| f == needed),
            "{needed} missing: {files:?}"
        );
    }
    let allowed = |f: &str| {
        f.ends_with('/')
            || f.starts_with("etc/")
            || f.starts_with("lib/")
            || f.starts_with("lib64/")
            || f == "usr/local/bin/vulngate"
    };
    let unexpected: Vec<&String> = files.iter().filter(|f| !allowed(f)).collect();
    assert!(unexpected.is_empty(), "unexpected files: {unexpected:?}");
    for forbidden in ["/sh", "/bash", "/busybox", "/apt", "/dpkg"] {
        assert!(
            !files.iter().any(|f| f.ends_with(forbidden)),
            "{forbidden} in the image"
        );
    }

    // `vulngate --version` in the image names the version and the commit.
    let version = Podman::new().ok(&[
        "run",
        "--rm",
        "--network=host",
        "--read-only",
        "--cap-drop=ALL",
        &first.name,
        "--version",
    ]);
    assert_eq!(
        version,
        format!(
            "vulngate {} (revision {})",
            env!("CARGO_PKG_VERSION"),
            git(&["rev-parse", "HEAD"])
        )
    );
}

/// The summaries the scans volume holds (a real install fills it from its scanner).
fn summaries(entries: &[(&str, u32)]) -> String {
    let mut out = String::from("summaries:\n");
    for (digest, critical) in entries {
        out.push_str(&format!(
            "  - {{digest: \"{digest}\", status: complete, critical: {critical}, high: 0}}\n"
        ));
    }
    out
}

/// The NOTES' example: the namespace it annotates (name, annotations) and the image
/// its `kubectl run --dry-run=server` expects to be denied.
fn notes_example(notes: &str) -> (String, Vec<(String, String)>, String) {
    let namespace = notes
        .lines()
        .find_map(|l| l.trim().strip_prefix("kubectl annotate namespace "))
        .and_then(|rest| rest.split_whitespace().next())
        .expect("NOTES annotate a namespace")
        .to_string();
    let annotations = notes
        .lines()
        .map(|l| l.trim().trim_end_matches('\\').trim())
        .filter(|l| l.starts_with("vulngate.io/") && l.contains('=') && !l.contains(' '))
        .map(|l| {
            let (k, v) = l.split_once('=').expect("key=value");
            (k.to_string(), v.to_string())
        })
        .collect::<Vec<_>>();
    assert!(!annotations.is_empty(), "no annotations in NOTES:\n{notes}");
    let image = notes
        .split_whitespace()
        .find_map(|w| w.strip_prefix("--image="))
        .expect("NOTES run an image")
        .to_string();
    (namespace, annotations, image)
}

/// Points every path of the pod's config at the host folder its volume is laid out in.
fn move_paths(value: &mut serde_json::Value, pod: &Pod) {
    match value {
        serde_json::Value::String(s) if s.starts_with('/') => {
            let on_volume = pod
                .mounts()
                .iter()
                .any(|(m, _)| s == m || s.starts_with(&format!("{m}/")));
            if on_volume {
                *s = pod.host_path(s).display().to_string();
            }
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(|v| move_paths(v, pod)),
        serde_json::Value::Object(map) => map.values_mut().for_each(|v| move_paths(v, pod)),
        _ => {}
    }
}

/// A client that reaches the webhook as the API server does: the Service's DNS name,
/// trusting only `ca_pem`.
fn apiserver_client(ca_pem: &[u8], host: &str, port: u16) -> reqwest::Client {
    let ca = reqwest::Certificate::from_pem(ca_pem).expect("CA PEM");
    vulngate::crypto::http_client()
        .tls_certs_only([ca])
        .resolve(host, ([127, 0, 0, 1], port).into())
        .timeout(Duration::from_secs(15))
        .build()
        .expect("client")
}

async fn post(client: &reqwest::Client, url: &str, body: &Value) -> Result<Value, String> {
    let r = client
        .post(url)
        .header("Content-Type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .map_err(|e| format!("{e:?}"))?;
    let status = r.status().as_u16();
    let text = r.text().await.map_err(|e| e.to_string())?;
    if status != 200 {
        return Err(format!("{status}: {text}"));
    }
    serde_json::from_str(&text).map_err(|e| format!("{e}: {text}"))
}

// Multi-threaded: the helm test's API server stand-in answers while the test waits on
// podman.
/// Runs the chart's `helm test` Pod to completion; its exit code and logs.
async fn run_helm_test(chart: &Rendered, work: &Path) -> (i32, String) {
    use base64::Engine as _;
    let vwc = chart
        .find("ValidatingWebhookConfiguration", None)
        .expect("webhook configuration");
    let checks_pod_creates = |w: &serde_json::Value| {
        w["rules"].as_array().into_iter().flatten().any(|r| {
            let has = |field: &str, want: &str| {
                r[field]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|v| v.as_str() == Some(want) || v.as_str() == Some("*"))
            };
            has("resources", "pods") && has("operations", "CREATE")
        })
    };
    let targets: Vec<WebhookTarget> = vwc["webhooks"]
        .as_array()
        .expect("webhooks")
        .iter()
        .filter(|w| checks_pod_creates(w))
        .map(|w| {
            let config = &w["clientConfig"];
            let service = format!(
                "{}.{}.svc",
                config["service"]["name"].as_str().expect("service"),
                config["service"]["namespace"].as_str().expect("namespace")
            );
            // The Service's port leads to the container's `https` port.
            let deployment = chart.find("Deployment", None).expect("Deployment");
            let port = deployment["spec"]["template"]["spec"]["containers"][0]["ports"]
                .as_array()
                .expect("ports")
                .iter()
                .find(|p| p["name"] == "https")
                .and_then(|p| p["containerPort"].as_u64())
                .expect("https port") as u16;
            let ca = base64::engine::general_purpose::STANDARD
                .decode(config["caBundle"].as_str().expect("caBundle"))
                .expect("caBundle base64");
            WebhookTarget {
                name: w["name"].as_str().expect("name").to_string(),
                url: format!(
                    "https://{service}:{port}{}?timeout={}s",
                    config["service"]["path"].as_str().unwrap_or("/"),
                    w["timeoutSeconds"].as_u64().unwrap_or(10)
                ),
                client: apiserver_client(&ca, &service, port),
            }
        })
        .collect();
    assert!(!targets.is_empty(), "no webhook checks Pod creation");
    let token = "helm-test-serviceaccount-token";
    let apiserver = DryRunApiserver::start(&work.join("apiserver"), token, targets).await;
    let test_pod = chart
        .docs
        .iter()
        .find(|d| d["kind"] == "Pod" && d["metadata"]["annotations"]["helm.sh/hook"] == "test")
        .expect("the helm test Pod");
    let mut pod = Pod::lay_out(chart, &test_pod["spec"], &|_, _| None);
    let namespace = test_pod["metadata"]["namespace"]
        .as_str()
        .expect("namespace");
    pod.add_service_account(
        &[
            ("token".to_string(), token.as_bytes().to_vec()),
            ("ca.crt".to_string(), apiserver.ca_pem.clone()),
            ("namespace".to_string(), namespace.as_bytes().to_vec()),
        ],
        apiserver.port,
    );
    pod.run();
    let (pod, code) = tokio::task::spawn_blocking(move || {
        let code = pod.wait_exit();
        (pod, code)
    })
    .await
    .expect("join");
    (code, pod.logs())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_charts_pod_spec_runs_the_image() {
    let image = BuiltImage::build(&image_name("chart"));
    let registry = Registry::start(RegistryAuth::None).await;
    let host = registry.host();
    let version = env!("CARGO_PKG_VERSION");
    let digest = push(&image.name, &format!("{host}/vulngate:{version}"));
    // The `helm test` Pod's image (curl and a shell), made of this machine's programs.
    let tools = BuiltImage::from_host_programs(
        &image_name("helm-test-tools"),
        &[
            ("/bin/sh", "/bin/sh"),
            ("/usr/bin/curl", "/usr/bin/curl"),
            ("/usr/bin/date", "/usr/bin/date"),
            ("/usr/bin/grep", "/usr/bin/grep"),
            ("/usr/bin/cat", "/usr/bin/cat"),
            ("/usr/bin/sleep", "/usr/bin/sleep"),
        ],
    );
    push(&tools.name, &format!("{host}/curl:host-tools"));

    // Values as a user sets them for their registry; the ports are free loopback ports
    // because the container shares the host's network here.
    let (webhook_port, ops_port) = (free_port(), free_port());
    let work = tempfile::tempdir().expect("temp dir");
    let values = work.path().join("values.yaml");
    std::fs::write(
        &values,
        format!(
            r#"image: {{repository: "{host}/vulngate", digest: "{digest}"}}
bindAddress: 127.0.0.1
containerPorts: {{webhook: {webhook_port}, ops: {ops_port}}}
tls: {{mode: helm}}
config:
  namespacesFile: /etc/vulngate/namespaces/namespaces.yaml
  registries:
    - match: "{host}"
      scanner: {{file: {{path: /var/lib/vulngate/scans}}}}
      registry: {{plainHttp: true}}
    - match: "*"
      scanner: {{file: {{path: /var/lib/vulngate/scans}}}}
      registry: {{resolve: false}}
extraVolumes:
  - {{name: namespaces, configMap: {{name: vulngate-namespaces}}}}
extraVolumeMounts:
  - {{name: namespaces, mountPath: /etc/vulngate/namespaces, readOnly: true}}
tests:
  deniedImage: "{host}/vulngate:{version}"
  image: {{repository: "{host}/curl", tag: host-tools}}
"#
        ),
    )
    .expect("values");
    let chart = Rendered::render(&values);

    // The namespaces the cluster would have: the NOTES' example and the helm test's.
    let (demo, annotations, denied_image) = notes_example(&chart.notes);
    let test_ns = chart
        .docs
        .iter()
        .find(|d| {
            d["kind"] == "Namespace" && d["metadata"]["annotations"]["helm.sh/hook"] == "test"
        })
        .expect("the helm test's namespace");
    let test_ns_name = test_ns["metadata"]["name"]
        .as_str()
        .expect("name")
        .to_string();
    let demo_ns = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {
        "name": demo, "annotations": annotations.iter().map(|(k, v)| (k.clone(), json!(v))).collect::<serde_json::Map<_, _>>()}});
    let namespaces = serde_json::to_string_pretty(&json!({"apiVersion": "v1", "kind": "List",
        "items": [demo_ns, serde_json::to_value(test_ns).expect("JSON")]}))
    .expect("YAML");
    let deployment = chart.find("Deployment", None).expect("a Deployment");
    let mut pod = Pod::lay_out(
        &chart,
        &deployment["spec"]["template"]["spec"],
        &|kind, name| {
            (kind == "ConfigMap" && name == "vulngate-namespaces").then(|| {
                vec![(
                    "namespaces.yaml".to_string(),
                    namespaces.clone().into_bytes(),
                )]
            })
        },
    );
    std::fs::write(
        pod.host_path("/var/lib/vulngate/scans/summaries.yaml"),
        summaries(&[(&digest, 3)]),
    )
    .expect("scans");

    pod.run();
    let ready_after = pod.wait_ready(Duration::from_secs(60));
    eprintln!("ready after {ready_after:.1?}");
    pod.check_liveness();
    // The process runs as the rendered user, with no capabilities.
    let status = pod.process_status();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name}:")))
            .map(|v| v.split_whitespace().collect::<Vec<_>>())
            .unwrap_or_default()
    };
    assert_eq!(field("Uid"), ["65532"; 4], "{status}");
    assert_eq!(field("Gid"), ["65532"; 4], "{status}");
    assert_eq!(field("CapEff"), ["0000000000000000"], "{status}");

    // The API server's view: the Service's name, the webhook's path and caBundle.
    let vwc = chart
        .find("ValidatingWebhookConfiguration", None)
        .expect("webhook configuration");
    let client_config = &vwc["webhooks"][0]["clientConfig"];
    let service = format!(
        "{}.{}.svc",
        client_config["service"]["name"].as_str().expect("service"),
        client_config["service"]["namespace"]
            .as_str()
            .expect("namespace")
    );
    let url = format!(
        "https://{service}:{}{}?timeout={}s",
        pod.port("https"),
        client_config["service"]["path"].as_str().unwrap_or("/"),
        vwc["webhooks"][0]["timeoutSeconds"].as_u64().unwrap_or(10)
    );
    use base64::Engine as _;
    let ca = base64::engine::general_purpose::STANDARD
        .decode(client_config["caBundle"].as_str().expect("caBundle"))
        .expect("caBundle base64");
    let client = apiserver_client(&ca, &service, pod.port("https"));

    // The NOTES' example: `kubectl -n demo run probe --image=... --dry-run=server`.
    let probe = |ns: &str| {
        let mut r = review(
            "notes-probe",
            "Pod",
            "CREATE",
            ns,
            object_with_pod_spec("Pod", pod_spec(&[("probe", &denied_image)])),
            None,
        );
        r["request"]["name"] = json!("probe");
        r["request"]["dryRun"] = json!(true);
        r
    };
    for ns in [demo.as_str(), test_ns_name.as_str()] {
        let out = post(&client, &url, &probe(ns))
            .await
            .expect("review answered");
        let response = &out["response"];
        assert_eq!(response["allowed"], false, "{ns}: {response}");
        let message = response["status"]["message"].as_str().unwrap_or_default();
        assert!(
            message.contains("critical") && message.contains(&digest),
            "{ns}: the denial names the count and the digest: {message}\n{}",
            pod.logs()
        );
    }

    // The shared fixtures: each answered in its own apiVersion with its uid, decided as
    // the library decides with the same config and files.
    let config_text = String::from_utf8(
        std::fs::read(pod.host_path("/etc/vulngate/config.yaml")).expect("config"),
    )
    .expect("UTF-8 config");
    let mut config_yaml: serde_json::Value =
        serde_saphyr::from_str(&config_text).expect("config YAML");
    move_paths(&mut config_yaml, &pod);
    let config_text = serde_json::to_string_pretty(&config_yaml).expect("YAML");
    let local_config = work.path().join("config.yaml");
    std::fs::write(&local_config, &config_text).expect("config");
    let config =
        vulngate::app::load_config(Some(&local_config), work.path()).expect("config loads");
    let engine = vulngate::app::build_engine(&config, Arc::new(vulngate::metrics::Metrics::new()))
        .await
        .expect("engine");
    let dir = fixtures_dir().join("admission");
    let mut names: Vec<_> = std::fs::read_dir(&dir)
        .expect("fixtures")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    names.sort();
    assert!(
        names.len() >= 20,
        "expected the shared fixtures in {}",
        dir.display()
    );
    for path in &names {
        let body: Value =
            serde_json::from_slice(&std::fs::read(path).expect("fixture")).expect("fixture JSON");
        let out = post(&client, &url, &body)
            .await
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let expected: Value = serde_json::from_slice(
            &engine
                .review(&body.to_string().into_bytes(), None)
                .await
                .expect("decided"),
        )
        .expect("JSON");
        assert_eq!(out["apiVersion"], body["apiVersion"], "{}", path.display());
        assert_eq!(
            out["response"]["uid"],
            body["request"]["uid"],
            "{}",
            path.display()
        );
        for field in ["allowed", "status", "warnings"] {
            assert_eq!(
                out["response"][field],
                expected["response"][field],
                "{}: {field}",
                path.display()
            );
        }
    }

    // The chart's `helm test` Pod, run the same way, against a stand-in for the API
    // server's dry-run Pod create that calls the webhooks as the configuration says.
    let (code, logs) = run_helm_test(&chart, work.path()).await;
    assert_eq!(code, 0, "helm test failed: {logs}\nwebhook: {}", pod.logs());
    assert!(logs.contains("PASS: vulngate denied"), "{logs}");

    // The TLS Secret renewed the kubelet's way: the new certificate is served, the old
    // CA is no longer enough.
    let renewed = work.path().join("renewed");
    let generated =
        vulngate::tls::generate(&renewed, std::slice::from_ref(&service)).expect("certificate");
    let read = |p: &Path| std::fs::read(p).expect("read");
    let new_ca = read(&generated.ca_file);
    pod.update_volume(
        "tls",
        &[
            ("tls.crt".to_string(), read(&generated.cert_file)),
            ("tls.key".to_string(), read(&generated.key_file)),
            ("ca.crt".to_string(), new_ca.clone()),
        ],
    );
    let new_client = apiserver_client(&new_ca, &service, pod.port("https"));
    let swapped = Instant::now();
    while let Err(e) = post(&new_client, &url, &probe(&demo)).await {
        assert!(
            swapped.elapsed() < Duration::from_secs(15),
            "the renewed certificate is not served: {e}\n{}",
            pod.logs()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let old_client = apiserver_client(&ca, &service, pod.port("https"));
    assert!(
        post(&old_client, &url, &probe(&demo)).await.is_err(),
        "the old certificate is still served"
    );

    // Stopped as the kubelet stops it; reviews keep coming while the endpoint is being
    // removed (config.shutdown.drainDelay), and every one is answered.
    let chart_config: serde_json::Value =
        serde_saphyr::from_str(&config_text).expect("config YAML");
    let drain = humantime::parse_duration(
        chart_config["shutdown"]["drainDelay"]
            .as_str()
            .expect("drainDelay"),
    )
    .expect("drainDelay");
    let mut stopping = pod.begin_stop();
    let stop_started = Instant::now();
    let mut answered = 0;
    while stop_started.elapsed() + Duration::from_secs(1) < drain {
        let out = post(&new_client, &url, &probe(&demo))
            .await
            .unwrap_or_else(|e| panic!("a review failed during shutdown: {e}\n{}", pod.logs()));
        assert_eq!(out["response"]["allowed"], false);
        answered += 1;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(answered > 10, "only {answered} reviews during the drain");
    let stopped = tokio::task::spawn_blocking(move || stopping.wait())
        .await
        .expect("join")
        .expect("podman stop");
    assert!(stopped.success(), "podman stop failed");
    let took = stop_started.elapsed();
    let grace = pod.pod["terminationGracePeriodSeconds"]
        .as_u64()
        .expect("grace");
    let logs = pod.logs();
    assert!(
        took < Duration::from_secs(grace),
        "not stopped within terminationGracePeriodSeconds ({took:?}): {logs}"
    );
    assert_eq!(pod.exit_code(), 0, "exit code after SIGTERM: {logs}");
    assert!(!logs.contains("panicked"), "{logs}");
}
