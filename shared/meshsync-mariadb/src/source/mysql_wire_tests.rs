//! MySQL 8 binlog events written byte by byte from the documented layouts (MySQL's
//! libbinlogevents: `control_events.h`, `rows_event.h`; the event header is 19 bytes:
//! timestamp u32, type u8, server_id u32, event_size u32, log_pos u32, flags u16, all
//! little-endian), decoded by mysql_common and assembled by [`MySqlTxns`] as capture does.
//!
//! A TRANSACTION_PAYLOAD is expanded here the way mysql_async's `BinlogStream` does in
//! production: the payload event first, then its decompressed inner events (no checksums).

use std::{collections::HashMap, io::BufRead};

use meshsync_core::{Cell, Op, TableName, Value};
use mysql_async::binlog::{
    BinlogVersion,
    events::{Event, EventData, FormatDescriptionEvent, TableMapEvent},
};

use super::{
    gtid_set::GtidSet,
    mysql_txn::{MySqlTxns, RowsSeen},
    row::decode_rows,
    stream::CapturedTxn,
};
use crate::{
    apply::APPLIED_TABLE,
    catalog::{Column, TableInfo, schema_version},
    error::MariaDbError,
    types::{Charset, MariaType},
};

const UUID: [u8; 16] = [
    0x3e, 0x11, 0xfa, 0x47, 0x71, 0xca, 0x11, 0xe1, 0x9e, 0x33, 0xc8, 0x0a, 0xa9, 0x42, 0x95, 0x62,
];
const UUID_TEXT: &str = "3e11fa47-71ca-11e1-9e33-c80aa9429562";
/// 2024-05-01 12:00:00.123456 UTC in microseconds.
const COMMIT_US: u64 = 1_714_564_800_123_456;
const TABLE_ID: u64 = 91;

/// One event: header and body (checksums are off in the default format description).
fn event(ty: u8, body: &[u8]) -> Vec<u8> {
    let size = u32::try_from(19 + body.len()).unwrap();
    let mut out = Vec::new();
    out.extend(1_714_564_800u32.to_le_bytes()); // timestamp (seconds)
    out.push(ty);
    out.extend(7u32.to_le_bytes()); // server_id
    out.extend(size.to_le_bytes());
    out.extend(0u32.to_le_bytes()); // log_pos
    out.extend(0u16.to_le_bytes()); // flags
    out.extend(body);
    out
}

/// GTID_LOG_EVENT (33): flags, SID, GNO, logical clock, commit timestamps (7 bytes each,
/// bit 55 of the immediate one says the original follows), transaction length (packed
/// integer), server versions (bit 31 of the immediate one says the original follows).
fn gtid_body(gno: u64, original_us: u64, immediate_us: u64) -> Vec<u8> {
    let mut b = vec![0x01];
    b.extend(UUID);
    b.extend(gno.to_le_bytes());
    b.push(2); // LOGICAL_TIMESTAMP_TYPECODE
    b.extend(4u64.to_le_bytes()); // last_committed
    b.extend(5u64.to_le_bytes()); // sequence_number
    b.extend(&(immediate_us | 1 << 55).to_le_bytes()[..7]);
    b.extend(&original_us.to_le_bytes()[..7]);
    b.push(200); // transaction_length (< 251: one byte)
    b.extend((80_036u32 | 1 << 31).to_le_bytes()); // immediate_server_version
    b.extend(80_036u32.to_le_bytes()); // original_server_version
    b
}

/// QUERY_EVENT (2): thread id, exec time, db length, error code, status-vars length, db
/// name and NUL, query.
fn query(text: &str) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend(11u32.to_le_bytes());
    b.extend(0u32.to_le_bytes());
    b.push(0);
    b.extend(0u16.to_le_bytes());
    b.extend(0u16.to_le_bytes());
    b.push(0);
    b.extend(text.as_bytes());
    event(2, &b)
}

/// XID_EVENT (16): the XA id.
fn xid() -> Vec<u8> {
    event(16, &77u64.to_le_bytes())
}

/// Length-prefixed text of a table map.
fn lenenc_str(b: &mut Vec<u8>, s: &str) {
    b.push(u8::try_from(s.len()).unwrap());
    b.extend(s.as_bytes());
}

