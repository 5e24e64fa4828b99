//! PostgreSQL side of meshsync, without I/O: decoding what logical replication sends and
//! mapping PostgreSQL values to and from the engine-neutral [`meshsync_core::Value`].
//!
//! - [`source::pgoutput`]: decoder of pgoutput protocol version 1 messages (never panics).
//! - [`source::row`]: turns decoded row messages into key + cells, with "unchanged" markers.
//! - [`types`]: type OIDs, text representation in (capture) and out (apply).

pub mod source;
pub mod types;

pub mod apply;
pub mod catalog;
pub mod error;
mod nodelay;
pub mod setup;
pub mod verify;

pub use error::PgError;
