//! `verify` digests on a real PostgreSQL: equal data in differently shaped tables and
//! spellings digests alike; a changed and a deleted row are found by drilling into buckets.

use std::collections::BTreeSet;

use meshsync_core::{TableName, Value, digest::canonical_key, digest::differing_buckets};
use meshsync_pg::{
    catalog::{TableInfo, load},
    verify::{digest_table, rows_in_buckets},
};
use meshsync_testkit::Postgres;
use sqlx::PgConnection;

const BUCKETS: u32 = 16;
const ROWS: i64 = 60;

/// Same logical rows as `B_SETUP`, columns in table order, ascending inserts, and other
/// spellings: numeric scale 2, timestamps in UTC.
const A_SETUP: &str = r#"
CREATE TABLE public.t (
    id int8 PRIMARY KEY, a text, n numeric, j jsonb, ts timestamptz, b bytea,
    f bool, c char(4), arr int4[], d float8, day date
);
INSERT INTO public.t
SELECT g,
       CASE WHEN g % 5 = 0 THEN NULL ELSE 'row ' || g END,
       CASE WHEN g % 7 = 0 THEN NULL ELSE (g * 1.5)::numeric(12, 2) END,
       CASE WHEN g % 6 = 0 THEN NULL ELSE format('{"b": %s, "a": [1, "x"], "k": {"z": 1, "y": 2}}', g)::jsonb END,
       '2024-01-01 00:00:00+00'::timestamptz + g * interval '1 hour 1 second',
       CASE WHEN g % 4 = 0 THEN NULL ELSE decode(lpad(to_hex(g), 4, '0'), 'hex') END,
       g % 2 = 0,
       CASE WHEN g % 3 = 0 THEN NULL ELSE left('c' || g, 4)::char(4) END,
       ARRAY[g::int4, NULL, 3],
       CASE WHEN g % 9 = 0 THEN -0.0::float8 ELSE g / 3.0::float8 END,
       '2024-02-29'::date + g::int
FROM generate_series(1, 60) g ORDER BY g;
"#;

/// Other column order, descending inserts, `numeric` without scale, JSON keys in another
/// order, timestamps written in +02:00.
const B_SETUP: &str = r#"
CREATE TABLE public.t (
    d float8, n numeric, c char(4), arr int4[], id int8 PRIMARY KEY, day date, j jsonb,
    f bool, b bytea, ts timestamptz, a text
);
INSERT INTO public.t (id, a, n, j, ts, b, f, c, arr, d, day)
SELECT g,
       CASE WHEN g % 5 = 0 THEN NULL ELSE 'row ' || g END,
       CASE WHEN g % 7 = 0 THEN NULL ELSE (g * 1.5)::numeric END,
       CASE WHEN g % 6 = 0 THEN NULL ELSE format('{"k": {"y": 2, "z": 1}, "a": [1, "x"], "b": %s}', g)::jsonb END,
       '2024-01-01 02:00:00+02'::timestamptz + g * interval '1 hour 1 second',
       CASE WHEN g % 4 = 0 THEN NULL ELSE decode(lpad(to_hex(g), 4, '0'), 'hex') END,
       g % 2 = 0,
       CASE WHEN g % 3 = 0 THEN NULL ELSE left('c' || g, 4)::char(4) END,
       ARRAY[g::int4, NULL, 3],
       CASE WHEN g % 9 = 0 THEN 0.0::float8 ELSE g / 3.0::float8 END,
       '2024-02-29'::date + g::int
FROM generate_series(1, 60) g ORDER BY g DESC;
"#;

async fn setup(pg: &Postgres, db: &str, sql: &'static str) -> (PgConnection, TableInfo) {
    pg.create_database(db).await.unwrap();
    let mut conn = pg.connect(db).await.unwrap();
    sqlx::raw_sql(sql).execute(&mut conn).await.unwrap();
    let table = TableName::new("public", "t");
    let mut infos = load(&mut conn, std::slice::from_ref(&table)).await.unwrap();
    let info = infos.remove(&table).unwrap();
    (conn, info)
}

