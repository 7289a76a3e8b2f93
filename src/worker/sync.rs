//! `sync` jobs: one path of a watch rule brought in line with its folder
//! (ingested, taken down, or recorded skipped), and what that brings about
//! (document events, follow-up chats).

use std::path::Path;

use serde_json::{Value, json};

use super::ingest::{Collection, IngestError, Outcome};
use super::{Finish, Workers, chat};
use crate::paths;
use crate::rules::{OnDelete, Rule, Trigger, Watch};
use crate::safe_fs::{self, Refusal};
use crate::store::{self, Effects, Job};
use crate::triggers::TriggerKind;

/// Brings one path in line: ingest it if it is a regular file under the
/// root, take it down if it is gone, record it skipped (after taking down
/// what it was) if it is a link or another special file.
pub(super) async fn sync(workers: &Workers, job: &Job) -> Result<(Finish, Effects), IngestError> {
    let done = |v: Value| Ok((Finish::Done(v), Effects::default()));
    let path = paths::from_key(job.input["path"].as_str().unwrap_or_default());
    let Some(rule) = workers.rule(&job.rule) else {
        return done(json!({ "skipped": "the rule no longer exists" }));
    };
    let Trigger::Watch(watch) = &rule.trigger else {
        return done(json!({ "skipped": "the rule no longer watches" }));
    };
    let Ok(relative) = path.strip_prefix(&watch.path) else {
        return done(json!({ "skipped": "outside the watched folder" }));
    };
    let filter = match workers.filters.load(watch) {
        Ok(f) => f,
        // The watcher pauses the rule and looks again once it is fixed.
        Err(problem) => return done(json!({ "deferred": problem.to_string() })),
    };
    let opened = if filter.matches(relative) {
        safe_fs::open_beneath(&watch.path, &path)
    } else {
        Err(Refusal::Gone)
    };
    let opened = match opened {
        Ok(file) => Some(file),
        Err(r) if r.is_skip() => return skip(workers, &rule, watch, &path, &r, job).await,
        Err(Refusal::Gone | Refusal::Outside) => None,
        Err(r) => {
            return Err(IngestError::Io {
                path: paths::shown(&path),
                source: std::io::Error::other(r),
            });
        }
    };
    if rule.ingest.is_none() {
        return chat_only(workers, &rule, &path, opened, watch).await;
    }
    let collection = match workers.collection(&rule).await {
        Ok(c) => c,
        // Deleted in Open WebUI, and the rule says pause: the `collection`
        // job holds the rule; the next reconcile after it clears looks
        // again.
        Err(IngestError::UnknownCollection(_)) => {
            return done(json!({ "deferred": "the knowledge base is missing" }));
        }
        Err(e) => return Err(e),
    };
    match opened {
        Some(file) => {
            let outcome = workers
                .ingestor
                .ingest(
                    &rule.name,
                    &path,
                    file,
                    &collection,
                    watch.max_size,
                    &workers.layout(&rule).await?,
                )
                .await?;
            let finish = report(&rule, &path, &outcome, workers).await;
            let mut effects =
                document_effects(workers, &rule, &path, &collection, &outcome, job).await;
            if let Outcome::Moved { from, .. } = &outcome {
                let from = paths::from_key(from);
                let now = workers.clock.now_ms();
                effects
                    .jobs
                    .extend(tidy_tree(workers, &rule, &collection, &from, now).await?);
            }
            Ok((finish, effects))
        }
        None => gone(workers, &rule, watch, &path, &collection, job).await,
    }
}

/// A link, FIFO, device or socket where a watched file may be: nothing is
/// read; what the path held before is taken down like a removed file.
async fn skip(
    workers: &Workers,
    rule: &Rule,
    watch: &Watch,
    path: &Path,
    why: &Refusal,
    job: &Job,
) -> Result<(Finish, Effects), IngestError> {
    let key = paths::key(path);
    let previous = workers.store.document(&rule.name, &key).await?;
    let mut effects = Effects::default();
    if let Some(doc) = &previous
        && doc.file_id.is_some()
        && rule.ingest.is_some()
        && !matches!(
            doc.state,
            store::DocumentState::Removed | store::DocumentState::Skipped
        )
    {
        let collection = workers.collection(rule).await?;
        let (finish, taken_down) = gone(workers, rule, watch, path, &collection, job).await?;
        if !matches!(&finish, Finish::Done(v) if v["removed"] == true) {
            // Kept (on_delete: keep) or deferred (paused): not yet skipped.
            return Ok((finish, taken_down));
        }
        effects = taken_down;
    }
    let why = why.to_string();
    if previous.is_none_or(|d| d.state != store::DocumentState::Skipped) {
        tracing::warn!(rule = %rule.name, path = %paths::shown(path), reason = %why, "skipped");
    }
    workers
        .store
        .skipped(&rule.name, &key, &why, workers.clock.now_ms())
        .await?;
    Ok((Finish::Done(json!({ "skipped": why })), effects))
}

