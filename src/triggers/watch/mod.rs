//! One task per `watch` rule: turns file-system events (inotify through
//! `notify`, or polling) into `sync` jobs, once each file has settled.
//!
//! Level-triggered: a job says only "look at this path again"; the worker
//! finds out what changed. So lost, repeated or reordered events cannot
//! cause wrong work, only a look too many, and a full reconcile (at start,
//! after an event overflow, periodically, and in `poll` mode at each poll)
//! catches whatever events missed.
//!
//! Removals never come straight from an event: a vanished path makes the
//! task reconcile, and [`reconcile::plan`] applies the safety valve (root
//! missing, unreadable or empty, or too many files gone at once → the rule
//! is paused and nothing is removed). Removals run after a delay, so a file
//! moved within the tree is recognised at its new path first.

pub mod reconcile;
pub mod settle;

use std::os::unix::fs::MetadataExt as _;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use notify::event::{AccessKind, AccessMode};
use notify::{EventKind, RecursiveMode, Watcher as _};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::{Queue, TriggerEvent, Watch};
use crate::metrics::Metrics;
use crate::safe_fs;
use reconcile::PathFilter;
use settle::Settler;

/// The largest share of a collection one reconcile may remove.
pub const MAX_REMOVE_SHARE: f64 = 0.5;

/// How long a paused rule waits between looks at its folder.
const PAUSED_RECHECK: Duration = Duration::from_secs(2);

/// When a new folder is looked through a second time: `notify` adds its
/// watch only after reporting it, so a file written into it between the
/// first look and that watch has no event (a benchmark lost one of 1,000).
const NEW_FOLDER_RESCAN: Duration = Duration::from_secs(1);

/// Watches one rule's folder until `cancel`. With `check_collection`, the
/// rule's knowledge base is also compared with the store that often (a
/// `collection` job: drift repair), after a reconcile that did not pause.
pub async fn run(
    queue: Queue,
    metrics: Arc<Metrics>,
    rule: String,
    watch: Watch,
    check_collection: Option<Duration>,
    cancel: CancellationToken,
) {
    let filter = match PathFilter::new(&watch) {
        Ok(f) => f,
        Err(e) => {
            tracing::error!(rule = %rule, error = %e, "invalid globs");
            return;
        }
    };
    let mut task = WatchTask {
        queue,
        rule: rule.clone(),
        watch: watch.clone(),
        filter,
        ignore_problem: None,
        settler: Settler::new(watch.settle, watch.settle_closed),
        watcher: None,
        root_inode: None,
        paused: None,
        rescans: Vec::new(),
    };
    task.paused = task.queue.folder_paused(&task.rule).await.ok().flatten();
    let (tx, mut events) = mpsc::unbounded_channel();
    let asked = task.queue.reconcile_signal(&rule);
    let interval = watch.poll.unwrap_or(watch.reconcile);
    let mut reconcile_at = Instant::now();
    // The start queues the first check (and every reload one).
    let mut checked_at = Instant::now();
    loop {
        let now = Instant::now();
        if now >= reconcile_at {
            task.reconcile(&tx).await;
            if let Some(every) = check_collection
                && task.paused.is_none()
                && checked_at.elapsed() >= every
            {
                checked_at = Instant::now();
                if let Err(e) = task.queue.submit(&rule, TriggerEvent::Collection).await {
                    tracing::error!(rule = %rule, error = %e, "cannot queue the collection check");
                }
            }
            metrics.watch_progress(&rule, true, task.settling());
            reconcile_at = Instant::now()
                + if task.paused.is_some() {
                    PAUSED_RECHECK
                } else {
                    interval
                };
        }
        let wake = [task.settler.next_due(), task.rescans.first().map(|r| r.0)]
            .into_iter()
            .flatten()
            .fold(reconcile_at, Instant::min);
        tokio::select! {
            _ = cancel.cancelled() => break,
            Some(event) = events.recv() => {
                if task.on_event(event) {
                    reconcile_at = Instant::now();
                }
            }
            // A sync on demand: the whole folder looked at now (files still
            // settle as usual: a half-written file is not taken).
            _ = asked.notified() => reconcile_at = Instant::now(),
            _ = tokio::time::sleep_until(wake.into()) => {}
        }
        crate::supervise::failpoint::hit("watch", &rule);
        task.rescan_new_folders();
        let gone = task.flush_settled().await;
        metrics.watch_progress(&rule, false, task.settling());
        if gone {
            // Removals go through the full comparison and its safety valve.
            reconcile_at = reconcile_at.min(Instant::now());
        }
    }
    tracing::debug!(rule = %rule, "watcher stopped");
}

