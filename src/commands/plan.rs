//! `ferry plan RULE`: what a sync of a watch rule would do now, worked out
//! by [`crate::worker::plan`]; nothing is changed anywhere. `ferry sync
//! RULE`: that plan carried out by the daemon's own machinery, run here
//! for the one rule until the collection matches (or, while a daemon holds
//! the database, asked of that daemon).

use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context as _;

use super::{EXIT_RUNTIME, client, outln};
use crate::clock::Clock;
use crate::config::Environment;
use crate::setup::Loaded;
use crate::store::{Store, StoreError};
use crate::worker::plan::{self, Action, Plan, PlanError};

pub(super) async fn plan(loaded: &Loaded, rule: &str, json: bool) -> anyhow::Result<ExitCode> {
    let Some(r) = loaded.rules.iter().find(|r| r.name == rule) else {
        return Err(PlanError::NoRule(rule.to_string()).into());
    };
    let client = client(&loaded.config)?;
    let store = Store::open(&loaded.config.state.database).await?;
    let p = plan::plan(&client, &store, r, Clock::system().now_ms()).await?;
    if json {
        outln!("{}", serde_json::to_string(&p)?);
        return Ok(ExitCode::SUCCESS);
    }
    print_plan(&p);
    outln!(
        "{} action(s), {} file(s) unchanged; nothing was changed",
        p.actions.len(),
        p.unchanged
    );
    Ok(ExitCode::SUCCESS)
}

fn print_plan(p: &Plan) {
    outln!(
        "rule `{}` → collection {}{}",
        p.rule,
        p.collection,
        p.collection_id
            .as_ref()
            .map(|id| format!(" ({id})"))
            .unwrap_or_default()
    );
    if let Some(reason) = &p.paused {
        outln!("  paused: {reason}");
    }
    for a in &p.actions {
        let line = match a {
            Action::CreateCollection { name } => format!("create      collection {name}"),
            Action::Share { sharing } => format!("share       {sharing}"),
            Action::Describe { description } => format!("describe    {description:?}"),
            Action::Upload { path } => format!("upload      {path}"),
            Action::Finish { path } => format!("finish      {path}"),
            Action::Replace { path } => format!("replace     {path}"),
            Action::Move { from, to } => format!("move        {from} → {to}"),
            Action::Remove { path } => format!("remove      {path}"),
            Action::Relink { path } => format!("relink      {path}"),
            Action::UploadAgain { path } => format!("upload again {path}"),
            Action::Refuse { path, reason } => format!("refuse      {path} ({reason})"),
            Action::RenameDirectory { from, to } => format!("rename dir  {from} → {to}"),
            Action::CreateDirectory { path } => format!("create dir  {path}"),
            Action::Place { path, folder } => format!("place       {path} → {folder}/"),
            Action::RemoveDirectory { path } => format!("remove dir  {path}"),
        };
        outln!("  {line}");
    }
}

/// `ferry sync RULE`.
pub(super) async fn sync(
    loaded: &Loaded,
    env: Environment,
    rule: &str,
    limit: Duration,
) -> anyhow::Result<ExitCode> {
    let Some(r) = loaded.rules.iter().find(|r| r.name == rule).cloned() else {
        return Err(PlanError::NoRule(rule.to_string()).into());
    };
    if !matches!(r.trigger, crate::rules::Trigger::Watch(_)) || r.ingest.is_none() {
        return Err(PlanError::NotAMirror(rule.to_string()).into());
    }
    let client = client(&loaded.config)?;
    let before = {
        let store = Store::open(&loaded.config.state.database).await?;
        plan::plan(&client, &store, &r, Clock::system().now_ms()).await?
    };
    print_plan(&before);
    // The daemon's machinery for this one rule, on a port of its own.
    let mut only = loaded.clone();
    only.rules = vec![r.clone()];
    only.config.server.listen = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
    let running = match crate::app::start(only, env).await {
        Ok(running) => running,
        Err(crate::app::StartError::Store(StoreError::Locked { path, .. })) => {
            eprintln!(
                "a running daemon holds {}; asking it to sync rule `{rule}`",
                path.display()
            );
            super::admin::ask_sync(&loaded.config, rule).await?;
            outln!("the daemon is syncing rule `{rule}` (see `ferry plan {rule}`)");
            return Ok(ExitCode::SUCCESS);
        }
        Err(e) => return Err(e).context("cannot start the sync"),
    };
    let started = Instant::now();
    let outcome = loop {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let watched = running
            .metrics
            .watchers()
            .get(rule)
            .is_some_and(|w| w.reconciles > 0 && w.settling == 0);
        let idle = running.store.idle_at(running.clock.now_ms()).await?;
        if watched && idle {
            let now = plan::plan(&client, &running.store, &r, running.clock.now_ms()).await?;
            if let Some(reason) = now.paused {
                break Err(format!("rule `{rule}` is paused: {reason}"));
            }
            if now.actions.is_empty() {
                break Ok(());
            }
        }
        if started.elapsed() > limit {
            break Err(format!(
                "the collection did not match within {}s (see `ferry plan {rule}`)",
                limit.as_secs()
            ));
        }
    };
    running.shutdown.cancel();
    let _ = running.task.await;
    match outcome {
        Ok(()) => {
            outln!(
                "in step: {} action(s) done in {:.1}s",
                before.actions.len(),
                started.elapsed().as_secs_f64()
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(why) => {
            eprintln!("error: {why}");
            Ok(ExitCode::from(EXIT_RUNTIME))
        }
    }
}
