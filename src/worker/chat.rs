//! Chat jobs: a rule's prompt filled from the event that caused it, run
//! against Open WebUI with the rule's knowledge attached; the answer is
//! stored with the job and handed to the rule's deliveries.
//!
//! A chat job's `input` holds what the trigger supplied (the file, the
//! webhook payload, the fire time, per-run `vars`); the template context is
//! built from it when the job runs ([`context`]), so `ferry render` and the
//! daemon fill templates the same way.

use std::time::Duration;

use serde_json::{Map, Value, json};

use crate::ingest::{self, IngestError};
use crate::openwebui::{ChatRequest, Error as OwuiError};
use crate::rules::{Rule, Trigger, template};
use crate::store::{self, Effects, Job, NewJob};

use super::{Finish, Shared};

/// Job kind: run a rule's `chat`.
pub const CHAT: &str = "chat";

const MAX_ATTEMPTS: i64 = 5;

/// `file.text` is given for UTF-8 files up to this size.
pub const FILE_TEXT_LIMIT: u64 = 256 * 1024;

/// A chat job for `rule` with what the trigger supplied.
pub fn new_job(rule: &Rule, trigger_kind: &str, input: Value, run_after: i64) -> NewJob {
    NewJob {
        rule: rule.name.clone(),
        kind: CHAT.into(),
        trigger_kind: trigger_kind.into(),
        input,
        run_after,
        max_attempts: MAX_ATTEMPTS,
        coalesce_key: None,
        dedupe_key: None,
    }
}

fn rfc3339_now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// The template context of a run (DESIGN §3): the names every template
/// has, plus what the trigger supplied in `input`. `vars` are the rule's
/// defaults overlaid with the run's own.
pub fn context(rule: &Rule, trigger_kind: &str, input: &Value) -> Value {
    let mut vars = rule.vars.clone();
    if let Some(Value::Object(given)) = input.get("vars") {
        for (k, v) in given {
            vars.insert(k.clone(), v.clone());
        }
    }
    let mut ctx = Map::new();
    ctx.insert("rule".into(), rule.name.clone().into());
    ctx.insert("now".into(), rfc3339_now().into());
    ctx.insert("vars".into(), Value::Object(vars));
    ctx.insert("trigger".into(), json!({ "kind": trigger_kind }));
    if let Value::Object(fields) = input {
        for (k, v) in fields {
            if !matches!(k.as_str(), "vars" | "trigger") {
                ctx.insert(k.clone(), v.clone());
            }
        }
    }
    // What the rule's own trigger provides, also when it runs by hand (the
    // templates were checked against it): a schedule's history, so prompts
    // can say "since {{ last_success.at }}", and an empty hook request.
    match &rule.trigger {
        Trigger::Schedule(_) => {
            ctx.entry("schedule")
                .or_insert(json!({ "fire_time": rfc3339_now(), "catch_up": false }));
            ctx.entry("last_run").or_insert(json!({ "at": null }));
            ctx.entry("last_success")
                .or_insert(json!({ "at": null, "answer": null }));
        }
        Trigger::Webhook(_) => {
            ctx.entry("payload").or_insert(json!({}));
            ctx.entry("query").or_insert(json!({}));
            ctx.entry("headers").or_insert(json!({}));
        }
        _ => {}
    }
    let _ = trigger_kind;
    Value::Object(ctx)
}

/// The `file` object of a document's context; `text` for small UTF-8 files.
pub fn file_context(path: &std::path::Path, sha256: Option<&str>) -> Value {
    file_context_reading(path, sha256, true)
}

/// [`file_context`], with `text` read only when `read_text`.
pub fn file_context_reading(
    path: &std::path::Path,
    sha256: Option<&str>,
    read_text: bool,
) -> Value {
    let meta = std::fs::metadata(path).ok();
    let size = meta.as_ref().map(|m| m.len());
    let text = match size {
        Some(n) if read_text && n <= FILE_TEXT_LIMIT => std::fs::read(path)
            .ok()
            .and_then(|b| String::from_utf8(b).ok()),
        _ => None,
    };
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
    json!({
        "path": path,
        "name": name,
        "stem": path.file_stem().map(|n| n.to_string_lossy().into_owned()),
        "ext": path.extension().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(),
        "size": size,
        "sha256": sha256,
        "text": text,
    })
}

