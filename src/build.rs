//! Records the git revision the binary is built from, for `vulngate --version`.
//! `VULNGATE_REVISION` set in the environment wins (a build from a source archive,
//! which has no `.git`); otherwise `git rev-parse HEAD`; otherwise "unknown".

use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=VULNGATE_REVISION");
    let revision = std::env::var("VULNGATE_REVISION")
        .ok()
        .filter(|r| !r.trim().is_empty())
        .or_else(git_revision)
        .unwrap_or_else(|| "unknown".to_string());
    println!("cargo:rustc-env=VULNGATE_REVISION={revision}");
}

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    let text = String::from_utf8(out.stdout).ok()?;
    (out.status.success() && !text.trim().is_empty()).then(|| text.trim().to_string())
}

fn git_revision() -> Option<String> {
    let revision = git(&["rev-parse", "HEAD"])?;
    // Run again when HEAD moves: a checkout rewrites HEAD, a commit the branch's ref
    // (a loose file, or packed-refs once packed). Paths come from git, so a worktree's
    // HEAD and the shared refs are both found.
    let branch = git(&["rev-parse", "--symbolic-full-name", "HEAD"]);
    let watched = [
        Some("HEAD".to_string()),
        branch,
        Some("packed-refs".to_string()),
    ];
    for name in watched.into_iter().flatten() {
        if let Some(path) = git(&["rev-parse", "--git-path", &name]) {
            if std::path::Path::new(&path).exists() {
                println!("cargo:rerun-if-changed={path}");
            }
        }
    }
    Some(revision)
}
