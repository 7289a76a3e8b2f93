//! The folder tree in a collection (`ingest.tree`). Where the server has
//! knowledge directories (0.9.6+), a watched folder's subfolders become
//! directories: made parents first, taken over when already there (a name
//! clash is answered 400, resolved by reading the level), renamed with
//! their folder (`dirs/{id}/update`: no upload, no re-embedding), and
//! removed only when ferry made them, their folder is gone and nothing is
//! left in them. Elsewhere a file's name carries its folder path
//! ([`paths::path_name`]). The `knowledge_dirs` table maps folder paths to
//! directory ids; [`Dirs::survey`] makes it match the server again.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::openwebui::{Client, Error as OwuiError};
use crate::paths;
use crate::rules::{Rule, Tree, Trigger};
use crate::store::Store;

use super::ingest::IngestError;

/// How one rule's files are laid out in its collection.
#[derive(Debug, Clone)]
pub struct Layout {
    /// The watched root, when paths below it matter.
    root: Option<PathBuf>,
    /// Subfolders as directories (the server has them).
    dirs: bool,
}

/// Where one file goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    /// Its folder relative to the root (`a/b`), when it goes into a
    /// directory; `None` at the top.
    pub folder: Option<String>,
    /// Its name in Open WebUI.
    pub name: String,
}

impl Layout {
    /// Every file at the top under its own name (`ferry ingest`).
    pub fn flat() -> Layout {
        Layout {
            root: None,
            dirs: false,
        }
    }

    /// The layout of `rule`'s files on a server with or without
    /// directories.
    pub fn of(rule: &Rule, server_has_dirs: bool) -> Layout {
        match (&rule.trigger, &rule.ingest) {
            (Trigger::Watch(w), Some(i)) if i.tree == Tree::Mirror => Layout {
                root: Some(w.path.clone()),
                dirs: server_has_dirs,
            },
            _ => Layout::flat(),
        }
    }

    pub fn has_dirs(&self) -> bool {
        self.dirs
    }

    pub fn root(&self) -> Option<&Path> {
        self.root.as_deref()
    }

    /// When a file moved from folder `from` to folder `to` because a folder
    /// was renamed (the old one gone, the new one there): that folder's old
    /// and new path (`a/x` → `b/x` is `a` → `b`).
    pub fn folder_renamed<'a>(&self, from: &'a str, to: &'a str) -> Option<(&'a str, &'a str)> {
        let root = self.root()?;
        renamed(from, to).filter(|(old, new)| !folder_exists(root, old) && folder_exists(root, new))
    }

    pub fn place(&self, path: &Path) -> Placement {
        let relative = self.root.as_ref().and_then(|r| path.strip_prefix(r).ok());
        let Some(relative) = relative else {
            return Placement {
                folder: None,
                name: paths::upload_name(path),
            };
        };
        if !self.dirs {
            return Placement {
                folder: None,
                name: paths::path_name(relative),
            };
        }
        Placement {
            folder: relative.parent().and_then(folder_key),
            name: paths::upload_name(path),
        }
    }
}

/// A folder's key in `knowledge_dirs`: its parts' Open WebUI names joined
/// by `/`; `None` for the root.
pub fn folder_key(relative: &Path) -> Option<String> {
    let parts: Vec<String> = relative
        .components()
        .filter_map(|c| match c {
            std::path::Component::Normal(n) => Some(paths::folder_name(n)),
            _ => None,
        })
        .collect();
    (!parts.is_empty()).then(|| parts.join("/"))
}

fn split(folder: &str) -> (Option<&str>, &str) {
    match folder.rsplit_once('/') {
        Some((parent, name)) => (Some(parent), name),
        None => (None, folder),
    }
}

/// One collection's directories, as seen from ferry at `now_ms`.
pub struct Dirs<'a> {
    pub client: &'a Client,
    pub store: &'a Store,
    pub kb: &'a str,
    pub now_ms: i64,
    /// Held while the tree changes: the files of one renamed folder arrive
    /// together, and one of them renames the directory for all.
    pub changing: &'a tokio::sync::Mutex<()>,
}

