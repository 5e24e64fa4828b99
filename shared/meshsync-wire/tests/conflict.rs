//! Conflict records: what the headers say, the JSON body round trip, values left out for
//! sensitive tables, de-duplication ids, and refusal of a newer format.

use std::{collections::HashMap, time::Duration};

use meshsync_core::{Hlc, PeerId, TableName, Value, Version};
use meshsync_hlc::NodeId;
use meshsync_merge::{Conflict, ConflictRecord, Winner};
use meshsync_wire::{
    conflict::{self, ConflictError, ConflictMessage, Values},
    headers,
};
use proptest::prelude::*;

fn version(secs: u64, counter: u64, origin: &str, index: u32) -> Version {
    let h = Hlc::from_unix(Duration::from_secs(secs), NodeId::from_peer(origin));
    Version::new(
        Hlc {
            time: h.time + counter,
            ..h
        },
        PeerId::new(origin).unwrap(),
        index,
    )
}

fn column_conflict() -> ConflictRecord {
    ConflictRecord {
        table: TableName::new("public", "items"),
        key_values: vec![Value::Int(7)],
        conflict: Conflict {
            column: Some("v".into()),
            local: version(1_800_000_000, 0, "a", 0),
            incoming: version(1_800_000_001, 2, "b", 3),
            policy: "lww-column".into(),
            winner: Winner::Incoming,
        },
        local_value: Some(Value::Text("secret from a".into())),
        incoming_value: Some(Value::Text("secret from b".into())),
    }
}

fn me() -> PeerId {
    PeerId::new("a").unwrap()
}

