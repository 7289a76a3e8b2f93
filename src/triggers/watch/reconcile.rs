//! The full comparison of a watched tree with what the store knows: which
//! paths to look at again, which to remove, and when to stop and pause the
//! rule instead (the safety valve). [`plan`] is pure; [`scan`] reads the
//! tree, by stats only (nothing is hashed here).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use globset::{Glob, GlobSet, GlobSetBuilder};
use ignore::gitignore::{Gitignore, GitignoreBuilder};

use super::settle::FileStat;
use crate::paths;
use crate::safe_fs;
use crate::store::{DocumentState, KnownFile};
use crate::triggers::{DEFAULT_IGNORES, Watch};

/// The ignore file a watched root may hold, in gitignore syntax.
pub const IGNORE_FILE: &str = ".ferryignore";

/// The root's `.ferryignore`, by stats and bytes; `None` when there is none.
type IgnoreRead = Option<(FileStat, Vec<u8>)>;

fn read_ignore_file(watch: &Watch) -> Result<IgnoreRead, RootProblem> {
    let path = watch.path.join(IGNORE_FILE);
    match safe_fs::open_beneath(&watch.path, &path) {
        Ok(mut f) => match f.read_limited(IGNORE_FILE_LIMIT) {
            Ok(Some(bytes)) => Ok(Some((f.stat, bytes))),
            Ok(None) => Err(RootProblem::IgnoreFile(format!(
                "larger than {} KiB",
                IGNORE_FILE_LIMIT >> 10
            ))),
            Err(e) => Err(RootProblem::IgnoreFile(e.to_string())),
        },
        Err(safe_fs::Refusal::Gone) => Ok(None),
        Err(r) => Err(RootProblem::IgnoreFile(r.to_string())),
    }
}

/// Filters by root, kept while the rule's globs and the ignore file (its
/// stats and bytes) stay the same. Building one compiles every glob: when
/// each `sync` job built its own, that was 3 % of ferry's CPU while it
/// ingested. The ignore file is still read every time, so an edit counts
/// at once.
#[derive(Debug, Default)]
pub struct FilterCache(std::sync::Mutex<std::collections::HashMap<PathBuf, Cached>>);

#[derive(Debug)]
struct Cached {
    include: Vec<String>,
    exclude: Vec<String>,
    ignore: IgnoreRead,
    filter: std::sync::Arc<PathFilter>,
}

impl FilterCache {
    /// [`PathFilter::load`], built again only when something it is made of
    /// changed.
    pub fn load(&self, watch: &Watch) -> Result<std::sync::Arc<PathFilter>, RootProblem> {
        let read = read_ignore_file(watch)?;
        if let Some(c) = self.0.lock().expect("not poisoned").get(&watch.path)
            && c.include == watch.include
            && c.exclude == watch.exclude
            && c.ignore == read
        {
            return Ok(c.filter.clone());
        }
        let filter = std::sync::Arc::new(PathFilter::from_read(watch, read.clone())?);
        self.0.lock().expect("not poisoned").insert(
            watch.path.clone(),
            Cached {
                include: watch.include.clone(),
                exclude: watch.exclude.clone(),
                ignore: read,
                filter: filter.clone(),
            },
        );
        Ok(filter)
    }
}

/// The most of an ignore file that is read: a bigger one is refused.
const IGNORE_FILE_LIMIT: u64 = 1 << 20;

/// Which files under a root a rule covers (matched on the path relative to
/// the root): the rule's `include` and `exclude` globs, the default
/// ignores ([`DEFAULT_IGNORES`]) and the root's `.ferryignore`, whose lines
/// come after the defaults, so `!node_modules/` there takes one back.
#[derive(Debug, Clone)]
pub struct PathFilter {
    include: Option<GlobSet>,
    exclude: GlobSet,
    ignores: Gitignore,
    /// The `.ferryignore` these ignores were read from, by stats (`None`:
    /// there is none); a different stat means it changed.
    pub ignore_file: Option<FileStat>,
}

