//! The container image and a container runtime for tests: builds the image with
//! manifests/image/build.sh, runs podman (with runc and no default ulimits, which is what
//! works in a sandbox without cgroup delegation), pushes and reads images with skopeo,
//! and lays out volumes the way the kubelet does.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

pub const SETUP_SCRIPT: &str = "tests/setup.d/image.sh";

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn on_path(tool: &str) -> bool {
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/sbin")])
        .any(|d| d.join(tool).is_file())
}

/// Fails (never skips) when a tool the image tests need is missing.
pub fn require_tools() {
    let missing: Vec<&str> = ["podman", "runc", "skopeo", "objcopy"]
        .into_iter()
        .filter(|t| !on_path(t))
        .collect();
    assert!(
        missing.is_empty(),
        "missing {missing:?}: run `bash {SETUP_SCRIPT}` (tests/run.sh does) to install them"
    );
}

fn check(what: &str, out: Output) -> String {
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// An image built by manifests/image/build.sh, untagged again on drop.
pub struct BuiltImage {
    pub name: String,
    pub id: String,
    pub took: Duration,
}

impl BuiltImage {
    /// `bash manifests/image/build.sh NAME` (the release build in it is a no-op when fresh).
    pub fn build(name: &str) -> BuiltImage {
        require_tools();
        let started = Instant::now();
        let mut cmd = Command::new("bash");
        cmd.arg(root().join("manifests/image/build.sh"))
            .arg(name)
            .current_dir(root())
            .stdin(Stdio::null());
        // What `cargo test` sets for the test process (the build script's
        // VULNGATE_REVISION, OUT_DIR, LD_LIBRARY_PATH, CARGO_PKG_*...) would make the
        // release build's fingerprints differ from a build run in a shell, and rebuild it
        // (minutes) every time one follows the other.
        for (key, _) in std::env::vars_os() {
            let key = key.to_string_lossy();
            let keep = ["CARGO_HOME", "CARGO_TARGET_DIR"].contains(&key.as_ref());
            if !keep
                && (key.starts_with("CARGO")
                    || ["VULNGATE_REVISION", "OUT_DIR", "LD_LIBRARY_PATH"].contains(&key.as_ref()))
            {
                cmd.env_remove(key.as_ref());
            }
        }
        let out = cmd.output().expect("run manifests/image/build.sh");
        let took = started.elapsed();
        check("manifests/image/build.sh", out);
        let id = Podman::new().ok(&["image", "inspect", "--format", "{{.Id}}", name]);
        BuiltImage {
            name: name.to_string(),
            id,
            took,
        }
    }

    /// An image of host programs and the shared libraries they link, FROM scratch: a
    /// stand-in for an image this machine cannot pull (the `helm test` Pod's curl image).
    /// `programs`: (host path, path in the image).
    pub fn from_host_programs(name: &str, programs: &[(&str, &str)]) -> BuiltImage {
        require_tools();
        let started = Instant::now();
        let context = tempfile::tempdir().expect("temp dir");
        let rootfs = context.path().join("rootfs");
        let copy = |from: &Path, to: &Path| {
            let to = rootfs.join(to.strip_prefix("/").unwrap_or(to));
            std::fs::create_dir_all(to.parent().expect("parent")).expect("mkdir");
            std::fs::copy(from, &to).unwrap_or_else(|e| panic!("copy {}: {e}", from.display()));
        };
        for (host, inside) in programs {
            copy(Path::new(host), Path::new(inside));
            let out = Command::new("ldd").arg(host).output().expect("ldd");
            for line in String::from_utf8_lossy(&out.stdout).lines() {
                // `libx.so => /lib/.../libx.so (0x...)` or `/lib64/ld-linux-x86-64.so.2 (0x...)`
                let lib = match line.split_once("=>") {
                    Some((_, right)) => right.split_whitespace().next(),
                    None => line.split_whitespace().next(),
                };
                if let Some(lib) = lib.filter(|l| l.starts_with('/')) {
                    copy(Path::new(lib), Path::new(lib));
                }
            }
        }
        std::fs::write(
            context.path().join("Containerfile"),
            "FROM scratch\nCOPY rootfs/ /\n",
        )
        .expect("Containerfile");
        let podman = Podman::new();
        let dir = context.path().to_str().expect("UTF-8 path");
        podman.ok(&["build", "--quiet", "--tag", name, dir]);
        let id = podman.ok(&["image", "inspect", "--format", "{{.Id}}", name]);
        BuiltImage {
            name: name.to_string(),
            id,
            took: started.elapsed(),
        }
    }
}

impl Drop for BuiltImage {
    fn drop(&mut self) {
        // Only this name: an image with another name (a second build) stays.
        let _ = Podman::new().output(&["rmi", &self.name]);
    }
}

/// podman pointed at runc, with a containers.conf that sets no default ulimits.
pub struct Podman {
    conf: tempfile::TempDir,
}

impl Podman {
    pub fn new() -> Podman {
        let conf = tempfile::tempdir().expect("temp dir");
        std::fs::write(
            conf.path().join("containers.conf"),
            "[containers]\ndefault_ulimits = []\n\n[engine]\nruntime = \"runc\"\n",
        )
        .expect("write containers.conf");
        Podman { conf }
    }

    pub fn command(&self) -> Command {
        let mut cmd = Command::new("podman");
        cmd.env("CONTAINERS_CONF", self.conf.path().join("containers.conf"))
            .args(["--runtime", "runc"])
            .stdin(Stdio::null());
        cmd
    }

    pub fn output(&self, args: &[&str]) -> Output {
        self.command()
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("podman ({SETUP_SCRIPT}): {e}"))
    }

    /// Runs podman and returns its stdout; fails the test when podman fails.
    pub fn ok(&self, args: &[&str]) -> String {
        check(&format!("podman {args:?}"), self.output(args))
    }
}

