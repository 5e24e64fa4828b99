//! Engine-neutral change model of meshsync: what a row change is, independent of the engine
//! that captured it and the engine that applies it. No I/O here.
//!
//! - [`Value`] and [`Cell`]: typed column values, with an explicit "unchanged" marker.
//! - [`TableName`], [`PeerId`], [`Op`], [`SourcePosition`], [`SchemaVersion`]: identities.
//! - [`Change`]: one row change; [`ChangeBatch`]: the changes of one transaction to one table,
//!   as one NATS message carries them; [`Version`]: the (HLC, origin) order every merge uses.
//! - [`hlc_column`]: how an HLC is stored in two BIGINT columns.

mod acked;
mod batch;
mod change;
pub mod digest;
pub mod hlc_column;
mod ident;
mod report;
mod row_image;
mod value;
mod version;

pub use acked::Acked;
pub use batch::{ChangeBatch, RowChange, by_table};
pub use change::{Change, Op, SourcePosition, TxnId};
pub use ident::{IdentError, PeerId, SchemaVersion, TableName};
pub use meshsync_hlc::Hlc;
pub use report::{BatchReport, Parked};
pub use row_image::RowImage;
pub use value::{Cell, Value};
pub use version::Version;
