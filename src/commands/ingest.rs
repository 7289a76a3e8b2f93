//! `ferry ingest`: files into a knowledge base, verified, with progress.

use std::io::IsTerminal as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use futures_util::StreamExt as _;

use super::{EXIT_RUNTIME, client, outln};
use crate::clock::Clock;
use crate::config::Config;
use crate::rules::{self, CollectionRef};
use crate::store::{FailureReason, Store};
use crate::triggers::Queue;
use crate::worker::ingest::{self, Collection, Ingestor, Outcome};

/// The files under the given paths, minus the names ferry never ingests.
fn expand_paths(paths: &[PathBuf]) -> anyhow::Result<Vec<PathBuf>> {
    let ignores = crate::triggers::watch::reconcile::default_ignores();
    let mut out = Vec::new();
    let mut stack: Vec<PathBuf> = Vec::new();
    for p in paths {
        let p = std::fs::canonicalize(p).with_context(|| crate::paths::shown(p))?;
        stack.push(p);
    }
    while let Some(p) = stack.pop() {
        // The paths given were resolved above (the admin chose them); what
        // is found inside a folder is not followed if it is a link.
        let meta = std::fs::symlink_metadata(&p).with_context(|| crate::paths::shown(&p))?;
        if meta.is_dir() {
            let mut entries: Vec<PathBuf> = std::fs::read_dir(&p)
                .with_context(|| crate::paths::shown(&p))?
                .filter_map(|e| e.ok())
                .filter(|e| {
                    let is_dir = e.file_type().is_ok_and(|t| t.is_dir());
                    !ignores
                        .matched(Path::new(&e.file_name()), is_dir)
                        .is_ignore()
                })
                .map(|e| e.path())
                .collect();
            entries.sort();
            entries.reverse();
            stack.extend(entries);
        } else if meta.is_file() {
            out.push(p);
        }
    }
    out.sort();
    out.dedup();
    Ok(out)
}

pub(super) async fn ingest_command(
    config: &Config,
    paths: &[PathBuf],
    collection_name: &str,
) -> anyhow::Result<ExitCode> {
    let files = expand_paths(paths)?;
    let store = Store::open(&config.state.database).await?;
    let client = client(config)?;
    client
        .version()
        .await
        .context("Open WebUI is not reachable")?;
    let clock = Clock::system();
    let collection: Collection = ingest::resolve_collection(
        &client,
        &store,
        &CollectionRef::Name(collection_name.to_string()),
        Some(&ingest::NewCollection {
            description: crate::rules::DEFAULT_DESCRIPTION.into(),
            ..Default::default()
        }),
        clock.now_ms(),
    )
    .await?;
    let ingestor = Ingestor::new(
        client.clone(),
        store.clone(),
        Queue::new(store.clone(), clock.clone()),
        store.instance_id().await?,
        Default::default(),
    );
    let (cleaned, _) = ingestor.clean_orphans(false, clock.now_ms() / 1000).await?;
    if cleaned > 0 {
        eprintln!("deleted {cleaned} unlinked upload(s) left by an earlier run");
    }

    let bar = std::io::stderr().is_terminal().then(|| {
        let bar = indicatif::ProgressBar::new(files.len() as u64);
        bar.set_style(
            indicatif::ProgressStyle::with_template("{bar:30} {pos}/{len} {wide_msg}")
                .expect("valid template"),
        );
        bar
    });
    let concurrency = config.openwebui.max_in_flight.max(1);
    let mut results = futures_util::stream::iter(files.iter().map(|path| {
        let ingestor = &ingestor;
        let collection = &collection;
        async move {
            let parent = path.parent().unwrap_or(Path::new("/"));
            let result = match crate::safe_fs::open_beneath(parent, path) {
                Ok(file) => {
                    ingestor
                        .ingest(
                            ":cli",
                            path,
                            file,
                            collection,
                            rules::DEFAULT_MAX_SIZE,
                            &crate::worker::tree::Layout::flat(),
                        )
                        .await
                }
                Err(e) => Err(ingest::IngestError::Io {
                    path: crate::paths::shown(path),
                    source: std::io::Error::other(e),
                }),
            };
            (path, result)
        }
    }))
    .buffer_unordered(concurrency);

    let (mut linked, mut unchanged, mut failed) = (Vec::new(), 0usize, 0usize);
    let report = |line: String| match &bar {
        Some(b) => b.println(line),
        None => outln!("{line}"),
    };
    while let Some((path, result)) = results.next().await {
        let shown = crate::paths::shown(path);
        match result {
            Ok(Outcome::Linked { file_id, replaced }) => {
                report(format!(
                    "linked     {shown} ({file_id}{})",
                    replaced
                        .map(|r| format!(", replaces {r}"))
                        .unwrap_or_default()
                ));
                linked.push((path.clone(), file_id));
            }
            Ok(Outcome::Moved { file_id, from }) => {
                report(format!(
                    "moved      {shown} ({file_id}, was {})",
                    crate::paths::shown_key(&from)
                ));
                linked.push((path.clone(), file_id));
            }
            Ok(Outcome::Unchanged { .. }) => {
                unchanged += 1;
                report(format!("unchanged  {shown}"));
            }
            Ok(Outcome::Failed { reason, detail, .. }) => {
                failed += 1;
                report(format!("failed     {shown}: {reason}: {detail}"));
            }
            Err(e) => {
                failed += 1;
                report(format!("failed     {shown}: {e}"));
            }
        }
        if let Some(b) = &bar {
            b.inc(1);
        }
    }
    drop(results);
    if let Some(b) = bar {
        b.finish_and_clear();
    }

    // Trust, but verify: every link must show in Open WebUI's own list.
    if !linked.is_empty() {
        let present: std::collections::HashSet<String> = client
            .knowledge_files(&collection.id)
            .await?
            .into_iter()
            .map(|f| f.id)
            .collect();
        for (path, file_id) in &linked {
            if !present.contains(file_id) {
                failed += 1;
                outln!(
                    "failed     {}: linked, but missing from the collection's file list",
                    crate::paths::shown(path)
                );
                if let Some(doc) = store.document(":cli", &crate::paths::key(path)).await? {
                    store
                        .failed(
                            doc.id,
                            FailureReason::Processing,
                            "linked, but missing from the collection's file list",
                            Some(clock.now_ms()),
                            false,
                            clock.now_ms(),
                        )
                        .await?;
                }
            }
        }
    }
    outln!(
        "{} linked, {unchanged} unchanged, {failed} failed, in collection `{}` ({})",
        linked.len(),
        collection.name,
        collection.id
    );
    Ok(if failed > 0 {
        ExitCode::from(EXIT_RUNTIME)
    } else {
        ExitCode::SUCCESS
    })
}
