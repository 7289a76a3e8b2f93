//! The command line as scripts and shells meet it: stdout only for
//! results, errors on stderr, completions, the man page, the version.

use std::path::Path;
use std::process::{Command, Output};

fn ferry(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args(args)
        .current_dir(dir)
        .env_remove("FERRY_CONFIG")
        .output()
        .expect("run ferry")
}

/// Operations review finding 4: `ferry jobs --json` with a bad config wrote
/// its diagnostics to stdout, which broke `| jq`.
#[test]
fn config_errors_go_to_stderr_and_stdout_stays_empty() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("bad.yaml"),
        "openwebui:\n  url: not-a-url\n  timeout: 10 parsecs\n",
    )
    .unwrap();
    for args in [
        &["jobs", "--json", "--config", "bad.yaml"][..],
        &["check", "--config", "bad.yaml"],
        &["docs", "--config", "bad.yaml"],
    ] {
        let out = ferry(dir.path(), args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(
            out.stdout.is_empty(),
            "{args:?} wrote to stdout: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        assert!(stderr.contains("bad.yaml:2:"), "{args:?}: {stderr}");
        assert!(stderr.contains(" errors found"), "{args:?}: {stderr}");
    }
}

#[test]
fn the_version_names_the_commit_and_the_open_webui_range() {
    let out = ferry(Path::new("."), &["--version"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0));
    let first = text.lines().next().unwrap();
    let commit = first
        .split("(commit ")
        .nth(1)
        .and_then(|r| r.strip_suffix(')'))
        .unwrap_or_else(|| panic!("no commit in {text}"));
    assert!(
        commit == "unknown" || (commit.len() >= 7 && commit.chars().all(|c| c.is_ascii_hexdigit())),
        "{text}"
    );
    assert!(text.contains("Open WebUI 0.6.40 to 0.12.x"), "{text}");
}

#[test]
fn completions_for_each_shell_name_every_command() {
    let dir = tempfile::tempdir().unwrap();
    for shell in ["bash", "zsh", "fish"] {
        let out = ferry(dir.path(), &["completions", shell]);
        assert_eq!(out.status.code(), Some(0), "{shell}");
        let text = String::from_utf8_lossy(&out.stdout);
        for command in ["run", "check", "plan", "sync", "deliveries", "redeliver"] {
            assert!(text.contains(command), "{shell} completions lack {command}");
        }
        if shell == "bash" {
            // It must at least parse as bash.
            let file = dir.path().join("ferry.bash");
            std::fs::write(&file, &out.stdout).unwrap();
            let check = Command::new("bash").arg("-n").arg(&file).output().unwrap();
            assert!(
                check.status.success(),
                "{}",
                String::from_utf8_lossy(&check.stderr)
            );
        }
    }
    let out = ferry(dir.path(), &["completions", "tcsh"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty());
}

/// The man page is generated from the same definitions as `--help`, and
/// `man` renders it without a warning.
#[test]
fn the_man_page_renders_and_lists_the_commands() {
    let dir = tempfile::tempdir().unwrap();
    let out = ferry(dir.path(), &["man"]);
    assert_eq!(out.status.code(), Some(0));
    let roff = String::from_utf8_lossy(&out.stdout);
    assert!(
        roff.starts_with(".ie") || roff.contains(".TH ferry 1"),
        "{roff}"
    );
    let page = dir.path().join("ferry.1");
    std::fs::write(&page, &out.stdout).unwrap();
    // groff (Debian's `groff-base`, which `man` needs) renders it; -ww
    // turns on every warning, and none may come.
    let rendered = Command::new("groff")
        .args(["-k", "-man", "-Tutf8", "-ww", "-z"])
        .arg(&page)
        .output()
        .expect("groff (Debian package groff-base)");
    assert!(
        rendered.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&rendered.stderr)
    );
    for command in [
        "ferry-run",
        "ferry-check",
        "ferry-plan",
        "ferry-completions",
    ] {
        assert!(
            roff.contains(command) || roff.contains(&command[6..]),
            "{command}"
        );
    }
}

/// Secrets and exit codes are `check`'s; this is only the help's promise.
#[test]
fn the_help_lists_exit_codes_and_the_states_a_filter_takes() {
    let out = ferry(Path::new("."), &["--help"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("Exit codes: 0 ok, 1 runtime failure, 2 usage or config error"));
    let out = ferry(Path::new("."), &["jobs", "--help"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("queued, running, succeeded, dead"), "{text}");
}
