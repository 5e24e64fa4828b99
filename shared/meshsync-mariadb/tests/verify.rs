//! `verify` digests: a MariaDB table and a PostgreSQL table holding the same values of the
//! common types (each engine with its own spellings, zones and column types) digest alike;
//! one changed row makes them differ, and the drill-down names its key.

use std::collections::BTreeSet;

use meshsync_core::{
    TableName, Value,
    digest::{canonical_key, differing_buckets},
};
use meshsync_mariadb::{catalog, verify};
use meshsync_testkit::Postgres;

use crate::support::{exec, server};

const BUCKETS: u32 = 8;
const ROWS: u64 = 40;

/// Every column type both engines carry with the same `Value` kind. Times are written in
/// a +05:00 session: TIMESTAMP is an instant, the digest must not see the zone. UUIDs are
/// version 4 (MariaDB refuses some other bit patterns) and stored in MariaDB's swapped
/// order.
const MARIADB: &str = r#"
SET time_zone = '+05:00';
CREATE TABLE t (
    id INT UNSIGNED PRIMARY KEY, big BIGINT UNSIGNED, small SMALLINT, bits BIT(10),
    amount DECIMAL(12,3), f FLOAT, d DOUBLE, name VARCHAR(40),
    l VARCHAR(20) CHARACTER SET latin1, raw VARBINARY(20), j JSON, dt DATETIME(6),
    ts TIMESTAMP(6) NULL, day DATE, tm TIME(6), u UUID, e ENUM('red', 'green')
) DEFAULT CHARSET = utf8mb4;
INSERT INTO t
WITH RECURSIVE g(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM g WHERE n < 40)
SELECT n, n * 1000000007, -n, n * 7,
       IF(n % 7 = 0, NULL, n * 1.5), n / 10e0, n / 10e0,
       IF(n % 5 = 0, NULL, CONCAT('row ', n)),
       'café €', UNHEX(LPAD(HEX(n), 4, '0')),
       CONCAT('{"a": [1, "x"], "k": {"z": 1, "y": 2.0}, "b": ', n, '}'),
       TIMESTAMPADD(MICROSECOND, n * 3601500000, '2024-02-29 12:00:00'),
       TIMESTAMPADD(MICROSECOND, n * 86400250000, '2024-01-01 05:00:00'),
       DATE_ADD('2024-02-29', INTERVAL n DAY),
       SEC_TO_TIME(n * 60.125),
       INSERT(INSERT(MD5(n), 13, 1, '4'), 17, 1, '8'),
       IF(n % 2 = 0, 'red', 'green')
FROM g;
"#;

/// The same rows in PostgreSQL: its own types (int8, numeric with another scale, jsonb with
/// another key order, timestamptz), columns in another order.
const POSTGRES: &str = r#"
CREATE TABLE public.t (
    e text, tm time, day date, ts timestamptz, dt timestamp(6), j jsonb, raw bytea,
    l varchar(20), name text, d float8, f float4, amount numeric(12, 2), bits int4,
    small int2, big int8, u uuid, id int8 PRIMARY KEY
);
INSERT INTO public.t (id, big, small, bits, amount, f, d, name, l, raw, j, dt, ts, day, tm, u, e)
SELECT g, g::int8 * 1000000007, -g, g * 7,
       CASE WHEN g % 7 = 0 THEN NULL ELSE g * 1.5 END,
       (g / 10.0::float8)::float4, g / 10.0::float8,
       CASE WHEN g % 5 = 0 THEN NULL ELSE 'row ' || g END,
       'café €', decode(lpad(to_hex(g), 4, '0'), 'hex'),
       format('{"b": %s, "k": {"y": 2, "z": 1}, "a": [1, "x"]}', g)::jsonb,
       '2024-02-29 12:00:00'::timestamp + g * interval '1 hour 1.5 second',
       '2024-01-01 00:00:00+00'::timestamptz + g * interval '24 hours 0.25 second',
       '2024-02-29'::date + g,
       '00:00:00'::time + g * interval '1 minute 0.125 second',
       overlay(overlay(md5(g::text) placing '4' from 13) placing '8' from 17)::uuid,
       CASE WHEN g % 2 = 0 THEN 'red' ELSE 'green' END
FROM generate_series(1, 40) g ORDER BY g DESC;
"#;

