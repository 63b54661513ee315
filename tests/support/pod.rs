//! A pod of the chart (the Deployment's, the `helm test` one) run as the kubelet would
//! run it, with podman: the chart rendered by `helm template`, the pod's first container
//! taken exactly as rendered (image,
//! command, args, env, ports, securityContext, probes), each volume it mounts laid out
//! on the host (ConfigMaps and Secrets in the kubelet's `..data` layout, a `subPath`
//! bound as the file it resolves to, emptyDirs as writable folders) and bound at the
//! rendered mountPath. Only the network differs: the container shares the host's, so
//! the rendered container ports are loopback ports the test picks.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::Value;

use super::container::{KubeletVolume, Podman};
use super::helm::helm;
use super::webhook::ureq_get;

/// The chart rendered with a values file: its documents and its NOTES.
pub struct Rendered {
    pub docs: Vec<Value>,
    pub notes: String,
}

fn helm_out(args: &[&str]) -> String {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let out = Command::new(helm())
        .args(args)
        .current_dir(&root)
        .output()
        .expect("run helm");
    assert!(
        out.status.success(),
        "helm {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `helm template vulngate charts/vulngate --namespace vulngate ARGS`, as documents.
pub fn template(args: &[&str]) -> Vec<Value> {
    let common = ["vulngate", "charts/vulngate", "--namespace", "vulngate"];
    let manifests = helm_out(&[&["template"], &common[..], args].concat());
    // Empty documents are skipped.
    serde_saphyr::from_multiple(&manifests).expect("rendered YAML")
}

impl Rendered {
    /// The chart in namespace `vulngate` with a values file.
    pub fn render(values: &Path) -> Rendered {
        let args = ["-f", values.to_str().expect("UTF-8 path")];
        let docs = template(&args);
        // `helm template` leaves NOTES.txt out; a client-side dry-run install prints it.
        let common = ["vulngate", "charts/vulngate", "--namespace", "vulngate"];
        let install = helm_out(&[&["install"], &common[..], &args, &["--dry-run=client"]].concat());
        let notes = install
            .split_once("\nNOTES:\n")
            .map(|(_, n)| n.to_string())
            .expect("the dry-run install prints NOTES");
        Rendered { docs, notes }
    }

    pub fn find(&self, kind: &str, name: Option<&str>) -> Option<&Value> {
        self.docs.iter().find(|d| {
            d["kind"] == kind && name.is_none_or(|n| d["metadata"]["name"].as_str() == Some(n))
        })
    }

    /// The files a ConfigMap or Secret of the chart holds (Secrets' data decoded).
    pub fn data(&self, kind: &str, name: &str) -> Option<Files> {
        let doc = self.find(kind, Some(name))?;
        let data = doc["data"].as_object().expect("data");
        Some(
            data.iter()
                .map(|(k, v)| {
                    let text = v.as_str().expect("string data");
                    let bytes = if kind == "Secret" {
                        base64::engine::general_purpose::STANDARD
                            .decode(text)
                            .expect("base64 Secret data")
                    } else {
                        text.as_bytes().to_vec()
                    };
                    (k.as_str().to_string(), bytes)
                })
                .collect(),
        )
    }
}

/// A ConfigMap's or Secret's files: (key, content).
pub type Files = Vec<(String, Vec<u8>)>;

enum HostVolume {
    Projected(KubeletVolume),
    EmptyDir(PathBuf),
}

/// The Deployment's first container, laid out and (after `run`) running.
pub struct Pod {
    pub pod: Value,
    pub container: Value,
    podman: Podman,
    name: String,
    volumes: BTreeMap<String, HostVolume>,
    /// mountPath -> (host path, read-only)
    mounts: Vec<(String, PathBuf, bool)>,
    env: Vec<(String, String)>,
    started: Option<Instant>,
    _node: tempfile::TempDir,
}

impl Pod {
    /// Lays out every volume the container mounts. ConfigMaps and Secrets the chart does
    /// not render (the user's own) come from `external(kind, name)`.
    pub fn lay_out(
        chart: &Rendered,
        pod: &Value,
        external: &dyn Fn(&str, &str) -> Option<Files>,
    ) -> Pod {
        let pod = pod.clone();
        let container = pod["containers"][0].clone();
        let node = tempfile::tempdir().expect("temp dir");
        let mut volumes = BTreeMap::new();
        let mut mounts = vec![];
        let source = |kind: &str, name: &str| {
            chart
                .data(kind, name)
                .or_else(|| external(kind, name))
                .unwrap_or_else(|| panic!("{kind} {name} is neither rendered nor provided"))
        };
        for mount in container["volumeMounts"].as_array().into_iter().flatten() {
            let name = mount["name"].as_str().expect("volume name");
            let volume = pod["volumes"]
                .as_array()
                .expect("volumes")
                .iter()
                .find(|v| v["name"].as_str() == Some(name))
                .unwrap_or_else(|| panic!("volume {name} is mounted but not declared"));
            let dir = node.path().join("volumes").join(name);
            if !volumes.contains_key(name) {
                let laid = if let Some(cm) = volume["configMap"]["name"].as_str() {
                    HostVolume::Projected(KubeletVolume::create(&dir, &source("ConfigMap", cm)))
                } else if let Some(secret) = volume["secret"]["secretName"].as_str() {
                    HostVolume::Projected(KubeletVolume::create(&dir, &source("Secret", secret)))
                } else if volume["emptyDir"].is_object() {
                    use std::os::unix::fs::PermissionsExt;
                    std::fs::create_dir_all(&dir).expect("emptyDir");
                    // The kubelet makes an emptyDir world-writable.
                    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777))
                        .expect("chmod emptyDir");
                    HostVolume::EmptyDir(dir.clone())
                } else {
                    panic!("volume {name}: a source this test cannot lay out: {volume:?}")
                };
                volumes.insert(name.to_string(), laid);
            }
            let host = match (&volumes[name], mount["subPath"].as_str()) {
                (HostVolume::Projected(v), Some(sub)) => v.resolved(sub),
                (HostVolume::EmptyDir(d), Some(sub)) => d.join(sub),
                (HostVolume::Projected(v), None) => v.dir.clone(),
                (HostVolume::EmptyDir(d), None) => d.clone(),
            };
            let path = mount["mountPath"].as_str().expect("mountPath").to_string();
            mounts.push((path, host, mount["readOnly"].as_bool().unwrap_or(false)));
        }
        let mut env = vec![];
        for e in container["env"].as_array().into_iter().flatten() {
            let name = e["name"].as_str().expect("env name").to_string();
            let value = if let Some(v) = e["value"].as_str() {
                v.to_string()
            } else if e["valueFrom"]["secretKeyRef"].is_object() {
                let r = &e["valueFrom"]["secretKeyRef"];
                let files = source("Secret", r["name"].as_str().expect("secret name"));
                let key = r["key"].as_str().expect("key");
                let (_, v) = files
                    .iter()
                    .find(|(k, _)| k == key)
                    .unwrap_or_else(|| panic!("env {name}: no key {key}"));
                String::from_utf8(v.clone()).expect("UTF-8 env value")
            } else {
                panic!("env {name}: a source this test cannot give: {e:?}")
            };
            env.push((name, value));
        }
        Pod {
            pod,
            container,
            podman: Podman::new(),
            name: format!("vulngate-pod-{}-{}", std::process::id(), rand_suffix()),
            volumes,
            mounts,
            env,
            started: None,
            _node: node,
        }
    }

    /// What the kubelet adds to every container whose pod mounts a ServiceAccount token:
    /// the `kube-api-access` volume and the API server's address.
    pub fn add_service_account(&mut self, files: &[(String, Vec<u8>)], apiserver_port: u16) {
        let dir = self._node.path().join("volumes/kube-api-access");
        let volume = KubeletVolume::create(&dir, files);
        self.mounts.push((
            "/var/run/secrets/kubernetes.io/serviceaccount".into(),
            volume.dir.clone(),
            true,
        ));
        self.volumes
            .insert("kube-api-access".into(), HostVolume::Projected(volume));
        self.env
            .push(("KUBERNETES_SERVICE_HOST".into(), "127.0.0.1".into()));
        self.env
            .push(("KUBERNETES_SERVICE_PORT".into(), apiserver_port.to_string()));
    }

    /// Waits for the container to exit by itself; its exit code.
    pub fn wait_exit(&self) -> i32 {
        self.podman
            .ok(&["wait", &self.name])
            .parse()
            .expect("exit code")
    }

    /// Where the container's `path` (under some mountPath) is on the host.
    pub fn host_path(&self, path: &str) -> PathBuf {
        let (mount, host, _) = self
            .mounts
            .iter()
            .filter(|(m, _, _)| path == m || path.starts_with(&format!("{m}/")))
            .max_by_key(|(m, _, _)| m.len())
            .unwrap_or_else(|| panic!("{path} is on no mounted volume"));
        match path[mount.len()..].trim_start_matches('/') {
            "" => host.clone(),
            rest => host.join(rest),
        }
    }

    /// The rendered mounts, longest mountPath first (to move the config's paths).
    pub fn mounts(&self) -> Vec<(String, PathBuf)> {
        let mut out: Vec<_> = self
            .mounts
            .iter()
            .map(|(m, h, _)| (m.clone(), h.clone()))
            .collect();
        out.sort_by_key(|(m, _)| std::cmp::Reverse(m.len()));
        out
    }

    /// Rewrites a ConfigMap or Secret volume the way the kubelet does.
    pub fn update_volume(&mut self, name: &str, files: &[(String, Vec<u8>)]) {
        match self.volumes.get_mut(name) {
            Some(HostVolume::Projected(v)) => v.update(files),
            _ => panic!("no ConfigMap or Secret volume {name}"),
        }
    }

    pub fn port(&self, name: &str) -> u16 {
        let port = self.container["ports"]
            .as_array()
            .expect("ports")
            .iter()
            .find(|p| p["name"].as_str() == Some(name))
            .unwrap_or_else(|| panic!("no container port {name}"));
        port["containerPort"].as_u64().expect("containerPort") as u16
    }

    /// A field of the container's securityContext, else the pod's.
    fn security(&self, key: &str) -> &Value {
        match &self.container["securityContext"][key] {
            Value::Null => &self.pod["securityContext"][key],
            v => v,
        }
    }

    /// The podman arguments the rendered container asks for.
    fn run_args(&self) -> Vec<String> {
        let mut args: Vec<String> = ["run", "--detach", "--network=host", "--pull=never"]
            .map(String::from)
            .to_vec();
        args.push(format!("--name={}", self.name));
        let user = self.security("runAsUser").as_u64();
        let group = self.security("runAsGroup").as_u64();
        if self.security("runAsNonRoot").as_bool() == Some(true) {
            // The kubelet refuses to start a container that would run as root.
            assert_ne!(user, Some(0), "runAsNonRoot with runAsUser 0");
        }
        match (user, group) {
            (Some(u), Some(g)) => args.push(format!("--user={u}:{g}")),
            (Some(u), None) => args.push(format!("--user={u}")),
            _ => {}
        }
        if let Some(fs_group) = self.pod["securityContext"]["fsGroup"].as_u64() {
            args.push(format!("--group-add={fs_group}"));
        }
        if self.security("readOnlyRootFilesystem").as_bool() == Some(true) {
            // podman would add tmpfs mounts on /tmp, /run and /var/tmp; the kubelet adds none.
            args.extend(["--read-only".into(), "--read-only-tmpfs=false".into()]);
        }
        if self.security("allowPrivilegeEscalation").as_bool() == Some(false) {
            args.push("--security-opt=no-new-privileges".into());
        }
        let caps = &self.security("capabilities");
        for cap in caps["drop"].as_array().into_iter().flatten() {
            args.push(format!("--cap-drop={}", cap.as_str().expect("capability")));
        }
        for cap in caps["add"].as_array().into_iter().flatten() {
            args.push(format!("--cap-add={}", cap.as_str().expect("capability")));
        }
        for (name, value) in &self.env {
            args.push(format!("--env={name}={value}"));
        }
        for (path, host, read_only) in &self.mounts {
            args.push(format!(
                "--mount=type=bind,source={},destination={path}{}",
                host.display(),
                if *read_only { ",ro=true" } else { "" }
            ));
        }
        if let Some(command) = self.container["command"].as_array() {
            let command: Vec<&str> = command.iter().filter_map(|c| c.as_str()).collect();
            args.push(format!(
                "--entrypoint={}",
                serde_json::to_string(&command).expect("JSON")
            ));
        }
        args.push(self.image_reference());
        for arg in self.container["args"].as_array().into_iter().flatten() {
            args.push(arg.as_str().expect("string arg").to_string());
        }
        args
    }

    /// The rendered image. A reference with both a tag and a digest is pulled by its
    /// digest alone, as containerd and CRI-O do; podman refuses the pair.
    pub fn image_reference(&self) -> String {
        let image = self.container["image"].as_str().expect("image");
        match image.split_once('@') {
            Some((name, digest)) => {
                let repo = match name.rsplit_once(':') {
                    Some((repo, tag)) if !tag.contains('/') => repo,
                    _ => name,
                };
                format!("{repo}@{digest}")
            }
            None => image.to_string(),
        }
    }

    /// Pulls the rendered image (from a plain-HTTP test registry) and starts the container.
    pub fn run(&mut self) {
        let image = self.image_reference();
        self.podman
            .ok(&["pull", "--quiet", "--tls-verify=false", &image]);
        let args = self.run_args();
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        self.podman.ok(&args);
        self.started = Some(Instant::now());
    }

    pub fn logs(&self) -> String {
        let out = self.podman.output(&["logs", &self.name]);
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    }

    fn state(&self, field: &str) -> String {
        self.podman.ok(&[
            "inspect",
            "--format",
            &format!("{{{{.State.{field}}}}}"),
            &self.name,
        ])
    }

    /// /proc/<pid>/status of the container's process, as the host sees it.
    pub fn process_status(&self) -> String {
        let pid = self.state("Pid");
        std::fs::read_to_string(format!("/proc/{pid}/status")).expect("process status")
    }

    /// One httpGet probe as the kubelet sends it: 200-399 within timeoutSeconds.
    fn probe(&self, probe: &Value) -> Result<u16, String> {
        let get = &probe["httpGet"];
        let port = match &get["port"] {
            Value::String(name) => self.port(name),
            other => other.as_u64().expect("probe port") as u16,
        };
        let path = get["path"].as_str().unwrap_or("/");
        match ureq_get(&format!("http://127.0.0.1:{port}{path}")) {
            Ok((status, _)) if (200..400).contains(&status) => Ok(status),
            Ok((status, body)) => Err(format!("{status}: {body}")),
            Err(e) => Err(e),
        }
    }

    fn seconds(probe: &Value, key: &str, default: u64) -> Duration {
        Duration::from_secs(probe[key].as_u64().unwrap_or(default))
    }

    /// Probes readiness as the kubelet does (after initialDelaySeconds, every
    /// periodSeconds) until it passes; fails after `within` or when the container exits.
    pub fn wait_ready(&self, within: Duration) -> Duration {
        let probe = &self.container["readinessProbe"];
        assert!(probe["httpGet"].is_object(), "no httpGet readinessProbe");
        let started = self.started.expect("running");
        std::thread::sleep(Self::seconds(probe, "initialDelaySeconds", 0));
        loop {
            let last = self.probe(probe);
            if last.is_ok() {
                return started.elapsed();
            }
            assert_eq!(
                self.state("Running"),
                "true",
                "the container exited: {}",
                self.logs()
            );
            assert!(
                started.elapsed() < within,
                "never ready within {within:?} (last probe: {last:?}): {}",
                self.logs()
            );
            std::thread::sleep(Self::seconds(probe, "periodSeconds", 10));
        }
    }

    /// The livenessProbe passes once its initialDelaySeconds are over.
    pub fn check_liveness(&self) {
        let probe = &self.container["livenessProbe"];
        assert!(probe["httpGet"].is_object(), "no httpGet livenessProbe");
        let delay = Self::seconds(probe, "initialDelaySeconds", 0);
        let started = self.started.expect("running");
        std::thread::sleep(delay.saturating_sub(started.elapsed()));
        if let Err(e) = self.probe(probe) {
            panic!("livenessProbe failed: {e}\n{}", self.logs());
        }
    }

    /// Starts stopping the container as the kubelet does: SIGTERM, then SIGKILL after
    /// the pod's terminationGracePeriodSeconds. Wait on the returned `podman stop`.
    pub fn begin_stop(&self) -> std::process::Child {
        let grace = self.pod["terminationGracePeriodSeconds"]
            .as_u64()
            .unwrap_or(30);
        self.podman
            .command()
            .args(["stop", "--time", &grace.to_string(), &self.name])
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("podman stop")
    }

    pub fn exit_code(&self) -> i32 {
        self.state("ExitCode").parse().expect("exit code")
    }
}

fn rand_suffix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos() as u64)
        .unwrap_or(0)
}

impl Drop for Pod {
    fn drop(&mut self) {
        let _ = self
            .podman
            .output(&["rm", "--force", "--time", "0", &self.name]);
    }
}
