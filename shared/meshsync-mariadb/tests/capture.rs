//! Start-up check, exact values of many types, the skip_replication flag.

use meshsync_core::{Cell, Op, Value};
use meshsync_mariadb::{
    MariaDbError, MariaDbSource,
    check::{self, CheckError},
    source::current_gtid_state,
    types::days_from_civil,
};

use crate::support::{config, drain_all, exec, next_rows, server, start_with};

const DAY_US: i64 = 86_400_000_000;

#[tokio::test]
async fn startup_check_refuses_statement_format() {
    let m = start_with(&["--binlog-format=STATEMENT"]).await;
    let mut c = m.connect("mysql").await.unwrap();
    let err = check::check(&mut c).await.unwrap_err();
    assert!(
        matches!(&err, MariaDbError::Check(CheckError::Format { found }) if found == "STATEMENT"),
        "{err:?}"
    );
    let msg = err.to_string();
    assert!(
        msg.contains("binlog_format is STATEMENT; meshsync needs ROW"),
        "{msg}"
    );
    assert!(msg.contains("binlog_format=ROW in my.cnf"), "{msg}");
    let cfg = config(&m, "mysql", &[], "");
    assert!(matches!(
        MariaDbSource::connect(&cfg).await,
        Err(MariaDbError::Check(CheckError::Format { .. }))
    ));
}

const TABLE: &str = "CREATE TABLE t (
    id INT PRIMARY KEY,
    ti TINYINT, tu TINYINT UNSIGNED, si SMALLINT, mi MEDIUMINT, mu MEDIUMINT UNSIGNED,
    bi BIGINT, bu BIGINT UNSIGNED,
    dc DECIMAL(10,3), f FLOAT, d DOUBLE,
    dt DATETIME(6), ts TIMESTAMP(6) NULL, da DATE, tm TIME(3),
    c CHAR(5), vc VARCHAR(20), tx TEXT, bl BLOB, bn BINARY(4), vb VARBINARY(10),
    j JSON, e ENUM('red','green','blue'), s SET('a','b','c'), bt BIT(10), u UUID, y YEAR,
    n INT NULL, l VARCHAR(10) CHARACTER SET latin1
) DEFAULT CHARSET = utf8mb4";

fn uuid(hex: &str) -> Value {
    let h: String = hex.chars().filter(|c| *c != '-').collect();
    let mut out = [0u8; 16];
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(&h[2 * i..2 * i + 2], 16).unwrap();
    }
    Value::Uuid(out)
}

fn expected_row1() -> Vec<(&'static str, Value)> {
    let day = i64::from(days_from_civil(2024, 3, 1) as i32);
    vec![
        ("id", Value::Int(1)),
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
            Value::LocalTimestamp(day * DAY_US + (12 * 3600 + 34 * 60 + 56) * 1_000_000 + 789_012),
        ),
        ("ts", Value::Timestamp(1_709_287_200_500_000)),
        ("da", Value::Date(10_956)),
        (
            "tm",
            Value::Time((23 * 3600 + 59 * 60 + 58) * 1_000_000 + 125_000),
        ),
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

#[tokio::test]
async fn captures_inserts_updates_deletes_with_exact_values() {
    let m = server("db").await;
    let mut c = m.connect("db").await.unwrap();
    exec(&mut c, TABLE).await;
    exec(&mut c, "CREATE TABLE other (id INT PRIMARY KEY)").await;
    let resume = current_gtid_state(&mut c).await.unwrap();
    let mut src = MariaDbSource::connect(&config(&m, "db", &["t"], &resume))
        .await
        .unwrap();
    exec(&mut c, "SET time_zone = '+02:00'").await;
    exec(
        &mut c,
        "INSERT INTO t VALUES (1, -128, 255, -32768, -8388608, 16777215,
            -9223372036854775808, 18446744073709551615, -1234.5, 1.5, -2.25e300,
            '2024-03-01 12:34:56.789012', '2024-03-01 12:00:00.5', '1999-12-31', '23:59:58.125',
            'ab', 'héllo ☃', 'long text', x'0001ff', x'0102', x'0908',
            '{\"a\": [1, 2]}', 'green', 'c,a', b'1000000101',
            '6ccd780c-baba-1026-9564-5b8c656024db', 2024, NULL, 'café €')",
    )
    .await;
    exec(&mut c, "INSERT INTO other VALUES (1)").await;
    exec(
        &mut c,
        "INSERT INTO t (id, u) VALUES (2, '123e4567-e89b-42d3-a456-426614174000'),
                                       (3, 'ffffffff-ffff-ffff-ffff-ffffffffffff')",
    )
    .await;
    exec(&mut c, "UPDATE t SET vc = 'changed' WHERE id = 1").await;
    exec(&mut c, "UPDATE t SET id = 20 WHERE id = 2").await;
    exec(&mut c, "DELETE FROM t WHERE id = 3").await;

    let ins = next_rows(&mut src).await;
    assert!(!ins.from_apply);
    assert_eq!(ins.gtid.split('-').count(), 3);
    assert!(ins.commit_unix_micros > 1_700_000_000_000_000);
    assert_eq!(ins.rows.len(), 1);
    let row = &ins.rows[0];
    assert_eq!(row.op, Op::Insert);
    assert_eq!(row.key, vec![("id".to_owned(), Value::Int(1))]);
    let want: Vec<(String, Cell)> = expected_row1()
        .into_iter()
        .map(|(n, v)| (n.to_owned(), Cell::Value(v)))
        .collect();
    for (got, want) in row.columns.iter().zip(&want) {
        assert_eq!(got, want);
    }
    assert_eq!(row.columns.len(), want.len());

    // `other` is not configured: its transaction has no rows and is skipped by next_rows.
    let two = next_rows(&mut src).await;
    assert_eq!(two.rows.len(), 2);
    let u = |r: &meshsync_mariadb::RowImage| r.columns.iter().find(|(n, _)| n == "u").cloned();
    assert_eq!(
        u(&two.rows[0]).unwrap().1,
        Cell::Value(uuid("123e4567-e89b-42d3-a456-426614174000"))
    );
    assert_eq!(
        u(&two.rows[1]).unwrap().1,
        Cell::Value(uuid("ffffffff-ffff-ffff-ffff-ffffffffffff"))
    );

    let upd = next_rows(&mut src).await;
    let r = &upd.rows[0];
    assert_eq!((r.op, r.old_key.clone()), (Op::Update, None));
    for (name, cell) in &r.columns {
        if name == "vc" {
            assert_eq!(cell, &Cell::Value(Value::Text("changed".into())));
        } else {
            assert!(matches!(cell, Cell::Kept(_)), "{name}: {cell:?}");
        }
    }
    // The before-image of every written column, and only of those.
    assert_eq!(
        r.previous,
        vec![("vc".to_owned(), Value::Text("héllo ☃".into()))]
    );
    assert!(
        ins.rows[0].previous.is_empty(),
        "an insert has no before-image"
    );
    let moved = next_rows(&mut src).await;
    let r = &moved.rows[0];
    assert_eq!(r.key, vec![("id".to_owned(), Value::Int(20))]);
    assert_eq!(r.old_key, Some(vec![("id".to_owned(), Value::Int(2))]));
    assert_eq!(r.columns[0], ("id".to_owned(), Cell::Value(Value::Int(20))));
    assert_eq!(r.previous, vec![("id".to_owned(), Value::Int(2))]);

    let del = next_rows(&mut src).await;
    let r = &del.rows[0];
    assert_eq!((r.op, r.columns.len()), (Op::Delete, 0));
    assert_eq!(r.key, vec![("id".to_owned(), Value::Int(3))]);
    assert!(
        del.gtid_state_after
            .ends_with(&del.gtid.split('-').nth(2).unwrap().to_string())
    );

    // A TIME beyond one day has no Value: a typed error naming table and column.
    exec(&mut c, "INSERT INTO t (id, tm) VALUES (4, '25:00:00')").await;
    let err = loop {
        if let Err(e) = src.next_event().await {
            break e;
        }
    };
    assert!(
        matches!(&err, MariaDbError::Type { column, .. } if column == "tm"),
        "{err:?}"
    );
}

