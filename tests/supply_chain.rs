//! The dependency graph against the project's policy (.ci/deny.toml): only the licenses
//! it allows, no crate from anywhere but crates.io, no wildcard versions. RustSec
//! advisories are not checked here: their database is fetched from GitHub, which the
//! project's machines cannot reach (docs/security.md).

use std::path::Path;
use std::process::Command;

#[test]
fn licenses_bans_and_sources_meet_the_policy() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let tool = root.join(".tools/bin/cargo-deny");
    assert!(
        tool.exists(),
        "cargo-deny is missing: run `bash tests/setup.d/cargo-deny.sh` (bash tests/run.sh runs it)"
    );
    let out = Command::new(&tool)
        .current_dir(root)
        .args(["--offline", "--manifest-path", "Cargo.toml"])
        .args(["--config", ".ci/deny.toml", "--color", "never"])
        .args(["check", "bans", "licenses", "sources"])
        .output()
        .expect("run cargo-deny");
    // Diagnostics go to stderr, the closing summary to stdout.
    let stderr = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error")).collect();
    assert!(
        out.status.success(),
        "cargo-deny failed: {errors:#?}\n{stderr}"
    );
    assert!(
        stderr.contains("bans ok, licenses ok, sources ok"),
        "{stderr}"
    );
}