/// TABLE_MAP_EVENT (19) of `db.table`: `id INT, note VARCHAR(20) utf8mb4, doc JSON`, with
/// FULL metadata (signedness, column names).
fn table_map(id: u64, db: &str, table: &str) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend(&id.to_le_bytes()[..6]);
    b.extend(1u16.to_le_bytes());
    lenenc_str(&mut b, db);
    b.push(0);
    lenenc_str(&mut b, table);
    b.push(0);
    b.push(3); // columns
    b.extend([3, 15, 245]); // LONG, VARCHAR, JSON
    b.push(3); // metadata bytes: VARCHAR max length u16, JSON length bytes
    b.extend(80u16.to_le_bytes());
    b.push(4);
    b.push(0b110); // nullable: note, doc
    // Optional metadata: SIGNEDNESS (1) over the numeric columns, COLUMN_NAME (4).
    b.extend([1, 1, 0]);
    let names: Vec<u8> = ["id", "note", "doc"]
        .iter()
        .flat_map(|n| {
            let mut v = vec![u8::try_from(n.len()).unwrap()];
            v.extend(n.as_bytes());
            v
        })
        .collect();
    b.push(4);
    b.push(u8::try_from(names.len()).unwrap());
    b.extend(names);
    event(19, &b)
}

/// `{"a":1}` in MySQL's binary JSON: small object (type 0), 1 member, 12 bytes; key entry
/// (offset 11, length 1); value entry inlined int16 (type 5) 1; key "a".
const JSONB_A1: [u8; 13] = [0, 1, 0, 12, 0, 11, 0, 1, 0, 5, 1, 0, b'a'];

/// WRITE_ROWS_EVENT v2 (30) of one row `(id, note, {"a":1})`: table id (6 bytes), flags,
/// extra-data length (2: itself), column count, columns-present bitmap, then the row: NULL
/// bitmap, INT (4 bytes), VARCHAR (1-byte length), JSON (4-byte length + binary JSON).
fn write_row(id: u64, row_id: i32, note: &str) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend(&id.to_le_bytes()[..6]);
    b.extend(1u16.to_le_bytes());
    b.extend(2u16.to_le_bytes());
    b.push(3);
    b.push(0b111);
    b.push(0);
    b.extend(row_id.to_le_bytes());
    lenenc_str(&mut b, note);
    b.extend(u32::try_from(JSONB_A1.len()).unwrap().to_le_bytes());
    b.extend(JSONB_A1);
    event(30, &b)
}

/// TRANSACTION_PAYLOAD_EVENT (40): fields as (type, length, value) packed integers:
/// COMPRESSION_TYPE (2) 0 = ZSTD, UNCOMPRESSED_SIZE (3), PAYLOAD_SIZE (1), END_MARK (0),
/// then the zstd-compressed inner events.
fn payload(inner: &[Vec<u8>]) -> Vec<u8> {
    let raw: Vec<u8> = inner.concat();
    let compressed = zstd::stream::encode_all(raw.as_slice(), 3).unwrap();
    let mut b = Vec::new();
    let mut field = |ty: u8, value: u64| {
        b.push(ty);
        if value < 251 {
            b.extend([1, u8::try_from(value).unwrap()]);
        } else {
            b.extend([3, 0xfc]);
            b.extend(u16::try_from(value).unwrap().to_le_bytes());
        }
    };
    field(2, 0);
    field(3, u64::try_from(raw.len()).unwrap());
    field(1, u64::try_from(compressed.len()).unwrap());
    b.push(0);
    b.extend(compressed);
    event(40, &b)
}

/// PREVIOUS_GTIDS_LOG_EVENT (35): SID count (u64), per SID the UUID, interval count (u64)
/// and intervals `[start, end)` (i64 each).
fn previous_gtids(start: u64, end: u64) -> Vec<u8> {
    let mut b = 1u64.to_le_bytes().to_vec();
    b.extend(UUID);
    b.extend(1u64.to_le_bytes());
    b.extend(start.to_le_bytes());
    b.extend(end.to_le_bytes());
    event(35, &b)
}

/// The table `app.t` as the catalog would load it.
fn table() -> TableInfo {
    let col = |name: &str, ty| Column {
        name: name.into(),
        ty,
        column_type: String::new(),
        not_null: name == "id",
        required: false,
        generated: false,
    };
    let columns = vec![
        col(
            "id",
            MariaType::Int {
                bytes: 4,
                unsigned: false,
            },
        ),
        col(
            "note",
            MariaType::Text {
                charset: Charset::Utf8,
                max_chars: 20,
                max_bytes: 80,
            },
        ),
        col("doc", MariaType::Json),
    ];
    TableInfo {
        name: TableName::new("app", "t"),
        schema: schema_version(&columns),
        columns,
        key: vec!["id".into()],
    }
}

