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

/// A new user's first run: `ferry init` writes a config and a rule, and
/// `ferry check` then names the one next thing to fix until it passes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn init_then_check_leads_a_new_user_to_a_working_config() {
    use ferry::testing::fake_openwebui::{API_KEY, FakeOpenWebUi};
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("conf");
    let config = conf.join("ferry.yaml").display().to_string();
    let folder = dir.path().join("Team Docs");
    let conf_arg = conf.display().to_string();
    let folder_arg = folder.display().to_string();
    let init = |url: &str, force: bool| {
        let mut args = vec![
            "init",
            "--url",
            url,
            "--folder",
            &folder_arg,
            "--dir",
            &conf_arg,
        ];
        if force {
            args.push("--force");
        }
        ferry(dir.path(), &args)
    };
    let out = init("http://127.0.0.1:9", false);
    let said = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(out.status.code(), Some(0), "{said}");
    assert!(
        said.contains("next: put an Open WebUI API key into"),
        "{said}"
    );
    assert!(conf.join("rules/team-docs.yaml").exists(), "{said}");
    let rule = std::fs::read_to_string(conf.join("rules/team-docs.yaml")).unwrap();
    assert!(rule.contains("collection: Team Docs"), "{rule}");

    let again = init("http://127.0.0.1:9", false);
    assert_eq!(again.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&again.stderr).contains("nothing was written"));

    // 1: no key yet.
    let out = ferry(dir.path(), &["check", "--config", &config]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("next: put an Open WebUI API key into that file"),
        "{err}"
    );
    std::fs::write(
        conf.join("credentials/openwebui_api_key"),
        format!("{API_KEY}\n"),
    )
    .unwrap();
    let out = ferry(dir.path(), &["check", "--config", &config]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // 2: Open WebUI is not there.
    let out = ferry(dir.path(), &["check", "--connect", "--config", &config]);
    let said = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{said}");
    assert!(
        said.contains("next: start Open WebUI, or correct `openwebui.url`"),
        "{said}"
    );

    // 3: Open WebUI answers; the folder is missing.
    let fake = FakeOpenWebUi::start("0.12.4").await;
    let out = init(&fake.url(), true);
    assert_eq!(out.status.code(), Some(0));
    let out = ferry(dir.path(), &["check", "--connect", "--config", &config]);
    let said = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{said}");
    assert!(said.contains("next: create the folder"), "{said}");

    // 4: all there.
    std::fs::create_dir_all(&folder).unwrap();
    let out = ferry(dir.path(), &["check", "--connect", "--config", &config]);
    let said = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{said}");
    assert!(said.contains("connection: ok"), "{said}");
    // A check makes no state database (run as root, it would be root's).
    assert!(!conf.join("state/ferry.db").exists());
    assert!(!conf.join("state").exists());
}
