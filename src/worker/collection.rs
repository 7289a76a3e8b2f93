//! A rule's knowledge base: found, or created with the rule's sharing and
//! description, and kept in step with them at every start and reload
//! (the `collection` job). Only knowledge bases ferry created are changed:
//! one a person made and named in a rule keeps whatever sharing they gave
//! it.

use std::collections::HashMap;
use std::time::Duration;

use serde_json::json;

use super::ingest::{Collection, IngestError, NewCollection};
use super::tree::Layout;
use super::{Finish, Workers};
use crate::openwebui::{Client, Error as OwuiError, Sharing};
use crate::paths;
use crate::rules::{
    CollectionRef, DEFAULT_DESCRIPTION, Grant, Ingest, OnMissingCollection, Principal, Rule,
};
use crate::store::{Effects, Job};
use crate::triggers::TriggerEvent;

/// `ingest.access` by Open WebUI ids, and the entries it does not know.
pub async fn resolve_sharing<'g>(
    client: &Client,
    grants: &'g [Grant],
) -> Result<(Sharing, Vec<&'g Grant>), OwuiError> {
    let mut sharing = Sharing::default();
    let mut unknown = Vec::new();
    let groups = if grants.iter().any(|g| matches!(g.to, Principal::Group(_))) {
        client.groups().await?
    } else {
        Vec::new()
    };
    for g in grants {
        let to = match g.permission {
            crate::rules::Permission::Read => &mut sharing.read,
            crate::rules::Permission::Write => &mut sharing.write,
        };
        match &g.to {
            Principal::Public => sharing.public_read = true,
            Principal::Group(name) => {
                // Group names are not unique in Open WebUI: all of that
                // name are meant.
                let ids: Vec<_> = groups.iter().filter(|x| &x.name == name).collect();
                if ids.is_empty() {
                    unknown.push(g);
                }
                to.groups.extend(ids.into_iter().map(|x| x.id.clone()));
            }
            Principal::User(email) => match client.user_id_by_email(email).await? {
                Some(id) => {
                    to.users.insert(id);
                }
                None => unknown.push(g),
            },
        }
    }
    Ok((sharing, unknown))
}

/// The rule's collection description, rendered.
pub fn description(rule: &Rule, ingest: &Ingest) -> String {
    let Some(t) = &ingest.description else {
        return DEFAULT_DESCRIPTION.into();
    };
    let context = json!({ "rule": rule.name, "collection": ingest.collection.to_string() });
    t.render(&context).unwrap_or_else(|e| {
        tracing::warn!(rule = %rule.name, error = %e.message, "ingest.description cannot be rendered; using the default");
        DEFAULT_DESCRIPTION.into()
    })
}

/// How the rule's collection starts out if ferry must create it. An entry
/// of `access` that cannot be resolved is left out (narrower, never
/// wider); the `collection` job reports it.
pub(super) async fn new_collection(
    workers: &Workers,
    rule: &Rule,
    ingest: &Ingest,
) -> NewCollection {
    let sharing = match resolve_sharing(&workers.client, &ingest.access).await {
        Ok((sharing, _)) => sharing,
        Err(e) => {
            tracing::warn!(rule = %rule.name, error = %e, "cannot resolve ingest.access; a collection created now is private");
            Sharing::default()
        }
    };
    NewCollection {
        description: description(rule, ingest),
        sharing,
    }
}

