//! Crash points for fault tests, off unless an environment variable names them.
//!
//! `MESHSYNC_FAILPOINT=capture-abort-after-ack:N` aborts the process right after the N-th
//! acknowledged transaction, before its resume point is stored and the slot confirmed: the
//! window where a re-capture must restamp identically (I6).

use std::sync::{
    OnceLock,
    atomic::{AtomicU64, Ordering},
};

/// The environment variable naming the active crash point.
pub const ENV: &str = "MESHSYNC_FAILPOINT";

fn abort_after() -> Option<u64> {
    static LIMIT: OnceLock<Option<u64>> = OnceLock::new();
    *LIMIT.get_or_init(|| {
        std::env::var(ENV)
            .ok()?
            .strip_prefix("capture-abort-after-ack:")?
            .parse()
            .ok()
    })
}

/// Called after each acknowledged transaction.
pub fn after_ack() {
    static SEEN: AtomicU64 = AtomicU64::new(0);
    if let Some(limit) = abort_after()
        && SEEN.fetch_add(1, Ordering::Relaxed) + 1 >= limit
    {
        eprintln!("failpoint {ENV}: aborting after {limit} acknowledged transactions");
        std::process::abort();
    }
}
