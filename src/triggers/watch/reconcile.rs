//! The full comparison of a watched tree with what the store knows: which
//! paths to look at again, which to remove, and when to stop and pause the
//! rule instead (the safety valve). [`plan`] is pure; [`scan`] reads the
//! tree, by stats only (nothing is hashed here).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use globset::{Glob, GlobSet, GlobSetBuilder};

use super::settle::FileStat;
use crate::paths;
use crate::store::{DocumentState, KnownFile};
use crate::triggers::{BUILTIN_EXCLUDES, Watch};

/// Which files under a root a rule covers (matched on the relative path).
#[derive(Debug, Clone)]
pub struct PathFilter {
    include: Option<GlobSet>,
    exclude: GlobSet,
}

impl PathFilter {
    pub fn new(watch: &Watch) -> Result<PathFilter, globset::Error> {
        let include = if watch.include.is_empty() {
            None
        } else {
            let mut b = GlobSetBuilder::new();
            for g in &watch.include {
                b.add(Glob::new(g)?);
            }
            Some(b.build()?)
        };
        let mut b = GlobSetBuilder::new();
        for g in BUILTIN_EXCLUDES
            .iter()
            .copied()
            .chain(watch.exclude.iter().map(String::as_str))
        {
            b.add(Glob::new(g)?);
        }
        Ok(PathFilter {
            include,
            exclude: b.build()?,
        })
    }

    pub fn matches(&self, relative: &Path) -> bool {
        !self.exclude.is_match(relative)
            && self.include.as_ref().is_none_or(|i| i.is_match(relative))
    }
}

/// Why a root cannot be trusted right now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RootProblem {
    Missing,
    Unreadable(String),
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
    match std::fs::metadata(root) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => return Err(RootProblem::Unreadable("not a directory".into())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(RootProblem::Missing),
        Err(e) => return Err(RootProblem::Unreadable(e.to_string())),
    }
    let mut out = Scanned::default();
    let mut stack = vec![root.to_path_buf()];
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
                if !filter.exclude.is_match(relative) {
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
        if d.state == DocumentState::Linked {
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
        ] {
            assert!(!f.matches(Path::new(ignored)), "{ignored}");
        }
    }
}
