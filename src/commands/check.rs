//! `ferry check [--connect]`: every problem of every file at once, then
//! warnings; with `--connect`, what Open WebUI says of the rules.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context as _;

use super::owui::identity_line;
use super::{EXIT_CONFIG, EXIT_RUNTIME, client, display_url, one_line, outln, print_diagnostics};
use crate::config::Environment;
use crate::rules::{self, CollectionRef, Trigger};
use crate::setup::Loaded;
use crate::store::Store;
use crate::worker::ingest;

/// What is valid but probably not meant: said by `check`, not refused.
fn warnings(loaded: &Loaded) -> Vec<String> {
    let mut out = Vec::new();
    let listen = loaded.config.server.listen;
    if !listen.ip().is_loopback() {
        for r in &loaded.rules {
            if let rules::Trigger::Webhook(w) = &r.trigger
                && w.scheme == rules::AuthScheme::None
            {
                out.push(format!(
                    "rule `{}`: hook /hooks/{} has `scheme: none` on {listen}, which is not loopback: anyone who reaches it can run the rule",
                    r.name, w.path
                ));
            }
        }
        if listen.ip().is_unspecified() && loaded.config.server.hosts.is_empty() {
            out.push(format!(
                "server.listen {listen} answers any Host: list the names ferry is reached by in `server.hosts` (DNS rebinding)"
            ));
        }
    }
    out
}