impl PathFilter {
    /// The rule's globs and the default ignores, without any ignore file.
    pub fn new(watch: &Watch) -> Result<PathFilter, FilterError> {
        Self::with_ignore_file(watch, None)
    }

    /// The rule's globs, the default ignores and the root's `.ferryignore`
    /// (read without following a link). An ignore file that is there but
    /// cannot be read, or has a line that is no pattern, is an error: going
    /// on without it would take in what it keeps out.
    pub fn load(watch: &Watch) -> Result<PathFilter, RootProblem> {
        Self::from_read(watch, read_ignore_file(watch)?)
    }

    fn from_read(watch: &Watch, read: IgnoreRead) -> Result<PathFilter, RootProblem> {
        let file = match &read {
            Some((stat, bytes)) => {
                let text = std::str::from_utf8(bytes)
                    .map_err(|_| RootProblem::IgnoreFile("not UTF-8 text".into()))?;
                Some((*stat, text))
            }
            None => None,
        };
        Self::with_ignore_file(watch, file).map_err(|e| RootProblem::IgnoreFile(e.to_string()))
    }

    fn with_ignore_file(
        watch: &Watch,
        file: Option<(FileStat, &str)>,
    ) -> Result<PathFilter, FilterError> {
        let glob = |g: &str| Glob::new(g).map_err(|e| FilterError(e.to_string()));
        let include = if watch.include.is_empty() {
            None
        } else {
            let mut b = GlobSetBuilder::new();
            for g in &watch.include {
                b.add(glob(g)?);
            }
            Some(b.build().map_err(|e| FilterError(e.to_string()))?)
        };
        let mut b = GlobSetBuilder::new();
        for g in &watch.exclude {
            b.add(glob(g)?);
        }
        let mut ignores = GitignoreBuilder::new(&watch.path);
        for line in DEFAULT_IGNORES {
            ignores
                .add_line(None, line)
                .map_err(|e| FilterError(e.to_string()))?;
        }
        if let Some((_, text)) = file {
            for (n, line) in text.lines().enumerate() {
                let line = if n == 0 {
                    line.trim_start_matches('\u{feff}')
                } else {
                    line
                };
                ignores
                    .add_line(None, line)
                    .map_err(|e| FilterError(format!("line {}: {e}", n + 1)))?;
            }
        }
        let ignores = ignores.build().map_err(|e| FilterError(e.to_string()))?;
        Ok(PathFilter {
            include,
            exclude: b.build().map_err(|e| FilterError(e.to_string()))?,
            ignores,
            ignore_file: file.map(|(stat, _)| stat),
        })
    }

    /// Whether the regular file at `relative` is covered: not under an
    /// ignored folder (as in git, a file in an ignored folder cannot be
    /// taken back), not ignored itself, not excluded, and included.
    pub fn matches(&self, relative: &Path) -> bool {
        let folders_kept = relative
            .ancestors()
            .skip(1)
            .filter(|a| !a.as_os_str().is_empty())
            .all(|folder| !self.ignores.matched(folder, true).is_ignore());
        folders_kept
            && !self.ignores.matched(relative, false).is_ignore()
            && !self.exclude.is_match(relative)
            && self.include.as_ref().is_none_or(|i| i.is_match(relative))
    }

    /// Whether a scan goes into the folder at `relative` (its parents were
    /// entered already).
    fn enters(&self, relative: &Path) -> bool {
        !self.ignores.matched(relative, true).is_ignore() && !self.exclude.is_match(relative)
    }

    /// Whether the root's ignore file is no longer the one read.
    pub fn ignore_file_changed(&self, root: &Path) -> bool {
        let now = match safe_fs::stat_beneath(root, &root.join(IGNORE_FILE)) {
            Ok(stat) => Some(stat),
            Err(safe_fs::Refusal::Gone) => None,
            // A link or a FIFO there: changed, and `load` will say why.
            Err(_) => return true,
        };
        now != self.ignore_file
    }
}

