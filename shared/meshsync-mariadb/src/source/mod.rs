//! Capture from the MariaDB binlog: committed transactions of the configured tables, in
//! commit order, with the GTID state to resume from after each.
//!
//! - [`gtid`]: GTIDs, the resume state, the MariaDB-only GTID and GTID_LIST event bodies.
//! - [`gtid_set`]: MySQL GTID sets, the resume state on MySQL 8.
//! - [`mysql_txn`]: transaction assembly from MySQL 8 events (GTID, payload, XID).
//! - [`row`]: row images (key, old key, cells with [`meshsync_core::Cell::Kept`]) from
//!   decoded binlog rows.
//! - [`stream`]: [`MariaDbSource`], the binlog connection and the transaction assembly.
//! - [`resume`]: [`ResumePoint`], the GTID state and HLC capture resumes from, kept in
//!   `meshsync.capture_state`.

mod binlog_opts;
pub mod gtid;
pub mod gtid_set;
mod guard;
pub mod mysql_txn;
#[cfg(test)]
mod mysql_wire_tests;
pub mod resume;
pub mod row;
pub mod stream;

pub use binlog_opts::binlog_opts;
pub(crate) use binlog_opts::is_tls_failure as is_binlog_tls_failure;
pub use gtid::{Gtid, GtidState};
pub use gtid_set::GtidSet;
pub use resume::ResumePoint;
pub use row::RowImage;
pub use stream::{CapturedTxn, MariaDbSource, SourceConfig, SourceEvent, current_gtid_state};
