//! Counters that code deep down bumps and `/metrics` reads: one shared
//! registry handed out at start, so no counter is carried through
//! unrelated types.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Debug, Default)]
pub struct Metrics {
    files_hashed: AtomicU64,
    watch: Mutex<BTreeMap<String, Watch>>,
    reloads_ok: AtomicU64,
    reloads_refused: AtomicU64,
    /// Drift repaired: (rule, how) → documents restored.
    restored: Mutex<BTreeMap<(String, &'static str), u64>>,
    /// Knowledge bases made again after they were deleted, by rule.
    recreated: Mutex<BTreeMap<String, u64>>,
}

/// A watcher's progress.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Watch {
    /// Full comparisons of folder and store done since start.
    pub reconciles: u64,
    /// Paths seen changing that have not settled (and been queued) yet.
    pub settling: u64,
}

impl Metrics {
    pub fn file_hashed(&self) {
        self.files_hashed.fetch_add(1, Ordering::Relaxed);
    }

    pub fn files_hashed(&self) -> u64 {
        self.files_hashed.load(Ordering::Relaxed)
    }

    /// A watcher's state after a step: whether it just finished a
    /// reconcile, and how many paths are still settling (one update, so a
    /// reader never sees the one without the other).
    pub fn watch_progress(&self, rule: &str, reconciled: bool, settling: usize) {
        let mut w = self.watch.lock().expect("not poisoned");
        let w = w.entry(rule.to_string()).or_default();
        w.reconciles += u64::from(reconciled);
        w.settling = settling as u64;
    }

    /// A reload (SIGHUP) applied, or refused for invalid files.
    pub fn reloaded(&self, applied: bool) {
        let counter = if applied {
            &self.reloads_ok
        } else {
            &self.reloads_refused
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Reloads (applied, refused) since start.
    pub fn reloads(&self) -> (u64, u64) {
        (
            self.reloads_ok.load(Ordering::Relaxed),
            self.reloads_refused.load(Ordering::Relaxed),
        )
    }

    /// A document put back into its collection: `relinked` (its file was
    /// still there) or `uploaded_again`.
    pub fn restored(&self, rule: &str, how: &'static str) {
        *self
            .restored
            .lock()
            .expect("not poisoned")
            .entry((rule.to_string(), how))
            .or_default() += 1;
    }

    pub fn restored_counts(&self) -> BTreeMap<(String, &'static str), u64> {
        self.restored.lock().expect("not poisoned").clone()
    }

    pub fn recreated(&self, rule: &str) {
        *self
            .recreated
            .lock()
            .expect("not poisoned")
            .entry(rule.to_string())
            .or_default() += 1;
    }

    pub fn recreated_counts(&self) -> BTreeMap<String, u64> {
        self.recreated.lock().expect("not poisoned").clone()
    }

    pub fn watchers(&self) -> BTreeMap<String, Watch> {
        self.watch.lock().expect("not poisoned").clone()
    }
}