/// Runs skopeo and returns its stdout; fails the test when skopeo fails.
pub fn skopeo(args: &[&str]) -> String {
    let out = Command::new("skopeo")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("skopeo ({SETUP_SCRIPT}): {e}"));
    check(&format!("skopeo {args:?}"), out)
}

/// Pushes a local image to a plain-HTTP registry; returns the manifest's digest.
pub fn push(image: &str, destination: &str) -> String {
    let dir = tempfile::tempdir().expect("temp dir");
    let digest_file = dir.path().join("digest");
    skopeo(&[
        "copy",
        "--quiet",
        "--dest-tls-verify=false",
        "--digestfile",
        digest_file.to_str().expect("UTF-8 path"),
        &format!("containers-storage:{image}"),
        &format!("docker://{destination}"),
    ]);
    std::fs::read_to_string(digest_file)
        .expect("digest file")
        .trim()
        .to_string()
}

/// A ConfigMap or Secret volume as the kubelet's atomic writer lays it out: the files
/// in a timestamped folder, `..data` a symlink to that folder, and each key a symlink
/// through `..data`. An update writes a new folder and renames a new `..data` over the
/// old one, so a reader sees the old files or the new ones, never a mix.
pub struct KubeletVolume {
    pub dir: PathBuf,
    generation: u32,
}

impl KubeletVolume {
    pub fn create(dir: &Path, files: &[(String, Vec<u8>)]) -> KubeletVolume {
        std::fs::create_dir_all(dir).expect("volume dir");
        let mut volume = KubeletVolume {
            dir: dir.to_path_buf(),
            generation: 0,
        };
        volume.update(files);
        volume
    }

    pub fn update(&mut self, files: &[(String, Vec<u8>)]) {
        use std::os::unix::fs::{PermissionsExt, symlink};
        self.generation += 1;
        let old = std::fs::read_link(self.dir.join("..data")).ok();
        // The kubelet names it by the time: `..2026_12_05_02_10_00.123456789`.
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock");
        let name = format!(
            "..{}_{:09}.{}",
            now.as_secs(),
            now.subsec_nanos(),
            self.generation
        );
        let data = self.dir.join(&name);
        std::fs::create_dir(&data).expect("data dir");
        for (key, content) in files {
            let file = data.join(key);
            std::fs::write(&file, content).expect("write volume file");
            // defaultMode 0644, as the chart leaves it.
            std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        }
        std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        let tmp = self.dir.join("..data_tmp");
        let _ = std::fs::remove_file(&tmp);
        symlink(&name, &tmp).expect("..data_tmp symlink");
        std::fs::rename(&tmp, self.dir.join("..data")).expect("swap ..data");
        for (key, _) in files {
            let link = self.dir.join(key);
            if std::fs::symlink_metadata(&link).is_err() {
                symlink(format!("..data/{key}"), &link).expect("key symlink");
            }
        }
        if let Some(old) = old {
            let _ = std::fs::remove_dir_all(self.dir.join(old));
        }
    }

    /// What a `subPath` mount of `key` binds: the file the key's symlinks resolve to.
    pub fn resolved(&self, key: &str) -> PathBuf {
        std::fs::canonicalize(self.dir.join(key)).expect("volume key")
    }
}