pub(super) async fn check(path: &Path, env: &Environment, connect: bool) -> ExitCode {
    let loaded = match crate::setup::load(path, env) {
        Ok(l) => l,
        Err(diags) => {
            print_diagnostics(&diags);
            if let Some(next) = diags.iter().find_map(|d| next_step(&d.message)) {
                eprintln!("next: {next}");
            }
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let c = &loaded.config;
    outln!("{}: ok", c.path.display());
    outln!("  openwebui: {}", display_url(&c.openwebui.url));
    outln!("  state: {}", c.state.database.display());
    outln!("  webhooks: {}", c.webhooks.len());
    outln!("  rules: {}", loaded.rules.len());
    for r in &loaded.rules {
        let summary: Vec<String> = rules::summary(r)
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        outln!(
            "    {} ({}): {}",
            r.name,
            r.file.display(),
            summary.join(" ")
        );
    }
    for w in warnings(&loaded) {
        eprintln!("warning: {w}");
    }
    if !connect {
        return ExitCode::SUCCESS;
    }
    match check_connect(&loaded).await {
        Ok(problems) if problems.is_empty() => {
            outln!("connection: ok");
            ExitCode::SUCCESS
        }
        Ok(problems) => {
            for p in &problems {
                outln!("problem: {p}");
            }
            if let Some(next) = problems.iter().find_map(|p| next_step(p)) {
                outln!("next: {next}");
            }
            ExitCode::from(EXIT_RUNTIME)
        }
        Err(e) => {
            let problem = one_line(&e);
            outln!("problem: {problem}");
            if let Some(next) = next_step(&problem) {
                outln!("next: {next}");
            }
            ExitCode::from(EXIT_RUNTIME)
        }
    }
}

/// A private directory removed when the check ends.
fn tempfile_dir() -> anyhow::Result<ScratchDir> {
    let dir = std::env::temp_dir().join(format!("ferry-check-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir(&dir).context("cannot make a scratch directory")?;
    Ok(ScratchDir(dir))
}

struct ScratchDir(std::path::PathBuf);

impl std::ops::Deref for ScratchDir {
    type Target = std::path::Path;
    fn deref(&self) -> &std::path::Path {
        &self.0
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The one thing a new user should do about a problem, for the problems
/// a first run meets.
fn next_step(problem: &str) -> Option<&'static str> {
    let steps: [(&[&str], &'static str); 6] = [
        (
            &["api_key_file", "cannot read"],
            "put an Open WebUI API key into that file (Settings → Account → API keys), then run `ferry check --connect` again",
        ),
        (
            &["is not reachable"],
            "start Open WebUI, or correct `openwebui.url` to the address its web page opens at",
        ),
        (
            &["credentials were refused"],
            "make a new API key in Open WebUI (Settings → Account → API keys; the server needs ENABLE_API_KEYS=true) and put it in the key file",
        ),
        (
            &["watched folder", "does not exist"],
            "create the folder, or correct the rule's `on.watch.path`",
        ),
        (
            &["model `", "is not offered"],
            "set the rule's `chat.model` to one of the models listed",
        ),
        (
            &["older than 0.6.40"],
            "upgrade Open WebUI to 0.6.40 or newer",
        ),
    ];
    steps
        .iter()
        .find(|(words, _)| words.iter().all(|w| problem.contains(w)))
        .map(|(_, step)| *step)
}

async fn check_connect(loaded: &Loaded) -> anyhow::Result<Vec<String>> {
    let client = client(&loaded.config)?;
    let now = crate::clock::Clock::system().now_ms();
    let mut problems = Vec::new();
    let version = client
        .version()
        .await
        .context("Open WebUI is not reachable")?;
    outln!("  server: Open WebUI {version}");
    if !version.at_least(0, 6, 40) {
        problems.push(format!(
            "Open WebUI {version} is older than 0.6.40, the oldest ferry supports"
        ));
    }
    let who = client
        .whoami()
        .await
        .context("the credentials were refused")?;
    outln!("  signed in: {}", identity_line(&who));
    let models = client.models().await.context("cannot list models")?;
    // A check makes no state database: one made by `sudo ferry check`
    // would belong to root, not to the service's user. Without one, the
    // collections are looked up in a throwaway store.
    let scratch = tempfile_dir()?;
    let database = if loaded.config.state.database.exists() {
        loaded.config.state.database.clone()
    } else {
        scratch.join("ferry.db")
    };
    let store = Store::open(&database).await?;
    // Knowledge bases that ingestion creates on first use.
    let created: Vec<&CollectionRef> = loaded
        .rules
        .iter()
        .filter_map(|r| r.ingest.as_ref().map(|i| &i.collection))
        .collect();
    for rule in &loaded.rules {
        if let Some(chat) = &rule.chat {
            if !models.iter().any(|m| m.id == chat.model) {
                problems.push(format!(
                    "rule `{}`: model `{}` is not offered (have: {})",
                    rule.name,
                    chat.model,
                    models
                        .iter()
                        .map(|m| m.id.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            }
            for c in &chat.collections {
                match ingest::resolve_collection(&client, &store, c, None, now).await {
                    Ok(_) => {}
                    Err(ingest::IngestError::UnknownCollection(_)) if created.contains(&c) => {}
                    Err(e) => problems.push(format!("rule `{}`: collection {c}: {e}", rule.name)),
                }
            }
        }
        if let Some(i) = &rule.ingest {
            match crate::worker::collection::resolve_sharing(&client, &i.access).await {
                Ok((_, unknown)) => problems.extend(unknown.iter().map(|g| {
                    format!(
                        "{}: rule `{}`: ingest.access: {} in Open WebUI",
                        crate::worker::collection::place(rule, g),
                        rule.name,
                        crate::worker::collection::shown(&g.to)
                    )
                })),
                Err(e) => problems.push(format!(
                    "rule `{}`: cannot look up ingest.access: {e}",
                    rule.name
                )),
            }
            match ingest::resolve_collection(&client, &store, &i.collection, None, now).await {
                Ok(c) => match client.knowledge_settings(&c.id).await {
                    Ok((k, _)) if k.is_external() => problems.push(format!(
                        "rule `{}`: collection {} is an external knowledge base (read-only in Open WebUI); ferry cannot ingest into it",
                        rule.name, i.collection
                    )),
                    Ok(_) => {}
                    Err(e) => problems.push(format!(
                        "rule `{}`: collection {}: {e}",
                        rule.name, i.collection
                    )),
                },
                Err(ingest::IngestError::UnknownCollection(_)) => {
                    outln!(
                        "  rule `{}`: collection {} will be created",
                        rule.name,
                        i.collection
                    )
                }
                Err(e) => problems.push(format!(
                    "rule `{}`: collection {}: {e}",
                    rule.name, i.collection
                )),
            }
        }
        if let Trigger::Watch(w) = &rule.trigger
            && !w.path.is_dir()
        {
            problems.push(format!(
                "rule `{}`: watched folder {} does not exist",
                rule.name,
                w.path.display()
            ));
        }
    }
    Ok(problems)
}