/// The `collection` job, at start, at every reload and every `reconcile`
/// of a watch rule: the rule's knowledge base found (or made again, or the
/// rule paused, as `on_missing_collection` says); when ferry created it,
/// its sharing and description made what the rule says; and every linked
/// document of the rule that the collection's own list lacks put back
/// (linked again, or uploaded again when Open WebUI deleted its file).
pub(super) async fn keep_in_step(
    workers: &Workers,
    job: &Job,
) -> Result<(Finish, Effects), IngestError> {
    let done = |v, effects| Ok((Finish::Done(v), effects));
    let Some(rule) = workers.rule(&job.rule) else {
        return done(
            json!({ "skipped": "the rule no longer exists" }),
            Effects::default(),
        );
    };
    let Some(ingest) = &rule.ingest else {
        return done(
            json!({ "skipped": "the rule no longer ingests" }),
            Effects::default(),
        );
    };
    let now = workers.clock.now_ms();
    let before = match &ingest.collection {
        CollectionRef::Name(name) => workers.store.collection_id(name).await?,
        CollectionRef::Id(id) => Some(id.clone()),
    };
    workers.forget_collection(&rule).await;
    let mut effects = Effects::default();
    let c = match workers.collection(&rule).await {
        Ok(c) => c,
        Err(
            IngestError::UnknownCollection(_) | IngestError::OpenWebUi(OwuiError::NotFound { .. }),
        ) => {
            let reason = format!(
                "knowledge base {} was deleted in Open WebUI (on_missing_collection: {})",
                ingest.collection,
                match (&ingest.collection, ingest.on_missing_collection) {
                    (CollectionRef::Id(_), _) =>
                        "pause; a collection named by id cannot be made again",
                    (_, OnMissingCollection::Pause) => "pause",
                    (_, OnMissingCollection::Recreate) => "recreate",
                }
            );
            let previous = workers
                .store
                .set_collection_missing(&rule.name, Some(&reason), now)
                .await?;
            if previous.is_none() {
                tracing::warn!(rule = %rule.name, reason, "rule paused");
                effects = rule_event(&rule, "rule.paused", &job.id, &reason, now);
            }
            return done(json!({ "paused": reason }), effects);
        }
        Err(e) => return Err(e),
    };
    if workers
        .store
        .set_collection_missing(&rule.name, None, now)
        .await?
        .is_some()
    {
        tracing::info!(rule = %rule.name, collection = %ingest.collection, "rule resumed: its knowledge base is there again");
        effects = rule_event(&rule, "rule.resumed", &job.id, "", now);
    }
    let replaced = before.as_ref().filter(|b| **b != c.id);
    if replaced.is_some() {
        tracing::warn!(rule = %rule.name, collection = %ingest.collection, id = %c.id, "knowledge base was deleted in Open WebUI; every file goes into the one ferry found or made in its place");
        workers.metrics.recreated(&rule.name);
    }
    let (k, current) = workers.client.knowledge_settings(&c.id).await?;
    if k.is_external() {
        return Ok((
            Finish::Fail(format!(
                "knowledge base {} is external (read-only in Open WebUI): ferry cannot write to it",
                ingest.collection
            )),
            effects,
        ));
    }
    let mut result = json!({ "collection": c.id });
    let mut problems = Vec::new();
    if workers.store.created_collection(&c.id).await? {
        // Sharing that cannot be resolved or set (a key that may not list
        // users, say) is reported; it does not hold up the drift repair.
        match resolve_sharing(&workers.client, &ingest.access).await {
            Ok((wanted, unknown)) => {
                if !unknown.is_empty() {
                    let names = unknown
                        .iter()
                        .map(|g| format!("{}: {}", place(&rule, g), shown(&g.to)))
                        .collect::<Vec<_>>()
                        .join("; ");
                    problems.push(format!(
                        "ingest.access names what Open WebUI does not know (left out): {names}"
                    ));
                }
                let sharing_changed = !wanted.same_as(&current);
                if sharing_changed {
                    match workers.client.set_knowledge_sharing(&c.id, &wanted).await {
                        Ok(()) => {
                            tracing::info!(rule = %rule.name, collection = %ingest.collection, "collection sharing set as the rule says")
                        }
                        Err(e) => {
                            problems.push(format!("cannot set the collection's sharing: {e}"))
                        }
                    }
                }
                result["sharing_changed"] = json!(sharing_changed);
            }
            Err(e) => problems.push(format!("cannot resolve ingest.access: {e}")),
        }
        let text = description(&rule, ingest);
        let description_changed = k.description.as_deref() != Some(text.as_str());
        if description_changed {
            workers
                .client
                .set_knowledge_description(&c.id, &k.name, &text)
                .await?;
        }
        result["description_changed"] = json!(description_changed);
    }
    let layout = workers.layout(&rule).await?;
    let dirs = workers.ingestor.dirs(&c.id);
    if layout.has_dirs() {
        dirs.survey().await?;
    }
    let (restored, placed) = repair(workers, &rule, &c, &layout, job, &mut effects).await?;
    result["restored"] = json!(restored);
    if layout.has_dirs() {
        result["placed"] = json!(placed);
        result["directories_removed"] = json!(dirs.prune(&layout).await?);
    }
    if !problems.is_empty() {
        return Ok((Finish::Fail(problems.join("; ")), effects));
    }
    done(result, effects)
}