/// The prompt and system message of a rule for a context.
pub fn render_prompt(rule: &Rule, ctx: &Value) -> Result<(Option<String>, String), String> {
    let chat = rule.chat.as_ref().ok_or("the rule has no `chat`")?;
    let prompt =
        template::render(&chat.prompt, ctx).map_err(|p| format!("chat.prompt: {}", p.message))?;
    let system = match &chat.system {
        Some(s) => {
            Some(template::render(s, ctx).map_err(|p| format!("chat.system: {}", p.message))?)
        }
        None => None,
    };
    Ok((system, prompt))
}

/// Is an Open WebUI error worth trying again later? Unknown models, bad
/// requests and refusals are not.
fn transient(e: &OwuiError) -> bool {
    matches!(
        e,
        OwuiError::Server { .. }
            | OwuiError::Transport { .. }
            | OwuiError::Timeout { .. }
            | OwuiError::RateLimited { .. }
            | OwuiError::Unauthorized { .. }
            | OwuiError::UnexpectedResponse { .. }
    )
}

/// The wait before attempt `attempts + 1` of a chat job.
pub fn retry_delay(attempts: i64) -> Duration {
    const STEPS: [u64; 5] = [10, 30, 120, 600, 1800];
    Duration::from_secs(STEPS[(attempts.max(1) as usize - 1).min(STEPS.len() - 1)])
}

pub(super) async fn run(shared: &Shared, job: &Job) -> (Finish, Effects) {
    let Some(rule) = shared.rule(&job.rule) else {
        return (
            Finish::Fail("the rule no longer exists".into()),
            Effects::default(),
        );
    };
    let Some(chat) = rule.chat.clone() else {
        return (
            Finish::Fail("the rule no longer has `chat`".into()),
            Effects::default(),
        );
    };
    let mut ctx = context(&rule, &job.trigger_kind, &job.input);
    if matches!(rule.trigger, Trigger::Schedule(_))
        && let Ok(Some(row)) = shared.store.schedule(&rule.name).await
    {
        let answer = match &row.last_success_job {
            Some(id) => shared
                .store
                .job(id)
                .await
                .ok()
                .flatten()
                .and_then(|j| j.result)
                .and_then(|r| r.get("answer").cloned()),
            None => None,
        };
        let at = |ms: Option<i64>| ms.map(rfc3339);
        ctx["last_run"] = json!({ "at": at(row.last_run_at) });
        ctx["last_success"] = json!({ "at": at(row.last_success_at), "answer": answer });
    }
    // A document's text is read when the chat runs, not when it was queued.
    if let Some(path) = job.input.pointer("/file/path").and_then(Value::as_str)
        && ctx.pointer("/file/text").is_none_or(Value::is_null)
    {
        let sha = job.input.pointer("/file/sha256").and_then(Value::as_str);
        ctx["file"] = file_context(std::path::Path::new(path), sha);
    }
    let failed = |error: String, ctx: &Value| {
        let effects = crate::deliver::effects_for(
            &rule,
            "chat.failed",
            &job.id,
            ctx,
            json!({ "error": error }),
        );
        (Finish::Fail(error), effects)
    };
    let (system, prompt) = match render_prompt(&rule, &ctx) {
        Ok(p) => p,
        Err(e) => return failed(format!("template: {e}"), &ctx),
    };
    let mut collections = Vec::new();
    for reference in &chat.collections {
        match ingest::resolve_collection(&shared.client, &shared.store, reference, false).await {
            Ok(c) => collections.push(c.id),
            Err(IngestError::UnknownCollection(name)) => {
                return failed(
                    format!("chat.collections: no knowledge base named `{name}`"),
                    &ctx,
                );
            }
            Err(e) => return retry(job, e.to_string(), None, &rule, &ctx),
        }
    }
    let request = ChatRequest {
        model: chat.model.clone(),
        system: system.clone(),
        prompt: prompt.clone(),
        collections,
        options: chat.options.clone(),
    };
    let started = std::time::Instant::now();
    let answer = match shared.client.chat(&request, chat.timeout).await {
        Ok(a) => a,
        Err(e) if transient(&e) => {
            let after = e.retry_after();
            return retry(job, e.to_string(), after, &rule, &ctx);
        }
        Err(e) => return failed(e.to_string(), &ctx),
    };
    let model = answer.model.clone().unwrap_or_else(|| chat.model.clone());
    let chat_id = if chat.save_chat {
        let title: String = format!("{}: {}", rule.name, prompt.trim())
            .chars()
            .take(80)
            .collect();
        match shared
            .client
            .save_chat(title.trim(), &model, &prompt, &answer.content)
            .await
        {
            Ok(id) => Some(id),
            // The answer is not lost over this: it is stored and delivered.
            Err(e) => {
                tracing::warn!(rule = %rule.name, job = %job.id, error = %e, "answer kept, but saving it as a chat failed");
                None
            }
        }
    } else {
        None
    };
    tracing::info!(rule = %rule.name, job = %job.id, model, ms = started.elapsed().as_millis() as u64, chars = answer.content.len(), "chat answered");
    let result = json!({
        "prompt": prompt,
        "system": system,
        "answer": answer.content,
        "model": model,
        "sources": answer.sources,
        "usage": answer.usage,
        "chat_id": chat_id,
    });
    let effects =
        crate::deliver::effects_for(&rule, "chat.completed", &job.id, &ctx, result.clone());
    (Finish::Done(result), effects)
}

