//! [`MariaDbSource`]: one binlog connection, registered as a replica with its own
//! `server_id`, resuming from a GTID state, assembling committed transactions.

use std::{collections::HashMap, time::Duration};

use futures::StreamExt;
use mysql_async::{
    BinlogStream, BinlogStreamRequest, Conn, Opts,
    binlog::{
        events::{Event, EventData, OptionalMetaExtractor, RowsEventData},
        row::BinlogRow,
    },
    prelude::Queryable,
};
use sqlx::{Connection, MySqlConnection};

use meshsync_core::TableName;

use super::{
    gtid::{GtidEvent, GtidState, parse_gtid_list},
    row::{RowImage, row_image},
};
use crate::{
    catalog::{self, TableInfo},
    check,
    error::MariaDbError,
};

/// Header flag `LOG_EVENT_SKIP_REPLICATION_F`: the session had `skip_replication=1` (our
/// apply connections do). mysql_common's `EventFlags` drops it: read `flags_raw()`.
pub const SKIP_REPLICATION_FLAG: u16 = 0x8000;

/// Raw event type codes this reader acts on.
mod ty {
    /// QUERY_EVENT (DDL, `COMMIT` of non-transactional changes).
    pub const QUERY: u8 = 2;
    /// ROTATE_EVENT: the next binlog file.
    pub const ROTATE: u8 = 4;
    /// FORMAT_DESCRIPTION_EVENT: starts every binlog file.
    pub const FORMAT_DESCRIPTION: u8 = 15;
    /// XID_EVENT: commit of a transactional transaction.
    pub const XID: u8 = 16;
    /// TABLE_MAP_EVENT: table id, names and column metadata.
    pub const TABLE_MAP: u8 = 19;
    /// HEARTBEAT_LOG_EVENT: the server is idle.
    pub const HEARTBEAT: u8 = 27;
    /// MariaDB GTID_EVENT: starts a transaction.
    pub const GTID: u8 = 162;
    /// MariaDB GTID_LIST_EVENT: the state before what follows.
    pub const GTID_LIST: u8 = 163;
    /// MariaDB compressed QUERY/ROWS events (`log_bin_compress`): 165..=171.
    pub const COMPRESSED: std::ops::RangeInclusive<u8> = 165..=171;
}

/// How to capture.
#[derive(Clone, Debug)]
pub struct SourceConfig {
    /// `mysql://user:password@host:port/db` (the user needs REPLICATION SLAVE and BINLOG
    /// MONITOR, and SELECT on `information_schema`).
    pub url: String,
    /// This replica's `server_id`: unique among the server's replicas and not the id of any
    /// server in the replication topology (a duplicate makes the server drop the older
    /// connection).
    pub server_id: u32,
    /// Tables whose rows are captured; other tables' transactions come with no rows.
    pub tables: Vec<TableName>,
    /// Where to resume: `domain-server-seq,...` (empty: the oldest binlog still on the
    /// server). [`current_gtid_state`] gives the state of "now".
    pub resume: String,
    /// Idle interval after which the server sends a heartbeat.
    pub heartbeat: Duration,
}

/// One committed transaction.
#[derive(Clone, Debug, PartialEq)]
pub struct CapturedTxn {
    /// Its GTID, `domain-server-seq`.
    pub gtid: String,
    /// The resume state after it: the last GTID of every domain seen, `domain-server-seq,...`.
    pub gtid_state_after: String,
    /// Commit time from the event header (seconds resolution), microseconds since the epoch.
    pub commit_unix_micros: i64,
    /// Written by a session with `skip_replication=1` (meshsync's apply): flag 0x8000.
    pub from_apply: bool,
    /// Row changes to configured tables, in binlog order (empty for other transactions and
    /// DDL).
    pub rows: Vec<RowImage>,
}

/// What [`MariaDbSource::next_event`] yields.
#[derive(Clone, Debug, PartialEq)]
pub enum SourceEvent {
    /// A committed transaction.
    Txn(CapturedTxn),
    /// The server is alive and has nothing new (sent after `heartbeat` of idleness).
    Heartbeat,
}

/// The transaction being assembled.
struct OpenTxn {
    /// Its GTID event.
    gtid: GtidEvent,
    /// Whether any of its events carried the skip_replication flag.
    from_apply: bool,
    /// Row images so far.
    rows: Vec<RowImage>,
}

/// A binlog reader. Not restartable: after an error, drop it and connect again from the last
/// [`CapturedTxn::gtid_state_after`] ([`MariaDbError::is_transient`] says whether to).
pub struct MariaDbSource {
    /// The binlog connection.
    stream: BinlogStream,
    /// For catalog reloads when a table map shows a new table id.
    sql: MySqlConnection,
    /// Configured tables and their shapes.
    tables: HashMap<TableName, TableInfo>,
    /// Table id -> configured table (or `None` for tables not captured).
    table_ids: HashMap<u64, Option<TableName>>,
    /// Resume state after the last committed transaction.
    state: GtidState,
    /// The transaction being assembled.
    open: Option<OpenTxn>,
    /// Whether a FORMAT_DESCRIPTION arrived (checksums are known from then on).
    fde_seen: bool,
    /// Current binlog file.
    file: String,
    /// Position in it after the last event.
    pos: u64,
}

