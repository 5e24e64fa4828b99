//! [`MariaDbSource`]: one binlog connection, registered as a replica with its own
//! `server_id`, resuming from a GTID state, assembling committed transactions. MariaDB is
//! asked with `@slave_connect_state`, MySQL 8 with COM_BINLOG_DUMP_GTID and a GTID set;
//! MySQL transactions are assembled by [`super::mysql_txn`].

use std::{
    collections::{HashMap, HashSet},
    time::Duration,
};

use futures::StreamExt;
use mysql_async::{
    BinlogStream, BinlogStreamRequest, Conn,
    binlog::events::{Event, EventData, OptionalMetaExtractor, RowsEventData},
    prelude::Queryable,
};
use sqlx::{Connection, MySqlConnection};

use meshsync_core::TableName;

use super::{
    gtid::{GtidEvent, GtidState, parse_gtid_list},
    gtid_set::GtidSet,
    guard,
    mysql_txn::{self, MySqlTxns, RowsSeen},
    row::{RowImage, decode_rows},
};
use crate::{
    apply::APPLIED_TABLE,
    catalog::{self, TableInfo},
    check,
    error::MariaDbError,
    flavour::Flavour,
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
    /// Where to resume: on MariaDB `domain-server-seq,...`, on MySQL a GTID set
    /// `uuid:1-5:7,...` (empty: the oldest binlog still on the server).
    /// [`current_gtid_state`] gives the state of "now".
    pub resume: String,
    /// Idle interval after which the server sends a heartbeat.
    pub heartbeat: Duration,
}

