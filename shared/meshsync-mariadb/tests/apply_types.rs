//! Every type of the crate's type table written by `apply::write_rows` reads back equal, by
//! capture and by SELECT; apply sessions are flagged for capture; statements are strict and
//! UTC whatever the session says.

use meshsync_core::{Cell, Value};
use meshsync_mariadb::{
    Flavour, MariaDbSource,
    apply::{RowWrite, open_apply_session, write_rows},
    source::current_gtid_state,
    types::days_from_civil,
};
use sqlx::Connection;

use crate::support::{config, drain, drain_all, exec, rows, scalar, server, table, up, write};

const DAY_US: i64 = 86_400_000_000;

/// Every supported type, and `req`: NOT NULL without default, so writes that leave it out
/// take the update-only path.
const TABLE: &str = "CREATE TABLE t (
    id INT PRIMARY KEY,
    ti TINYINT, tu TINYINT UNSIGNED, si SMALLINT, mi MEDIUMINT, mu MEDIUMINT UNSIGNED,
    bi BIGINT, bu BIGINT UNSIGNED,
    dc DECIMAL(10,3), f FLOAT, d DOUBLE,
    dt DATETIME(6), ts TIMESTAMP(6) NULL, da DATE, tm TIME(3),
    c CHAR(5), vc VARCHAR(20), tx TEXT, bl BLOB, bn BINARY(4), vb VARBINARY(10),
    j JSON, e ENUM('red','green','blue'), s SET('a','b','c'), bt BIT(10), u UUID, y YEAR,
    n INT NULL, l VARCHAR(10) CHARACTER SET latin1, req INT NOT NULL
) DEFAULT CHARSET = utf8mb4";

fn uuid(hex: &str) -> Value {
    let h: String = hex.chars().filter(|c| *c != '-').collect();
    let mut out = [0u8; 16];
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(&h[2 * i..2 * i + 2], 16).unwrap();
    }
    Value::Uuid(out)
}

fn micros(y: i64, mo: u32, d: u32, secs: i64, us: i64) -> i64 {
    days_from_civil(y, mo, d) * DAY_US + secs * 1_000_000 + us
}

