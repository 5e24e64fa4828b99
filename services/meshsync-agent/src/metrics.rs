//! Counters of what the agent did, shared by its tasks and shown in the logs.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Metric name of the running total of conflicts written to the conflict stream (the progress
/// line shows it as `conflicts`).
#[allow(dead_code)] // for a metrics exporter; the progress line names its own fields
pub const CONFLICTS_LOGGED: &str = "conflicts_logged";
/// Metric name of the running total of conflict-log publishes that failed (their conflicts are
/// not in the stream; apply went on).
#[allow(dead_code)] // for a metrics exporter; the progress line names its own fields
pub const CONFLICT_LOG_FAILURES: &str = "conflict_log_failures";

/// Metric name of the running total of changes whose origin merges with other policies than
/// this peer (the peers will not converge until `[merge]` is the same everywhere).
#[allow(dead_code)] // for a metrics exporter; the progress line names its own fields
pub const POLICY_MISMATCHES: &str = "policy_mismatches";

/// Metric name of the running total of rows capture published (the progress line shows it as
/// `captured`).
#[allow(dead_code)] // for a metrics exporter; the progress line names its own fields
pub const ROWS_CAPTURED: &str = "rows_captured";

/// Metric name of the running total of rows of apply's own transactions that capture received
/// and dropped (I7): on PostgreSQL 15 every applied row, which the server cannot leave out; on
/// PostgreSQL 16+ none; on MariaDB the rows of apply's skipped transactions (progress line:
/// `echoed`).
#[allow(dead_code)] // for a metrics exporter; the progress line names its own fields
pub const ROWS_ECHOED: &str = "rows_echoed";

/// Running totals of one agent.
#[derive(Debug, Default)]
pub struct Counters {
    captured: AtomicU64,
    echoed: AtomicU64,
    applied: AtomicU64,
    superseded: AtomicU64,
    parked: AtomicU64,
    conflicts_logged: AtomicU64,
    conflict_log_failures: AtomicU64,
    policy_mismatches: AtomicU64,
}

impl Counters {
    /// Rows published by capture ([`ROWS_CAPTURED`]).
    pub fn add_captured(&self, n: usize) {
        self.captured.fetch_add(n as u64, Relaxed);
    }

    /// Rows of apply's own transactions that capture dropped ([`ROWS_ECHOED`]).
    pub fn add_echoed(&self, n: u64) {
        self.echoed.fetch_add(n, Relaxed);
    }

    /// ([`ROWS_CAPTURED`], [`ROWS_ECHOED`]).
    pub fn capture(&self) -> (u64, u64) {
        (self.captured.load(Relaxed), self.echoed.load(Relaxed))
    }

    /// Rows applied and rows beaten by newer versions.
    pub fn add_applied(&self, applied: usize, superseded: usize) {
        self.applied.fetch_add(applied as u64, Relaxed);
        self.superseded.fetch_add(superseded as u64, Relaxed);
    }

    /// Messages parked.
    pub fn add_parked(&self, n: usize) {
        self.parked.fetch_add(n as u64, Relaxed);
    }

    /// Conflicts stored in the conflict stream ([`CONFLICTS_LOGGED`]).
    pub fn add_conflicts_logged(&self, n: usize) {
        self.conflicts_logged.fetch_add(n as u64, Relaxed);
    }

    /// A conflict-log publish that failed ([`CONFLICT_LOG_FAILURES`]).
    pub fn add_conflict_log_failure(&self) {
        self.conflict_log_failures.fetch_add(1, Relaxed);
    }

    /// A change from a peer with other merge policies ([`POLICY_MISMATCHES`]).
    pub fn add_policy_mismatch(&self) {
        self.policy_mismatches.fetch_add(1, Relaxed);
    }

    /// [`POLICY_MISMATCHES`] so far.
    pub fn policy_mismatches(&self) -> u64 {
        self.policy_mismatches.load(Relaxed)
    }

    /// ([`CONFLICTS_LOGGED`], [`CONFLICT_LOG_FAILURES`]).
    pub fn conflicts(&self) -> (u64, u64) {
        (
            self.conflicts_logged.load(Relaxed),
            self.conflict_log_failures.load(Relaxed),
        )
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