/// Keys present on one side only or with different row digests, from two sorted listings.
fn diff(a: &[(Vec<Value>, u64)], b: &[(Vec<Value>, u64)]) -> BTreeSet<Vec<u8>> {
    let side = |rows: &[(Vec<Value>, u64)]| -> BTreeSet<(Vec<u8>, u64)> {
        rows.iter().map(|(k, d)| (canonical_key(k), *d)).collect()
    };
    let (a, b) = (side(a), side(b));
    a.symmetric_difference(&b).map(|(k, _)| k.clone()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mariadb_and_a_postgresql_table_with_the_same_rows_digest_alike() {
    let (m, pg) = tokio::join!(server("app"), Postgres::start());
    let pg = pg.unwrap();
    let mut my = m.connect("app").await.unwrap();
    exec(&mut my, MARIADB).await;
    let my_info = catalog::load_one(&mut my, &TableName::new("app", "t"))
        .await
        .unwrap();
    pg.create_database("app").await.unwrap();
    let mut pc = pg.connect("app").await.unwrap();
    sqlx::raw_sql(POSTGRES).execute(&mut pc).await.unwrap();
    let pg_table = TableName::new("public", "t");
    let pg_info = meshsync_pg::catalog::load(&mut pc, std::slice::from_ref(&pg_table))
        .await
        .unwrap()
        .remove(&pg_table)
        .unwrap();

    // The caller's session must not change what is hashed.
    exec(
        &mut my,
        "SET time_zone = '-08:00', sql_mode = 'PAD_CHAR_TO_FULL_LENGTH'",
    )
    .await;
    let dm = verify::digest_table(&mut my, &my_info, BUCKETS)
        .await
        .unwrap();
    let dp = meshsync_pg::verify::digest_table(&mut pc, &pg_info, BUCKETS)
        .await
        .unwrap();
    assert_eq!(dm.rows(), ROWS);
    assert_eq!(differing_buckets(&dm, &dp), Vec::<u32>::new());
    assert_eq!(dm, dp);

    // One changed row: its bucket differs, and the drill-down names its key.
    exec(&mut my, "UPDATE t SET tm = '00:00:01' WHERE id = 17").await;
    let dm = verify::digest_table(&mut my, &my_info, BUCKETS)
        .await
        .unwrap();
    let differ = differing_buckets(&dm, &dp);
    assert_eq!(differ.len(), 1, "{differ:?}");
    let rm = verify::rows_in_buckets(&mut my, &my_info, BUCKETS, &differ)
        .await
        .unwrap();
    let rp = meshsync_pg::verify::rows_in_buckets(&mut pc, &pg_info, BUCKETS, &differ)
        .await
        .unwrap();
    assert_eq!(rm.len(), rp.len());
    assert!(
        rm.windows(2)
            .all(|w| canonical_key(&w[0].0) < canonical_key(&w[1].0)),
        "sorted by canonical key"
    );
    let want: BTreeSet<Vec<u8>> = [canonical_key(&[Value::Int(17)])].into();
    assert_eq!(diff(&rm, &rp), want);
    let all: Vec<u32> = (0..BUCKETS).collect();
    let everything = verify::rows_in_buckets(&mut my, &my_info, BUCKETS, &all)
        .await
        .unwrap();
    assert_eq!(everything.len() as u64, ROWS);
}

/// What verify reads is what capture gives: a value capture refuses (a zero date) is an
/// error naming table and column, not a silently different digest.
#[tokio::test]
async fn values_capture_cannot_carry_are_errors_naming_the_column() {
    let m = server("app").await;
    let mut c = m.connect("app").await.unwrap();
    exec(
        &mut c,
        "SET sql_mode = '';
         CREATE TABLE z (id INT PRIMARY KEY, day DATE);
         INSERT INTO z VALUES (1, '0000-00-00')",
    )
    .await;
    let info = catalog::load_one(&mut c, &TableName::new("app", "z"))
        .await
        .unwrap();
    let err = verify::digest_table(&mut c, &info, 4).await.unwrap_err();
    assert!(
        matches!(&err, meshsync_mariadb::MariaDbError::Type { column, .. } if column == "day"),
        "{err:?}"
    );
}

/// Verify reads each type as capture gives it: a table of every supported type, digested
/// from its captured inserts and by `verify`, gives the same digest.
#[tokio::test]
async fn verify_reads_every_type_as_capture_gives_it() {
    let m = server("db").await;
    let mut c = m.connect("db").await.unwrap();
    exec(
        &mut c,
        "CREATE TABLE t (
            id INT PRIMARY KEY, ti TINYINT, tu TINYINT UNSIGNED, mi MEDIUMINT,
            bu BIGINT UNSIGNED, dc DECIMAL(10,3), f FLOAT, d DOUBLE, dt DATETIME(3),
            ts TIMESTAMP(6) NULL, da DATE, tm TIME(3), c CHAR(5), vc VARCHAR(20), bl BLOB,
            bn BINARY(4), j JSON, e ENUM('red','green'), s SET('a','b','c'), bt BIT(10),
            u UUID, y YEAR, l VARCHAR(10) CHARACTER SET latin1
        ) DEFAULT CHARSET = utf8mb4",
    )
    .await;
    let resume = meshsync_mariadb::source::current_gtid_state(&mut c)
        .await
        .unwrap();
    let mut src = meshsync_mariadb::MariaDbSource::connect(&crate::support::config(
        &m,
        "db",
        &["t"],
        &resume,
    ))
    .await
    .unwrap();
    exec(
        &mut c,
        "SET time_zone = '+03:00';
         INSERT INTO t VALUES
           (1, -128, 255, -8388608, 18446744073709551615, -1234.5, 0.1, -2.25e300,
            '2024-03-01 12:34:56.789', '2024-03-01 12:00:00.5', '1999-12-31', '23:59:58.125',
            'ab', 'héllo ☃', x'0001ff', x'0102', '{\"b\": 1, \"a\": [1.0]}', 'green', 'c,a',
            b'1000000101', '6ccd780c-baba-1026-9564-5b8c656024db', 0, 'café €'),
           (2, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
            NULL, NULL, NULL, NULL, '', NULL, NULL, 2155, NULL)",
    )
    .await;
    let txn = crate::support::next_rows(&mut src).await;
    let info = catalog::load_one(&mut c, &TableName::new("db", "t"))
        .await
        .unwrap();
    let mut captured = meshsync_core::digest::TableDigest::new(BUCKETS);
    for row in &txn.rows {
        let key: Vec<Value> = row.key.iter().map(|(_, v)| v.clone()).collect();
        let cols: Vec<(&str, &Value)> = row
            .columns
            .iter()
            .map(|(n, cell)| (n.as_str(), cell.value().unwrap()))
            .collect();
        captured.add(&key, meshsync_core::digest::row_digest(&key, &cols));
    }
    assert_eq!(captured.rows(), 2);
    let read = verify::digest_table(&mut c, &info, BUCKETS).await.unwrap();
    assert_eq!(read, captured);
}