fn header_map(h: &[(&'static str, String)]) -> HashMap<&'static str, String> {
    let map: HashMap<_, _> = h.iter().cloned().collect();
    assert_eq!(map.len(), h.len(), "a header is repeated: {h:?}");
    map
}

#[test]
fn headers_tell_the_story_without_the_body() {
    let enc = conflict::encode(&column_conflict(), &me(), Values::Included).unwrap();
    assert_eq!(enc.headers[0].0, headers::MSG_ID);
    let h = header_map(&enc.headers);
    assert_eq!(h[headers::TABLE], "public.items");
    assert_eq!(h[conflict::KEY], "[7]");
    assert_eq!(h[conflict::COLUMN], "v");
    assert_eq!(h[conflict::POLICY], "lww-column");
    assert_eq!(h[conflict::WINNER], "incoming");
    assert_eq!(h[conflict::LOCAL_VERSION], "2027-01-15T08:00:00Z/0@a#0");
    assert_eq!(h[conflict::INCOMING_VERSION], "2027-01-15T08:00:01Z/2@b#3");
    assert_eq!(h[conflict::RESOLVED_BY], "a");
    assert_eq!(h[conflict::VALUES], "included");
    assert_eq!(h[conflict::LOCAL_VALUE], "\"secret from a\"");
    assert_eq!(h[conflict::INCOMING_VALUE], "\"secret from b\"");
    assert_eq!(h[conflict::FORMAT], "1");
    assert!(h[headers::MSG_ID].starts_with("a:"));
}

#[test]
fn the_body_is_indented_json_that_decodes_to_the_record() {
    let record = column_conflict();
    let enc = conflict::encode(&record, &me(), Values::Included).unwrap();
    let text = String::from_utf8(enc.body.clone()).unwrap();
    assert!(text.contains("\n  \"table\": \"public.items\""), "{text}");
    let got = conflict::decode(&enc.body).unwrap();
    assert_eq!(
        got,
        ConflictMessage::from_record(&record, &me(), Values::Included)
    );
    assert_eq!(got.resolved_by, "a");
    assert_eq!(got.key, vec![serde_json::json!(7)]);
    assert_eq!(got.column.as_deref(), Some("v"));
    assert_eq!(got.winner, Winner::Incoming);
    assert_eq!(got.local.to_version().unwrap(), record.conflict.local);
    assert_eq!(got.incoming.to_version().unwrap(), record.conflict.incoming);
    assert_eq!(got.local_value, Some(serde_json::json!("secret from a")));
    assert_eq!(got.incoming_value, Some(serde_json::json!("secret from b")));
}

#[test]
fn a_sensitive_table_leaves_the_values_out_of_headers_and_body() {
    let record = column_conflict();
    let enc = conflict::encode(&record, &me(), Values::Omitted).unwrap();
    let body = String::from_utf8(enc.body.clone()).unwrap();
    assert!(!body.contains("secret"), "a value in the body: {body}");
    for (name, value) in &enc.headers {
        assert!(!value.contains("secret"), "a value in {name}: {value}");
        assert_ne!(*name, conflict::LOCAL_VALUE);
        assert_ne!(*name, conflict::INCOMING_VALUE);
    }
    let h = header_map(&enc.headers);
    assert_eq!(h[conflict::VALUES], "omitted");
    // The rest of the story stays: which row, which column, who won.
    assert_eq!(h[conflict::KEY], "[7]");
    assert_eq!(h[conflict::COLUMN], "v");
    assert_eq!(h[conflict::WINNER], "incoming");
    let got = conflict::decode(&enc.body).unwrap();
    assert_eq!(got.values, Values::Omitted);
    assert_eq!((got.local_value, got.incoming_value), (None, None));
    // The same conflict has the same id whether values are shown or not.
    let shown = conflict::encode(&record, &me(), Values::Included).unwrap();
    assert_eq!(enc.headers[0], shown.headers[0]);
}

#[test]
fn a_row_conflict_says_row_and_sql_null_is_not_a_missing_value() {
    let mut record = column_conflict();
    record.conflict.column = None;
    record.conflict.policy = "tombstone".into();
    record.conflict.winner = Winner::Local;
    record.local_value = None;
    record.incoming_value = None;
    let enc = conflict::encode(&record, &me(), Values::Included).unwrap();
    let h = header_map(&enc.headers);
    assert_eq!(h[conflict::COLUMN], "row");
    assert_eq!(h[conflict::WINNER], "local");
    assert!(!h.contains_key(conflict::LOCAL_VALUE));
    let got = conflict::decode(&enc.body).unwrap();
    assert_eq!(got.column, None);
    assert_eq!(got.local_value, None);

    let mut with_null = column_conflict();
    with_null.local_value = Some(Value::Null);
    let enc = conflict::encode(&with_null, &me(), Values::Included).unwrap();
    assert_eq!(header_map(&enc.headers)[conflict::LOCAL_VALUE], "null");
    let got = conflict::decode(&enc.body).unwrap();
    assert_eq!(got.local_value, Some(serde_json::Value::Null));
}

#[test]
fn the_message_id_names_the_conflict_not_the_delivery() {
    let record = column_conflict();
    let id = |r: &ConflictRecord, by: &str| {
        ConflictMessage::from_record(r, &PeerId::new(by).unwrap(), Values::Included).msg_id()
    };
    assert_eq!(id(&record, "a"), id(&record, "a"));
    assert_ne!(id(&record, "a"), id(&record, "b"));
    let mut later = record.clone();
    later.conflict.incoming = version(1_800_000_002, 0, "b", 3);
    assert_ne!(id(&record, "a"), id(&later, "a"));
    let mut other_key = record.clone();
    other_key.key_values = vec![Value::Int(8)];
    assert_ne!(id(&record, "a"), id(&other_key, "a"));
    let mut other_column = record;
    other_column.conflict.column = Some("n".into());
    assert_ne!(id(&other_column, "a"), id(&other_key, "a"));
}

#[test]
fn values_read_as_people_write_them() {
    let cases = [
        (Value::Null, "null"),
        (Value::Bool(true), "true"),
        (Value::Int(-3), "-3"),
        (Value::UInt(u64::MAX), "18446744073709551615"),
        (Value::Float(1.5), "1.5"),
        (Value::Float(f64::NAN), "\"NaN\""),
        (Value::Decimal("12.30".into()), "\"12.30\""),
        (Value::Text("a \"b\"\n".into()), "\"a \\\"b\\\"\\n\""),
        (Value::Bytes(vec![0, 0xab]), "\"\\\\x00ab\""),
        (
            Value::Timestamp(1_700_000_000_000_001),
            "\"2023-11-14T22:13:20.000001Z\"",
        ),
        (
            Value::LocalTimestamp(1_700_000_000_000_000),
            "\"2023-11-14T22:13:20.000000\"",
        ),
        (Value::Date(19_000), "\"2022-01-08\""),
        (Value::Time(45_296_000_000), "\"12:34:56.000000\""),
        (
            Value::Uuid([
                0x12, 0x34, 0x56, 0x78, 0x9a, 0xbc, 0xde, 0xf0, 0x01, 0x23, 0x45, 0x67, 0x89, 0xab,
                0xcd, 0xef,
            ]),
            "\"12345678-9abc-def0-0123-456789abcdef\"",
        ),
        (
            Value::Json("{\"b\": 1, \"a\": [2]}".into()),
            "{\"a\":[2],\"b\":1}",
        ),
        (Value::Json("not json".into()), "\"not json\""),
    ];
    for (v, want) in cases {
        assert_eq!(conflict::value_json(&v).to_string(), want, "{v:?}");
    }
    // Keys print the same whichever engine's decimal spelling they came in.
    assert_eq!(
        conflict::key_json(&Value::Decimal("012.500".into())),
        conflict::key_json(&Value::Decimal("12.5".into()))
    );
}

#[test]
fn line_breaks_never_reach_a_header_and_long_values_are_cut() {
    let mut record = column_conflict();
    record.table = TableName::new("public", "odd\r\nname");
    record.conflict.column = Some("c\nd".into());
    record.incoming_value = Some(Value::Text("x".repeat(10_000)));
    let enc = conflict::encode(&record, &me(), Values::Included).unwrap();
    for (name, value) in &enc.headers {
        assert!(!value.contains(['\r', '\n']), "{name}: {value:?}");
        assert!(value.len() <= 300, "{name} is {} bytes", value.len());
    }
    let h = header_map(&enc.headers);
    assert_eq!(h[conflict::COLUMN], "c\\nd");
    assert!(h[conflict::INCOMING_VALUE].ends_with('…'));
    // The body keeps everything.
    let got = conflict::decode(&enc.body).unwrap();
    assert_eq!(
        got.incoming_value,
        Some(serde_json::json!("x".repeat(10_000)))
    );
    assert_eq!(got.table, "public.odd\r\nname");
}

#[test]
fn a_newer_format_is_refused_and_garbage_is_malformed() {
    let enc = conflict::encode(&column_conflict(), &me(), Values::Included).unwrap();
    let mut doc: serde_json::Value = serde_json::from_slice(&enc.body).unwrap();
    doc["format"] = serde_json::json!(conflict::FORMAT_VERSION + 1);
    match conflict::decode(&serde_json::to_vec(&doc).unwrap()) {
        Err(ConflictError::FutureFormat { found, supported }) => {
            assert_eq!(
                (found, supported),
                (conflict::FORMAT_VERSION + 1, conflict::FORMAT_VERSION)
            );
        }
        other => panic!("expected FutureFormat, got {other:?}"),
    }
    assert!(matches!(
        conflict::decode(b"{\"json\": true}"),
        Err(ConflictError::Malformed(_))
    ));
    assert!(matches!(
        conflict::decode(&enc.body[..enc.body.len() / 2]),
        Err(ConflictError::Malformed(_))
    ));
    // A MessagePack change envelope is not a conflict record either.
    assert!(conflict::decode(&[0x92, 0x01, 0xc0]).is_err());
}

#[test]
fn subjects_and_streams_of_both_topologies() {
    let a = PeerId::new("a").unwrap();
    assert_eq!(conflict::subject(&a), "mesh.conflicts.a");
    assert_eq!(conflict::STREAM, "MESH_CONFLICTS");
    assert_eq!(conflict::SUBJECTS, "mesh.conflicts.>");
    assert_eq!(
        conflict::site_subject("site-1", &a),
        "mesh.site.site-1.conflicts.a"
    );
    assert_eq!(
        conflict::site_subjects("site-1"),
        "mesh.site.site-1.conflicts.>"
    );
    assert_eq!(conflict::site_stream("site-1"), "CONFLICTS_site-1");
    assert_eq!(conflict::site_stream("eu.west"), "CONFLICTS_eu_west");
}

fn record() -> impl Strategy<Value = ConflictRecord> {
    let v = || proptest::option::of(crate::value());
    (
        proptest::collection::vec(crate::value(), 1..3),
        proptest::option::of("[a-z\\n]{1,8}"),
        (any::<u64>(), any::<u64>(), 0u32..5),
        (any::<u64>(), any::<u64>(), 0u32..5),
        v(),
        v(),
        prop_oneof![
            Just(Winner::Local),
            Just(Winner::Incoming),
            Just(Winner::Combined)
        ],
    )
        .prop_map(
            |(
                key_values,
                column,
                (lt, ln, li),
                (it, inn, ii),
                local_value,
                incoming_value,
                winner,
            )| {
                ConflictRecord {
                    table: TableName::new("app", "t"),
                    key_values,
                    conflict: Conflict {
                        column,
                        local: Version::new(
                            Hlc { time: lt, node: ln },
                            PeerId::new("a").unwrap(),
                            li,
                        ),
                        incoming: Version::new(
                            Hlc {
                                time: it,
                                node: inn,
                            },
                            PeerId::new("b").unwrap(),
                            ii,
                        ),
                        policy: "max".into(),
                        winner,
                    },
                    local_value,
                    incoming_value,
                }
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1_000, ..ProptestConfig::default() })]

    #[test]
    fn every_record_round_trips_with_one_line_headers(r in record(), sensitive in any::<bool>()) {
        let values = if sensitive { Values::Omitted } else { Values::Included };
        let enc = conflict::encode(&r, &me(), values).unwrap();
        for (_, value) in &enc.headers {
            prop_assert!(!value.contains(['\r', '\n']));
        }
        let mut got = conflict::decode(&enc.body).unwrap();
        let want = ConflictMessage::from_record(&r, &me(), values);
        // Floats are written exactly (shortest round-trip text) but serde_json's default
        // reader may land one ulp off on extreme values: compare those as near-equal.
        for (g, w) in [
            (&mut got.local_value, &want.local_value),
            (&mut got.incoming_value, &want.incoming_value),
        ] {
            if let (Some(gv), Some(wv)) = (g.as_ref(), w.as_ref())
                && let (Some(a), Some(b)) = (gv.as_f64().filter(|_| gv.is_f64()), wv.as_f64().filter(|_| wv.is_f64()))
            {
                prop_assert!((a - b).abs() <= a.abs().max(b.abs()) * 4.0 * f64::EPSILON, "{} vs {}", a, b);
                *g = w.clone();
            }
        }
        for (g, w) in got.key.iter_mut().zip(&want.key) {
            if let (Some(a), Some(b)) = (g.as_f64().filter(|_| g.is_f64()), w.as_f64().filter(|_| w.is_f64())) {
                prop_assert!((a - b).abs() <= a.abs().max(b.abs()) * 4.0 * f64::EPSILON, "{} vs {}", a, b);
                *g = w.clone();
            }
        }
        prop_assert_eq!(&got, &want);
        prop_assert_eq!(got.local.to_version().unwrap(), r.conflict.local);
        prop_assert_eq!(got.incoming.to_version().unwrap(), r.conflict.incoming);
        if sensitive {
            prop_assert!(got.local_value.is_none() && got.incoming_value.is_none());
        } else {
            prop_assert_eq!(got.local_value.is_some(), r.local_value.is_some());
        }
    }

    #[test]
    fn random_bytes_never_panic_the_conflict_reader(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        let _ = conflict::decode(&bytes);
    }
}
