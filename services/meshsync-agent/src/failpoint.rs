//! Fault points for tests, off unless an environment variable names one.
//!
//! - `MESHSYNC_FAILPOINT=capture-abort-after-ack:N` aborts the process right after the N-th
//!   acknowledged transaction, before its resume point is stored and the slot confirmed: the
//!   window where a re-capture must restamp identically (I6).
//! - `MESHSYNC_FAILPOINT=apply-pause-before-commit:MS` holds every apply transaction open for
//!   MS milliseconds after its writes, logging `apply paused before commit` with the stream
//!   sequence it applies up to: the window in which local writers commit between apply's
//!   statements and its commit.
//! - `MESHSYNC_FAILPOINT=apply-pause-after-commit:MS` pauses MS milliseconds right after each
//!   apply commit, before the acks, logging `apply paused after commit`: where a kill tests
//!   that nothing of a committed transaction (e.g. its conflict records) waited for later.

use std::{
    sync::{
        OnceLock,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

/// The environment variable naming the active fault point.
pub const ENV: &str = "MESHSYNC_FAILPOINT";

/// The numeric argument of fault point `name`, when it is the active one.
fn argument(name: &str) -> Option<u64> {
    std::env::var(ENV)
        .ok()?
        .strip_prefix(name)?
        .strip_prefix(':')?
        .parse()
        .ok()
}

/// Called after each acknowledged transaction.
pub fn after_ack() {
    static LIMIT: OnceLock<Option<u64>> = OnceLock::new();
    static SEEN: AtomicU64 = AtomicU64::new(0);
    if let Some(limit) = *LIMIT.get_or_init(|| argument("capture-abort-after-ack"))
        && SEEN.fetch_add(1, Ordering::Relaxed) + 1 >= limit
    {
        eprintln!("failpoint {ENV}: aborting after {limit} acknowledged transactions");
        std::process::abort();
    }
}

/// Called by apply between its writes and its commit.
pub async fn before_apply_commit(upto: u64) {
    static PAUSE: OnceLock<Option<u64>> = OnceLock::new();
    if let Some(ms) = *PAUSE.get_or_init(|| argument("apply-pause-before-commit")) {
        tracing::info!(ms, upto, "apply paused before commit");
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
}

/// Called by apply right after its commit.
pub async fn after_apply_commit(upto: u64) {
    static PAUSE: OnceLock<Option<u64>> = OnceLock::new();
    if let Some(ms) = *PAUSE.get_or_init(|| argument("apply-pause-after-commit")) {
        tracing::info!(ms, upto, "apply paused after commit");
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
}
