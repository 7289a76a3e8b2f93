//! What a sync of one watch rule would do now, worked out without changing
//! anything (`ferry plan`): the same comparisons the watcher, the `sync`
//! jobs and the `collection` job make, read-only. Each action names what
//! the sync would change in Open WebUI or record; a file that is merely
//! touched (same content) is no action.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::collection::{description, resolve_sharing};
use super::ingest::{self, IngestError};
use super::tree::{self, Layout};
use crate::openwebui::{Client, Error as OwuiError, Sharing};
use crate::paths;
use crate::rules::{OnDelete, Rule, Trigger};
use crate::safe_fs;
use crate::store::{DocumentState, Store};
use crate::triggers::watch::MAX_REMOVE_SHARE;
use crate::triggers::watch::reconcile::{self, PathFilter};

/// One thing a sync would do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Action {
    /// The knowledge base does not exist: it is made.
    CreateCollection { name: String },
    /// Its sharing differs from the rule's (collections ferry made).
    Share { sharing: String },
    /// Its description differs from the rule's.
    Describe { description: String },
    /// A new file.
    Upload { path: String },
    /// Its upload is in Open WebUI already, its answer lost (a cut-off
    /// line, a crash): waited for and linked, not sent again.
    Finish { path: String },
    /// A changed file: the new version linked, then the old one removed.
    Replace { path: String },
    /// The same content at a new path: followed, nothing uploaded.
    Move { from: String, to: String },
    /// A file that left the folder: unlinked and deleted.
    Remove { path: String },
    /// In the store but not in the collection, its file still in Open
    /// WebUI: linked again.
    Relink { path: String },
    /// In the store but gone from Open WebUI: uploaded again.
    UploadAgain { path: String },
    /// A folder renamed: its directory renamed (files keep ids and
    /// embeddings).
    RenameDirectory { from: String, to: String },
    /// A directory made for a folder (relative path `a/b`).
    CreateDirectory { path: String },
    /// A linked file put into its folder's directory (it was elsewhere).
    Place { path: String, folder: String },
    /// A directory ferry made whose folder is gone, once empty.
    RemoveDirectory { path: String },
    /// Recorded as failed without an upload (`empty`, `too_large`,
    /// `duplicate`), or skipped (a link, FIFO, …).
    Refuse { path: String, reason: String },
}

/// What `ferry plan RULE` shows.
#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    pub rule: String,
    pub collection: String,
    /// The collection's id, when it exists.
    pub collection_id: Option<String>,
    /// Why the sync would stop short (the safety valve): nothing is
    /// removed then.
    pub paused: Option<String>,
    pub actions: Vec<Action>,
    /// Files that need nothing.
    pub unchanged: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error("rule `{0}` does not exist")]
    NoRule(String),
    #[error("rule `{0}` is not a watch rule that ingests: there is nothing to plan")]
    NotAMirror(String),
    #[error(transparent)]
    Ingest(#[from] IngestError),
}

impl From<OwuiError> for PlanError {
    fn from(e: OwuiError) -> Self {
        PlanError::Ingest(e.into())
    }
}

impl From<crate::store::StoreError> for PlanError {
    fn from(e: crate::store::StoreError) -> Self {
        PlanError::Ingest(e.into())
    }
}