struct WatchTask {
    queue: Queue,
    rule: String,
    watch: Watch,
    /// The last filter that could be built (the default ignores until the
    /// root's `.ferryignore` was read).
    filter: PathFilter,
    /// Why the root's `.ferryignore` cannot be used: the rule stays paused.
    ignore_problem: Option<reconcile::RootProblem>,
    settler: Settler,
    watcher: Option<notify::RecommendedWatcher>,
    /// The root's inode when the watcher was set up: a root replaced by
    /// another folder (renamed away and back, remounted) needs a new one.
    root_inode: Option<u64>,
    paused: Option<String>,
    /// New folders to look through again, and when (in time order).
    rescans: Vec<(Instant, PathBuf)>,
}

impl WatchTask {
    /// Paths changed but not yet queued: settling, or folders to look
    /// through again.
    fn settling(&self) -> usize {
        self.settler.len() + self.rescans.len()
    }

    /// A folder that came into the tree: what is in it was written (or
    /// moved) before its watch existed, so no close will be seen for it.
    fn scan_folder(&mut self, folder: &std::path::Path, now: Instant) {
        if let Ok(found) = reconcile::scan_from(&self.watch.path, folder, &self.filter) {
            for file in found.files.into_keys().chain(found.skipped) {
                self.settler.appeared(file, now);
            }
        }
    }

    fn rescan_new_folders(&mut self) {
        let now = Instant::now();
        let due = self.rescans.partition_point(|r| r.0 <= now);
        for (_, folder) in self.rescans.drain(..due).collect::<Vec<_>>() {
            self.scan_folder(&folder, now);
        }
    }

    /// Handles one notify event; true when a full reconcile is needed.
    fn on_event(&mut self, event: notify::Result<notify::Event>) -> bool {
        let event = match event {
            Ok(e) => e,
            Err(e) => {
                tracing::warn!(rule = %self.rule, error = %e, "watch error; reconciling");
                return true;
            }
        };
        if event.need_rescan() {
            tracing::info!(rule = %self.rule, "event queue overflowed; reconciling");
            return true;
        }
        let now = Instant::now();
        // A close after writing means a writer is done: the file's quiet
        // time shortens (a look, as for a write). An open changes nothing
        // and ferry's own hashing causes them: it only puts a closed file
        // still settling back on the whole `settle`, never starts a look
        // (that would loop).
        if let EventKind::Access(access) = event.kind {
            for path in event.paths {
                match access {
                    AccessKind::Close(AccessMode::Write)
                        if path
                            .strip_prefix(&self.watch.path)
                            .is_ok_and(|r| self.filter.matches(r)) =>
                    {
                        self.settler.closed(path, now)
                    }
                    AccessKind::Open(_) => self.settler.opened(&path, now),
                    _ => {}
                }
            }
            return false;
        }
        let mut reconcile = false;
        for path in event.paths {
            if path == self.watch.path {
                // The root itself was removed, renamed or remounted.
                reconcile |= matches!(
                    event.kind,
                    EventKind::Remove(_)
                        | EventKind::Modify(notify::event::ModifyKind::Name(_))
                        | EventKind::Other
                );
                continue;
            }
            let Ok(relative) = path.strip_prefix(&self.watch.path) else {
                continue;
            };
            if relative == std::path::Path::new(reconcile::IGNORE_FILE) {
                // What the rule covers may have changed: the reconcile
                // reads it again, and adds and removes what it says.
                reconcile = true;
                continue;
            }
            if matches!(
                event.kind,
                EventKind::Create(_) | EventKind::Modify(notify::event::ModifyKind::Name(_))
            ) && std::fs::symlink_metadata(&path).is_ok_and(|m| m.is_dir())
            {
                // A folder created or moved in: files may have landed in it
                // before its own watch was set up, and until it is.
                self.scan_folder(&path, now);
                self.rescans.push((now + NEW_FOLDER_RESCAN, path));
                continue;
            }
            // A vanished path may have been a folder: it settles as gone
            // and the reconcile that follows finds what was in it.
            if self.filter.matches(relative) || std::fs::symlink_metadata(&path).is_err() {
                self.settler.touch(path, now);
            }
        }
        reconcile
    }

