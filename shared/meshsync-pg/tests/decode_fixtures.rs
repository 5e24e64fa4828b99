//! Real pgoutput bytes from PostgreSQL 15 (see `fixtures/README.md`), decoded and turned into
//! row images, asserted value by value.

use meshsync_core::{Cell, Op, TableName, Value};
use meshsync_pg::source::pgoutput::{
    OldTuple, PgMessage, ReplicaIdentity, TupleColumn, format_lsn, pg_time_to_unix_micros,
};
use meshsync_pg::source::row::{RelationCache, RowError, RowImage, RowMessage, decode_row};
use meshsync_pg::types::PgType;

use crate::support::fixture;

/// Feeds relations into a cache and decodes every row message, in order.
fn rows(msgs: &[PgMessage], key: &[&str]) -> Vec<Result<RowImage, RowError>> {
    let key: Vec<String> = key.iter().map(|s| s.to_string()).collect();
    let mut cache = RelationCache::new();
    let mut out = Vec::new();
    for m in msgs {
        match m {
            PgMessage::Type(t) if t.name == "mood" => cache.register_type(t.oid, PgType::Enum),
            PgMessage::Relation(r) => {
                cache.update(r.clone());
            }
            _ => {
                if let Some(row) = RowMessage::from_message(m) {
                    out.push(decode_row(&cache, &key, row));
                }
            }
        }
    }
    out
}

fn tags(msgs: &[PgMessage]) -> String {
    msgs.iter()
        .map(|m| match m {
            PgMessage::Begin(_) => 'B',
            PgMessage::Commit(_) => 'C',
            PgMessage::Origin(_) => 'O',
            PgMessage::Relation(_) => 'R',
            PgMessage::Type(_) => 'Y',
            PgMessage::Insert(_) => 'I',
            PgMessage::Update(_) => 'U',
            PgMessage::Delete(_) => 'D',
            PgMessage::Truncate(_) => 'T',
            PgMessage::Message(_) => 'M',
        })
        .collect()
}

fn v(s: &str) -> Cell {
    Cell::Value(Value::Text(s.into()))
}

fn json(s: &str) -> Cell {
    Cell::Value(Value::Json(s.into()))
}

fn i(n: i64) -> Cell {
    Cell::Value(Value::Int(n))
}

const UUID: [u8; 16] = [
    0xa0, 0xee, 0xbc, 0x99, 0x9c, 0x0b, 0x4e, 0xf8, 0xbb, 0x6d, 0x6b, 0xb9, 0xbd, 0x38, 0x0a, 0x11,
];
/// 2026-11-26 17:21:39.1026 in µs since 1970.
const TS: i64 = 1_795_713_699_102_600;

fn cells(row: &RowImage) -> Vec<Cell> {
    row.columns.iter().map(|(_, c)| c.clone()).collect()
}