impl Dirs<'_> {
    /// [`Dirs::ensure`] for a folder that may be the top (`None`).
    async fn ensure_in(&self, folder: Option<&str>) -> Result<Option<String>, IngestError> {
        match folder {
            Some(f) => Ok(Some(Box::pin(self.ensure(f)).await?)),
            None => Ok(None),
        }
    }

    /// The directory for `folder`, made (parents first) when missing.
    async fn ensure(&self, folder: &str) -> Result<String, IngestError> {
        let Dirs {
            client,
            store,
            kb,
            now_ms,
            ..
        } = *self;
        if let Some(id) = store.dir_id(kb, folder).await? {
            return Ok(id);
        }
        let (parent_folder, name) = split(folder);
        let parent = self.ensure_in(parent_folder).await?;
        match client.create_directory(kb, name, parent.as_deref()).await {
            Ok(d) => {
                store.remember_dir(kb, folder, &d.id, true, now_ms).await?;
                tracing::info!(collection = kb, folder, id = %d.id, "made a directory");
                Ok(d.id)
            }
            // Taken at that level: someone made it, or an answer was lost.
            Err(OwuiError::Rejected { status: 400, .. }) => {
                let (dirs, _) = client.directories(kb, parent.as_deref()).await?;
                match dirs.into_iter().find(|d| d.name == name) {
                    Some(d) => {
                        store.remember_dir(kb, folder, &d.id, false, now_ms).await?;
                        Ok(d.id)
                    }
                    None => Err(IngestError::OpenWebUi(OwuiError::UnexpectedResponse {
                        path: format!("/api/v1/knowledge/{kb}/dirs/create"),
                        message: format!("directory {name:?} was refused, yet is not there"),
                    })),
                }
            }
            // The parent is gone (deleted in the UI): known again next time.
            Err(e @ OwuiError::NotFound { .. }) => {
                if let Some(p) = parent_folder {
                    store.forget_dir(kb, p).await?;
                }
                Err(e.into())
            }
            Err(e) => Err(e.into()),
        }
    }

    /// The directory `placement` names, made when missing; `None` for the top.
    pub async fn directory_of(&self, placement: &Placement) -> Result<Option<String>, IngestError> {
        let Some(folder) = &placement.folder else {
            return Ok(None);
        };
        if let Some(id) = self.store.dir_id(self.kb, folder).await? {
            return Ok(Some(id));
        }
        let _changing = self.changing.lock().await;
        Ok(Some(self.ensure(folder).await?))
    }

    /// A file moved from folder `from` to folder `to` (either `None`, the top):
    /// when `from`'s folder (or an ancestor) was renamed, so is its directory,
    /// and the file is already in place; otherwise the file moves into `to`'s
    /// directory. Neither uploads nor re-embeds anything.
    pub async fn follow_move(
        &self,
        layout: &Layout,
        file_id: &str,
        from: Option<&str>,
        to: Option<&str>,
    ) -> Result<(), IngestError> {
        let Dirs {
            client, store, kb, ..
        } = *self;
        if from == to || !layout.dirs {
            return Ok(());
        }
        let _changing = self.changing.lock().await;
        if let (Some(from), Some(to)) = (from, to)
            && let Some((old, new)) = layout.folder_renamed(from, to)
            && let Some(id) = store.dir_id(kb, old).await?
            && store.dir_id(kb, new).await?.is_none()
        {
            let (new_parent, new_name) = split(new);
            let parent = self.ensure_in(new_parent).await?;
            client
                .update_directory(kb, &id, new_name, parent.as_deref())
                .await?;
            store.rename_dirs(kb, old, new).await?;
            tracing::info!(
                collection = kb,
                from = old,
                to = new,
                "renamed a directory with its folder"
            );
            return Ok(());
        }
        let target = self.ensure_in(to).await?;
        let from_id = match from {
            Some(f) => store.dir_id(kb, f).await?,
            None => None,
        };
        if from.is_some() && from_id == target {
            // Its folder was renamed before (an earlier file of it): in place.
            return Ok(());
        }
        client.move_file(kb, file_id, target.as_deref()).await?;
        Ok(())
    }

    /// Reads the collection's directory tree (one request per directory) and
    /// makes `knowledge_dirs` match it: ids that are gone are forgotten,
    /// directories at a known path that ferry did not record are taken (not
    /// owned).
    pub async fn survey(&self) -> Result<(), IngestError> {
        let Dirs {
            client,
            store,
            kb,
            now_ms,
            ..
        } = *self;
        let _changing = self.changing.lock().await;
        // Folder path → directory id, as the server has them.
        let mut found: HashMap<String, String> = HashMap::new();
        let mut queue: Vec<(Option<String>, String)> = vec![(None, String::new())];
        while let Some((id, path)) = queue.pop() {
            let (dirs, _) = client.directories(kb, id.as_deref()).await?;
            for d in dirs {
                let child = if path.is_empty() {
                    d.name.clone()
                } else {
                    format!("{path}/{}", d.name)
                };
                found.insert(child.clone(), d.id.clone());
                queue.push((Some(d.id), child));
            }
        }
        for known in store.known_dirs(kb).await? {
            match found.get(&known.path) {
                Some(id) if *id == known.dir_id => {}
                Some(id) => {
                    store
                        .remember_dir(kb, &known.path, id, false, now_ms)
                        .await?
                }
                None => store.forget_dir(kb, &known.path).await?,
            }
        }
        Ok(())
    }

    /// Deletes the directories ferry made whose folder is gone (or that the
    /// layout no longer wants) and that hold nothing, deepest first. Returns
    /// the folders removed.
    pub async fn prune(&self, layout: &Layout) -> Result<Vec<String>, IngestError> {
        let Dirs {
            client, store, kb, ..
        } = *self;
        let _changing = self.changing.lock().await;
        let mut removed = Vec::new();
        for d in store.known_dirs(kb).await? {
            if !d.owned || !prunable(layout, &d.path) {
                continue;
            }
            match client.directories(kb, Some(&d.dir_id)).await {
                Ok((subdirs, 0)) if subdirs.is_empty() => {}
                Ok(_) => continue,
                Err(OwuiError::NotFound { .. } | OwuiError::Rejected { status: 400, .. }) => {
                    store.forget_dir(kb, &d.path).await?;
                    continue;
                }
                Err(e) => return Err(e.into()),
            }
            client.delete_directory(kb, &d.dir_id).await?;
            store.forget_dir(kb, &d.path).await?;
            tracing::info!(collection = kb, folder = %d.path, "removed a directory whose folder is gone");
            removed.push(d.path);
        }
        Ok(removed)
    }
}