/// The server's current binlog GTID state (`@@gtid_binlog_pos`): resume from it to capture
/// only what commits from now on.
pub async fn current_gtid_state(conn: &mut MySqlConnection) -> Result<String, MariaDbError> {
    let (s,): (String,) = sqlx::query_as("SELECT CAST(@@gtid_binlog_pos AS CHAR)")
        .fetch_one(conn)
        .await
        .map_err(MariaDbError::query("read @@gtid_binlog_pos"))?;
    Ok(s)
}

impl MariaDbSource {
    /// Checks the server settings, loads the catalog of the configured tables, and requests
    /// the binlog from `config.resume`.
    pub async fn connect(config: &SourceConfig) -> Result<Self, MariaDbError> {
        let state = GtidState::parse(&config.resume)?;
        let mut sql = MySqlConnection::connect(&config.url)
            .await
            .map_err(MariaDbError::query("connect"))?;
        check::check(&mut sql).await?;
        let tables = catalog::load(&mut sql, &config.tables).await?;
        let opts = Opts::from_url(&config.url).map_err(|e| MariaDbError::Url(e.to_string()))?;
        let mut conn = Conn::new(opts)
            .await
            .map_err(MariaDbError::binlog("connect"))?;
        let nanos = config
            .heartbeat
            .as_nanos()
            .clamp(1_000_000, 4_294_967_000_000_000);
        // GTID text is digits, '-' and ',' only (parsed above): safe to inline.
        for stmt in [
            "SET @mariadb_slave_capability=4".to_owned(),
            format!("SET @slave_connect_state='{state}'"),
            format!("SET @master_heartbeat_period={nanos}"),
        ] {
            conn.query_drop(stmt)
                .await
                .map_err(MariaDbError::binlog("prepare the binlog session"))?;
        }
        let request = BinlogStreamRequest::new(config.server_id)
            .with_filename(b"")
            .with_pos(4u64);
        let stream = conn
            .get_binlog_stream(request)
            .await
            .map_err(MariaDbError::binlog("request the binlog"))?;
        Ok(MariaDbSource {
            stream,
            sql,
            tables,
            table_ids: HashMap::new(),
            state,
            open: None,
            fde_seen: false,
            file: String::new(),
            pos: 4,
        })
    }

    /// The resume state after the last transaction yielded (plus domains the server listed).
    pub fn gtid_state(&self) -> String {
        self.state.to_string()
    }

    /// The current binlog file and position (diagnostics; resume uses GTIDs).
    pub fn binlog_position(&self) -> (&str, u64) {
        (&self.file, self.pos)
    }

    /// The shape of a configured table, as last loaded.
    pub fn table(&self, t: &TableName) -> Option<&TableInfo> {
        self.tables.get(t)
    }

    /// Closes the binlog connection.
    pub async fn close(self) -> Result<(), MariaDbError> {
        self.stream
            .close()
            .await
            .map_err(MariaDbError::binlog("close the binlog stream"))
    }

    /// The next committed transaction or heartbeat.
    pub async fn next_event(&mut self) -> Result<SourceEvent, MariaDbError> {
        loop {
            let ev = match self.stream.next().await {
                None => return Err(MariaDbError::StreamEnded),
                Some(ev) => ev.map_err(MariaDbError::binlog("read an event"))?,
            };
            if let Some(out) = self.handle(ev).await? {
                return Ok(out);
            }
        }
    }

    /// Acts on one event; `Some` when it completes something to yield.
    async fn handle(&mut self, ev: Event) -> Result<Option<SourceEvent>, MariaDbError> {
        let h = ev.header();
        if h.log_pos() != 0 {
            self.pos = u64::from(h.log_pos());
        }
        let flagged = h.flags_raw() & SKIP_REPLICATION_FLAG != 0;
        match h.event_type_raw() {
            ty::HEARTBEAT => return Ok(Some(SourceEvent::Heartbeat)),
            ty::FORMAT_DESCRIPTION => self.fde_seen = true,
            ty::ROTATE => self.rotate(&ev)?,
            ty::GTID => {
                let gtid = GtidEvent::parse(ev.data(), h.server_id())?;
                self.open = Some(OpenTxn {
                    gtid,
                    from_apply: flagged,
                    rows: Vec::new(),
                });
            }
            ty::GTID_LIST => self.state.merge_missing(&parse_gtid_list(ev.data())?),
            ty::TABLE_MAP => self.table_map(&ev).await?,
            ty::XID => return Ok(self.commit(h.timestamp()).map(SourceEvent::Txn)),
            ty::QUERY => {
                let ends = match &self.open {
                    Some(open) if open.gtid.standalone() => true,
                    Some(_) => matches!(query_text(&ev).as_deref(), Some("COMMIT" | "ROLLBACK")),
                    None => false,
                };
                if ends {
                    return Ok(self.commit(h.timestamp()).map(SourceEvent::Txn));
                }
            }
            t if ty::COMPRESSED.contains(&t) => {
                return Err(MariaDbError::Check(crate::check::CheckError::Compressed));
            }
            _ => {
                if let Some(rows) = self.rows(&ev)? {
                    let open = self.open.as_mut().ok_or_else(|| {
                        MariaDbError::Decode("row event outside a transaction".into())
                    })?;
                    open.from_apply |= flagged;
                    open.rows.extend(rows);
                }
            }
        }
        Ok(None)
    }

