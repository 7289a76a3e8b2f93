//! A rule's knowledge base: found, or created with the rule's sharing and
//! description, and kept in step with them at every start and reload
//! (the `collection` job). Only knowledge bases ferry created are changed:
//! one a person made and named in a rule keeps whatever sharing they gave
//! it.

use serde_json::json;

use super::ingest::{Collection, IngestError, NewCollection};
use super::{Finish, Workers};
use crate::openwebui::{Client, Error as OwuiError, Sharing};
use crate::rules::{DEFAULT_DESCRIPTION, Grant, Ingest, Principal, Rule};
use crate::store::{Effects, Job};

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

/// The `collection` job: the rule's knowledge base found or created, and
/// (when ferry created it) its sharing and description made what the rule
/// says.
pub(super) async fn keep_in_step(
    workers: &Workers,
    job: &Job,
) -> Result<(Finish, Effects), IngestError> {
    let done = |v| Ok((Finish::Done(v), Effects::default()));
    let Some(rule) = workers.rule(&job.rule) else {
        return done(json!({ "skipped": "the rule no longer exists" }));
    };
    let Some(ingest) = &rule.ingest else {
        return done(json!({ "skipped": "the rule no longer ingests" }));
    };
    workers.forget_collection(&rule).await;
    let Collection { id, .. } = workers.collection(&rule).await?;
    let (k, current) = workers.client.knowledge_settings(&id).await?;
    if k.is_external() {
        return Ok((
            Finish::Fail(format!(
                "knowledge base {} is external (read-only in Open WebUI): ferry cannot write to it",
                ingest.collection
            )),
            Effects::default(),
        ));
    }
    if !workers.store.created_collection(&id).await? {
        return done(
            json!({ "collection": id, "kept": "not created by ferry: its sharing and description are left alone" }),
        );
    }
    let (wanted, unknown) = resolve_sharing(&workers.client, &ingest.access).await?;
    let sharing_changed = !wanted.same_as(&current);
    if sharing_changed {
        workers.client.set_knowledge_sharing(&id, &wanted).await?;
        tracing::info!(rule = %rule.name, collection = %ingest.collection, "collection sharing set as the rule says");
    }
    let text = description(&rule, ingest);
    let description_changed = k.description.as_deref() != Some(text.as_str());
    if description_changed {
        workers
            .client
            .set_knowledge_description(&id, &k.name, &text)
            .await?;
    }
    if !unknown.is_empty() {
        let names = unknown
            .iter()
            .map(|g| {
                format!(
                    "{}:{}:{}: {}",
                    rule.file.display(),
                    g.pos.line,
                    g.pos.col,
                    shown(&g.to)
                )
            })
            .collect::<Vec<_>>()
            .join("; ");
        return Ok((
            Finish::Fail(format!(
                "ingest.access names what Open WebUI does not know (left out): {names}"
            )),
            Effects::default(),
        ));
    }
    done(json!({
        "collection": id,
        "sharing_changed": sharing_changed,
        "description_changed": description_changed,
    }))
}

/// An access entry as the admin wrote it.
pub fn shown(p: &Principal) -> String {
    match p {
        Principal::Group(g) => format!("no group named `{g}`"),
        Principal::User(u) => format!("no user with email `{u}`"),
        Principal::Public => "`public`".into(),
    }
}
