//! The `helm` binary the chart tests run (tests/setup.d/helm.sh installs it).

use std::path::PathBuf;

pub const SETUP: &str = "tests/setup.d/helm.sh";

/// `helm` from PATH, else .tools/bin; fails naming the setup script when missing.
pub fn helm() -> PathBuf {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|d| d.join("helm"))
        .chain([root.join(".tools/bin/helm")])
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!("`helm` is not installed: run `bash {SETUP}` (tests/run.sh runs it)")
        })
}