/// Works out what a sync of `rule` would do now. Reads the folder, the
/// store and Open WebUI; writes nothing anywhere.
pub async fn plan(
    client: &Client,
    store: &Store,
    rule: &Rule,
    now_ms: i64,
) -> Result<Plan, PlanError> {
    let (Trigger::Watch(watch), Some(ingest)) = (&rule.trigger, &rule.ingest) else {
        return Err(PlanError::NotAMirror(rule.name.clone()));
    };
    let mut out = Plan {
        rule: rule.name.clone(),
        collection: ingest.collection.to_string(),
        collection_id: None,
        paused: None,
        actions: Vec::new(),
        unchanged: 0,
    };
    let layout = Layout::of(rule, client.version().await?.has_directories());
    let collection =
        match ingest::resolve_collection(client, store, &ingest.collection, None, now_ms).await {
            Ok(c) => Some(c),
            Err(IngestError::UnknownCollection(name)) => {
                out.actions.push(Action::CreateCollection { name });
                None
            }
            Err(e) => return Err(e.into()),
        };
    out.collection_id = collection.as_ref().map(|c| c.id.clone());

    // Sharing and description, where ferry keeps them.
    let (wanted, _) = resolve_sharing(client, &ingest.access).await?;
    let text = description(rule, ingest);
    match &collection {
        None => {
            if wanted != Sharing::default() {
                out.actions.push(Action::Share {
                    sharing: shown_sharing(&wanted),
                });
            }
        }
        Some(c) if store.created_collection(&c.id).await? => {
            let (k, current) = client.knowledge_settings(&c.id).await?;
            if !wanted.same_as(&current) {
                out.actions.push(Action::Share {
                    sharing: shown_sharing(&wanted),
                });
            }
            if k.description.as_deref() != Some(text.as_str()) {
                out.actions.push(Action::Describe { description: text });
            }
        }
        Some(_) => {}
    }

    // The folder against the store, as the watcher's reconcile sees it.
    let filter = PathFilter::load(watch);
    let scanned = match &filter {
        Ok(f) => reconcile::scan(&watch.path, f),
        Err(problem) => Err(problem.clone()),
    };
    let known = store.known_files(&rule.name).await?;
    let folder = reconcile::plan(
        scanned.as_ref(),
        &watch.path,
        &known,
        now_ms,
        MAX_REMOVE_SHARE,
    );
    out.paused = folder.pause.clone();
    let (Ok(scanned), Ok(_)) = (&scanned, &filter) else {
        return Ok(out);
    };
    out.unchanged = scanned.files.len().saturating_sub(folder.check.len());
    let gone: BTreeSet<&Path> = folder.remove.iter().map(PathBuf::as_path).collect();
    let mut moved_from: HashSet<String> = HashSet::new();
    let mut files = FileWork::default();
    for path in &folder.check {
        let key = paths::key(path).into_owned();
        let shown = paths::shown(path);
        let mut file = match safe_fs::open_beneath(&watch.path, path) {
            Ok(f) => f,
            Err(r) if r.is_skip() => {
                out.actions.push(Action::Refuse {
                    path: shown,
                    reason: r.to_string(),
                });
                continue;
            }
            // Gone since the scan: the next look removes it.
            Err(_) => continue,
        };
        let previous = store.document(&rule.name, &key).await?;
        let same_place = |d: &crate::store::Document| {
            collection
                .as_ref()
                .is_some_and(|c| d.collection_id.as_deref() == Some(c.id.as_str()))
        };
        if file.stat.size > watch.max_size {
            out.actions.push(Action::Refuse {
                path: shown,
                reason: "too_large".into(),
            });
            continue;
        }
        let max = watch.max_size;
        let (file, sha) = tokio::task::spawn_blocking(move || {
            let sha = file.sha256_limited(max);
            (file, sha)
        })
        .await
        .map_err(|e| IngestError::Io {
            path: shown.clone(),
            source: std::io::Error::other(e),
        })?;
        let Some(sha) = sha.map_err(|source| IngestError::Io {
            path: shown.clone(),
            source,
        })?
        else {
            out.actions.push(Action::Refuse {
                path: shown,
                reason: "too_large".into(),
            });
            continue;
        };
        if let Some(d) = &previous
            && same_place(d)
            && d.sha256.as_deref() == Some(sha.as_str())
            && d.state == DocumentState::Linked
        {
            out.unchanged += 1;
            continue;
        }
        if let Some(c) = &collection
            && let Some(other) = store.linked_with_content(&c.id, &sha).await?
            && other.path != key
        {
            let from = paths::from_key(&other.path);
            if other.rule == rule.name && !ingest::is_regular_file(&from) {
                moved_from.insert(other.path.clone());
                files.moves.push((from.clone(), path.clone()));
                out.actions.push(Action::Move {
                    from: paths::shown(&from),
                    to: shown,
                });
            } else {
                out.actions.push(Action::Refuse {
                    path: shown,
                    reason: "duplicate".into(),
                });
            }
            continue;
        }
        if file.stat.size == 0 {
            out.actions.push(Action::Refuse {
                path: shown,
                reason: "empty".into(),
            });
        } else if previous
            .as_ref()
            .is_some_and(|d| d.state == DocumentState::Linked && same_place(d))
        {
            files.placed_at.push(path.clone());
            out.actions.push(Action::Replace { path: shown });
        } else if let Some(d) = previous.as_ref().filter(|d| {
            same_place(d)
                && d.sha256.as_deref() == Some(sha.as_str())
                && matches!(
                    d.state,
                    DocumentState::Uploading | DocumentState::Processing | DocumentState::Failed
                )
        }) && store.pending_upload_of(d.id).await?.is_some()
        {
            files.placed_at.push(path.clone());
            out.actions.push(Action::Finish { path: shown });
        } else {
            files.placed_at.push(path.clone());
            out.actions.push(Action::Upload { path: shown });
        }
    }
    if out.paused.is_none() && watch.on_delete == OnDelete::Remove {
        for path in &folder.remove {
            let key = paths::key(path);
            if moved_from.contains(key.as_ref()) {
                continue;
            }
            let linked = known
                .iter()
                .any(|d| *d.path == *key && d.state == DocumentState::Linked);
            if linked {
                files.removed.push(path.clone());
                out.actions.push(Action::Remove {
                    path: paths::shown(path),
                });
            }
        }
    }

    // Drift: linked in the store, missing from the collection's own list.
    let mut listed: HashMap<String, Option<String>> = HashMap::new();
    if let Some(c) = &collection {
        listed = client
            .knowledge_files(&c.id)
            .await?
            .into_iter()
            .map(|f| (f.id, f.directory_id))
            .collect();
        for doc in store.linked_files(&rule.name, &c.id).await? {
            let path = paths::from_key(&doc.path);
            if gone.contains(path.as_path()) {
                continue;
            }
            if let Some(current) = listed.get(&doc.file_id) {
                if layout.has_dirs() && !moved_from.contains(&doc.path) {
                    let in_place = match layout.place(&path).folder {
                        Some(f) => {
                            let wanted = store.dir_id(&c.id, &f).await?;
                            wanted.is_some() && *current == wanted
                        }
                        None => current.is_none(),
                    };
                    if !in_place {
                        files.misplaced.push(path);
                    }
                }
                continue;
            }
            files.placed_at.push(path.clone());
            let shown = paths::shown(&path);
            match client.file(&doc.file_id).await {
                Ok(_) => out.actions.push(Action::Relink { path: shown }),
                Err(OwuiError::NotFound { .. }) => {
                    out.actions.push(Action::UploadAgain { path: shown })
                }
                Err(e) => return Err(e.into()),
            }
        }
    }
    if layout.has_dirs() {
        let c = collection.as_ref();
        plan_tree(&mut out, store, &layout, c, &listed, files).await?;
    }
    Ok(out)
}

