//! The rooms' rules (`src/lib.rs`, "Architecture invariants"), checked on
//! the source tree: a change that breaks one fails the build here, with the
//! file and line. Each rule is also shown to catch a violation planted in
//! a copy of the tree, so none of them can pass by looking at nothing.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// A source file, as the checks see it: production code only (a file's
/// `#[cfg(test)] mod tests` at its end is cut off), comment lines blanked.
struct Source {
    /// Relative to `src/`, with `/`.
    path: String,
    lines: Vec<String>,
}

impl Source {
    fn top(&self) -> &str {
        let first = self.path.split('/').next().unwrap_or_default();
        first.strip_suffix(".rs").unwrap_or(first)
    }

    fn under(&self, rooms: &[&str]) -> bool {
        rooms
            .iter()
            .any(|r| self.path == format!("{r}.rs") || self.path.starts_with(&format!("{r}/")))
    }
}

fn sources(src: &Path) -> Vec<Source> {
    let mut out = Vec::new();
    let mut stack = vec![src.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let text = std::fs::read_to_string(&path).unwrap();
                let production = match text.find("#[cfg(test)]\nmod tests") {
                    Some(i) => &text[..i],
                    None => &text[..],
                };
                let lines = production
                    .lines()
                    .map(|l| {
                        if l.trim_start().starts_with("//") {
                            String::new()
                        } else {
                            l.to_string()
                        }
                    })
                    .collect();
                let rel = path.strip_prefix(src).unwrap();
                out.push(Source {
                    path: rel.to_string_lossy().replace('\\', "/"),
                    lines,
                });
            }
        }
    }
    out.sort_by(|a, b| a.path.cmp(&b.path));
    out
}

/// A rule: these words may appear only in these rooms.
struct Confined {
    what: &'static str,
    words: &'static [&'static str],
    rooms: &'static [&'static str],
}

const CONFINED: &[Confined] = &[
    Confined {
        what: "only the store speaks SQL",
        words: &["sqlx::", "sqlx ::", "rusqlite"],
        rooms: &["store"],
    },
    Confined {
        what: "only the workers (and the one-shot commands, and the wiring that hands it to them) hold the Open WebUI client",
        words: &["openwebui::Client", "openwebui::{Client", "Client::new("],
        rooms: &["worker", "commands", "app", "openwebui", "testing"],
    },
    Confined {
        what: "the wall clock is read only through `clock`",
        words: &[
            "SystemTime::now",
            "Utc::now",
            "Local::now",
            "OffsetDateTime::now",
        ],
        rooms: &["clock", "testing"],
    },
    Confined {
        what: "triggers and the server reach the workers only through the queue",
        words: &["crate::worker", "Workers"],
        rooms: &["worker", "app", "commands"],
    },
    Confined {
        what: "HTTP clients are built only by the Open WebUI client, the delivery loop and the commands",
        words: &["reqwest::Client::builder", "reqwest::ClientBuilder"],
        rooms: &["openwebui", "deliver", "commands", "testing"],
    },
    Confined {
        what: "a job's kind and keys are decided only by `TriggerEvent::job`",
        words: &["NewJob {"],
        rooms: &["triggers", "store"],
    },
    Confined {
        what: "jobs are queued only through the `Queue` (which wakes the workers)",
        words: &[".enqueue("],
        rooms: &["triggers", "store"],
    },
];

/// A rule: these words must not appear in these files (a line holding
/// one of `except` is allowed).
struct Forbidden {
    what: &'static str,
    words: &'static [&'static str],
    files: &'static [&'static str],
    except: &'static [&'static str],
}

const ROUTES_DESCRIBED: &str = "admin routes are registered with their description (`routes!`), so /api/v1/openapi.json lists every one";

const FORBIDDEN: &[Forbidden] = &[
    Forbidden {
        what: ROUTES_DESCRIBED,
        words: &[".route(", ".route_service(", ".nest(", ".merge("],
        files: &["server/api.rs"],
        except: &[],
    },
    Forbidden {
        what: ROUTES_DESCRIBED,
        words: &["\"/api/"],
        files: &["server/mod.rs", "server/ui/mod.rs"],
        except: &["\"/api/v1/openapi.json\"", ".nest(\"/api/v1\", admin)"],
    },
];

