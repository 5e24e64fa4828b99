//! Envelope round trips, version refusal and headers; conflict records (`conflict.rs`).
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod conflict;

use meshsync_core::{
    Cell, ChangeBatch, Hlc, Op, PeerId, RowChange, SchemaVersion, SourcePosition, TableName, TxnId,
    Value,
};
use meshsync_wire::{ENVELOPE_VERSION, WireError, decode, encode, headers};
use proptest::prelude::*;

fn value() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::Int),
        any::<u64>().prop_map(Value::UInt),
        any::<f64>()
            .prop_filter("NaN compares unequal", |f| !f.is_nan())
            .prop_map(Value::Float),
        "-?[0-9]{1,20}(\\.[0-9]{1,10})?".prop_map(Value::Decimal),
        ".*".prop_map(Value::Text),
        proptest::collection::vec(any::<u8>(), 0..64).prop_map(Value::Bytes),
        any::<i64>().prop_map(Value::Timestamp),
        any::<i64>().prop_map(Value::LocalTimestamp),
        any::<i32>().prop_map(Value::Date),
        (0i64..86_400_000_000).prop_map(Value::Time),
        any::<[u8; 16]>().prop_map(Value::Uuid),
        "\\{\"[a-z]{0,5}\":[0-9]{1,3}\\}".prop_map(Value::Json),
    ]
}

fn cell() -> impl Strategy<Value = Cell> {
    prop_oneof![
        value().prop_map(Cell::Value),
        value().prop_map(Cell::Kept),
        Just(Cell::Unchanged)
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![Just(Op::Insert), Just(Op::Update), Just(Op::Delete)]
}

fn batch() -> impl Strategy<Value = ChangeBatch> {
    let row = (
        any::<u32>(),
        op(),
        proptest::collection::vec(value(), 1..3),
        proptest::collection::vec(cell(), 0..6),
    )
        .prop_map(|(index, op, key, cells)| RowChange {
            index,
            op,
            key,
            cells,
            deltas: Vec::new(),
        });
    (
        any::<u64>(),
        any::<u64>(),
        any::<u32>(),
        proptest::collection::vec(row, 0..8),
    )
        .prop_map(|(time, node, chunk, rows)| ChangeBatch {
            origin: PeerId::new("peer-a").unwrap(),
            database: "app".into(),
            table: TableName::new("public", "items"),
            hlc: Hlc { time, node },
            position: SourcePosition("0/16B3748".into()),
            txn: TxnId("742".into()),
            chunk,
            schema: SchemaVersion(0xfeed),
            key_columns: vec!["id".into()],
            columns: vec!["id".into(), "name".into()],
            rows,
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2_000, ..ProptestConfig::default() })]

    #[test]
    fn every_value_kind_round_trips(b in batch()) {
        let bytes = encode(&b).unwrap();
        prop_assert_eq!(decode(&bytes).unwrap(), b);
    }

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        let _ = decode(&bytes);
    }
}

fn sample() -> ChangeBatch {
    ChangeBatch {
        origin: PeerId::new("a").unwrap(),
        database: "app".into(),
        table: TableName::new("public", "items"),
        hlc: Hlc::from_unix(
            std::time::Duration::from_secs(1_800_000_000),
            meshsync_hlc::NodeId::new(9),
        ),
        position: SourcePosition("0/16B3748".into()),
        txn: TxnId("742".into()),
        chunk: 2,
        schema: SchemaVersion(1),
        key_columns: vec!["id".into()],
        columns: vec!["id".into(), "v".into()],
        rows: vec![
            RowChange {
                index: 0,
                op: Op::Insert,
                key: vec![Value::Int(1)],
                cells: vec![Value::Int(1).into(), Value::Float(f64::NAN).into()],
                deltas: Vec::new(),
            },
            RowChange {
                index: 1,
                op: Op::Delete,
                key: vec![Value::Int(2)],
                cells: vec![],
                deltas: Vec::new(),
            },
        ],
    }
}

#[test]
fn nan_survives_bit_for_bit() {
    let b = decode(&encode(&sample()).unwrap()).unwrap();
    match &b.rows[0].cells[1] {
        Cell::Value(Value::Float(f)) => assert!(f.is_nan()),
        other => panic!("expected a float, got {other:?}"),
    }
}

#[test]
fn envelope_from_the_future_is_refused_not_misread() {
    // A later version may reshape the batch entirely; the reader must stop at the version.
    let future = rmp_serde::to_vec(&(ENVELOPE_VERSION + 1, ("something", 1, [2, 3]))).unwrap();
    match decode(&future) {
        Err(WireError::FutureEnvelope { found, supported }) => {
            assert_eq!((found, supported), (ENVELOPE_VERSION + 1, ENVELOPE_VERSION));
        }
        other => panic!("expected FutureEnvelope, got {other:?}"),
    }
    // Even a future envelope whose body happens to decode as today's batch is refused.
    let lookalike = rmp_serde::to_vec(&(ENVELOPE_VERSION + 1, sample())).unwrap();
    assert!(matches!(
        decode(&lookalike),
        Err(WireError::FutureEnvelope { .. })
    ));
}

#[test]
fn garbage_is_malformed() {
    assert!(matches!(
        decode(b"{\"json\": true}"),
        Err(WireError::Malformed(_))
    ));
    assert!(matches!(decode(&[]), Err(WireError::Malformed(_))));
    // An array of three small integers reads like a future version, but is no envelope.
    assert!(matches!(
        decode(b"\x93not msgpack at all"),
        Err(WireError::Malformed(_))
    ));
    let three = rmp_serde::to_vec(&(ENVELOPE_VERSION, sample(), 1)).unwrap();
    assert!(matches!(decode(&three), Err(WireError::Malformed(_))));
    let mut truncated = encode(&sample()).unwrap();
    truncated.truncate(truncated.len() / 2);
    assert!(matches!(decode(&truncated), Err(WireError::Malformed(_))));
}

#[test]
fn headers_describe_the_batch() {
    let h: std::collections::HashMap<_, _> = headers::for_batch(&sample()).into_iter().collect();
    assert_eq!(h[headers::MSG_ID], "a:0/16B3748:2");
    assert_eq!(h[headers::ORIGIN], "a");
    assert_eq!(h[headers::TABLE], "public.items");
    assert_eq!(h[headers::OP], "insert,delete");
    assert_eq!(h[headers::COUNT], "2");
    assert_eq!(h[headers::HLC], "2027-01-15T08:00:00Z/0");
    assert_eq!(h[headers::SCHEMA], "0000000000000001");
}