/// Whether folder `path` is `dir` or lies under it (`a/b` is under `a`,
/// `ab` is not).
pub fn at_or_under(path: &str, dir: &str) -> bool {
    path.strip_prefix(dir)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

/// The folders that differ between `from` and `to` once their common
/// trailing parts are set aside: `a/x` → `b/x` is `a` renamed to `b`.
fn renamed<'a>(from: &'a str, to: &'a str) -> Option<(&'a str, &'a str)> {
    let (mut f, mut t) = (from, to);
    loop {
        let (fp, fname) = split(f);
        let (tp, tname) = split(t);
        match (fp, tp) {
            (Some(fp), Some(tp)) if fname == tname => {
                f = fp;
                t = tp;
            }
            _ => break,
        }
    }
    (f != t).then_some((f, t))
}

/// Whether a known directory's folder no longer calls for it.
pub fn prunable(layout: &Layout, folder: &str) -> bool {
    match (layout.dirs, layout.root()) {
        (true, Some(root)) => !folder_exists(root, folder),
        _ => true,
    }
}

/// Whether a folder with this key exists under `root` (keys are cleaned
/// names; a folder whose name needed cleaning is looked for by its key).
fn folder_exists(root: &Path, folder: &str) -> bool {
    crate::safe_fs::is_folder_beneath(root, Path::new(folder))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rename_is_found_above_the_common_tail() {
        assert_eq!(renamed("a/x", "b/x"), Some(("a", "b")));
        assert_eq!(renamed("p/a/x/y", "p/b/x/y"), Some(("p/a", "p/b")));
        assert_eq!(renamed("a", "b"), Some(("a", "b")));
        assert_eq!(renamed("a/x", "a/y"), Some(("a/x", "a/y")));
        assert_eq!(renamed("x", "a/x"), Some(("x", "a/x")));
        assert_eq!(renamed("a", "a"), None);
        assert!(at_or_under("a", "a") && at_or_under("a/b", "a"));
        assert!(!at_or_under("ab", "a") && !at_or_under("a", "a/b"));
    }

    #[test]
    fn placement_follows_the_layout() {
        let dirs = Layout {
            root: Some("/w".into()),
            dirs: true,
        };
        let names = Layout {
            root: Some("/w".into()),
            dirs: false,
        };
        let p = Path::new("/w/a/b/README.md");
        assert_eq!(
            dirs.place(p),
            Placement {
                folder: Some("a/b".into()),
                name: "README.md".into()
            }
        );
        assert_eq!(
            names.place(p),
            Placement {
                folder: None,
                name: "a\u{2215}b\u{2215}README.md".into()
            }
        );
        assert_eq!(dirs.place(Path::new("/w/top.md")).folder, None);
        assert_eq!(Layout::flat().place(p).name, "README.md");
    }
}
