//! `ferry plan RULE`: what a sync of a watch rule would do now, worked out
//! by [`crate::worker::plan`]; nothing is changed anywhere.

use std::process::ExitCode;

use super::{client, outln};
use crate::clock::Clock;
use crate::setup::Loaded;
use crate::store::Store;
use crate::worker::plan::{self, Action, PlanError};

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
            Action::Replace { path } => format!("replace     {path}"),
            Action::Move { from, to } => format!("move        {from} → {to}"),
            Action::Remove { path } => format!("remove      {path}"),
            Action::Relink { path } => format!("relink      {path}"),
            Action::UploadAgain { path } => format!("upload again {path}"),
            Action::Refuse { path, reason } => format!("refuse      {path} ({reason})"),
        };
        outln!("  {line}");
    }
    outln!(
        "{} action(s), {} file(s) unchanged; nothing was changed",
        p.actions.len(),
        p.unchanged
    );
    Ok(ExitCode::SUCCESS)
}
