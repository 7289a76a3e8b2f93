//! Counters that code deep down bumps and `/metrics` reads: one shared
//! registry handed out at start, so no counter is carried through
//! unrelated types.

use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Debug, Default)]
pub struct Metrics {
    files_hashed: AtomicU64,
}

impl Metrics {
    pub fn file_hashed(&self) {
        self.files_hashed.fetch_add(1, Ordering::Relaxed);
    }

    pub fn files_hashed(&self) -> u64 {
        self.files_hashed.load(Ordering::Relaxed)
    }
}