    /// Enqueues settled files; true when some path vanished.
    async fn flush_settled(&mut self) -> bool {
        let mut gone = false;
        let mut ready = Vec::new();
        let root = &self.watch.path;
        let stat = |p: &std::path::Path| safe_fs::stat_beneath(root, p).ok();
        for (path, stat) in self.settler.poll(Instant::now(), stat) {
            let relative = path.strip_prefix(root).unwrap_or(&path);
            // A link or FIFO settles as "no file" but is still there: its
            // job records it skipped (so reconciles stop asking).
            let present =
                stat.is_some() || safe_fs::stat_beneath(root, &path).is_err_and(|r| r.is_skip());
            if !present {
                gone = true;
            } else if self.filter.matches(relative) {
                ready.push(path);
            }
        }
        // Files dropped together settle together and share commits: one
        // fsync each was a good part of ferry's CPU per file.
        let events = ready
            .into_iter()
            .map(|path| TriggerEvent::Path {
                path,
                after: Duration::ZERO,
            })
            .collect::<Vec<_>>();
        if !events.is_empty()
            && let Err(e) = self.queue.submit_all(&self.rule, events).await
        {
            tracing::error!(rule = %self.rule, error = %e, "cannot enqueue");
        }
        gone
    }

    /// Compares the folder with the store; enqueues what differs, or pauses.
    async fn reconcile(&mut self, tx: &mpsc::UnboundedSender<notify::Result<notify::Event>>) {
        let started = Instant::now();
        // Watch first, then scan: a file written between the two is then
        // seen by one or the other (the benchmark lost one of 1,000 files
        // dropped right at start while it was the other way round).
        let root_ok = std::fs::metadata(&self.watch.path).is_ok_and(|m| m.is_dir());
        self.keep_watcher(root_ok, tx);
        if root_ok {
            self.refresh_filter();
        }
        let root = self.watch.path.clone();
        let filter = self.filter.clone();
        let scanned = match (root_ok, &self.ignore_problem) {
            (true, Some(problem)) => Err(problem.clone()),
            _ => tokio::task::spawn_blocking(move || reconcile::scan(&root, &filter))
                .await
                .unwrap_or(Err(reconcile::RootProblem::Unreadable(
                    "scan failed".into(),
                ))),
        };
        let known = match self.queue.known_files(&self.rule).await {
            Ok(k) => k,
            Err(e) => {
                tracing::error!(rule = %self.rule, error = %e, "cannot read documents");
                return;
            }
        };
        let plan = reconcile::plan(
            scanned.as_ref(),
            &self.watch.path,
            &known,
            self.queue.clock().now_ms(),
            MAX_REMOVE_SHARE,
        );
        if scanned.is_err() {
            self.keep_watcher(false, tx);
        }

        match (&plan.pause, &self.paused) {
            (Some(reason), previous) => {
                if previous.as_deref() != Some(reason.as_str()) {
                    tracing::warn!(rule = %self.rule, reason, "rule paused; nothing is removed until this clears");
                    if let Err(e) = self.queue.set_paused(&self.rule, Some(reason)).await {
                        tracing::error!(rule = %self.rule, error = %e, "cannot record the pause");
                    }
                    if previous.is_none() {
                        self.announce(Some(reason.clone())).await;
                    }
                }
            }
            (None, Some(_)) => {
                tracing::info!(rule = %self.rule, "rule resumed");
                if let Err(e) = self.queue.set_paused(&self.rule, None).await {
                    tracing::error!(rule = %self.rule, error = %e, "cannot record the resume");
                }
                self.announce(None).await;
            }
            (None, None) => {}
        }
        self.paused = plan.pause.clone();

        let now = Instant::now();
        // Files untouched for `settle` (by mtime) need no quiet time of
        // their own: at start that is usually all of them.
        let quiet_before_ns = (self.queue.clock().now_ms()
            - self.settler.settle().as_millis() as i64)
            .saturating_mul(1_000_000);
        for path in &plan.check {
            match scanned.as_ref().ok().and_then(|s| s.files.get(path)) {
                Some(st) if st.mtime_ns <= quiet_before_ns => {
                    self.settler.observe_quiet(path.clone(), *st, now)
                }
                _ => self.settler.observe(path.clone(), now),
            }
        }
        // After the settle of any file that moved here, so a move is seen
        // as a move and not as a delete plus a new upload.
        let delay = self.watch.settle * 2 + Duration::from_secs(3);
        let removals = plan
            .remove
            .iter()
            .map(|path| TriggerEvent::Path {
                path: path.clone(),
                after: delay,
            })
            .collect::<Vec<_>>();
        if !removals.is_empty()
            && let Err(e) = self.queue.submit_all(&self.rule, removals).await
        {
            tracing::error!(rule = %self.rule, error = %e, "cannot enqueue");
        }
        tracing::debug!(
            rule = %self.rule,
            checks = plan.check.len(),
            removals = plan.remove.len(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "reconciled"
        );
    }

    /// A `rule.paused` / `rule.resumed` event for the rule's deliveries.
    async fn announce(&self, paused: Option<String>) {
        if let Err(e) = self
            .queue
            .submit(&self.rule, TriggerEvent::RuleState { paused })
            .await
        {
            tracing::error!(rule = %self.rule, error = %e, "cannot queue the pause event");
        }
    }

    /// Reads the root's `.ferryignore` again when it changed (or could not
    /// be used last time).
    fn refresh_filter(&mut self) {
        if self.ignore_problem.is_none() && !self.filter.ignore_file_changed(&self.watch.path) {
            return;
        }
        match PathFilter::load(&self.watch) {
            Ok(filter) => {
                if filter.ignore_file.is_some() || self.filter.ignore_file.is_some() {
                    tracing::info!(rule = %self.rule, file = reconcile::IGNORE_FILE, "ignore file read");
                }
                self.filter = filter;
                self.ignore_problem = None;
            }
            Err(problem) => {
                if self.ignore_problem.as_ref() != Some(&problem) {
                    tracing::debug!(rule = %self.rule, %problem, "ignore file unusable");
                }
                self.ignore_problem = Some(problem);
            }
        }
    }

    /// Sets up the inotify watch when the root is there (again), and drops
    /// it when the root is gone or was replaced: a watch follows the inode,
    /// and would report a renamed-away folder's files under the old path.
    fn keep_watcher(
        &mut self,
        root_ok: bool,
        tx: &mpsc::UnboundedSender<notify::Result<notify::Event>>,
    ) {
        if self.watch.poll.is_some() {
            return;
        }
        let inode = std::fs::metadata(&self.watch.path).ok().map(|m| m.ino());
        if !root_ok || inode != self.root_inode {
            self.watcher = None;
        }
        if root_ok && self.watcher.is_none() {
            let tx = tx.clone();
            // A linked folder is not part of the tree: never watched into.
            let config = notify::Config::default().with_follow_symlinks(false);
            let made = notify::RecommendedWatcher::new(
                move |event| {
                    let _ = tx.send(event);
                },
                config,
            )
            .and_then(|mut w| {
                w.watch(&self.watch.path, RecursiveMode::Recursive)
                    .map(|()| w)
            });
            match made {
                Ok(w) => {
                    self.watcher = Some(w);
                    self.root_inode = inode;
                    tracing::debug!(rule = %self.rule, path = %self.watch.path.display(), "watching");
                }
                Err(e) => {
                    tracing::warn!(rule = %self.rule, error = %e, "cannot watch; relying on reconciles")
                }
            }
        }
    }
}
