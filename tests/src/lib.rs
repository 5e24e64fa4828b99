//! Helpers of the end-to-end scenarios: real agent processes, a peer (database + agent), and
//! the checker that knows every committed write.

pub mod agent;
pub mod checker;
pub mod maria_peer;
pub mod peer;
pub mod workload;