#[test]
fn insert_all_types() {
    let msgs = fixture("insert_all_types");
    assert_eq!(tags(&msgs), "BYRIIIC");
    let (PgMessage::Begin(b), PgMessage::Commit(c)) = (&msgs[0], &msgs[6]) else {
        panic!()
    };
    assert_eq!((b.final_lsn, b.xid), (c.commit_lsn, 734));
    assert_eq!(format_lsn(c.end_lsn), "0/153F098");
    assert_eq!(b.commit_time, c.commit_time);
    let PgMessage::Type(t) = &msgs[1] else {
        panic!()
    };
    assert_eq!(
        (t.oid, t.namespace.as_str(), t.name.as_str()),
        (16385, "public", "mood")
    );
    let PgMessage::Relation(r) = &msgs[2] else {
        panic!()
    };
    assert_eq!(
        (r.namespace.as_str(), r.name.as_str()),
        ("public", "all_types")
    );
    assert_eq!(r.replica_identity, ReplicaIdentity::Default);
    assert_eq!(r.columns.len(), 32);
    let id = &r.columns[0];
    assert!(id.is_identity() && (id.name.as_str(), id.type_oid) == ("id", 20));
    assert!(r.columns[1..].iter().all(|c| !c.is_identity()));
    let numeric = &r.columns[3];
    assert_eq!(
        (numeric.type_oid, numeric.type_modifier),
        (1700, (12 << 16) + 3 + 4)
    );

    let rows = rows(&msgs, &["id"]);
    let row = rows[0].as_ref().unwrap();
    assert_eq!(
        (row.op, &row.table),
        (Op::Insert, &TableName::new("public", "all_types"))
    );
    assert_eq!(row.key, vec![("id".to_owned(), Value::Int(1))]);
    assert_eq!(row.old_key, None);
    let names: Vec<&str> = row.columns.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names[..3], ["id", "c_int2", "c_int4"]);
    assert_eq!(names[31], "a_int4_2d");
    let expected = vec![
        i(1),
        i(32767),
        i(-2_147_483_648),
        Cell::Value(Value::Decimal("12345.678".into())),
        Cell::Value(Value::Decimal("NaN".into())),
        Cell::Value(Value::Float(1.5)),
        Cell::Value(Value::Float(-2.25e-10)),
        Cell::Value(Value::Bool(true)),
        v("héllo, \"world\""),
        v("var"),
        v("ab   "),
        v("nm"),
        Cell::Value(Value::Bytes(vec![0xde, 0xad, 0xbe, 0xef])),
        Cell::Value(Value::Uuid(UUID)),
        json(r#"{"a": [1, 2]}"#),
        json(r#"{"a": 1, "b": null}"#),
        Cell::Value(Value::LocalTimestamp(TS)),
        Cell::Value(Value::Timestamp(TS)),
        Cell::Value(Value::Date(20_783)),
        Cell::Value(Value::Time(62_499_000_001)),
        v("sad"),
        json("[1,2,null]"),
        json(r#"["a b","c\"d",null,"NULL","","x"]"#),
        json("[9223372036854775807]"),
        json(r#"[1.5,"NaN","Infinity","-Infinity"]"#),
        json("[true,false]"),
        json("[1.10,-2]"),
        json(r#"["v"]"#),
        json(r#"["a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"]"#),
        json(r#"["{\"k\": \"v\"}","[1]"]"#),
        json(r#"["2026-01-02T03:04:05.000000Z"]"#),
        json("[[1,2],[3,null]]"),
    ];
    assert_eq!(cells(row), expected);

    let nulls = rows[1].as_ref().unwrap();
    assert_eq!(nulls.key, vec![("id".to_owned(), Value::Int(2))]);
    assert!(
        cells(nulls)[1..]
            .iter()
            .all(|c| *c == Cell::Value(Value::Null))
    );

    let edge = cells(rows[2].as_ref().unwrap());
    assert_eq!(edge[3], Cell::Value(Value::Decimal("-0.500".into())));
    assert_eq!(
        edge[4],
        Cell::Value(Value::Decimal("0.00000000000000000001".into()))
    );
    assert_eq!(edge[5], Cell::Value(Value::Float(f64::INFINITY)));
    assert_eq!(edge[6], Cell::Value(Value::Float(f64::NEG_INFINITY)));
    assert_eq!(edge[8..12], [v(""), v(""), v("     "), v("")]);
    assert_eq!(edge[12], Cell::Value(Value::Bytes(vec![])));
    assert_eq!(edge[13], Cell::Value(Value::Uuid([0; 16])));
    assert_eq!(edge[16], Cell::Value(Value::LocalTimestamp(-1)));
    assert_eq!(edge[17], Cell::Value(Value::Timestamp(946_702_800_000_000)));
    assert_eq!(edge[18], Cell::Value(Value::Date(-25_509)));
    assert_eq!(edge[19], Cell::Value(Value::Time(0)));
    assert_eq!(edge[20], v("happy"));
    assert!(edge[21..].iter().all(|c| *c == json("[]")));
}

#[test]
fn timestamptz_in_another_session_zone() {
    let msgs = fixture("insert_tz_kolkata");
    let PgMessage::Insert(ins) = &msgs[3] else {
        panic!()
    };
    assert_eq!(
        ins.new[17],
        TupleColumn::Text(b"2026-11-26 22:51:39.1026+05:30".to_vec())
    );
    let row = rows(&msgs, &["id"]).remove(0).unwrap();
    assert_eq!(
        row.columns[17],
        ("c_tstz".to_owned(), Cell::Value(Value::Timestamp(TS)))
    );
    assert_eq!(
        row.columns[30].1,
        json(r#"["2026-01-02T03:04:05.000000Z"]"#)
    );
}

#[test]
fn binary_tuples_decode_but_are_refused_as_rows() {
    let msgs = fixture("insert_binary");
    let PgMessage::Insert(ins) = &msgs[2] else {
        panic!()
    };
    assert_eq!(ins.new, vec![TupleColumn::Binary(vec![0, 0, 0, 7])]);
    let err = rows(&msgs, &["id"]).remove(0).unwrap_err();
    assert!(
        matches!(err, RowError::BinaryFormat { ref column, .. } if column == "id"),
        "{err}"
    );
}

fn big_text() -> String {
    fixture("toast_full")
        .into_iter()
        .find_map(|m| match m {
            PgMessage::Update(u) => match u.old {
                Some(OldTuple::Full(t)) => match &t[1] {
                    TupleColumn::Text(b) => Some(String::from_utf8(b.clone()).unwrap()),
                    _ => None,
                },
                _ => None,
            },
            _ => None,
        })
        .unwrap()
}

#[test]
fn toast_under_replica_identity_full() {
    let msgs = fixture("toast_full");
    assert_eq!(tags(&msgs), "BRUCBUCBUCBDC");
    assert_eq!(big_text().len(), 3200);
    let PgMessage::Update(u) = &msgs[2] else {
        panic!()
    };
    assert_eq!(u.new[1], TupleColumn::UnchangedToast);
    let rows: Vec<RowImage> = rows(&msgs, &["id"])
        .into_iter()
        .map(Result::unwrap)
        .collect();
    let key = |n| vec![("id".to_owned(), Value::Int(n))];

    // SET n = n + 1, label = label: big not re-sent but known from the full old row, label
    // equal to old: both kept with their values; only n was written.
    assert_eq!(
        (rows[0].op, &rows[0].key, &rows[0].old_key),
        (Op::Update, &key(1), &None)
    );
    let c0 = cells(&rows[0]);
    assert_eq!(c0[0], Cell::Kept(Value::Int(1)));
    assert!(
        matches!(&c0[1], Cell::Kept(Value::Text(big)) if big.len() > 2000),
        "TOASTed value filled from the old row"
    );
    assert!(matches!(&c0[2], Cell::Kept(_)));
    assert_eq!(c0[3], i(2));
    assert!(
        !c0.contains(&Cell::Unchanged),
        "REPLICA IDENTITY FULL leaves nothing unknown"
    );
    // SET id = 2: the key moved, the old key is reported.
    assert_eq!((&rows[1].key, &rows[1].old_key), (&key(2), &Some(key(1))));
    let c1 = cells(&rows[1]);
    assert_eq!(c1[0], i(2));
    assert!(c1[1..].iter().all(|c| matches!(c, Cell::Kept(_))), "{c1:?}");
    // SET big = 'small now', label = NULL.
    let null = Cell::Value(Value::Null);
    let c2 = cells(&rows[2]);
    assert_eq!(c2[0], Cell::Kept(Value::Int(2)));
    assert_eq!((&c2[1], &c2[2]), (&v("small now"), &null));
    assert!(matches!(c2[3], Cell::Kept(Value::Int(_))));
    assert_eq!(rows[2].old_key, None);
    // DELETE: key from the full old row, no cells.
    assert_eq!(
        (rows[3].op, &rows[3].key, rows[3].columns.len()),
        (Op::Delete, &key(2), 0)
    );
}

#[test]
fn toast_under_replica_identity_default() {
    let msgs = fixture("toast_default");
    assert_eq!(tags(&msgs), "BRUCBUCBUCBDC");
    let rows: Vec<RowImage> = rows(&msgs, &["id"])
        .into_iter()
        .map(Result::unwrap)
        .collect();
    let key = |n| vec![("id".to_owned(), Value::Int(n))];
    // No old row: only the TOASTed column is unchanged; label = label is indistinguishable.
    assert_eq!((&rows[0].key, &rows[0].old_key), (&key(1), &None));
    assert_eq!(
        cells(&rows[0]),
        vec![i(1), Cell::Unchanged, v("keep"), i(2)]
    );
    // Key change: a 'K' old tuple whose non-key 'n's are not NULLs.
    let PgMessage::Update(u) = &msgs[5] else {
        panic!()
    };
    let Some(OldTuple::Key(k)) = &u.old else {
        panic!()
    };
    assert_eq!(
        k[1..],
        [TupleColumn::Null, TupleColumn::Null, TupleColumn::Null]
    );
    assert_eq!((&rows[1].key, &rows[1].old_key), (&key(2), &Some(key(1))));
    assert_eq!(
        cells(&rows[1]),
        vec![i(2), Cell::Unchanged, v("keep"), i(2)]
    );
    assert_eq!(
        cells(&rows[2]),
        vec![i(2), v("small now"), Cell::Value(Value::Null), i(2)]
    );
    assert_eq!(
        (rows[3].op, &rows[3].key, rows[3].columns.len()),
        (Op::Delete, &key(2), 0)
    );
}

#[test]
fn truncate_options_and_relations() {
    let msgs = fixture("truncate");
    assert_eq!(tags(&msgs), "BRICBRRTCBRTC");
    let PgMessage::Truncate(t) = &msgs[7] else {
        panic!()
    };
    assert_eq!(t.relations, vec![16410, 16403]);
    assert!(t.cascade() && t.restart_identity());
    let PgMessage::Truncate(t) = &msgs[11] else {
        panic!()
    };
    assert_eq!((t.relations.as_slice(), t.options), (&[16396][..], 0));
}

#[test]
fn logical_messages() {
    let msgs = fixture("message");
    assert_eq!(tags(&msgs), "MBMRIC");
    let PgMessage::Message(nt) = &msgs[0] else {
        panic!()
    };
    assert!(!nt.transactional());
    assert_eq!(
        (nt.prefix.as_str(), nt.content.as_slice()),
        ("meshsync.nt", &b"hello"[..])
    );
    let PgMessage::Message(m) = &msgs[2] else {
        panic!()
    };
    assert!(m.transactional());
    assert_eq!(
        (m.prefix.as_str(), m.content.as_slice()),
        ("meshsync", &b"x"[..])
    );
}

#[test]
fn replication_origin() {
    let msgs = fixture("origin");
    assert_eq!(tags(&msgs), "BORIC");
    let PgMessage::Origin(o) = &msgs[1] else {
        panic!()
    };
    assert_eq!(
        (o.name.as_str(), format_lsn(o.lsn)),
        ("mesh_apply_x_0", "0/ABCDEF12".to_owned())
    );
    let PgMessage::Begin(b) = &msgs[0] else {
        panic!()
    };
    // pg_replication_origin_xact_setup's timestamp becomes the commit time.
    assert_eq!(pg_time_to_unix_micros(b.commit_time), 1_767_323_045_000_000);
}
