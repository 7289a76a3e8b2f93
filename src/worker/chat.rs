//! Chat jobs: a rule's prompt filled from the event that caused it, run
//! against Open WebUI with the rule's knowledge attached; the answer is
//! stored with the job and handed to the rule's deliveries.
//!
//! A chat job's `input` holds what the trigger supplied (the file, the
//! webhook payload, the fire time, per-run `vars`); the template context is
//! built from it when the job runs ([`run_context`]), so `ferry render` and the
//! daemon fill templates the same way.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Value, json};

use super::ingest::{self, IngestError};
use super::{Finish, Workers};
use crate::openwebui::{ChatRequest, Error as OwuiError};
use crate::rules::{Rule, Trigger};
use crate::safe_fs;
use crate::store::{Effects, Job, NewJob, Store};
use crate::triggers::{self, TriggerEvent, TriggerKind, file_path};

/// `file.text` is given for UTF-8 files up to this size.
pub const FILE_TEXT_LIMIT: u64 = 256 * 1024;

/// The full template context of a run of `rule` (DESIGN §3): what the
/// trigger supplied ([`triggers::context`]), the schedule's history from
/// the store, and a document's text read now, from inside its watched
/// folder. The worker, `ferry render` and `ferry ask --rule` all fill
/// templates from this, so they cannot disagree.
pub async fn run_context(
    store: Option<&Store>,
    rules: &[Rule],
    rule: &Rule,
    kind: &str,
    input: &Value,
    now_ms: i64,
) -> Value {
    let mut ctx = triggers::context(rule.view(), kind, input, now_ms);
    if matches!(rule.trigger, Trigger::Schedule(_))
        && let Some(store) = store
        && let Ok(Some(row)) = store.schedule(&rule.name).await
    {
        let answer = match &row.last_success_job {
            Some(id) => store
                .job(id)
                .await
                .ok()
                .flatten()
                .and_then(|j| j.result)
                .and_then(|r| r.get("answer").cloned()),
            None => None,
        };
        let at = |ms: Option<i64>| ms.map(crate::clock::rfc3339_secs);
        ctx["last_run"] = json!({ "at": at(row.last_run_at) });
        ctx["last_success"] = json!({ "at": at(row.last_success_at), "answer": answer });
    }
    // A document's text is read when the chat runs, not when it was queued,
    // and only from inside the watched folder the file came from.
    if let Some(file) = input.get("file")
        && let Some(path) = file_path(file)
        && ctx.pointer("/file/text").is_none_or(Value::is_null)
    {
        let sha = file.get("sha256").and_then(Value::as_str);
        let mut fresh = match file_root(rules, rule) {
            Some(root) => file_context(&root, &path, sha, true),
            None => file.clone(),
        };
        // What the producer knew beyond the file itself (its Open WebUI id).
        if let (Some(fresh), Some(old)) = (fresh.as_object_mut(), file.as_object()) {
            for (k, v) in old {
                fresh.entry(k.clone()).or_insert_with(|| v.clone());
            }
        }
        ctx["file"] = fresh;
    }
    ctx
}

/// The `file` object of a document's context; `text` for small UTF-8
/// files, read (with `read_text`) only from a regular file under `root`
/// without following links ([`safe_fs`]), and never more than
/// [`FILE_TEXT_LIMIT`] bytes of it.
pub fn file_context(root: &Path, path: &Path, sha256: Option<&str>, read_text: bool) -> Value {
    let opened = safe_fs::open_beneath(root, path).ok();
    let size = opened.as_ref().map(|f| f.stat.size);
    let text = match opened {
        Some(mut f) if read_text => f
            .read_limited(FILE_TEXT_LIMIT)
            .ok()
            .flatten()
            .and_then(|b| String::from_utf8(b).ok()),
        _ => None,
    };
    triggers::file_fields(path, size, sha256, text)
}

/// The watched folder whose files `rule` chats about: its own, or that of
/// the rule it follows (`on: ingested`).
pub fn file_root(rules: &[Rule], rule: &Rule) -> Option<PathBuf> {
    let source = match &rule.trigger {
        Trigger::Watch(w) => return Some(w.path.clone()),
        Trigger::Ingested { rule } => rules.iter().find(|r| r.name == *rule)?,
        _ => return None,
    };
    match &source.trigger {
        Trigger::Watch(w) => Some(w.path.clone()),
        _ => None,
    }
}