fn retry(
    job: &Job,
    error: String,
    retry_after: Option<Duration>,
    rule: &Rule,
    ctx: &Value,
) -> (Finish, Effects) {
    let wait = retry_after.unwrap_or_else(|| retry_delay(job.attempts));
    // Written only if this was the last attempt.
    let if_dead =
        crate::deliver::effects_for(rule, "chat.failed", &job.id, ctx, json!({ "error": error }));
    (
        Finish::Retry {
            error,
            at_ms: store::now_ms() + wait.as_millis() as i64,
        },
        if_dead,
    )
}

fn rfc3339(ms: i64) -> String {
    chrono::DateTime::<chrono::Utc>::from_timestamp_millis(ms)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// Chat jobs to queue when a document of `source_rule` is linked: the
/// rule's own `chat`, and every rule `on: { ingested: { rule: source } }`.
/// Once per document version (the dedupe key holds the content hash).
/// Whether a document linked under `source_rule` starts any chat.
pub fn follows_ingest(rules: &[Rule], source_rule: &Rule) -> bool {
    rules
        .iter()
        .filter(|r| r.chat.is_some())
        .any(|r| match &r.trigger {
            Trigger::Watch(_) => r.name == source_rule.name,
            Trigger::Ingested { rule } => *rule == source_rule.name,
            _ => false,
        })
}

pub fn after_ingest(
    rules: &[Rule],
    source_rule: &Rule,
    document: &Value,
    collection: &Value,
    sha256: &str,
    now_ms: i64,
) -> Vec<NewJob> {
    let path = document["path"].as_str().unwrap_or_default();
    rules
        .iter()
        .filter(|r| r.chat.is_some())
        .filter_map(|r| {
            let kind = match &r.trigger {
                Trigger::Watch(_) if r.name == source_rule.name => "watch",
                Trigger::Ingested { rule } if *rule == source_rule.name => "ingested",
                _ => return None,
            };
            let mut job = new_job(
                r,
                kind,
                json!({ "file": document, "collection": collection }),
                now_ms,
            );
            job.dedupe_key = Some(format!("chat:{}:{path}:{sha256}", r.name));
            Some(job)
        })
        .collect()
}