/// The default ignores alone, for names found outside any watched root
/// (`ferry ingest FOLDER`).
pub fn default_ignores() -> Gitignore {
    let mut b = GitignoreBuilder::new("");
    for line in DEFAULT_IGNORES {
        b.add_line(None, line)
            .expect("the default ignores are patterns");
    }
    b.build().expect("the default ignores are patterns")
}

/// A pattern of the rule or of its ignore file that is none.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct FilterError(String);

/// Why a root cannot be trusted right now.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RootProblem {
    #[error("the watched folder is missing")]
    Missing,
    #[error("the watched folder is unreadable: {0}")]
    Unreadable(String),
    /// The root's `.ferryignore` is there but cannot be used.
    #[error("its .ferryignore cannot be used: {0}")]
    IgnoreFile(String),
}

/// What a scan found under a root.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Scanned {
    /// Every covered regular file, by stats.
    pub files: BTreeMap<PathBuf, FileStat>,
    /// Covered names that are no regular file (links, FIFOs, devices,
    /// sockets): never read or followed, recorded as skipped.
    pub skipped: Vec<PathBuf>,
}

/// Every covered file under `root`, by stats, without following links:
/// a linked folder is not entered, a linked file is only named.
pub fn scan(root: &Path, filter: &PathFilter) -> Result<Scanned, RootProblem> {
    // The root is the admin's choice, and may be reached through a link.
    match std::fs::metadata(root) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => return Err(RootProblem::Unreadable("not a directory".into())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(RootProblem::Missing),
        Err(e) => return Err(RootProblem::Unreadable(e.to_string())),
    }
    walk(root, root, filter)
}

/// Like [`scan`], from the folder `start` under `root` (a folder that just
/// appeared); paths are still matched relative to `root`. A `start` that is
/// no folder (a link to one included) holds nothing.
pub fn scan_from(root: &Path, start: &Path, filter: &PathFilter) -> Result<Scanned, RootProblem> {
    if start == root {
        return scan(root, filter);
    }
    if !std::fs::symlink_metadata(start).is_ok_and(|m| m.is_dir()) {
        return Ok(Scanned::default());
    }
    walk(root, start, filter)
}

fn walk(root: &Path, start: &Path, filter: &PathFilter) -> Result<Scanned, RootProblem> {
    let mut out = Scanned::default();
    let inside_kept = start.strip_prefix(root).is_ok_and(|r| {
        r.ancestors()
            .filter(|a| !a.as_os_str().is_empty())
            .all(|folder| filter.enters(folder))
    });
    if !inside_kept {
        return Ok(out);
    }
    let mut stack = vec![start.to_path_buf()];
    let mut first = true;
    while let Some(dir) = stack.pop() {
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            // The root itself must be readable; a subfolder that vanished
            // while we walked is simply not there.
            Err(e) if first => return Err(RootProblem::Unreadable(e.to_string())),
            Err(_) => continue,
        };
        first = false;
        for entry in entries.flatten() {
            let path = entry.path();
            let Ok(file_type) = entry.file_type() else {
                continue;
            };
            let Ok(relative) = path.strip_prefix(root) else {
                continue;
            };
            if file_type.is_dir() {
                if filter.enters(relative) {
                    stack.push(path);
                }
            } else if !filter.matches(relative) {
            } else if file_type.is_file() {
                // `DirEntry::metadata` does not follow links.
                if let Ok(meta) = entry.metadata() {
                    out.files.insert(path, FileStat::of(&meta));
                }
            } else {
                out.skipped.push(path);
            }
        }
    }
    Ok(out)
}

#[derive(Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// New, changed, unfinished or due-for-retry paths.
    pub check: Vec<PathBuf>,
    /// Known paths that are gone.
    pub remove: Vec<PathBuf>,
    /// When set, nothing is removed and the rule is paused with this reason.
    pub pause: Option<String>,
}