/// Capture's side of a stream: table maps kept by id, rows decoded for `app.t`, payloads
/// expanded, everything else handed to [`MySqlTxns`].
struct Reader {
    fde: FormatDescriptionEvent<'static>,
    txns: MySqlTxns,
    tmes: HashMap<u64, TableMapEvent<'static>>,
    table: TableInfo,
}

impl Reader {
    fn new(state: &str) -> Self {
        Reader {
            fde: FormatDescriptionEvent::new(BinlogVersion::Version4),
            txns: MySqlTxns::new(GtidSet::parse(state).unwrap()),
            tmes: HashMap::new(),
            table: table(),
        }
    }

    /// Feeds the events; returns the transactions completed.
    fn feed(&mut self, events: &[Vec<u8>]) -> Result<Vec<CapturedTxn>, MariaDbError> {
        let mut out = Vec::new();
        for bytes in events {
            let ev = Event::read(&self.fde, bytes.as_slice()).unwrap();
            out.extend(self.one(&ev)?);
            if let Some(EventData::TransactionPayloadEvent(p)) = ev.read_data().unwrap() {
                let mut inner = p.decompressed().unwrap();
                while inner.fill_buf().map(|b| !b.is_empty()).unwrap() {
                    let ev = Event::read(&self.fde, &mut inner).unwrap();
                    out.extend(self.one(&ev)?);
                }
            }
        }
        Ok(out)
    }

    fn one(&mut self, ev: &Event) -> Result<Option<CapturedTxn>, MariaDbError> {
        let rows = match ev.read_data().unwrap() {
            Some(EventData::TableMapEvent(tme)) => {
                self.tmes.insert(tme.table_id(), tme.into_owned());
                return Ok(None);
            }
            Some(EventData::RowsEvent(r)) => {
                let tme = &self.tmes[&r.table_id()];
                let name = format!("{}.{}", tme.database_name(), tme.table_name());
                let images = if name == "app.t" {
                    decode_rows(&r, tme, &self.table)?
                } else {
                    Vec::new()
                };
                Some(RowsSeen {
                    images,
                    applied: name == APPLIED_TABLE,
                })
            }
            _ => None,
        };
        self.txns.handle(ev, rows)
    }
}