#[tokio::test]
async fn skip_replication_sessions_are_from_apply() {
    let m = server("db").await;
    let mut c = m.connect("db").await.unwrap();
    exec(
        &mut c,
        "CREATE TABLE t (id INT PRIMARY KEY, v TEXT) DEFAULT CHARSET = utf8mb4",
    )
    .await;
    let resume = current_gtid_state(&mut c).await.unwrap();
    let mut src = MariaDbSource::connect(&config(&m, "db", &["t"], &resume))
        .await
        .unwrap();
    let mut apply = m.connect("db").await.unwrap();
    exec(&mut apply, "SET SESSION skip_replication = 1").await;
    exec(&mut apply, "INSERT INTO t VALUES (1, 'from apply')").await;
    exec(&mut c, "INSERT INTO t VALUES (2, 'local')").await;
    exec(
        &mut apply,
        "BEGIN; UPDATE t SET v = 'x' WHERE id = 1; COMMIT",
    )
    .await;
    let txns = drain_all(&mut src).await;
    let flags: Vec<(bool, usize)> = txns.iter().map(|t| (t.from_apply, t.rows.len())).collect();
    // Flagged transactions are known as apply's, their rows not decoded.
    assert_eq!(flags, [(true, 0), (false, 1), (true, 0)]);
}

/// `previous` of an update: the before-image of each written column (NULL included), in
/// table order, and nothing for columns the update kept.
#[tokio::test]
async fn updates_carry_the_before_image_of_written_columns() {
    let m = server("db").await;
    let mut c = m.connect("db").await.unwrap();
    exec(
        &mut c,
        "CREATE TABLE t (id INT PRIMARY KEY, stock INT, note TEXT, n BIGINT NULL)",
    )
    .await;
    let resume = current_gtid_state(&mut c).await.unwrap();
    let mut src = MariaDbSource::connect(&config(&m, "db", &["t"], &resume))
        .await
        .unwrap();
    exec(&mut c, "INSERT INTO t VALUES (1, 10, 'x', NULL)").await;
    exec(&mut c, "UPDATE t SET stock = stock - 3, n = 7 WHERE id = 1").await;
    let ins = next_rows(&mut src).await;
    assert!(ins.rows[0].previous.is_empty());
    let upd = next_rows(&mut src).await;
    let r = &upd.rows[0];
    assert_eq!(
        r.previous,
        vec![
            ("stock".to_owned(), Value::Int(10)),
            ("n".to_owned(), Value::Null)
        ]
    );
    assert_eq!(
        r.columns[1],
        ("stock".to_owned(), Cell::Value(Value::Int(7)))
    );
    assert_eq!(
        r.columns[2],
        ("note".to_owned(), Cell::Kept(Value::Text("x".into())))
    );
}
