//! What happened: `docs`, `jobs`, `deliveries` (read from the state
//! database; `retry` and `redeliver` through it).

use std::process::ExitCode;

use anyhow::Context as _;

use super::outln;
use crate::clock::Clock;
use crate::config::Config;
use crate::store::{DocumentFilter, DocumentState, Store};

pub(super) async fn docs(
    config: &Config,
    state: Option<String>,
    rule: Option<String>,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let state = match state {
        Some(s) => Some(DocumentState::parse(&s).with_context(|| {
            format!(
                "unknown state `{s}` (one of {})",
                DocumentState::ALL.map(|s| s.as_str()).join(", ")
            )
        })?),
        None => None,
    };
    let store = Store::open(&config.state.database).await?;
    let docs = store
        .documents(&DocumentFilter {
            state,
            rule,
            limit: None,
        })
        .await?;
    for d in &docs {
        if json {
            outln!("{}", serde_json::to_string(d)?);
            continue;
        }
        let mut line = format!(
            "{:<10} {:<12} {}",
            d.state.as_str(),
            d.rule,
            crate::paths::shown_key(&d.path)
        );
        if let Some(r) = d.reason {
            line.push_str(&format!("  [{r}] {}", d.error.as_deref().unwrap_or("")));
        }
        outln!("{line}");
    }
    if docs.is_empty() && !json {
        eprintln!("no documents");
    }
    Ok(ExitCode::SUCCESS)
}

fn when(ms: i64) -> String {
    crate::clock::from_ms(ms)
        .format("%Y-%m-%d %H:%M:%S")
        .to_string()
}

pub(super) async fn jobs(
    config: &Config,
    action: Option<crate::cli::JobsAction>,
    state: Option<String>,
    rule: Option<String>,
    limit: i64,
    json: bool,
) -> anyhow::Result<ExitCode> {
    use crate::cli::JobsAction;
    use crate::store::{JobFilter, JobState};
    let store = Store::open(&config.state.database).await?;
    match action {
        Some(JobsAction::Show { id }) => {
            let job = store
                .job(&id)
                .await?
                .with_context(|| format!("no job {id}"))?;
            outln!("{}", serde_json::to_string_pretty(&job)?);
        }
        Some(JobsAction::Retry { id }) => {
            match store.retry_dead(&id, Clock::system().now_ms()).await? {
                None => anyhow::bail!("no job {id}"),
                Some(JobState::Dead) => outln!("{id} queued again"),
                Some(other) => {
                    anyhow::bail!("job {id} is {}; only dead jobs are retried", other.as_str())
                }
            }
        }
        None => {
            let state = match state {
                Some(s) => Some(JobState::parse(&s).with_context(|| {
                    format!("unknown state `{s}` (one of queued, running, succeeded, dead)")
                })?),
                None => None,
            };
            let list = store
                .jobs(&JobFilter {
                    state,
                    rule,
                    kind: None,
                    limit: Some(limit),
                })
                .await?;
            for j in &list {
                if json {
                    outln!("{}", serde_json::to_string(j)?);
                    continue;
                }
                let detail = match (&j.error, &j.result) {
                    (Some(e), _) => e.clone(),
                    (None, Some(r)) => r
                        .get("answer")
                        .and_then(|a| a.as_str())
                        .map(|a| a.chars().take(60).collect::<String>().replace('\n', " "))
                        .unwrap_or_else(|| r.to_string().chars().take(60).collect()),
                    _ => String::new(),
                };
                outln!(
                    "{}  {}  {:<9} {:<12} {:<5} {:<8} {}",
                    j.id,
                    when(j.created_at),
                    j.state.as_str(),
                    j.rule,
                    j.kind,
                    j.trigger_kind,
                    detail
                );
            }
            if list.is_empty() && !json {
                eprintln!("no jobs");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub(super) async fn deliveries(
    config: &Config,
    action: Option<crate::cli::DeliveriesAction>,
    state: Option<String>,
    rule: Option<String>,
    limit: i64,
    json: bool,
) -> anyhow::Result<ExitCode> {
    use crate::cli::DeliveriesAction;
    use crate::store::{DeliveryFilter, DeliveryState};
    let store = Store::open(&config.state.database).await?;
    match action {
        Some(DeliveriesAction::Show { id }) => {
            let d = store
                .delivery(&id)
                .await?
                .with_context(|| format!("no delivery {id}"))?;
            let mut v = serde_json::json!(d);
            v["body"] = String::from_utf8_lossy(&d.body).into_owned().into();
            v["attempt_log"] = store
                .delivery_attempts(&id)
                .await?
                .into_iter()
                .map(|a| serde_json::json!({"attempt": a.attempt, "started_at": when(a.started_at), "duration_ms": a.duration_ms, "status": a.status, "error": a.error, "response": a.response}))
                .collect::<Vec<_>>()
                .into();
            outln!("{}", serde_json::to_string_pretty(&v)?);
        }
        Some(DeliveriesAction::Redeliver { id }) => {
            match store.redeliver(&id, Clock::system().now_ms()).await? {
                None => anyhow::bail!("no delivery {id}"),
                Some(false) => anyhow::bail!("delivery {id} is being sent right now"),
                Some(true) => outln!("{id} will be sent again (same webhook-id)"),
            }
        }
        None => {
            let state = match state {
                Some(s) => Some(DeliveryState::parse(&s).with_context(|| {
                    format!("unknown state `{s}` (one of pending, delivering, delivered, dead)")
                })?),
                None => None,
            };
            let list = store
                .deliveries(&DeliveryFilter {
                    state,
                    rule,
                    limit: Some(limit),
                })
                .await?;
            for d in &list {
                if json {
                    outln!("{}", serde_json::to_string(d)?);
                    continue;
                }
                let status = d
                    .last_status
                    .map(|s| s.to_string())
                    .unwrap_or_else(|| "-".into());
                outln!(
                    "{}  {}  {:<10} {:<12} {:<12} {:<18} attempts {} status {} {}",
                    d.id,
                    when(d.created_at),
                    d.state.as_str(),
                    d.rule,
                    d.destination,
                    d.event_type,
                    d.attempts,
                    status,
                    d.last_error.as_deref().unwrap_or("")
                );
            }
            if list.is_empty() && !json {
                eprintln!("no deliveries");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