#[test]
fn gtid_event_starts_a_transaction_with_its_original_commit_time() {
    let mut r = Reader::new(&format!("{UUID_TEXT}:1-5"));
    let txns = r
        .feed(&[
            event(33, &gtid_body(7, COMMIT_US, COMMIT_US + 900)),
            query("BEGIN"),
            table_map(TABLE_ID, "app", "t"),
            write_row(TABLE_ID, 42, "hi"),
            xid(),
        ])
        .unwrap();
    assert_eq!(txns.len(), 1);
    let t = &txns[0];
    assert_eq!(t.gtid, format!("{UUID_TEXT}:7"));
    assert_eq!(t.gtid_state_after, format!("{UUID_TEXT}:1-5:7"));
    // The original commit, not the immediate one nor the header's second.
    assert_eq!(t.commit_unix_micros, i64::try_from(COMMIT_US).unwrap());
    assert!(!t.from_apply);
    assert_eq!(t.rows.len(), 1);
    assert_eq!(t.rows[0].op, Op::Insert);
    assert_eq!(t.rows[0].key, [("id".to_owned(), Value::Int(42))]);
    assert_eq!(
        t.rows[0].columns,
        [
            ("id".to_owned(), Cell::Value(Value::Int(42))),
            ("note".to_owned(), Cell::Value(Value::Text("hi".into()))),
            // Binary JSON arrives as the same JSON text MariaDB's JSON columns carry.
            (
                "doc".to_owned(),
                Cell::Value(Value::Json(r#"{"a":1}"#.into()))
            ),
        ]
    );
    // The next GTID fills the gap.
    let txns = r
        .feed(&[
            event(33, &gtid_body(6, COMMIT_US, COMMIT_US)),
            query("CREATE TABLE x (i INT)"),
        ])
        .unwrap();
    assert_eq!(txns[0].gtid_state_after, format!("{UUID_TEXT}:1-7"));
    assert!(
        txns[0].rows.is_empty(),
        "a DDL statement is its own transaction"
    );
}

#[test]
fn compressed_payload_is_one_transaction() {
    let mut r = Reader::new("");
    let txns = r
        .feed(&[
            event(33, &gtid_body(1, COMMIT_US, COMMIT_US)),
            payload(&[
                query("BEGIN"),
                table_map(TABLE_ID, "app", "t"),
                write_row(TABLE_ID, 1, "a"),
                write_row(TABLE_ID, 2, "b"),
                xid(),
            ]),
        ])
        .unwrap();
    assert_eq!(txns.len(), 1);
    let keys: Vec<&Value> = txns[0].rows.iter().map(|r| &r.key[0].1).collect();
    assert_eq!(keys, [&Value::Int(1), &Value::Int(2)]);
    assert_eq!(txns[0].gtid_state_after, format!("{UUID_TEXT}:1"));
}

#[test]
fn a_row_of_meshsync_applied_marks_an_apply_transaction() {
    let mut r = Reader::new("");
    let txns = r
        .feed(&[
            event(33, &gtid_body(1, COMMIT_US, COMMIT_US)),
            query("BEGIN"),
            table_map(TABLE_ID, "app", "t"),
            write_row(TABLE_ID, 1, "a"),
            table_map(TABLE_ID + 1, "meshsync", "applied"),
            write_row(TABLE_ID + 1, 9, "c"),
            xid(),
        ])
        .unwrap();
    assert!(txns[0].from_apply);
    assert_eq!(txns[0].rows.len(), 1, "only rows of configured tables");
}

#[test]
fn previous_gtids_merge_into_the_state_without_a_transaction() {
    let mut r = Reader::new("");
    assert!(r.feed(&[previous_gtids(1, 4)]).unwrap().is_empty());
    assert_eq!(r.txns.state().to_string(), format!("{UUID_TEXT}:1-3"));
}

#[test]
fn anonymous_gtid_is_refused_naming_gtid_mode() {
    let mut r = Reader::new("");
    let err = r
        .feed(&[event(34, &gtid_body(0, COMMIT_US, COMMIT_US))])
        .unwrap_err();
    assert!(
        matches!(
            err,
            MariaDbError::Check(crate::check::CheckError::AnonymousGtid)
        ),
        "{err}"
    );
    assert!(err.to_string().contains("gtid_mode=ON"), "{err}");
}

#[test]
fn a_transaction_without_its_commit_is_never_skipped() {
    let mut r = Reader::new("");
    let err = r
        .feed(&[
            event(33, &gtid_body(1, COMMIT_US, COMMIT_US)),
            query("BEGIN"),
            event(33, &gtid_body(2, COMMIT_US, COMMIT_US)),
        ])
        .unwrap_err();
    assert!(err.to_string().contains(":1 has no commit event"), "{err}");
}

#[test]
fn a_table_map_without_column_metadata_is_a_decode_error_not_a_panic() {
    let fde = FormatDescriptionEvent::new(BinlogVersion::Version4);
    // The table map of `table_map`, its three metadata bytes (and their count) cut out.
    let mut tm = table_map(TABLE_ID, "app", "t");
    let at = tm.windows(4).position(|w| w == [3, 3, 15, 245]).unwrap() + 4;
    tm.splice(at..at + 4, [0u8]);
    let size = u32::try_from(tm.len()).unwrap().to_le_bytes();
    tm[9..13].copy_from_slice(&size);
    let ev = Event::read(&fde, tm.as_slice()).unwrap();
    let Ok(Some(EventData::TableMapEvent(tme))) = ev.read_data() else {
        panic!("mysql_common reads the table map itself");
    };
    let rows = Event::read(&fde, write_row(TABLE_ID, 5, "hello").as_slice()).unwrap();
    let Ok(Some(EventData::RowsEvent(r))) = rows.read_data() else {
        panic!("a rows event");
    };
    // mysql_common panics decoding the row against it; capture gets an error.
    match decode_rows(&r, &tme, &table()) {
        Err(MariaDbError::Decode(m)) => {
            assert!(m.contains("a rows event") && m.contains("malformed"), "{m}")
        }
        other => panic!("expected a decode error, got {other:?}"),
    }
}