/// One committed transaction.
#[derive(Clone, Debug, PartialEq)]
pub struct CapturedTxn {
    /// Its GTID: `domain-server-seq` (MariaDB), `uuid:n` (MySQL).
    pub gtid: String,
    /// The resume state after it. MariaDB: the last GTID of every domain seen,
    /// `domain-server-seq,...`; MySQL: the GTID set with this transaction added.
    pub gtid_state_after: String,
    /// Commit time, microseconds since the epoch: MariaDB's event header (seconds
    /// resolution), MySQL's `original_commit_timestamp` (microseconds).
    pub commit_unix_micros: i64,
    /// Written by meshsync's apply: on MariaDB flagged 0x8000 (`skip_replication=1`), on
    /// MySQL holding a row of `meshsync.applied`.
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
    /// MariaDB or MySQL.
    flavour: Flavour,
    /// MySQL transaction assembly (unused on MariaDB).
    mysql: MySqlTxns,
    /// Table ids of `meshsync.applied` (MySQL loop prevention; on MariaDB the one table of
    /// apply's transactions whose rows are decoded).
    applied_ids: HashSet<u64>,
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

/// The server's current binlog GTID state: resume from it to capture only what commits from
/// now on. MariaDB: `@@gtid_binlog_pos`; MySQL: `@@gtid_executed` (on one line).
pub async fn current_gtid_state(conn: &mut MySqlConnection) -> Result<String, MariaDbError> {
    if Flavour::detect(&mut *conn).await? == Flavour::MySql {
        let (s,): (String,) = sqlx::query_as("SELECT CAST(@@gtid_executed AS CHAR)")
            .fetch_one(conn)
            .await
            .map_err(MariaDbError::query("read @@gtid_executed"))?;
        return Ok(GtidSet::parse(&s)?.to_string());
    }
    let (s,): (String,) = sqlx::query_as("SELECT CAST(@@gtid_binlog_pos AS CHAR)")
        .fetch_one(conn)
        .await
        .map_err(MariaDbError::query("read @@gtid_binlog_pos"))?;
    Ok(s)
}

impl MariaDbSource {
    /// Checks the server settings, loads the catalog of the configured tables, and requests
    /// the binlog from `config.resume`: on MariaDB a GTID state sent as
    /// `@slave_connect_state`, on MySQL a GTID set sent with COM_BINLOG_DUMP_GTID (the
    /// server sends every transaction not in it).
    pub async fn connect(config: &SourceConfig) -> Result<Self, MariaDbError> {
        let mut sql = MySqlConnection::connect(&config.url)
            .await
            .map_err(MariaDbError::query("connect"))?;
        let flavour = check::check(&mut sql).await?.flavour;
        let nanos = config
            .heartbeat
            .as_nanos()
            .clamp(1_000_000, 4_294_967_000_000_000);
        let request = BinlogStreamRequest::new(config.server_id)
            .with_filename(b"")
            .with_pos(4u64);
        let (session, request, state, mysql) = match flavour {
            Flavour::MariaDb => {
                let state = GtidState::parse(&config.resume)?;
                // GTID text is digits, '-' and ',' only (parsed above): safe to inline.
                let session = vec![
                    "SET @mariadb_slave_capability=4".to_owned(),
                    format!("SET @slave_connect_state='{state}'"),
                    format!("SET @master_heartbeat_period={nanos}"),
                ];
                (session, request, state, MySqlTxns::default())
            }
            Flavour::MySql => {
                let set = GtidSet::parse(&config.resume)?;
                // 8.0.26 renamed the variable the dump thread reads; older servers read the
                // first.
                let session = vec![
                    format!("SET @master_heartbeat_period={nanos}"),
                    format!("SET @source_heartbeat_period={nanos}"),
                ];
                let request = request.with_gtid().with_gtid_set(set.to_sids());
                (session, request, GtidState::empty(), MySqlTxns::new(set))
            }
        };
        let tables = catalog::load_as(&mut sql, flavour, &config.tables).await?;
        // `ssl-mode=PREFERRED` (the default): TLS for the binlog connection when the session
        // got it. SHOW, since MySQL 8 has no information_schema.SESSION_STATUS.
        let (_, session_cipher): (String, String) =
            sqlx::query_as("SHOW SESSION STATUS LIKE 'Ssl_cipher'")
                .fetch_optional(&mut sql)
                .await
                .map_err(MariaDbError::query("read the session's TLS cipher"))?
                .unwrap_or_default();
        let opts = super::binlog_opts::binlog_opts(&config.url, !session_cipher.is_empty())?;
        let mut conn = Conn::new(opts)
            .await
            .map_err(MariaDbError::binlog("connect"))?;
        for stmt in session {
            conn.query_drop(stmt)
                .await
                .map_err(MariaDbError::binlog("prepare the binlog session"))?;
        }
        let stream = conn
            .get_binlog_stream(request)
            .await
            .map_err(MariaDbError::binlog("request the binlog"))?;
        Ok(MariaDbSource {
            stream,
            flavour,
            mysql,
            applied_ids: HashSet::new(),
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

    /// MariaDB or MySQL.
    pub fn flavour(&self) -> Flavour {
        self.flavour
    }

    /// The resume state after the last transaction yielded (plus domains the server listed).
    pub fn gtid_state(&self) -> String {
        match self.flavour {
            Flavour::MariaDb => self.state.to_string(),
            Flavour::MySql => self.mysql.state().to_string(),
        }
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
            let next = guard::decoding_async(|| "reading the binlog stream".into(), async {
                Ok(self.stream.next().await)
            });
            let ev = match next.await? {
                None => return Err(MariaDbError::StreamEnded),
                Some(ev) => ev.map_err(MariaDbError::binlog("read an event"))?,
            };
            let pos = self.pos;
            let what = || format!("the binlog event after position {pos}");
            if let Some(out) = guard::decoding_async(what, self.handle(ev)).await? {
                return Ok(out);
            }
        }
    }

    /// Acts on one event; `Some` when it completes something to yield.
    async fn handle(&mut self, ev: Event) -> Result<Option<SourceEvent>, MariaDbError> {
        if self.flavour == Flavour::MySql {
            return self.handle_mysql(ev).await;
        }
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
                // Of apply's own transactions only the `meshsync.applied` row is read (the
                // HLC fold, I8): decoding their other rows would only be thrown away.
                if let Some((_, rows)) = self.rows(&ev, flagged)? {
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

    /// Acts on one event of a MySQL binlog; `Some` when it completes something to yield.
    async fn handle_mysql(&mut self, ev: Event) -> Result<Option<SourceEvent>, MariaDbError> {
        let h = ev.header();
        if h.log_pos() != 0 {
            self.pos = u64::from(h.log_pos());
        }
        match h.event_type_raw() {
            ty::HEARTBEAT | mysql_txn::ty::HEARTBEAT_V2 => Ok(Some(SourceEvent::Heartbeat)),
            ty::FORMAT_DESCRIPTION => {
                self.fde_seen = true;
                Ok(None)
            }
            ty::ROTATE => self.rotate(&ev).map(|()| None),
            ty::TABLE_MAP => self.table_map(&ev).await.map(|()| None),
            _ => {
                let rows = self.rows(&ev, false)?.map(|(id, images)| RowsSeen {
                    images,
                    applied: self.applied_ids.contains(&id),
                });
                Ok(self.mysql.handle(&ev, rows)?.map(SourceEvent::Txn))
            }
        }
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
        if name.to_string() == APPLIED_TABLE {
            self.applied_ids.insert(id);
        } else {
            // Ids are reused for other tables after a restart.
            self.applied_ids.remove(&id);
        }
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
        let info = catalog::load_one_as(&mut self.sql, self.flavour, &name).await?;
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

    /// The table id and row images of a rows event (images only for a configured table);
    /// `None` for other events.
    fn rows(
        &self,
        ev: &Event,
        only_applied: bool,
    ) -> Result<Option<(u64, Vec<RowImage>)>, MariaDbError> {
        let Some(EventData::RowsEvent(rows_ev)) = ev.read_data().map_err(decode)? else {
            return Ok(None);
        };
        let id = rows_ev.table_id();
        let Some(Some(name)) = self.table_ids.get(&id) else {
            if matches!(rows_ev, RowsEventData::PartialUpdateRowsEvent(_)) {
                return Err(partial_json());
            }
            return Ok(Some((id, Vec::new())));
        };
        if only_applied && !self.applied_ids.contains(&id) {
            return Ok(Some((id, Vec::new())));
        }
        let (Some(table), Some(tme)) = (self.tables.get(name), self.stream.get_tme(id)) else {
            return Err(MariaDbError::Decode(format!(
                "rows event for table id {id} without its table map"
            )));
        };
        decode_rows(&rows_ev, tme, table).map(|images| Some((id, images)))
    }
}

/// A PARTIAL_UPDATE_ROWS event (MySQL `binlog_row_value_options=PARTIAL_JSON`).
fn partial_json() -> MariaDbError {
    MariaDbError::Check(check::CheckError::RowValueOptions {
        found: "PARTIAL_JSON".into(),
    })
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
