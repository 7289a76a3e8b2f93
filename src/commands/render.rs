//! `ferry render`: a rule's templates filled as a run would fill them,
//! from the same context ([`crate::worker::chat::run_context`]).

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context as _;
use serde_json::{Value, json};

use super::{EXIT_RUNTIME, outln};
use crate::clock::Clock;
use crate::rules::Rule;
use crate::setup::Loaded;
use crate::triggers::{Sample, TriggerEvent};
use crate::worker::chat;

pub(super) fn vars_json(vars: &[(String, String)]) -> serde_json::Map<String, Value> {
    vars.iter()
        .map(|(k, v)| (k.clone(), Value::String(v.clone())))
        .collect()
}

/// What the command line supplies in place of a real event.
pub(super) struct Given<'a> {
    pub vars: &'a [(String, String)],
    pub file: Option<&'a Path>,
    pub payload: Option<&'a str>,
    pub answer: &'a str,
}

/// The event a run of `rule` would have, made from the command line
/// ([`crate::triggers::Trigger::sample_event`]). The file named there is
/// read as given (links resolved): the admin chose it.
pub(super) fn sample_event(
    rule: &Rule,
    given: &Given<'_>,
    now_ms: i64,
) -> anyhow::Result<Option<TriggerEvent>> {
    let file = match given.file {
        Some(path) => {
            let path = &std::fs::canonicalize(path).with_context(|| crate::paths::shown(path))?;
            let root = path.parent().unwrap_or(Path::new("/"));
            let bytes = std::fs::read(path).with_context(|| crate::paths::shown(path))?;
            let sha = crate::safe_fs::sha256_hex(&bytes);
            Some((chat::file_context(root, path, Some(&sha), true), sha))
        }
        None => None,
    };
    let collection = rule
        .ingest
        .as_ref()
        .map(|i| i.collection.to_string())
        .unwrap_or_default();
    let sample = Sample {
        vars: vars_json(given.vars),
        file,
        collection: json!({ "name": collection, "id": null }),
        payload: given.payload,
    };
    Ok(rule.trigger.sample_event(sample, now_ms))
}

pub(super) async fn render(
    loaded: &Loaded,
    name: &str,
    given: Given<'_>,
) -> anyhow::Result<ExitCode> {
    let rule = loaded
        .rules
        .iter()
        .find(|r| r.name == name)
        .with_context(|| format!("no rule named `{name}`"))?;
    let now = Clock::system().now_ms();
    let event = sample_event(rule, &given, now)?
        .with_context(|| "this rule works on files: give one with --file PATH".to_string())?;
    let kind = event.kind();
    let mut input = event.job(&rule.name, now).input;
    input["vars"] = Value::Object(vars_json(given.vars));
    let ctx = chat::run_context(None, &loaded.rules, rule, kind.as_str(), &input, now).await;
    let mut failed = false;
    let data = if rule.chat.is_some() {
        match chat::render_prompt(rule, &ctx) {
            Ok((system, prompt)) => {
                if let Some(system) = &system {
                    outln!("--- system\n{system}");
                }
                outln!("--- prompt\n{prompt}");
            }
            Err(e) => {
                eprintln!("error: rule `{name}`: {e}");
                failed = true;
            }
        }
        let model = rule.chat.as_ref().map(|c| c.model.clone());
        json!({ "answer": given.answer, "model": model, "sources": [], "usage": {}, "chat_id": null })
    } else {
        json!({})
    };
    let event = if rule.chat.is_some() {
        "chat.completed"
    } else {
        "document.ingested"
    };
    let effects = crate::deliver::effects_for(rule, event, "(job id)", &ctx, data, now);
    for d in &effects.deliveries {
        outln!("--- deliver to {} ({})", d.destination, d.event_type);
        match &d.error {
            Some(e) => {
                eprintln!("error: rule `{name}`: {e}");
                failed = true;
            }
            None => outln!("{}", String::from_utf8_lossy(&d.body)),
        }
    }
    Ok(if failed {
        ExitCode::from(EXIT_RUNTIME)
    } else {
        ExitCode::SUCCESS
    })
}
