//! What a meshsync change looks like on NATS.
//!
//! - [`envelope`]: the versioned MessagePack body; a newer envelope than this reader knows is
//!   [`WireError::FutureEnvelope`], never a misread.
//! - [`headers`]: the `Nats-Msg-Id` and `Mesh-*` headers a person reads with the NATS CLI.
//! - [`subject`]: subject and stream names of both topologies.
//! - [`conflict`]: resolved conflicts as JSON messages with `Mesh-*` headers, on the conflict
//!   stream of each topology; sensitive tables without their values.

pub mod conflict;
pub mod envelope;
pub mod headers;
pub mod subject;

pub use envelope::{ENVELOPE_VERSION, WireError, decode, encode};