/// Compares a scan with the documents of one rule. `max_remove_share` is
/// the largest share of linked documents one reconcile may remove.
pub fn plan(
    scanned: Result<&Scanned, &RootProblem>,
    root: &Path,
    known: &[KnownFile],
    now_ms: i64,
    max_remove_share: f64,
) -> Plan {
    let linked = known
        .iter()
        .filter(|d| d.state == DocumentState::Linked)
        .count();
    let scan = match scanned {
        Ok(t) => t,
        Err(problem) => {
            return Plan {
                pause: Some(match problem {
                    RootProblem::Missing => format!("watched folder {} is missing", root.display()),
                    RootProblem::Unreadable(e) => {
                        format!("watched folder {} is unreadable: {e}", root.display())
                    }
                    RootProblem::IgnoreFile(e) => format!(
                        "{}: {e}; nothing is added or removed until it can be read",
                        root.join(IGNORE_FILE).display()
                    ),
                }),
                ..Plan::default()
            };
        }
    };
    let tree = &scan.files;
    let by_path: std::collections::HashMap<&str, &KnownFile> =
        known.iter().map(|d| (&*d.path, d)).collect();
    let mut plan = Plan::default();
    for path in &scan.skipped {
        let recorded = by_path
            .get(paths::key(path).as_ref())
            .is_some_and(|d| d.state == DocumentState::Skipped);
        if !recorded {
            plan.check.push(path.clone());
        }
    }
    let skipped: std::collections::HashSet<&Path> =
        scan.skipped.iter().map(PathBuf::as_path).collect();
    for (path, stat) in tree {
        let needs_look = match by_path.get(paths::key(path).as_ref()) {
            None => true,
            Some(d) => {
                let same = d.size == Some(stat.size as i64)
                    && d.mtime_ns == Some(stat.mtime_ns)
                    && d.inode == Some(stat.inode as i64);
                match d.state {
                    DocumentState::Linked => !same,
                    DocumentState::Failed => {
                        !same
                            || (d.reason.is_some_and(|r| !r.is_permanent())
                                && d.retry_at.is_none_or(|t| t <= now_ms))
                    }
                    _ => true,
                }
            }
        };
        if needs_look {
            plan.check.push(path.clone());
        }
    }
    // A file at a path ferry does not know, with the inode and size of a
    // linked one that is gone, is that file moved (a folder renamed while
    // ferry was stopped): followed, not vanished, so the valve does not
    // take a big folder's rename for a mass deletion.
    let known_paths: std::collections::HashSet<&str> = known.iter().map(|d| &*d.path).collect();
    let arrived: std::collections::HashSet<(u64, u64)> = tree
        .iter()
        .filter(|(p, _)| !known_paths.contains(paths::key(p).as_ref()))
        .map(|(_, st)| (st.inode, st.size))
        .collect();
    let mut gone_linked = 0;
    for d in known {
        let path = paths::from_key(&d.path);
        // A file swapped for a link is the worker's to take down.
        if d.state == DocumentState::Removed
            || tree.contains_key(&path)
            || skipped.contains(path.as_path())
        {
            continue;
        }
        let moved = matches!((d.inode, d.size), (Some(i), Some(s)) if arrived.contains(&(i as u64, s as u64)));
        if d.state == DocumentState::Linked && !moved {
            gone_linked += 1;
        }
        plan.remove.push(path);
    }
    if tree.is_empty() && linked > 0 {
        plan.pause = Some(format!(
            "watched folder {} is empty but {linked} file(s) are linked; not removing them",
            root.display()
        ));
    } else if gone_linked > 0 && gone_linked as f64 > max_remove_share * linked as f64 {
        plan.pause = Some(format!(
            "{gone_linked} of {linked} linked files vanished at once (more than {:.0}%); not removing them",
            max_remove_share * 100.0
        ));
    }
    if plan.pause.is_some() {
        plan.remove.clear();
    }
    plan
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::FailureReason;

    fn doc(path: &str, state: DocumentState, size: i64) -> KnownFile {
        KnownFile {
            path: path.into(),
            state,
            reason: None,
            size: Some(size),
            mtime_ns: Some(size),
            inode: Some(1),
            retry_at: None,
        }
    }

    fn tree(entries: &[(&str, u64)]) -> Scanned {
        let files = entries
            .iter()
            .map(|(p, s)| {
                (
                    PathBuf::from(p),
                    FileStat {
                        size: *s,
                        mtime_ns: *s as i64,
                        inode: 1,
                    },
                )
            })
            .collect();
        Scanned {
            files,
            skipped: Vec::new(),
        }
    }

    #[test]
    fn a_folder_renamed_while_stopped_is_no_mass_deletion() {
        let known: Vec<_> = (0..4)
            .map(|i| KnownFile {
                inode: Some(100 + i),
                ..doc(&format!("/r/a/{i}"), DocumentState::Linked, 10)
            })
            .collect();
        let renamed = |inode: u64| Scanned {
            files: (0..4)
                .map(|i| {
                    (
                        PathBuf::from(format!("/r/c/{i}")),
                        FileStat {
                            size: 10,
                            mtime_ns: 10,
                            inode: inode + i,
                        },
                    )
                })
                .collect(),
            skipped: Vec::new(),
        };
        // The same inodes at new paths: moves, not a pause.
        let p = plan(Ok(&renamed(100)), Path::new("/r"), &known, 0, 0.5);
        assert_eq!(p.pause, None);
        assert_eq!((p.check.len(), p.remove.len()), (4, 4));
        // New files, the old ones gone: the valve holds.
        let p = plan(Ok(&renamed(900)), Path::new("/r"), &known, 0, 0.5);
        assert!(p.pause.is_some());
        assert!(p.remove.is_empty());
    }

    #[test]
    fn unchanged_tree_needs_nothing() {
        let known: Vec<_> = (0..4)
            .map(|i| doc(&format!("/r/{i}"), DocumentState::Linked, 10))
            .collect();
        let t = tree(&[("/r/0", 10), ("/r/1", 10), ("/r/2", 10), ("/r/3", 10)]);
        assert_eq!(
            plan(Ok(&t), Path::new("/r"), &known, 0, 0.5),
            Plan::default()
        );
    }

    #[test]
    fn new_changed_and_gone() {
        let known = vec![
            doc("/r/same", DocumentState::Linked, 10),
            doc("/r/changed", DocumentState::Linked, 10),
            doc("/r/gone", DocumentState::Linked, 10),
            doc("/r/other", DocumentState::Linked, 10),
            doc("/r/unfinished", DocumentState::Processing, 10),
        ];
        let t = tree(&[
            ("/r/same", 10),
            ("/r/changed", 11),
            ("/r/new", 1),
            ("/r/other", 10),
            ("/r/unfinished", 10),
        ]);
        let p = plan(Ok(&t), Path::new("/r"), &known, 0, 0.5);
        assert_eq!(
            p.check,
            vec![
                PathBuf::from("/r/changed"),
                PathBuf::from("/r/new"),
                PathBuf::from("/r/unfinished")
            ]
        );
        assert_eq!(p.remove, vec![PathBuf::from("/r/gone")]);
        assert_eq!(p.pause, None);
    }

    #[test]
    fn failures_wait_for_a_change_or_their_retry_time() {
        let mut permanent = doc("/r/dup", DocumentState::Failed, 10);
        permanent.reason = Some(FailureReason::Duplicate);
        let mut transient = doc("/r/flaky", DocumentState::Failed, 10);
        transient.reason = Some(FailureReason::Http);
        transient.retry_at = Some(1000);
        let t = tree(&[("/r/dup", 10), ("/r/flaky", 10)]);
        let known = vec![permanent, transient];
        assert!(
            plan(Ok(&t), Path::new("/r"), &known, 999, 0.5)
                .check
                .is_empty()
        );
        assert_eq!(
            plan(Ok(&t), Path::new("/r"), &known, 1000, 0.5).check,
            vec![PathBuf::from("/r/flaky")]
        );
    }

    #[test]
    fn safety_valve() {
        let known: Vec<_> = (0..10)
            .map(|i| doc(&format!("/r/{i}"), DocumentState::Linked, 10))
            .collect();
        // Missing root: pause, remove nothing.
        let p = plan(Err(&RootProblem::Missing), Path::new("/r"), &known, 0, 0.5);
        assert!(p.pause.unwrap().contains("missing") && p.remove.is_empty());
        // Empty root.
        let p = plan(Ok(&tree(&[])), Path::new("/r"), &known, 0, 0.5);
        assert!(p.pause.unwrap().contains("empty") && p.remove.is_empty());
        // Six of ten gone: more than half.
        let t = tree(&[("/r/0", 10), ("/r/1", 10), ("/r/2", 10), ("/r/3", 10)]);
        let p = plan(Ok(&t), Path::new("/r"), &known, 0, 0.5);
        assert!(p.pause.unwrap().contains("6 of 10") && p.remove.is_empty());
        // Five of ten: allowed.
        let t = tree(&[
            ("/r/0", 10),
            ("/r/1", 10),
            ("/r/2", 10),
            ("/r/3", 10),
            ("/r/4", 10),
        ]);
        let p = plan(Ok(&t), Path::new("/r"), &known, 0, 0.5);
        assert_eq!((p.pause, p.remove.len()), (None, 5));
    }

    #[test]
    fn filter_uses_builtins_and_globs() {
        let watch = Watch {
            path: "/r".into(),
            include: vec!["**/*.md".into()],
            exclude: vec!["drafts/**".into()],
            settle: std::time::Duration::from_secs(1),
            settle_closed: None,
            poll: None,
            max_size: 1,
            on_delete: crate::triggers::OnDelete::Remove,
            reconcile: std::time::Duration::from_secs(900),
        };
        let f = PathFilter::new(&watch).unwrap();
        assert!(f.matches(Path::new("a.md")) && f.matches(Path::new("x/y/a.md")));
        for ignored in [
            "a.txt",
            "drafts/a.md",
            ".hidden.md",
            "x/.git/a.md",
            "~$doc.md",
            "a.md.part",
            "a.tmp",
            ".~lock.a.md#",
            "node_modules/pkg/README.md",
            "x/__pycache__/m.md",
            "Thumbs.db",
            "x/.DS_Store",
        ] {
            assert!(!f.matches(Path::new(ignored)), "{ignored}");
        }
    }

    fn watch_of(root: &Path) -> Watch {
        Watch {
            path: root.into(),
            include: Vec::new(),
            exclude: Vec::new(),
            settle: std::time::Duration::from_secs(1),
            settle_closed: None,
            poll: None,
            max_size: 1,
            on_delete: crate::triggers::OnDelete::Remove,
            reconcile: std::time::Duration::from_secs(900),
        }
    }

    #[test]
    fn ferryignore_adds_patterns_and_takes_defaults_back() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let watch = watch_of(root);
        assert_eq!(PathFilter::load(&watch).unwrap().ignore_file, None);
        std::fs::write(
            root.join(IGNORE_FILE),
            "\u{feff}# drafts stay out\n*.draft\n/build/\nsecret/\n!node_modules/\n!keep.tmp\n",
        )
        .unwrap();
        let f = PathFilter::load(&watch).unwrap();
        assert!(f.ignore_file.is_some());
        for kept in [
            "a.md",
            "node_modules/pkg/README.md",
            "keep.tmp",
            "x/build/a.md",
        ] {
            assert!(f.matches(Path::new(kept)), "{kept}");
        }
        for ignored in [
            "a.draft",
            "x/y.draft",
            "build/a.md",
            "secret/a.md",
            "x/secret/deep/a.md",
            "other.tmp",
            "__pycache__/m.md",
        ] {
            assert!(!f.matches(Path::new(ignored)), "{ignored}");
        }
        // As in git, a file inside an ignored folder cannot be taken back.
        std::fs::write(root.join(IGNORE_FILE), "secret/\n!secret/a.md\n").unwrap();
        let f2 = PathFilter::load(&watch).unwrap();
        assert!(!f2.matches(Path::new("secret/a.md")));
        assert!(f.ignore_file_changed(root) && !f2.ignore_file_changed(root));
        std::fs::remove_file(root.join(IGNORE_FILE)).unwrap();
        assert!(f2.ignore_file_changed(root));
    }

    #[test]
    fn a_cached_filter_is_built_again_when_its_rules_or_ignore_file_change() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let mut watch = watch_of(root);
        let cache = FilterCache::default();
        let first = cache.load(&watch).unwrap();
        assert!(std::sync::Arc::ptr_eq(&first, &cache.load(&watch).unwrap()));
        assert!(first.matches(Path::new("a.draft")));
        // Same length, so only the bytes tell the edit.
        std::fs::write(root.join(IGNORE_FILE), "*.draft\n").unwrap();
        let edited = cache.load(&watch).unwrap();
        assert!(!edited.matches(Path::new("a.draft")));
        std::fs::write(root.join(IGNORE_FILE), "*.drafz\n").unwrap();
        assert!(cache.load(&watch).unwrap().matches(Path::new("a.draft")));
        watch.exclude = vec!["*.md".into()];
        assert!(!cache.load(&watch).unwrap().matches(Path::new("a.md")));
        std::fs::write(root.join(IGNORE_FILE), b"\xff").unwrap();
        assert!(cache.load(&watch).is_err(), "an unusable file is no blank");
    }

    #[test]
    fn an_ignore_file_that_cannot_be_used_is_an_error_not_a_blank() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let watch = watch_of(root);
        let outside = dir.path().join("..").join("elsewhere-ignore");
        std::os::unix::fs::symlink(&outside, root.join(IGNORE_FILE)).unwrap();
        assert!(matches!(
            PathFilter::load(&watch),
            Err(RootProblem::IgnoreFile(_))
        ));
        std::fs::remove_file(root.join(IGNORE_FILE)).unwrap();
        std::fs::write(root.join(IGNORE_FILE), b"\xff\xfe*.md\n").unwrap();
        let e = PathFilter::load(&watch).unwrap_err();
        assert!(e.to_string().contains("UTF-8"), "{e}");
        std::fs::write(root.join(IGNORE_FILE), "ok\n[z-a\n").unwrap();
        let e = PathFilter::load(&watch).unwrap_err();
        assert!(e.to_string().contains("line 2"), "{e}");
        // The plan pauses instead of taking in what the file kept out.
        let known = vec![doc("/r/a", DocumentState::Linked, 10)];
        let p = plan(Err(&e), Path::new("/r"), &known, 0, 0.5);
        assert!(p.pause.unwrap().contains(".ferryignore") && p.remove.is_empty());
    }

    #[test]
    fn a_scan_from_a_new_folder_keeps_the_roots_rules() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        for f in ["docs/a.md", "docs/node_modules/x.md", "node_modules/y.md"] {
            std::fs::create_dir_all(root.join(f).parent().unwrap()).unwrap();
            std::fs::write(root.join(f), "x").unwrap();
        }
        std::fs::write(root.join(IGNORE_FILE), "/docs/a.md\n").unwrap();
        let f = PathFilter::load(&watch_of(root)).unwrap();
        let found = scan_from(root, &root.join("docs"), &f).unwrap();
        assert!(found.files.is_empty(), "{found:?}");
        let found = scan_from(root, &root.join("node_modules"), &f).unwrap();
        assert!(found.files.is_empty(), "{found:?}");
        std::fs::write(root.join("docs/b.md"), "x").unwrap();
        let found = scan_from(root, &root.join("docs"), &f).unwrap();
        assert_eq!(
            found.files.keys().collect::<Vec<_>>(),
            vec![&root.join("docs/b.md")]
        );
    }
}