/// The code that handles watched files stats and opens them only through
/// `safe_fs` (no link followed, regular files only).
const WATCHED_FILE_ROOMS: &[&str] = &[
    "triggers",
    "worker/sync.rs",
    "worker/chat.rs",
    "worker/ingest.rs",
    "worker/plan.rs",
    "worker/tree.rs",
];
const PATH_OPENS: &[&str] = &[
    "std::fs::read(",
    "fs::read_to_string(",
    "File::open(",
    "tokio::fs::",
    ".exists()",
    "fs::canonicalize(",
];

fn violations(src: &Path) -> Vec<String> {
    let sources = sources(src);
    let mut out = Vec::new();
    for rule in CONFINED {
        for s in sources.iter().filter(|s| !s.under(rule.rooms)) {
            for (n, line) in s.lines.iter().enumerate() {
                if rule.words.iter().any(|w| line.contains(w)) {
                    out.push(format!(
                        "{}: src/{}:{}: {}",
                        rule.what,
                        s.path,
                        n + 1,
                        line.trim()
                    ));
                }
            }
        }
    }
    for rule in FORBIDDEN {
        for s in sources
            .iter()
            .filter(|s| rule.files.contains(&s.path.as_str()))
        {
            for (n, line) in s.lines.iter().enumerate() {
                let hit = rule.words.iter().any(|w| line.contains(w));
                if hit && !rule.except.iter().any(|e| line.contains(e)) {
                    out.push(format!(
                        "{}: src/{}:{}: {}",
                        rule.what,
                        s.path,
                        n + 1,
                        line.trim()
                    ));
                }
            }
        }
    }
    for s in &sources {
        let watched = WATCHED_FILE_ROOMS
            .iter()
            .any(|r| s.path == *r || s.under(&[r]));
        if !watched {
            continue;
        }
        for (n, line) in s.lines.iter().enumerate() {
            // The roots themselves are the admin's choice (may be links).
            let followed_stat = line.contains("fs::metadata(")
                && !line.contains("watch.path")
                && !line.contains("(root)");
            if PATH_OPENS.iter().any(|f| line.contains(f)) || followed_stat {
                out.push(format!(
                    "watched files go through safe_fs: src/{}:{}: {}",
                    s.path,
                    n + 1,
                    line.trim()
                ));
            }
        }
    }
    out.extend(cycles(&sources));
    out
}

/// Which top-level modules each one uses (`crate::x`, `super::x` at the
/// top level is not a thing here).
fn module_graph(sources: &[Source]) -> BTreeMap<String, BTreeSet<String>> {
    let tops: BTreeSet<String> = sources.iter().map(|s| s.top().to_string()).collect();
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for s in sources {
        let from = s.top().to_string();
        let edges = graph.entry(from.clone()).or_default();
        for line in &s.lines {
            let mut rest = line.as_str();
            while let Some(i) = rest.find("crate::") {
                rest = &rest[i + "crate::".len()..];
                let name: String = rest
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                if tops.contains(&name) && name != from {
                    edges.insert(name);
                }
            }
            // `use crate::{a, b}` groups.
            if let Some(i) = line.find("crate::{") {
                for part in line[i + "crate::{".len()..].split([',', '}', ' ']) {
                    let name = part.split("::").next().unwrap_or_default().trim();
                    if tops.contains(name) && name != from {
                        edges.insert(name.to_string());
                    }
                }
            }
        }
    }
    graph
}

/// Each cycle between top-level modules, once.
fn cycles(sources: &[Source]) -> Vec<String> {
    let graph = module_graph(sources);
    let mut found = BTreeSet::new();
    for start in graph.keys() {
        // Depth-first from `start`, looking for a way back to it.
        let mut stack = vec![(start.clone(), vec![start.clone()])];
        let mut seen = BTreeSet::new();
        while let Some((node, path)) = stack.pop() {
            for next in graph.get(&node).into_iter().flatten() {
                if next == start {
                    let mut cycle = path.clone();
                    // The same cycle from each of its members, once.
                    let min = cycle.iter().min().unwrap().clone();
                    let at = cycle.iter().position(|m| *m == min).unwrap();
                    cycle.rotate_left(at);
                    found.insert(cycle.join(" → "));
                } else if seen.insert(next.clone()) {
                    let mut p = path.clone();
                    p.push(next.clone());
                    stack.push((next.clone(), p));
                }
            }
        }
    }
    found
        .into_iter()
        .map(|c| format!("no import cycles between top-level modules: {c} → (back)"))
        .collect()
}

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