    /// Closes the open transaction (if any) as committed at `timestamp` (seconds).
    fn commit(&mut self, timestamp: u32) -> Option<CapturedTxn> {
        let open = self.open.take()?;
        self.state.advance(open.gtid.gtid);
        Some(CapturedTxn {
            gtid: open.gtid.gtid.to_string(),
            gtid_state_after: self.state.to_string(),
            commit_unix_micros: i64::from(timestamp) * 1_000_000,
            from_apply: open.from_apply,
            rows: open.rows,
        })
    }

    /// Follows a ROTATE. The first, artificial one arrives before any FORMAT_DESCRIPTION, so
    /// mysql_common leaves the 4 checksum bytes at the end of its file name.
    fn rotate(&mut self, ev: &Event) -> Result<(), MariaDbError> {
        let Some(EventData::RotateEvent(r)) = ev.read_data().map_err(decode)? else {
            return Ok(());
        };
        let mut name = r.name_raw().to_vec();
        if !self.fde_seen {
            name.truncate(name.len().saturating_sub(4));
        }
        self.file = String::from_utf8_lossy(&name).into_owned();
        self.pos = r.position();
        Ok(())
    }

    /// Notes which configured table a table id means; reloads its catalog entry when the id
    /// is new (MariaDB assigns a new id when a table is reopened, e.g. after DDL). Ids are
    /// reused for other tables after a server restart, so the name is checked every time.
    async fn table_map(&mut self, ev: &Event) -> Result<(), MariaDbError> {
        let Some(EventData::TableMapEvent(tme)) = ev.read_data().map_err(decode)? else {
            return Ok(());
        };
        let id = tme.table_id();
        let name = TableName::new(tme.database_name(), tme.table_name());
        let configured = self.tables.contains_key(&name);
        match self.table_ids.get(&id) {
            Some(Some(known)) if *known == name => return Ok(()),
            Some(None) if !configured => return Ok(()),
            _ => {}
        }
        if !configured {
            self.table_ids.insert(id, None);
            return Ok(());
        }
        let binlog_names: Vec<String> = OptionalMetaExtractor::new(tme.iter_optional_meta())
            .map_err(decode)?
            .iter_column_name()
            .map(|n| n.map(|n| n.name().into_owned()))
            .collect::<Result<_, _>>()
            .map_err(decode)?;
        let info = catalog::load_one(&mut self.sql, &name).await?;
        let catalog_names: Vec<&str> = info.columns.iter().map(|c| c.name.as_str()).collect();
        if !binlog_names.is_empty() && binlog_names != catalog_names {
            return Err(MariaDbError::SchemaMismatch {
                table: name,
                why: format!("binlog columns {binlog_names:?}, catalog {catalog_names:?}"),
            });
        }
        self.tables.insert(name.clone(), info);
        self.table_ids.insert(id, Some(name));
        Ok(())
    }

    /// The row images of a rows event of a configured table; `None` for other events.
    fn rows(&self, ev: &Event) -> Result<Option<Vec<RowImage>>, MariaDbError> {
        let Some(EventData::RowsEvent(rows_ev)) = ev.read_data().map_err(decode)? else {
            return Ok(None);
        };
        if matches!(rows_ev, RowsEventData::PartialUpdateRowsEvent(_)) {
            return Err(MariaDbError::Decode(
                "partial JSON update rows event (a MySQL feature)".into(),
            ));
        }
        let id = rows_ev.table_id();
        let Some(Some(name)) = self.table_ids.get(&id) else {
            return Ok(Some(Vec::new()));
        };
        let (Some(table), Some(tme)) = (self.tables.get(name), self.stream.get_tme(id)) else {
            return Err(MariaDbError::Decode(format!(
                "rows event for table id {id} without its table map"
            )));
        };
        let decoded: Vec<(Option<BinlogRow>, Option<BinlogRow>)> = rows_ev
            .rows(tme)
            .collect::<Result<_, _>>()
            .map_err(decode)?;
        decoded
            .iter()
            .map(|(before, after)| row_image(table, before.as_ref(), after.as_ref()))
            .collect::<Result<Vec<_>, _>>()
            .map(Some)
    }
}

/// The SQL text of a QUERY event, trimmed.
fn query_text(ev: &Event) -> Option<String> {
    match ev.read_data().ok()?? {
        EventData::QueryEvent(q) => Some(q.query().trim().to_owned()),
        _ => None,
    }
}

/// An undecodable event.
fn decode(e: impl std::fmt::Display) -> MariaDbError {
    MariaDbError::Decode(e.to_string())
}