/// The prompt and system message of a rule for a context.
pub fn render_prompt(rule: &Rule, ctx: &Value) -> Result<(Option<String>, String), String> {
    let chat = rule.chat.as_ref().ok_or("the rule has no `chat`")?;
    let prompt = chat
        .prompt
        .render(ctx)
        .map_err(|p| format!("chat.prompt: {}", p.message))?;
    let system = match &chat.system {
        Some(s) => Some(
            s.render(ctx)
                .map_err(|p| format!("chat.system: {}", p.message))?,
        ),
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

pub(super) async fn run(workers: &Workers, job: &Job) -> (Finish, Effects) {
    let Some(rule) = workers.rule(&job.rule) else {
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
    let now = workers.clock.now_ms();
    let rules = workers.rules();
    let ctx = run_context(
        Some(&workers.store),
        &rules,
        &rule,
        &job.trigger_kind,
        &job.input,
        now,
    )
    .await;
    let failed = |error: String, ctx: &Value| {
        let effects = crate::deliver::effects_for(
            &rule,
            "chat.failed",
            &job.id,
            ctx,
            json!({ "error": error }),
            workers.clock.now_ms(),
        );
        (Finish::Fail(error), effects)
    };
    let (system, prompt) = match render_prompt(&rule, &ctx) {
        Ok(p) => p,
        Err(e) => return failed(format!("template: {e}"), &ctx),
    };
    let mut collections = Vec::new();
    for reference in &chat.collections {
        match ingest::resolve_collection(&workers.client, &workers.store, reference, None, now)
            .await
        {
            Ok(c) => collections.push(c.id),
            Err(IngestError::UnknownCollection(name)) => {
                return failed(
                    format!("chat.collections: no knowledge base named `{name}`"),
                    &ctx,
                );
            }
            Err(e) => {
                return retry(
                    job,
                    e.to_string(),
                    None,
                    &rule,
                    &ctx,
                    workers.clock.now_ms(),
                );
            }
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
    let answer = match workers.client.chat(&request, chat.timeout).await {
        Ok(a) => a,
        Err(e) if transient(&e) => {
            let after = e.retry_after();
            return retry(
                job,
                e.to_string(),
                after,
                &rule,
                &ctx,
                workers.clock.now_ms(),
            );
        }
        Err(OwuiError::ModelNotFound { .. }) => {
            // Seen when the model's upstream is down or still loading for a
            // few seconds: retried on the transient schedule, and the error
            // that stays says what Open WebUI offers instead.
            let listed = match workers.client.models().await {
                Ok(models) if models.is_empty() => "none".to_string(),
                Ok(models) => models
                    .iter()
                    .map(|m| m.id.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
                Err(e) => format!("(the list failed too: {e})"),
            };
            let error = format!(
                "model `{}` not found; Open WebUI lists: {listed} (its upstream may be down or still loading)",
                chat.model
            );
            return retry(job, error, None, &rule, &ctx, workers.clock.now_ms());
        }
        Err(e) => return failed(e.to_string(), &ctx),
    };
    let model = answer.model.clone().unwrap_or_else(|| chat.model.clone());
    let chat_id = if chat.save_chat {
        let title: String = format!("{}: {}", rule.name, prompt.trim())
            .chars()
            .take(80)
            .collect();
        match workers
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
    let effects = crate::deliver::effects_for(
        &rule,
        "chat.completed",
        &job.id,
        &ctx,
        result.clone(),
        workers.clock.now_ms(),
    );
    (Finish::Done(result), effects)
}

fn retry(
    job: &Job,
    error: String,
    retry_after: Option<Duration>,
    rule: &Rule,
    ctx: &Value,
    now_ms: i64,
) -> (Finish, Effects) {
    let wait = retry_after.unwrap_or_else(|| retry_delay(job.attempts));
    // Written only if this was the last attempt.
    let if_dead = crate::deliver::effects_for(
        rule,
        "chat.failed",
        &job.id,
        ctx,
        json!({ "error": error }),
        now_ms,
    );
    (
        Finish::Retry {
            error,
            at_ms: now_ms + wait.as_millis() as i64,
        },
        if_dead,
    )
}

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

/// Chat jobs to queue when a document of `source_rule` is linked: the
/// rule's own `chat`, and every rule `on: { ingested: { rule: source } }`.
/// Once per document version ([`TriggerEvent::Document`]).
pub fn after_ingest(
    rules: &[Rule],
    source_rule: &Rule,
    document: &Value,
    collection: &Value,
    sha256: &str,
    now_ms: i64,
) -> Vec<NewJob> {
    rules
        .iter()
        .filter(|r| r.chat.is_some())
        .filter_map(|r| {
            let kind = match &r.trigger {
                Trigger::Watch(_) if r.name == source_rule.name => TriggerKind::Watch,
                Trigger::Ingested { rule } if *rule == source_rule.name => TriggerKind::Ingested,
                _ => return None,
            };
            let event = TriggerEvent::Document {
                kind,
                file: document.clone(),
                collection: collection.clone(),
                sha256: sha256.to_string(),
            };
            Some(event.job(&r.name, now_ms))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_text_is_read_only_from_regular_files_under_the_root() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        std::fs::create_dir_all(&root).unwrap();
        std::fs::write(dir.path().join("secret"), "SECRET").unwrap();
        std::fs::write(root.join("ok.txt"), "fine").unwrap();
        std::os::unix::fs::symlink(dir.path().join("secret"), root.join("link.txt")).unwrap();
        std::os::unix::fs::symlink("/proc/self/environ", root.join("env.txt")).unwrap();
        let ok = file_context(&root, &root.join("ok.txt"), None, true);
        assert_eq!(ok["text"], "fine");
        for name in ["link.txt", "env.txt"] {
            let f = file_context(&root, &root.join(name), None, true);
            assert_eq!(f["text"], Value::Null, "{name}");
            assert_eq!(f["size"], Value::Null, "{name}");
        }
        // Outside the root, nothing is read either.
        let f = file_context(&root, &dir.path().join("secret"), None, true);
        assert_eq!(f["text"], Value::Null);
    }

    #[test]
    fn non_utf8_paths_keep_their_bytes() {
        use std::os::unix::ffi::OsStringExt as _;
        let root = Path::new("/r");
        let path = PathBuf::from(std::ffi::OsString::from_vec(b"/r/bad\xff.md".to_vec()));
        let f = file_context(root, &path, Some("abc"), false);
        assert_eq!(f["name"], "bad\u{fffd}.md");
        assert_eq!(file_path(&f), Some(path));
    }
}