/// Values in the form capture gives them back (BINARY padded, DECIMAL at full scale).
fn low() -> Vec<(&'static str, Value)> {
    vec![
        ("ti", Value::Int(-128)),
        ("tu", Value::Int(255)),
        ("si", Value::Int(-32768)),
        ("mi", Value::Int(-8_388_608)),
        ("mu", Value::Int(16_777_215)),
        ("bi", Value::Int(i64::MIN)),
        ("bu", Value::UInt(u64::MAX)),
        ("dc", Value::Decimal("-1234.500".into())),
        ("f", Value::Float(1.5)),
        ("d", Value::Float(-2.25e300)),
        (
            "dt",
            Value::LocalTimestamp(micros(2024, 3, 1, 45_296, 789_012)),
        ),
        ("ts", Value::Timestamp(1_709_287_200_500_000)),
        ("da", Value::Date(10_956)),
        ("tm", Value::Time(86_398_125_000)),
        ("c", Value::Text("ab".into())),
        ("vc", Value::Text("héllo ☃".into())),
        ("tx", Value::Text("long text".into())),
        ("bl", Value::Bytes(vec![0, 1, 255])),
        ("bn", Value::Bytes(vec![1, 2, 0, 0])),
        ("vb", Value::Bytes(vec![9, 8])),
        ("j", Value::Json(r#"{"a": [1, 2]}"#.into())),
        ("e", Value::Text("green".into())),
        ("s", Value::Text("a,c".into())),
        ("bt", Value::Int(0b10_0000_0101)),
        ("u", uuid("6ccd780c-baba-1026-9564-5b8c656024db")),
        ("y", Value::Int(2024)),
        ("n", Value::Null),
        ("l", Value::Text("café €".into())),
    ]
}

/// The other ends of the ranges.
fn high() -> Vec<(&'static str, Value)> {
    vec![
        ("ti", Value::Int(127)),
        ("tu", Value::Int(0)),
        ("si", Value::Int(32767)),
        ("mi", Value::Int(8_388_607)),
        ("mu", Value::Int(0)),
        ("bi", Value::Int(i64::MAX)),
        ("bu", Value::Int(0)),
        ("dc", Value::Decimal("9999999.999".into())),
        ("f", Value::Float(-0.25)),
        ("d", Value::Float(1e-300)),
        (
            "dt",
            Value::LocalTimestamp(micros(9999, 12, 31, 86_399, 999_999)),
        ),
        ("ts", Value::Timestamp(2_147_483_647_999_999)),
        ("da", Value::Date(days_from_civil(1, 1, 1) as i32)),
        ("tm", Value::Time(0)),
        ("c", Value::Text(String::new())),
        ("vc", Value::Text("x".repeat(20))),
        ("tx", Value::Text(String::new())),
        ("bl", Value::Bytes(Vec::new())),
        ("bn", Value::Bytes(vec![0xff; 4])),
        ("vb", Value::Bytes(vec![0; 10])),
        ("j", Value::Json("[]".into())),
        ("e", Value::Text("blue".into())),
        ("s", Value::Text(String::new())),
        ("bt", Value::Int(1023)),
        ("u", uuid("123e4567-e89b-42d3-a456-426614174000")),
        ("y", Value::Int(2155)),
        ("n", Value::Int(-1)),
        ("l", Value::Text("ÿ".into())),
    ]
}

fn columns(vals: &[(&'static str, Value)], req: Option<i64>) -> Vec<(String, Value)> {
    let mut out: Vec<(String, Value)> = vals
        .iter()
        .map(|(n, v)| ((*n).to_owned(), v.clone()))
        .collect();
    out.extend(req.map(|r| ("req".to_owned(), Value::Int(r))));
    out
}

/// A captured row's values (written or kept), without `id` and `req`.
fn values_of(r: &meshsync_mariadb::RowImage) -> Vec<(String, Value)> {
    r.columns
        .iter()
        .filter(|(n, _)| n != "id" && n != "req")
        .map(|(n, c)| match c {
            Cell::Value(v) | Cell::Kept(v) => (n.clone(), v.clone()),
            Cell::Unchanged => panic!("{n} missing from the row image"),
        })
        .collect()
}

#[tokio::test]
async fn every_type_round_trips_through_insert_and_update() {
    let m = server("app").await;
    let mut c = open_apply_session(&m.url("app")).await.unwrap();
    // Capture skips the rows of flagged (apply) transactions; unflagged, it reads them back.
    exec(&mut c, "SET SESSION skip_replication = 0").await;
    let info = table(&mut c, "t", TABLE).await;
    let start = current_gtid_state(&mut c).await.unwrap();
    let insert = [
        RowWrite::Upsert {
            key: vec![Value::Int(1)],
            columns: columns(&low(), Some(1)),
        },
        RowWrite::Upsert {
            key: vec![Value::Int(2)],
            columns: columns(&high(), Some(2)),
        },
    ];
    assert_eq!(write(&mut c, &info, &insert).await, []);
    // Without `req` these are update-only: row 1 takes the high values, row 2 the low ones.
    let update = [
        RowWrite::Upsert {
            key: vec![Value::Int(1)],
            columns: columns(&high(), None),
        },
        RowWrite::Upsert {
            key: vec![Value::Int(2)],
            columns: columns(&low(), None),
        },
    ];

    // Read back by SELECT first (a session in another zone), then swap.
    let mut other = m.connect("app").await.unwrap();
    exec(&mut other, "SET time_zone = '+02:00'").await;
    let got = rows(
        &mut other,
        "SELECT CAST(UNIX_TIMESTAMP(ts) AS CHAR), CAST(dt AS CHAR), HEX(bl), HEX(bn),
                CAST(bt + 0 AS CHAR), CAST(bu AS CHAR), CAST(u AS CHAR), l, CAST(dc AS CHAR),
                CAST(f AS CHAR), CAST(tm AS CHAR), s, j
         FROM t ORDER BY id",
    )
    .await;
    let want = |v: &[&str]| v.iter().map(|s| Some((*s).to_owned())).collect::<Vec<_>>();
    assert_eq!(
        got,
        [
            want(&[
                "1709287200.500000",
                "2024-03-01 12:34:56.789012",
                "0001FF",
                "01020000",
                "517",
                "18446744073709551615",
                "6ccd780c-baba-1026-9564-5b8c656024db",
                "café €",
                "-1234.500",
                "1.5",
                "23:59:58.125",
                "a,c",
                r#"{"a": [1, 2]}"#,
            ]),
            want(&[
                "2147483647.999999",
                "9999-12-31 23:59:59.999999",
                "",
                "FFFFFFFF",
                "1023",
                "0",
                "123e4567-e89b-42d3-a456-426614174000",
                "ÿ",
                "9999999.999",
                "-0.25",
                "00:00:00.000",
                "",
                "[]",
            ]),
        ]
    );
    assert_eq!(write(&mut c, &info, &update).await, []);
    assert_eq!(
        scalar(
            &mut c,
            "SELECT CAST(GROUP_CONCAT(req ORDER BY id) AS CHAR) FROM t"
        )
        .await,
        Some("1,2".into()),
        "update-only writes keep req"
    );

    // Read back by capture: exact neutral values, both directions of every type.
    let mut src = MariaDbSource::connect(&config(&m, "app", &["t"], &start))
        .await
        .unwrap();
    let txns = drain(&mut src).await;
    assert_eq!(txns.len(), 2);
    assert!(txns.iter().all(|t| !t.from_apply));
    let named = |vals: Vec<(&'static str, Value)>| columns(&vals, None);
    let ins = &txns[0].rows;
    assert_eq!(values_of(&ins[0]), named(low()));
    assert_eq!(values_of(&ins[1]), named(high()));
    let upd = &txns[1].rows;
    assert_eq!(upd[0].key, [("id".to_owned(), Value::Int(1))]);
    assert_eq!(values_of(&upd[0]), named(high()));
    assert_eq!(values_of(&upd[1]), named(low()));
}

#[tokio::test]
async fn apply_sessions_are_flagged_and_local_writes_are_not() {
    let m = server("app").await;
    let mut apply = open_apply_session(&m.url("app")).await.unwrap();
    let session = rows(
        &mut apply,
        "SELECT CAST(@@skip_replication + 0 AS CHAR), @@time_zone, @@sql_mode, @@tx_isolation",
    )
    .await;
    let s = &session[0];
    assert_eq!(s[0].as_deref(), Some("1"));
    assert_eq!(s[1].as_deref(), Some("+00:00"));
    assert!(
        s[2].as_deref().unwrap().contains("STRICT_ALL_TABLES"),
        "{s:?}"
    );
    assert_eq!(s[3].as_deref(), Some("READ-COMMITTED"));

    let info = table(
        &mut apply,
        "t",
        "CREATE TABLE t (id INT PRIMARY KEY, v TEXT)",
    )
    .await;
    let mut local = m.connect("app").await.unwrap();
    let start = current_gtid_state(&mut local).await.unwrap();
    let mut src = MariaDbSource::connect(&config(&m, "app", &["t"], &start))
        .await
        .unwrap();
    let v = |s: &str| [("v", Value::Text(s.into()))];
    write(
        &mut apply,
        &info,
        &[up(1, &v("from apply")), up(2, &v("too"))],
    )
    .await;
    exec(&mut local, "INSERT INTO t VALUES (3, 'local')").await;
    write(
        &mut apply,
        &info,
        &[
            up(3, &v("changed")),
            RowWrite::Delete {
                key: vec![Value::Int(2)],
            },
        ],
    )
    .await;
    let flags: Vec<(bool, usize)> = drain_all(&mut src)
        .await
        .iter()
        .map(|t| (t.from_apply, t.rows.len()))
        .collect();
    // Apply's transactions are flagged, and their rows not even decoded.
    assert_eq!(flags, [(true, 0), (false, 1), (true, 0)]);
}

#[tokio::test]
async fn statements_are_strict_and_utc_in_any_session() {
    let m = server("app").await;
    let mut c = m.connect("app").await.unwrap();
    exec(&mut c, "SET SESSION time_zone = '+05:00', sql_mode = ''").await;
    let info = table(
        &mut c,
        "t",
        "CREATE TABLE t (id INT PRIMARY KEY, ts TIMESTAMP(6) NULL, name VARCHAR(10))",
    )
    .await;
    // The table shrinks after the catalog was read: to_sql lets 8 characters through, and
    // only a strict statement stops MariaDB from cutting them to 2.
    exec(&mut c, "ALTER TABLE t MODIFY name VARCHAR(2)").await;
    let mut tx = c.begin().await.unwrap();
    let writes = [
        up(1, &[("ts", Value::Timestamp(1_700_000_000_000_000))]),
        up(2, &[("name", Value::Text("S3CRETXX".into()))]),
    ];
    let refused = write_rows(&mut tx, Flavour::MariaDb, &info, &writes)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(refused.len(), 1, "{refused:?}");
    assert_eq!(refused[0].0, 1);
    assert!(
        refused[0].1.contains("error 1406") && refused[0].1.contains("\"name\""),
        "{}",
        refused[0].1
    );
    assert!(!refused[0].1.contains("S3CRET"));
    assert_eq!(
        scalar(
            &mut c,
            "SELECT CAST(UNIX_TIMESTAMP(ts) AS CHAR) FROM t WHERE id = 1"
        )
        .await,
        Some("1700000000.000000".into())
    );
    assert_eq!(
        scalar(&mut c, "SELECT CAST(COUNT(*) AS CHAR) FROM t").await,
        Some("1".into())
    );
}
