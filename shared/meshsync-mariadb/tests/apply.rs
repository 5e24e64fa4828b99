//! `apply::write_rows`: upserts of listed columns only, deletes, composite keys, slice order,
//! big batches in few statements.

use meshsync_core::Value;
use meshsync_mariadb::apply::RowWrite;
use sqlx::MySqlConnection;

use crate::support::{apply_server, exec, lines, scalar, table, text, up, write};

const T: &str = "SELECT CONCAT_WS('|', id, a, b, IFNULL(c, 'NULL')) FROM t ORDER BY id";

#[tokio::test]
async fn upserts_insert_with_defaults_and_update_only_listed_columns() {
    let (_m, mut c) = apply_server().await;
    let info = table(
        &mut c,
        "t",
        "CREATE TABLE t (id INT PRIMARY KEY, a VARCHAR(20) NOT NULL DEFAULT 'dflt',
                         b INT DEFAULT 7, c TEXT NULL)",
    )
    .await;
    let first = [
        up(1, &[("a", text("one"))]),
        up(2, &[("c", text("x")), ("a", text("two"))]),
        up(3, &[]),
        up(4, &[("id", Value::Int(4)), ("b", Value::Int(40))]),
    ];
    assert_eq!(write(&mut c, &info, &first).await, []);
    assert_eq!(
        lines(&mut c, T).await,
        [
            "1|one|7|NULL",
            "2|two|7|x",
            "3|dflt|7|NULL",
            "4|dflt|40|NULL"
        ]
    );
    let second = [
        up(1, &[("b", Value::Int(9))]),
        up(2, &[("c", Value::Null), ("a", text("deux"))]),
        up(3, &[]),
    ];
    assert_eq!(write(&mut c, &info, &second).await, []);
    assert_eq!(
        lines(&mut c, T).await,
        [
            "1|one|9|NULL",
            "2|deux|7|NULL",
            "3|dflt|7|NULL",
            "4|dflt|40|NULL"
        ]
    );
}

#[tokio::test]
async fn deletes_remove_only_their_keys() {
    let (_m, mut c) = apply_server().await;
    let info = table(
        &mut c,
        "t",
        "CREATE TABLE t (id INT PRIMARY KEY, a INT, b INT, c INT)",
    )
    .await;
    exec(&mut c, "INSERT INTO t VALUES (1,1,1,1),(2,2,2,2),(3,3,3,3)").await;
    let del = |id| RowWrite::Delete {
        key: vec![Value::Int(id)],
    };
    assert_eq!(write(&mut c, &info, &[del(1), del(3), del(99)]).await, []);
    assert_eq!(lines(&mut c, T).await, ["2|2|2|2"]);
}

#[tokio::test]
async fn composite_keys_and_repeated_keys_follow_slice_order() {
    let (_m, mut c) = apply_server().await;
    let info = table(
        &mut c,
        "c",
        "CREATE TABLE c (region VARCHAR(10), n BIGINT UNSIGNED, v INT NOT NULL,
                         PRIMARY KEY (region, n))",
    )
    .await;
    let k = |r: &str, n: u64| vec![text(r), Value::UInt(n)];
    let put = |r: &str, n: u64, v: i64| RowWrite::Upsert {
        key: k(r, n),
        columns: vec![("v".into(), Value::Int(v))],
    };
    let del = |r: &str, n: u64| RowWrite::Delete { key: k(r, n) };
    // Applied in a different order (deletes first, upserts grouped) this would leave
    // eu/1 = 1 and us/MAX deleted.
    let writes = [
        put("eu", 1, 1),
        put("us", u64::MAX, 2),
        put("eu", 2, 3),
        del("eu", 1),
        put("eu", 2, 30),
        del("us", u64::MAX),
        put("us", u64::MAX, 20),
    ];
    assert_eq!(write(&mut c, &info, &writes).await, []);
    let sql = "SELECT CONCAT_WS('|', region, n, v) FROM c ORDER BY region, n";
    assert_eq!(
        lines(&mut c, sql).await,
        ["eu|2|30", "us|18446744073709551615|20"]
    );
    assert_eq!(
        write(
            &mut c,
            &info,
            &[del("eu", 2), del("us", u64::MAX), del("us", 2)]
        )
        .await,
        []
    );
    assert!(lines(&mut c, sql).await.is_empty());
}

/// Statements of one kind this session has run.
async fn statements(c: &mut MySqlConnection, com: &str) -> i64 {
    let sql = format!(
        "SELECT CAST(VARIABLE_VALUE AS CHAR) FROM information_schema.SESSION_STATUS
         WHERE VARIABLE_NAME = '{com}'"
    );
    scalar(c, &sql).await.unwrap().parse().unwrap()
}