/// Drift repair: the rule's linked documents that the collection's own
/// list lacks are put back, and those in another directory than their
/// folder's are moved into it. The documents of a collection this one
/// replaces (deleted in Open WebUI) are among them: the store moved them
/// here when it remembered this one. Returns how many were put back and
/// how many moved.
async fn repair(
    workers: &Workers,
    rule: &Rule,
    c: &Collection,
    layout: &Layout,
    job: &Job,
    effects: &mut Effects,
) -> Result<(usize, usize), IngestError> {
    let listed: HashMap<String, Option<String>> = workers
        .client
        .knowledge_files(&c.id)
        .await?
        .into_iter()
        .map(|f| (f.id, f.directory_id))
        .collect();
    let docs = workers.store.linked_files(&rule.name, &c.id).await?;
    let dirs = workers.ingestor.dirs(&c.id);
    let mut placed = 0;
    if layout.has_dirs() {
        for doc in &docs {
            let Some(current) = listed.get(&doc.file_id) else {
                continue;
            };
            let wanted = dirs
                .directory_of(&layout.place(&paths::from_key(&doc.path)))
                .await?;
            if *current != wanted {
                workers
                    .client
                    .move_file(&c.id, &doc.file_id, wanted.as_deref())
                    .await?;
                placed += 1;
            }
        }
    }
    let mut restored = 0;
    for doc in docs.iter().filter(|d| !listed.contains_key(&d.file_id)) {
        let now = workers.clock.now_ms();
        let path = paths::from_key(&doc.path);
        let how = match workers.client.file(&doc.file_id).await {
            Ok(_) => {
                let directory = dirs.directory_of(&layout.place(&path)).await?;
                workers
                    .client
                    .add_file_in(&c.id, &doc.file_id, directory.as_deref())
                    .await?;
                workers.store.relinked(doc.id, &c.id, now).await?;
                "relinked"
            }
            Err(OwuiError::NotFound { .. }) => {
                if !workers.store.file_lost(doc.id, &doc.file_id, now).await? {
                    continue;
                }
                workers
                    .queue
                    .submit(
                        &rule.name,
                        TriggerEvent::Path {
                            path: path.clone(),
                            after: Duration::ZERO,
                        },
                    )
                    .await?;
                "uploaded_again"
            }
            Err(e) => return Err(e.into()),
        };
        restored += 1;
        workers.metrics.restored(&rule.name, how);
        tracing::warn!(rule = %rule.name, path = %paths::shown(&path), how, "document was missing from its collection; restored");
        let ctx = super::sync::document_context(rule, &path, None, Some(&doc.file_id), c, now);
        let e = crate::deliver::effects_for(
            rule,
            "document.restored",
            &job.id,
            &ctx,
            json!({ "error": null, "how": how }),
            now,
        );
        effects.deliveries.extend(e.deliveries);
    }
    Ok((restored, placed))
}

/// The `notify` job: the watcher paused or resumed the rule.
pub(super) fn announce(workers: &Workers, job: &Job) -> (Finish, Effects) {
    let Some(rule) = workers.rule(&job.rule) else {
        return (
            Finish::Done(json!({ "skipped": "the rule no longer exists" })),
            Effects::default(),
        );
    };
    let now = workers.clock.now_ms();
    let effects = match job.input["paused"].as_str() {
        Some(reason) => rule_event(&rule, "rule.paused", &job.id, reason, now),
        None => rule_event(&rule, "rule.resumed", &job.id, "", now),
    };
    (
        Finish::Done(json!({ "deliveries": effects.deliveries.len() })),
        effects,
    )
}

/// A `rule.paused` or `rule.resumed` event (the reason as its `error`).
fn rule_event(rule: &Rule, event_type: &str, job_id: &str, reason: &str, now_ms: i64) -> Effects {
    let reason = if reason.is_empty() {
        serde_json::Value::Null
    } else {
        json!(reason)
    };
    let ctx = crate::triggers::context(
        rule.view(),
        crate::triggers::TriggerKind::Maintenance.as_str(),
        &json!({}),
        now_ms,
    );
    crate::deliver::effects_for(
        rule,
        event_type,
        job_id,
        &ctx,
        json!({ "error": reason }),
        now_ms,
    )
}

/// Where an access entry is written: `rules/kb.yaml:11:7`.
pub fn place(rule: &Rule, g: &Grant) -> String {
    format!("{}:{}:{}", rule.file.display(), g.pos.line, g.pos.col)
}

/// An access entry as the admin wrote it.
pub fn shown(p: &Principal) -> String {
    match p {
        Principal::Group(g) => format!("no group named `{g}`"),
        Principal::User(u) => format!("no user with email `{u}`"),
        Principal::Public => "`public`".into(),
    }
}
