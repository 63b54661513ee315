//! The dependency graph against the project's policy (.ci/deny.toml): only the licenses
//! it allows, no crate from anywhere but crates.io, no wildcard versions; and no RustSec
//! advisory against any locked crate, read from the offline snapshot of the advisory
//! database in ../shared/advisory-db (GitHub, where cargo-deny would fetch it, is out of
//! reach; docs/security.md names the snapshot).

use std::path::Path;
use std::process::Command;

/// `cargo-deny --offline` with the project's policy, from the repository's root.
fn cargo_deny(checks: &[&str]) -> std::process::Output {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let tool = root.join(".tools/bin/cargo-deny");
    assert!(
        tool.exists(),
        "cargo-deny is missing: run `bash tests/setup.d/cargo-deny.sh` (bash tests/run.sh runs it)"
    );
    Command::new(&tool)
        .current_dir(root)
        .args(["--offline", "--manifest-path", "Cargo.toml"])
        .args(["--config", ".ci/deny.toml", "--color", "never"])
        .arg("check")
        .args(checks)
        .output()
        .expect("run cargo-deny")
}

#[test]
fn licenses_bans_and_sources_meet_the_policy() {
    let out = cargo_deny(&["bans", "licenses", "sources"]);
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

/// Where .ci/deny.toml's `db-path` points, and the folder name cargo-deny derives from
/// the default database URL.
const ADVISORY_DB: &str = "target/advisory-dbs/advisory-db-3157b0e258782691";

#[test]
fn no_locked_crate_has_a_rustsec_advisory() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let snapshot = root.join("../shared/advisory-db");
    assert!(
        snapshot.join("SNAPSHOT.md").is_file(),
        "the advisory database snapshot is missing: {}",
        snapshot.display()
    );
    // cargo-deny reads the database from a git checkout: the snapshot, committed once.
    let db = root.join(ADVISORY_DB);
    let _ = std::fs::remove_dir_all(&db);
    std::fs::create_dir_all(&db).expect("advisory db dir");
    let run = |cmd: &mut Command| {
        let out = cmd.output().expect("run");
        assert!(
            out.status.success(),
            "{cmd:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    run(Command::new("cp")
        .arg("-r")
        .arg(snapshot.join("."))
        .arg(&db));
    run(Command::new("git").arg("-C").arg(&db).args(["init", "-q"]));
    run(Command::new("git").arg("-C").arg(&db).args(["add", "-A"]));
    run(Command::new("git").arg("-C").arg(&db).args([
        "-c",
        "user.name=snapshot",
        "-c",
        "user.email=snapshot@localhost",
        "commit",
        "-qm",
        "snapshot",
    ]));

    let out = cargo_deny(&["advisories"]);
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(
        out.status.success(),
        "cargo-deny reports advisories: fix them (cargo update within semver) or ignore \
         each with its reason in .ci/deny.toml and docs/security.md\n{report}"
    );
    assert!(report.contains("advisories ok"), "{report}");
}
