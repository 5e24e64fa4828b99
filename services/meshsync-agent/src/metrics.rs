//! Counters of what the agent did, shared by its tasks and shown in the logs.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Running totals of one agent.
#[derive(Debug, Default)]
pub struct Counters {
    applied: AtomicU64,
    superseded: AtomicU64,
    parked: AtomicU64,
}

impl Counters {
    /// Rows applied and rows beaten by newer versions.
    pub fn add_applied(&self, applied: usize, superseded: usize) {
        self.applied.fetch_add(applied as u64, Relaxed);
        self.superseded.fetch_add(superseded as u64, Relaxed);
    }

    /// Messages parked.
    pub fn add_parked(&self, n: usize) {
        self.parked.fetch_add(n as u64, Relaxed);
    }

    /// (applied, superseded, parked).
    pub fn snapshot(&self) -> (u64, u64, u64) {
        (
            self.applied.load(Relaxed),
            self.superseded.load(Relaxed),
            self.parked.load(Relaxed),
        )
    }
}