#[test]
fn every_room_keeps_its_rules() {
    let found = violations(&src());
    assert!(found.is_empty(), "{}", found.join("\n"));
}

/// A copy of the tree with one line appended to one file.
fn planted(file: &str, line: &str) -> tempfile::TempDir {
    let copy = tempfile::tempdir().unwrap();
    let mut stack = vec![src()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let to = copy.path().join(path.strip_prefix(src()).unwrap());
            if path.is_dir() {
                std::fs::create_dir_all(&to).unwrap();
                stack.push(path);
            } else {
                std::fs::copy(&path, &to).unwrap();
            }
        }
    }
    let target = copy.path().join(file);
    let mut text = std::fs::read_to_string(&target).unwrap();
    // Before any test module, so it counts as production code.
    let at = text.find("#[cfg(test)]\nmod tests").unwrap_or(text.len());
    text.insert_str(at, &format!("{line}\n"));
    std::fs::write(target, text).unwrap();
    copy
}

#[test]
fn each_rule_catches_a_planted_violation() {
    let plants = [
        (
            "server/mod.rs",
            "fn stray() { let _ = sqlx::query(\"SELECT 1\"); }",
            "only the store speaks SQL",
        ),
        (
            "worker/ingest.rs",
            "fn stray(c: &rusqlite::Connection) { let _ = c.execute(\"DELETE FROM jobs\", []); }",
            "only the store speaks SQL",
        ),
        (
            "triggers/watch/mod.rs",
            "fn stray(c: crate::openwebui::Client) {}",
            "hold the Open WebUI client",
        ),
        (
            "deliver/mod.rs",
            "fn stray() -> std::time::SystemTime { std::time::SystemTime::now() }",
            "the wall clock is read only through `clock`",
        ),
        (
            "triggers/schedule.rs",
            "fn stray(w: &crate::worker::Workers) {}",
            "reach the workers only through the queue",
        ),
        (
            "server/hooks.rs",
            "fn stray() -> crate::store::NewJob { NewJob { ..todo!() } }",
            "decided only by `TriggerEvent::job`",
        ),
        (
            "worker/sync.rs",
            "fn stray(p: &std::path::Path) { let _ = std::fs::read(p); }",
            "watched files go through safe_fs",
        ),
        (
            "server/mod.rs",
            "async fn stray(s: &crate::store::Store, j: &crate::store::NewJob) { let _ = s.enqueue(j, 0).await; }",
            "queued only through the `Queue`",
        ),
        (
            "store/mod.rs",
            "fn stray() { let _ = crate::server::router; }",
            "no import cycles",
        ),
        (
            "server/api.rs",
            "fn stray(r: axum::Router<AppState>) -> axum::Router<AppState> { r.route(\"/x\", axum::routing::get(|| async {})) }",
            "lists every one",
        ),
        (
            "server/mod.rs",
            "fn stray(r: Router) -> Router { r.route(\"/api/v1/secret\", get(|| async {})) }",
            "lists every one",
        ),
    ];
    for (file, line, rule) in plants {
        let tree = planted(file, line);
        let found = violations(tree.path());
        assert!(
            found
                .iter()
                .any(|v| v.contains(rule) && (v.contains(file) || rule == "no import cycles")),
            "planting `{line}` in {file} was not caught as `{rule}`:\n{}",
            found.join("\n")
        );
    }
}

/// The map matches the ground: every top-level module is in the code map
/// of `src/lib.rs`.
#[test]
fn every_module_is_on_the_map() {
    let lib = std::fs::read_to_string(src().join("lib.rs")).unwrap();
    let map: String = lib
        .lines()
        .filter(|l| l.starts_with("//!"))
        .collect::<Vec<_>>()
        .join("\n");
    let missing: Vec<String> = sources(&src())
        .iter()
        .map(|s| s.top().to_string())
        .filter(|top| !["lib", "main"].contains(&top.as_str()))
        .collect::<BTreeSet<_>>()
        .into_iter()
        .filter(|top| !map.contains(&format!("[`{top}`]")) && !map.contains(&format!("`{top}`")))
        .collect();
    assert!(
        missing.is_empty(),
        "not in src/lib.rs's code map: {missing:?}"
    );
}