/// Takes down a document whose file left the folder (after the pause,
/// `on_delete` and root checks).
async fn gone(
    workers: &Workers,
    rule: &Rule,
    watch: &Watch,
    path: &Path,
    collection: &Collection,
    job: &Job,
) -> Result<(Finish, Effects), IngestError> {
    let done = |v: Value| Ok((Finish::Done(v), Effects::default()));
    if let Some(reason) = workers.store.paused_reason(&rule.name).await? {
        return done(json!({ "deferred": reason }));
    }
    let Some(doc) = workers
        .store
        .document(&rule.name, &paths::key(path))
        .await?
    else {
        return done(json!({ "gone": true }));
    };
    if matches!(
        doc.state,
        store::DocumentState::Removed | store::DocumentState::Skipped
    ) {
        if doc.state == store::DocumentState::Skipped {
            workers
                .store
                .removed(doc.id, workers.clock.now_ms())
                .await?;
        }
        return done(json!({ "gone": true }));
    }
    if watch.on_delete == OnDelete::Keep && doc.state == store::DocumentState::Linked {
        return done(json!({ "kept": true }));
    }
    if let Some(problem) = root_problem(watch) {
        // Never remove on the word of a folder that is not there.
        workers
            .store
            .set_paused(&rule.name, Some(&problem), workers.clock.now_ms())
            .await?;
        tracing::warn!(rule = %rule.name, reason = problem, "rule paused");
        return done(json!({ "deferred": problem }));
    }
    let deleted = workers.ingestor.remove(&doc, collection).await?;
    tracing::info!(rule = %rule.name, path = %paths::shown(path), deleted, "removed");
    let now = workers.clock.now_ms();
    let ctx = document_context(
        rule,
        path,
        doc.sha256.as_deref(),
        doc.file_id.as_deref(),
        collection,
        now,
    );
    let mut effects =
        crate::deliver::effects_for(rule, "document.removed", &job.id, &ctx, json!({}), now);
    effects
        .jobs
        .extend(tidy_tree(workers, rule, collection, path, now).await?);
    Ok((
        Finish::Done(json!({ "removed": true, "deleted_upload": deleted })),
        effects,
    ))
}

/// A check of the collection soon (coalesced: one for a whole folder's
/// files), when the file left a directory ferry made whose folder is gone:
/// the check removes it once it is empty.
async fn tidy_tree(
    workers: &Workers,
    rule: &Rule,
    collection: &Collection,
    path: &Path,
    now_ms: i64,
) -> Result<Option<store::NewJob>, IngestError> {
    let layout = workers.layout(rule).await?;
    let Some(folder) = layout.place(path).folder else {
        return Ok(None);
    };
    let known = workers.store.known_dirs(&collection.id).await?;
    let stale = known
        .iter()
        .any(|d| d.owned && d.path == folder && super::tree::prunable(&layout, &d.path));
    Ok(stale.then(|| crate::triggers::TriggerEvent::Collection.job(&rule.name, now_ms + 2_000)))
}

/// A watch rule without `ingest` chats about each file version itself.
/// Nothing is uploaded; the job's dedupe key (path + content hash) makes
/// sure each version is chatted about once.
async fn chat_only(
    workers: &Workers,
    rule: &Rule,
    path: &Path,
    opened: Option<safe_fs::Opened>,
    watch: &Watch,
) -> Result<(Finish, Effects), IngestError> {
    let Some(mut file) = opened else {
        return Ok((Finish::Done(json!({ "gone": true })), Effects::default()));
    };
    let max_size = watch.max_size;
    let read = tokio::task::spawn_blocking(move || file.read_limited(max_size))
        .await
        .map_err(std::io::Error::other)
        .and_then(|r| r)
        .map_err(|source| IngestError::Io {
            path: paths::shown(path),
            source,
        })?;
    let Some(bytes) = read else {
        return Ok((
            Finish::Done(json!({ "skipped": "larger than max_size" })),
            Effects::default(),
        ));
    };
    workers.ingestor.count_hashed();
    let sha = safe_fs::sha256_hex(&bytes);
    // The text is read again when the chat runs, through the same guard.
    let mut file = chat::file_context(&watch.path, path, Some(&sha), false);
    file["size"] = json!(bytes.len());
    let effects = Effects {
        jobs: chat::after_ingest(
            &workers.rules(),
            rule,
            &file,
            &Value::Null,
            &sha,
            workers.clock.now_ms(),
        ),
        ..Default::default()
    };
    Ok((
        Finish::Done(json!({ "outcome": "queued chat", "sha256": sha })),
        effects,
    ))
}

/// The template context of a document event of `rule`.
pub(super) fn document_context(
    rule: &Rule,
    path: &Path,
    sha256: Option<&str>,
    file_id: Option<&str>,
    collection: &Collection,
    now_ms: i64,
) -> Value {
    let root = match &rule.trigger {
        Trigger::Watch(w) => w.path.clone(),
        _ => Default::default(),
    };
    let mut file = chat::file_context(&root, path, sha256, false);
    file["file_id"] = json!(file_id);
    crate::triggers::context(
        rule.view(),
        TriggerKind::Watch.as_str(),
        &json!({ "file": file, "collection": { "name": collection.name, "id": collection.id } }),
        now_ms,
    )
}