/// What the file actions do to the tree, for the directory actions.
#[derive(Default)]
struct FileWork {
    /// Where files will be linked (uploaded, replaced, finished, put back).
    placed_at: Vec<PathBuf>,
    /// Files followed to a new path: (from, to).
    moves: Vec<(PathBuf, PathBuf)>,
    /// Linked files outside their folder's directory.
    misplaced: Vec<PathBuf>,
    /// Files that leave the collection.
    removed: Vec<PathBuf>,
}

/// The directory actions: folders renamed, made, files put into their
/// folder's directory, directories removed, as a sync would do them.
async fn plan_tree(
    out: &mut Plan,
    store: &Store,
    layout: &Layout,
    collection: Option<&ingest::Collection>,
    listed: &HashMap<String, Option<String>>,
    files: FileWork,
) -> Result<(), PlanError> {
    let FileWork {
        placed_at,
        moves,
        misplaced,
        removed,
    } = files;
    let known_dirs = match collection {
        Some(c) => store.known_dirs(&c.id).await?,
        None => Vec::new(),
    };
    let mut known: BTreeSet<String> = known_dirs.iter().map(|d| d.path.clone()).collect();
    let mut renamed_from: Vec<String> = Vec::new();
    for (from, to) in &moves {
        let (Some(old), Some(new)) = (layout.place(from).folder, layout.place(to).folder) else {
            continue;
        };
        if let Some((o, n)) = layout.folder_renamed(&old, &new)
            && known.contains(o)
            && !known.contains(n)
        {
            out.actions.push(Action::RenameDirectory {
                from: o.to_string(),
                to: n.to_string(),
            });
            renamed_from.push(o.to_string());
            let under: Vec<String> = known
                .iter()
                .filter(|k| tree::at_or_under(k, o))
                .cloned()
                .collect();
            for k in under {
                known.remove(&k);
                known.insert(format!("{n}{}", &k[o.len()..]));
            }
        }
    }
    let needed = placed_at
        .iter()
        .chain(moves.iter().map(|(_, to)| to))
        .chain(misplaced.iter())
        .filter_map(|p| layout.place(p).folder);
    for folder in needed {
        let mut prefix = String::new();
        for part in folder.split('/') {
            if !prefix.is_empty() {
                prefix.push('/');
            }
            prefix.push_str(part);
            if known.insert(prefix.clone()) {
                out.actions.push(Action::CreateDirectory {
                    path: prefix.clone(),
                });
            }
        }
    }
    for path in misplaced {
        out.actions.push(Action::Place {
            path: paths::shown(&path),
            folder: layout.place(&path).folder.unwrap_or_default(),
        });
    }
    // Made by ferry, its folder gone: removed once what is left in it is
    // only ferry's files that go too (removed, or moved away).
    let Some(c) = collection else {
        return Ok(());
    };
    let going: HashSet<&Path> = removed
        .iter()
        .chain(moves.iter().map(|(from, _)| from))
        .map(PathBuf::as_path)
        .collect();
    let leaving: HashSet<String> = store
        .linked_files(&out.rule, &c.id)
        .await?
        .into_iter()
        .filter(|f| going.contains(paths::from_key(&f.path).as_path()))
        .map(|f| f.file_id)
        .collect();
    for d in &known_dirs {
        if !d.owned
            || !tree::prunable(layout, &d.path)
            || renamed_from.iter().any(|r| tree::at_or_under(&d.path, r))
        {
            continue;
        }
        let staying = listed.iter().any(|(file, dir)| {
            dir.as_deref() == Some(d.dir_id.as_str()) && !leaving.contains(file)
        });
        let child_stays = known_dirs.iter().any(|k| {
            k.path != d.path
                && tree::at_or_under(&k.path, &d.path)
                && !(k.owned && tree::prunable(layout, &k.path))
        });
        if !staying && !child_stays {
            out.actions.push(Action::RemoveDirectory {
                path: d.path.clone(),
            });
        }
    }
    Ok(())
}

/// Sharing in words, by Open WebUI ids.
fn shown_sharing(s: &Sharing) -> String {
    let mut parts = Vec::new();
    if s.public_read {
        parts.push("everyone reads".to_string());
    }
    for (what, p) in [("read", &s.read), ("write", &s.write)] {
        for g in &p.groups {
            parts.push(format!("group {g} {what}s"));
        }
        for u in &p.users {
            parts.push(format!("user {u} {what}s"));
        }
    }
    if parts.is_empty() {
        "private (owner and admins)".into()
    } else {
        parts.join(", ")
    }
}
