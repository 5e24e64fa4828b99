//! MariaDB side of meshsync: capture from the ROW binlog, the type mapping, and the SQL
//! side of apply.
//!
//! - [`flavour`]: MariaDB or MySQL 8, which decides GTIDs, loop prevention and some SQL.
//! - [`check`]: refuses a server whose binlog settings capture cannot work with.
//! - [`catalog`]: columns, types and primary keys from `information_schema`.
//! - [`types`]: binlog values to [`meshsync_core::Value`] and back to bindable SQL values.
//! - [`source`]: [`source::MariaDbSource`], committed transactions with GTID resume states,
//!   and [`source::ResumePoint`], where capture resumes after a restart.
//! - [`setup`]: the `meshsync` database apply and capture keep their state in.
//! - [`apply`]: batched row writes into replicated tables, refused rows reported one by one,
//!   and [`apply::MariaDbSink`], which merges change batches into them.
//! - [`verify`]: table digests that compare equal to a PostgreSQL peer's for the same data.
//! - [`hlc_column`]: how HLC stamps are stored in BIGINT columns (meshsync-core's, re-exported).
//!
//! See README.md for the type mapping table and the server settings.

pub mod apply;
pub mod catalog;
pub mod check;
pub mod error;
pub mod flavour;
pub use meshsync_core::hlc_column;
pub mod setup;
pub mod source;
pub mod types;
pub mod verify;

pub use error::MariaDbError;
pub use flavour::Flavour;
pub use source::{CapturedTxn, MariaDbSource, RowImage, SourceConfig, SourceEvent};
