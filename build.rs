//! Stamps the commit into `ferry --version`: from `FERRY_COMMIT` when a
//! package build sets it (no `.git` there), else from git, else "unknown";
//! and rebuilds when a migration is added.

use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=FERRY_COMMIT");
    // `sqlx::migrate!` embeds migrations/: a new file must rebuild.
    println!("cargo:rerun-if-changed=migrations");
    // Only paths that exist: cargo reruns a script that names a missing
    // one on every build. A worktree keeps HEAD and refs apart.
    for (flag, leaf) in [("--git-dir", "HEAD"), ("--git-common-dir", "refs/heads")] {
        if let Some(dir) = git(&["rev-parse", flag]) {
            let path = std::path::Path::new(&dir).join(leaf);
            if path.exists() {
                println!("cargo:rerun-if-changed={}", path.display());
            }
        }
    }
    let commit = std::env::var("FERRY_COMMIT")
        .ok()
        .filter(|c| !c.trim().is_empty())
        .or_else(|| git(&["rev-parse", "--short=12", "HEAD"]))
        .unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=FERRY_COMMIT={}", commit.trim());
}

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
        .filter(|c| !c.is_empty())
}
