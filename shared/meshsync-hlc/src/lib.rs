//! Hybrid logical clock (HLC) of meshsync.
//!
//! [`Hlc`] is the stamp carried on the wire as two `u64`s (NTP64 time and node id);
//! [`Clock`] is the one clock a peer agent owns, shared by its capture and apply.

mod clock;
mod stamp;

pub use clock::{Clock, ClockSkew, DEFAULT_MAX_DRIFT};
pub use stamp::{Hlc, HlcParseError, NodeId};