/// Keys present on one side only or with different row digests, from two sorted listings.
fn diff(a: &[(Vec<Value>, u64)], b: &[(Vec<Value>, u64)]) -> BTreeSet<Vec<u8>> {
    let side = |rows: &[(Vec<Value>, u64)]| -> BTreeSet<(Vec<u8>, u64)> {
        rows.iter().map(|(k, d)| (canonical_key(k), *d)).collect()
    };
    let (a, b) = (side(a), side(b));
    a.symmetric_difference(&b).map(|(k, _)| k.clone()).collect()
}

fn sorted(rows: &[(Vec<Value>, u64)]) -> bool {
    rows.windows(2)
        .all(|w| canonical_key(&w[0].0) < canonical_key(&w[1].0))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn equal_tables_digest_alike_and_differences_are_found() {
    let pg = Postgres::start().await.unwrap();
    let (mut a, info_a) = setup(&pg, "peer_a", A_SETUP).await;
    let (mut b, info_b) = setup(&pg, "peer_b", B_SETUP).await;
    assert_ne!(info_a.schema, info_b.schema, "column orders differ");

    // What `verify` relies on: `concat` prints with the output function, as pgoutput does.
    let (bp, bo): (String, String) = sqlx::query_as("SELECT concat('ab'::char(4)), concat(true)")
        .fetch_one(&mut a)
        .await
        .unwrap();
    assert_eq!((bp.as_str(), bo.as_str()), ("ab  ", "t"));

    // The caller's session settings must not leak into the text that is hashed.
    sqlx::raw_sql(
        "SET TimeZone = 'Asia/Tokyo'; SET DateStyle = 'German'; SET extra_float_digits = 0; \
         SET bytea_output = 'escape'",
    )
    .execute(&mut b)
    .await
    .unwrap();

    let da = digest_table(&mut a, &info_a, BUCKETS).await.unwrap();
    let db = digest_table(&mut b, &info_b, BUCKETS).await.unwrap();
    assert_eq!(da.rows(), ROWS as u64);
    assert_eq!(da.buckets.len(), BUCKETS as usize);
    assert_eq!(differing_buckets(&da, &db), Vec::<u32>::new());
    assert_eq!(da, db);

    // ...and are the caller's again afterwards.
    let (tz,): (String,) = sqlx::query_as("SHOW TimeZone")
        .fetch_one(&mut b)
        .await
        .unwrap();
    assert_eq!(tz, "Asia/Tokyo");

    // One row changed, one deleted, one rewritten with an equal value in another scale.
    sqlx::raw_sql(
        "UPDATE public.t SET a = 'changed' WHERE id = 7; \
         DELETE FROM public.t WHERE id = 23; \
         UPDATE public.t SET n = n::numeric(20, 6) WHERE id = 2",
    )
    .execute(&mut b)
    .await
    .unwrap();
    let db = digest_table(&mut b, &info_b, BUCKETS).await.unwrap();
    assert_eq!(db.rows(), ROWS as u64 - 1);
    let differ = differing_buckets(&da, &db);
    assert!(!differ.is_empty() && differ.len() <= 2, "{differ:?}");

    let ra = rows_in_buckets(&mut a, &info_a, BUCKETS, &differ)
        .await
        .unwrap();
    let rb = rows_in_buckets(&mut b, &info_b, BUCKETS, &differ)
        .await
        .unwrap();
    assert!(sorted(&ra) && sorted(&rb));
    assert!(ra.len() > rb.len(), "the deleted row is listed on a only");
    let expected: BTreeSet<Vec<u8>> = [7, 23]
        .into_iter()
        .map(|id| canonical_key(&[Value::Int(id)]))
        .collect();
    assert_eq!(diff(&ra, &rb), expected);

    // Drilling into every bucket lists every row.
    let all: Vec<u32> = (0..BUCKETS).collect();
    let everything = rows_in_buckets(&mut a, &info_a, BUCKETS, &all)
        .await
        .unwrap();
    assert_eq!(everything.len(), ROWS as usize);
    assert!(
        rows_in_buckets(&mut a, &info_a, BUCKETS, &[])
            .await
            .unwrap()
            .is_empty()
    );
}
