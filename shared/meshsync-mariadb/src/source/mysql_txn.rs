//! Transaction assembly for MySQL 8 binlogs (COM_BINLOG_DUMP_GTID): which events start and
//! end a transaction, its GTID (`uuid:n`), commit time and resume state.
//!
//! - GTID_LOG_EVENT (33) starts a transaction and carries `original_commit_timestamp` in
//!   microseconds (the commit on the server where the transaction first ran).
//! - ANONYMOUS_GTID (34): the server has no GTIDs (`gtid_mode` is not ON): refused.
//! - PREVIOUS_GTIDS (35): the GTIDs of the binlogs before this one; merged into the state
//!   (they are already in the requested set: a no-op kept for safety).
//! - TRANSACTION_PAYLOAD (40, `binlog_transaction_compression=ON`): mysql_async's
//!   `BinlogStream` decompresses it and yields its inner events (table maps, rows, XID) right
//!   after it, through the same handler; the payload event itself carries nothing more.
//! - XID ends a transaction; a QUERY right after a GTID that is not `BEGIN` is a standalone
//!   transaction (DDL); `COMMIT`/`ROLLBACK` end one that began with `BEGIN`.
//!
//! Loop prevention without `skip_replication`: every apply transaction that writes rows
//! also writes its row of `meshsync.applied` (see [`crate::apply::APPLIED_TABLE`]), so a
//! transaction holding such a row is marked [`CapturedTxn::from_apply`].

use mysql_async::binlog::events::{Event, EventData};

use super::{
    gtid_set::{GtidSet, Uuid, UuidText},
    row::RowImage,
    stream::CapturedTxn,
};
use crate::{check::CheckError, error::MariaDbError};

/// Raw event type codes of MySQL's GTID events.
pub mod ty {
    /// GTID_LOG_EVENT.
    pub const GTID: u8 = 33;
    /// ANONYMOUS_GTID_LOG_EVENT.
    pub const ANONYMOUS_GTID: u8 = 34;
    /// PREVIOUS_GTIDS_LOG_EVENT.
    pub const PREVIOUS_GTIDS: u8 = 35;
    /// TRANSACTION_PAYLOAD_EVENT.
    pub const TRANSACTION_PAYLOAD: u8 = 40;
    /// HEARTBEAT_LOG_EVENT_V2 (8.0.26+).
    pub const HEARTBEAT_V2: u8 = 41;
    /// GTID_TAGGED_LOG_EVENT (8.4+).
    pub const GTID_TAGGED: u8 = 42;
}

/// The rows of one rows event, as the caller decoded them.
pub struct RowsSeen {
    /// Images of rows of configured tables (empty for other tables).
    pub images: Vec<RowImage>,
    /// Whether the event's table is `meshsync.applied`.
    pub applied: bool,
}

/// The transaction being assembled.
struct Open {
    /// Server UUID of its GTID.
    uuid: Uuid,
    /// Transaction number of its GTID.
    gno: u64,
    /// Original commit time, microseconds since the epoch.
    commit_unix_micros: i64,
    /// A `BEGIN` query followed the GTID.
    began: bool,
    /// A row of `meshsync.applied` was written.
    from_apply: bool,
    /// Row images so far.
    rows: Vec<RowImage>,
}

/// The MySQL transaction assembler: fed every event except table maps, rotations, format
/// descriptions and heartbeats, in binlog order.
#[derive(Default)]
pub struct MySqlTxns {
    /// GTIDs of every transaction handled, plus the resume set.
    state: GtidSet,
    /// The transaction being assembled.
    open: Option<Open>,
}

impl MySqlTxns {
    /// Starts from the resume set.
    pub fn new(state: GtidSet) -> Self {
        MySqlTxns { state, open: None }
    }

    /// The resume state after the last transaction completed.
    pub fn state(&self) -> &GtidSet {
        &self.state
    }

    /// Acts on one event; `rows` is the decoded content of a rows event (`None` for other
    /// events). Returns the transaction the event completed, if any.
    pub fn handle(
        &mut self,
        ev: &Event,
        rows: Option<RowsSeen>,
    ) -> Result<Option<CapturedTxn>, MariaDbError> {
        let h = ev.header();
        match h.event_type_raw() {
            ty::GTID => {
                let Some(EventData::GtidEvent(g)) = ev.read_data().map_err(decode)? else {
                    return Err(MariaDbError::Decode("GTID event without a body".into()));
                };
                if let Some(open) = &self.open {
                    // The commit event of the previous transaction never came: a payload
                    // that did not decompress would look like this. Never skip it silently.
                    return Err(MariaDbError::Decode(format!(
                        "transaction {}:{} has no commit event before the next GTID",
                        UuidText(&open.uuid),
                        open.gno
                    )));
                }
                let micros = match g.original_commit_timestamp() {
                    0 => i64::from(h.timestamp()) * 1_000_000,
                    t => i64::try_from(t).unwrap_or(i64::MAX),
                };
                self.open = Some(Open {
                    uuid: g.sid(),
                    gno: g.gno(),
                    commit_unix_micros: micros,
                    began: false,
                    from_apply: false,
                    rows: Vec::new(),
                });
            }
            ty::ANONYMOUS_GTID => return Err(MariaDbError::Check(CheckError::AnonymousGtid)),
            ty::GTID_TAGGED => {
                return Err(MariaDbError::Decode(
                    "a tagged GTID (MySQL 8.4 gtid tags); meshsync supports untagged GTIDs \
                     only: do not set gtid_next with a tag on this server"
                        .into(),
                ));
            }
            ty::PREVIOUS_GTIDS => {
                if let Some(EventData::PreviousGtidsEvent(p)) = ev.read_data().map_err(decode)? {
                    self.state
                        .union_previous(&p)
                        .map_err(|e| MariaDbError::Decode(e.to_string()))?;
                }
            }
            ty::TRANSACTION_PAYLOAD => {}
            XID => return Ok(self.commit()),
            QUERY => {
                let Some(open) = self.open.as_mut() else {
                    return Ok(None);
                };
                let text = match ev.read_data().map_err(decode)? {
                    Some(EventData::QueryEvent(q)) => q.query().trim().to_ascii_uppercase(),
                    _ => String::new(),
                };
                if open.began {
                    if matches!(text.as_str(), "COMMIT" | "ROLLBACK") {
                        return Ok(self.commit());
                    }
                } else if text == "BEGIN" {
                    open.began = true;
                } else {
                    // A statement logged on its own right after its GTID: DDL.
                    return Ok(self.commit());
                }
            }
            _ => {
                if let Some(seen) = rows {
                    let open = self.open.as_mut().ok_or_else(|| {
                        MariaDbError::Decode("row event outside a transaction".into())
                    })?;
                    open.from_apply |= seen.applied;
                    open.rows.extend(seen.images);
                }
            }
        }
        Ok(None)
    }

    /// Closes the open transaction (if any).
    fn commit(&mut self) -> Option<CapturedTxn> {
        let open = self.open.take()?;
        self.state.add(open.uuid, open.gno);
        Some(CapturedTxn {
            gtid: format!("{}:{}", UuidText(&open.uuid), open.gno),
            gtid_state_after: self.state.to_string(),
            commit_unix_micros: open.commit_unix_micros,
            from_apply: open.from_apply,
            rows: open.rows,
        })
    }
}

/// QUERY_EVENT.
const QUERY: u8 = 2;
/// XID_EVENT.
const XID: u8 = 16;

/// An undecodable event.
fn decode(e: impl std::fmt::Display) -> MariaDbError {
    MariaDbError::Decode(e.to_string())
}
