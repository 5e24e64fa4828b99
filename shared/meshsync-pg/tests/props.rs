//! Property tests: the decoder never panics, and every supported type round-trips through
//! its SQL text.

use meshsync_core::Value;
use meshsync_pg::source::pgoutput::decode;
use meshsync_pg::types::{PgType, from_text, to_sql_text};
use proptest::prelude::*;

use crate::support::fixture_bytes;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4096))]

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        let _ = decode(&bytes);
    }

    #[test]
    fn random_bytes_after_a_valid_tag_never_panic(
        tag in proptest::sample::select(b"BCORYIUDTM".to_vec()),
        body in proptest::collection::vec(any::<u8>(), 0..128),
    ) {
        let mut bytes = vec![tag];
        bytes.extend(body);
        let _ = decode(&bytes);
    }

    #[test]
    fn mutated_real_messages_never_panic(pick in any::<prop::sample::Index>(), edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4), cut in any::<prop::sample::Index>()) {
        let all = fixture_bytes();
        let mut msg = pick.get(&all).clone();
        for (at, byte) in edits {
            let i = at.index(msg.len());
            msg[i] = byte;
        }
        let _ = decode(&msg);
        let _ = decode(&msg[..cut.index(msg.len() + 1)]);
    }
}

#[test]
fn every_truncation_of_real_messages_is_an_error() {
    for msg in fixture_bytes() {
        assert!(decode(&msg).is_ok());
        for len in 0..msg.len() {
            assert!(
                decode(&msg[..len]).is_err(),
                "prefix of {len} bytes decoded"
            );
        }
        let mut longer = msg.clone();
        longer.push(0);
        assert!(decode(&longer).is_err());
    }
}

/// A value of each scalar type, within what PostgreSQL holds.
fn scalar(ty: &PgType) -> BoxedStrategy<Value> {
    const MIN_TS: i64 = -210_866_803_200_000_000;
    match ty {
        PgType::Int2 => any::<i16>().prop_map(|n| Value::Int(n.into())).boxed(),
        PgType::Int4 => any::<i32>().prop_map(|n| Value::Int(n.into())).boxed(),
        PgType::Int8 => any::<i64>().prop_map(Value::Int).boxed(),
        PgType::Numeric => "-?(0|[1-9][0-9]{0,20})(\\.[0-9]{1,10})?|NaN|Infinity|-Infinity"
            .prop_map(Value::Decimal)
            .boxed(),
        PgType::Float4 => any::<f32>()
            .prop_filter("NaN != NaN", |f| !f.is_nan())
            .prop_map(|f| Value::Float(f.into()))
            .boxed(),
        PgType::Float8 => any::<f64>()
            .prop_filter("NaN != NaN", |f| !f.is_nan())
            .prop_map(Value::Float)
            .boxed(),
        PgType::Bool => any::<bool>().prop_map(Value::Bool).boxed(),
        PgType::Text | PgType::Varchar | PgType::Bpchar | PgType::Name | PgType::Enum => {
            "[^\u{0}]{0,20}".prop_map(Value::Text).boxed()
        }
        PgType::Bytea => proptest::collection::vec(any::<u8>(), 0..20)
            .prop_map(Value::Bytes)
            .boxed(),
        PgType::Uuid => any::<[u8; 16]>().prop_map(Value::Uuid).boxed(),
        PgType::Json | PgType::Jsonb => r#"\{"[a-z]{0,5}": [0-9]{1,3}\}|\[\]|null|"[a-z ]*""#
            .prop_map(Value::Json)
            .boxed(),
        PgType::Timestamp => (MIN_TS..i64::MAX - 946_684_800_000_000)
            .prop_map(Value::LocalTimestamp)
            .boxed(),
        PgType::Timestamptz => (MIN_TS..i64::MAX - 946_684_800_000_000)
            .prop_map(Value::Timestamp)
            .boxed(),
        PgType::Date => (-2_440_588..2_145_042_906).prop_map(Value::Date).boxed(),
        PgType::Time => (0..=86_400_000_000i64).prop_map(Value::Time).boxed(),
        PgType::Array(_) => unreachable!("arrays are built from scalars"),
    }
}

/// Every supported scalar type.
fn scalars() -> Vec<PgType> {
    [
        16, 17, 19, 20, 21, 23, 25, 114, 700, 701, 1042, 1043, 1082, 1083, 1114, 1184, 1700, 2950,
        3802,
    ]
    .into_iter()
    .map(|oid| PgType::from_oid(oid).unwrap())
    .chain([PgType::Enum])
    .collect()
}

/// A value and its type: a scalar, or an array (1-2 dimensions) of one, as JSON made by
/// decoding the array literal that `to_sql_text` writes for the element values.
fn typed_value() -> impl Strategy<Value = (PgType, Value)> {
    proptest::sample::select(scalars()).prop_flat_map(|ty| {
        let elem = ty.clone();
        let one = scalar(&ty).prop_map(move |v| (ty.clone(), v));
        let arr = PgType::Array(Box::new(elem.clone()));
        let items = proptest::collection::vec(proptest::option::of(scalar(&elem)), 0..4);
        let array = (items, 1..=2usize).prop_map(move |(items, dims)| {
            let lit: Vec<String> = items
                .iter()
                .map(|i| match i {
                    None => "NULL".to_owned(),
                    Some(v) => {
                        let t = to_sql_text(v, &elem).unwrap().unwrap();
                        format!("\"{}\"", t.replace('\\', "\\\\").replace('"', "\\\""))
                    }
                })
                .collect();
            let mut text = format!("{{{}}}", lit.join(","));
            if dims == 2 && !items.is_empty() {
                text = format!("{{{text},{text}}}");
            }
            (arr.clone(), from_text(&text, &arr).unwrap())
        });
        prop_oneof![one, array]
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2048))]

    #[test]
    fn values_round_trip_through_sql_text((ty, v) in typed_value()) {
        let text = to_sql_text(&v, &ty).unwrap().unwrap();
        prop_assert_eq!(from_text(&text, &ty).unwrap(), v);
    }
}

#[test]
fn null_is_none_and_nan_round_trips() {
    for ty in scalars() {
        assert_eq!(to_sql_text(&Value::Null, &ty), Ok(None));
    }
    for ty in [PgType::Float4, PgType::Float8] {
        let text = to_sql_text(&Value::Float(f64::NAN), &ty).unwrap().unwrap();
        assert!(matches!(from_text(&text, &ty), Ok(Value::Float(f)) if f.is_nan()));
    }
}

proptest! {
    #[test]
    fn any_text_never_panics(text in "\\PC{0,24}|[-+0-9.:eE TZ{},\"\\\\NUL]{0,24}", pick in any::<prop::sample::Index>()) {
        let types = scalars();
        let ty = pick.get(&types).clone();
        let _ = from_text(&text, &ty);
        let _ = from_text(&text, &PgType::Array(Box::new(ty.clone())));
        let _ = to_sql_text(&Value::Json(text.clone()), &PgType::Array(Box::new(ty)));
    }
}