#[tokio::test]
async fn ten_thousand_rows_take_a_few_statements() {
    let (_m, mut c) = apply_server().await;
    let info = table(
        &mut c,
        "big",
        "CREATE TABLE big (id INT PRIMARY KEY, name VARCHAR(40) NOT NULL, qty INT NOT NULL)",
    )
    .await;
    let writes: Vec<RowWrite> = (0..10_000)
        .map(|i| {
            up(
                i,
                &[("name", text(&format!("row {i}"))), ("qty", Value::Int(i))],
            )
        })
        .collect();
    let inserts = statements(&mut c, "COM_INSERT").await;
    assert_eq!(write(&mut c, &info, &writes).await, []);
    let used = statements(&mut c, "COM_INSERT").await - inserts;
    assert!((1..=2).contains(&used), "{used} INSERT statements");
    let count = "SELECT CAST(CONCAT(COUNT(*), ' ', SUM(qty)) AS CHAR) FROM big";
    assert_eq!(scalar(&mut c, count).await, Some("10000 49995000".into()));

    // Partial updates of a table whose NOT NULL columns have no default go as UPDATEs.
    let updates: Vec<RowWrite> = (0..10_000)
        .map(|i| up(i, &[("qty", Value::Int(2 * i))]))
        .collect();
    let before = statements(&mut c, "COM_UPDATE").await;
    assert_eq!(write(&mut c, &info, &updates).await, []);
    let used = statements(&mut c, "COM_UPDATE").await - before;
    assert!((1..=60).contains(&used), "{used} UPDATE statements");
    assert_eq!(scalar(&mut c, count).await, Some("10000 99990000".into()));
    assert_eq!(
        scalar(&mut c, "SELECT name FROM big WHERE id = 1234").await,
        Some("row 1234".into())
    );

    let deletes: Vec<RowWrite> = (0..10_000)
        .map(|i| RowWrite::Delete {
            key: vec![Value::Int(i)],
        })
        .collect();
    let before = statements(&mut c, "COM_DELETE").await;
    assert_eq!(write(&mut c, &info, &deletes).await, []);
    assert_eq!(statements(&mut c, "COM_DELETE").await - before, 1);
    assert_eq!(
        scalar(&mut c, "SELECT CAST(COUNT(*) AS CHAR) FROM big").await,
        Some("0".into())
    );
}

#[tokio::test]
async fn generated_columns_are_computed_not_written() {
    let (_m, mut c) = apply_server().await;
    let info = table(
        &mut c,
        "g",
        "CREATE TABLE g (id INT PRIMARY KEY, d INT, v INT AS (d + 1) VIRTUAL,
                         p INT AS (d * 2) PERSISTENT)",
    )
    .await;
    // A captured row image carries the generated values too; MariaDB refuses them (1906).
    let row = |id, d| {
        up(
            id,
            &[
                ("d", Value::Int(d)),
                ("v", Value::Int(d + 1)),
                ("p", Value::Int(d * 2)),
            ],
        )
    };
    assert_eq!(write(&mut c, &info, &[row(1, 10), row(2, 20)]).await, []);
    assert_eq!(write(&mut c, &info, &[row(1, 11)]).await, []);
    let sql = "SELECT CONCAT_WS('|', id, d, v, p) FROM g ORDER BY id";
    assert_eq!(lines(&mut c, sql).await, ["1|11|12|22", "2|20|21|40"]);
}

/// `UpsertChanged`: a missing row is inserted whole, an existing one gets only the changed
/// columns, in both the upsert and the update-only (required column missing) forms.
#[tokio::test]
async fn upsert_changed_inserts_whole_rows_and_overwrites_only_changed_columns() {
    let (_m, mut c) = apply_server().await;
    let info = table(
        &mut c,
        "t",
        "CREATE TABLE t (id INT PRIMARY KEY, a VARCHAR(20) NOT NULL DEFAULT 'dflt',
                         b INT DEFAULT 7, c TEXT NULL)",
    )
    .await;
    exec(&mut c, "INSERT INTO t VALUES (1, 'local a', 1, 'local c')").await;
    let put = |id: i64, changed: &[&str]| RowWrite::UpsertChanged {
        key: vec![Value::Int(id)],
        columns: vec![
            ("id".into(), Value::Int(id)),
            ("a".into(), text("merged a")),
            ("b".into(), Value::Int(20)),
            ("c".into(), text("merged c")),
        ],
        changed: changed.iter().map(|s| (*s).to_owned()).collect(),
    };
    // Row 1 exists: only `b` changes. Row 2 is missing: it comes whole although only `b`
    // changed. Row 3: nothing changed (a key-only change), inserted whole too.
    assert_eq!(
        write(
            &mut c,
            &info,
            &[put(1, &["b"]), put(2, &["b"]), put(3, &["id"])]
        )
        .await,
        []
    );
    assert_eq!(
        lines(&mut c, T).await,
        [
            "1|local a|20|local c",
            "2|merged a|20|merged c",
            "3|merged a|20|merged c"
        ]
    );
    // An existing row with nothing to overwrite is left alone.
    exec(&mut c, "UPDATE t SET b = 5 WHERE id = 3").await;
    assert_eq!(write(&mut c, &info, &[put(3, &[])]).await, []);
    assert_eq!(
        scalar(&mut c, "SELECT CAST(b AS CHAR) FROM t WHERE id = 3").await,
        Some("5".into())
    );
    // A changed column the write does not give is refused, naming it.
    let bad = RowWrite::UpsertChanged {
        key: vec![Value::Int(4)],
        columns: vec![("a".into(), text("x"))],
        changed: vec!["c".into()],
    };
    let refused = write(&mut c, &info, &[bad]).await;
    assert_eq!(refused.len(), 1);
    assert!(refused[0].1.contains("\"c\""), "{refused:?}");

    // A table with a NOT NULL column without default, written without it: update-only,
    // and still only the changed columns.
    let info = table(
        &mut c,
        "r",
        "CREATE TABLE r (id INT PRIMARY KEY, req INT NOT NULL, x INT, y INT)",
    )
    .await;
    exec(&mut c, "INSERT INTO r VALUES (1, 100, 1, 1)").await;
    let partial = RowWrite::UpsertChanged {
        key: vec![Value::Int(1)],
        columns: vec![("x".into(), Value::Int(2)), ("y".into(), Value::Int(2))],
        changed: vec!["y".into()],
    };
    assert_eq!(write(&mut c, &info, &[partial]).await, []);
    assert_eq!(
        lines(&mut c, "SELECT CONCAT_WS('|', id, req, x, y) FROM r").await,
        ["1|100|1|2"]
    );
}