/// Deliveries of a document's outcome, and the chats it starts.
async fn document_effects(
    workers: &Workers,
    rule: &Rule,
    path: &Path,
    collection: &Collection,
    outcome: &Outcome,
    job: &Job,
) -> Effects {
    if rule.deliver.is_empty() && !chat::follows_ingest(&workers.rules(), rule) {
        return Effects::default();
    }
    let doc = workers
        .store
        .document(&rule.name, &paths::key(path))
        .await
        .ok()
        .flatten();
    let sha = doc.as_ref().and_then(|d| d.sha256.clone());
    let now = workers.clock.now_ms();
    match outcome {
        Outcome::Linked { file_id, .. } => {
            let ctx = document_context(rule, path, sha.as_deref(), Some(file_id), collection, now);
            let mut effects = crate::deliver::effects_for(
                rule,
                "document.ingested",
                &job.id,
                &ctx,
                json!({}),
                now,
            );
            if let Some(sha) = &sha {
                effects.jobs = chat::after_ingest(
                    &workers.rules(),
                    rule,
                    &ctx["file"],
                    &ctx["collection"],
                    sha,
                    workers.clock.now_ms(),
                );
            }
            effects
        }
        Outcome::Failed { reason, detail, .. } if reason.is_permanent() => {
            let ctx = document_context(rule, path, sha.as_deref(), None, collection, now);
            crate::deliver::effects_for(
                rule,
                "document.failed",
                &job.id,
                &ctx,
                json!({ "error": format!("{reason}: {detail}") }),
                now,
            )
        }
        _ => Effects::default(),
    }
}

fn root_problem(watch: &Watch) -> Option<String> {
    match std::fs::read_dir(&watch.path).map(|mut entries| entries.next().is_some()) {
        Ok(true) => None,
        Ok(false) => Some(format!("watched folder {} is empty", watch.path.display())),
        Err(e) => Some(format!(
            "watched folder {} is not readable: {e}",
            watch.path.display()
        )),
    }
}

async fn report(rule: &Rule, path: &Path, outcome: &Outcome, workers: &Workers) -> Finish {
    let shown = paths::shown(path);
    let name = &rule.name;
    let counted = match outcome {
        Outcome::Linked { replaced: None, .. } => Some(("linked", "")),
        Outcome::Linked {
            replaced: Some(_), ..
        } => Some(("replaced", "")),
        Outcome::Moved { .. } => Some(("moved", "")),
        Outcome::Failed {
            known: false,
            reason,
            ..
        } => Some(("failed", reason.as_str())),
        Outcome::Unchanged { .. } | Outcome::Failed { known: true, .. } => None,
    };
    if let Some((what, reason)) = counted {
        workers.metrics.file(name, what, reason);
    }
    match outcome {
        Outcome::Linked {
            file_id,
            replaced: None,
        } => tracing::info!(rule = %name, path = %shown, file_id, "linked"),
        Outcome::Linked {
            file_id,
            replaced: Some(old),
        } => {
            tracing::info!(rule = %name, path = %shown, file_id, replaced = %old, "linked new version")
        }
        Outcome::Moved { file_id, from } => {
            tracing::info!(rule = %name, path = %shown, file_id, from = %paths::shown_key(from), "moved")
        }
        Outcome::Unchanged { .. } => tracing::debug!(rule = %name, path = %shown, "unchanged"),
        Outcome::Failed {
            reason,
            detail,
            known: false,
        } => {
            tracing::warn!(rule = %name, path = %shown, %reason, detail, "failed")
        }
        Outcome::Failed { known: true, .. } => {}
    }
    if let Outcome::Failed { reason, detail, .. } = outcome
        && !reason.is_permanent()
    {
        let at_ms = workers
            .store
            .document(name, &paths::key(path))
            .await
            .ok()
            .flatten()
            .and_then(|d| d.retry_at)
            .unwrap_or_else(|| workers.clock.now_ms() + 30_000);
        return Finish::Retry {
            error: format!("{reason}: {detail}"),
            at_ms,
        };
    }
    Finish::Done(outcome_json(outcome))
}

fn outcome_json(outcome: &Outcome) -> Value {
    match outcome {
        Outcome::Linked { file_id, replaced } => {
            json!({"outcome": "linked", "file_id": file_id, "replaced": replaced})
        }
        Outcome::Moved { file_id, from } => {
            json!({"outcome": "moved", "file_id": file_id, "from": from})
        }
        Outcome::Unchanged { file_id } => json!({"outcome": "unchanged", "file_id": file_id}),
        Outcome::Failed { reason, detail, .. } => {
            json!({"outcome": "failed", "reason": reason, "detail": detail})
        }
    }
}
