//! `apply::write_rows` refusals: bad rows are reported by index, with reasons that name
//! codes and columns but never values, while the rest of the batch is written; failures of
//! the connection are errors instead.

use meshsync_core::Value;
use meshsync_mariadb::{
    Flavour, MariaDbError,
    apply::{RowWrite, open_apply_session, write_rows},
};
use sqlx::Connection;

use crate::support::{apply_server, exec, lines, scalar, start_with, table, text, up, write};

/// A value that must never show up in a reason.
const SECRET: &str = "S3CRET";

#[tokio::test]
async fn refused_rows_are_reported_by_index_and_the_rest_written() {
    let (_m, mut c) = apply_server().await;
    let info = table(
        &mut c,
        "r",
        "CREATE TABLE r (id INT PRIMARY KEY, name VARCHAR(6) NOT NULL, qty INT UNSIGNED,
            big BIGINT, email VARCHAR(30) UNIQUE, must INT NOT NULL,
            price INT, CONSTRAINT price_positive CHECK (price >= 0))",
    )
    .await;
    exec(
        &mut c,
        "INSERT INTO r (id, name, email, must) VALUES (100, 'old', 'S3CRET@x', 1)",
    )
    .await;
    let ok = |id: i64| up(id, &[("name", text("ok")), ("must", Value::Int(1))]);
    let writes = [
        ok(1),
        // 1..=5 are refused before anything is sent.
        up(2, &[("name", Value::Null), ("must", Value::Int(1))]),
        up(
            3,
            &[("name", text("S3CRET-TOO-LONG")), ("must", Value::Int(1))],
        ),
        up(
            4,
            &[
                ("name", text("a")),
                ("qty", Value::Int(-1)),
                ("must", Value::Int(1)),
            ],
        ),
        up(
            5,
            &[
                ("name", text("a")),
                ("big", Value::UInt(u64::MAX)),
                ("must", Value::Int(1)),
            ],
        ),
        up(6, &[("nope", text("a"))]),
        // 6..=8 are refused by MariaDB.
        up(
            7,
            &[
                ("name", text("a")),
                ("price", Value::Int(-5)),
                ("must", Value::Int(1)),
            ],
        ),
        up(
            8,
            &[
                ("name", text("a")),
                ("email", text("S3CRET@x")),
                ("must", Value::Int(1)),
            ],
        ),
        RowWrite::Upsert {
            key: vec![Value::Int(9)],
            columns: vec![("name".into(), text("a"))],
        },
        ok(10),
        // An existing row may be updated without its required columns.
        up(100, &[("name", text("new"))]),
    ];
    let refused = write(&mut c, &info, &writes).await;
    let indexes: Vec<usize> = refused.iter().map(|(i, _)| *i).collect();
    assert_eq!(indexes, [1, 2, 3, 4, 5, 6, 7, 8], "{refused:#?}");
    for (_, reason) in &refused {
        assert!(!reason.contains(SECRET), "{reason}");
    }
    let reason = |i: usize| refused.iter().find(|(j, _)| *j == i).unwrap().1.as_str();
    assert!(
        reason(1).contains("\"name\"") && reason(1).contains("NULL"),
        "{}",
        reason(1)
    );
    assert!(
        reason(2).contains("\"name\"") && reason(2).contains("longer"),
        "{}",
        reason(2)
    );
    assert!(
        reason(3).contains("\"qty\"") && reason(3).contains("range"),
        "{}",
        reason(3)
    );
    assert!(
        reason(4).contains("\"big\"") && reason(4).contains("range"),
        "{}",
        reason(4)
    );
    assert!(
        reason(5).contains("\"nope\" does not exist"),
        "{}",
        reason(5)
    );
    assert!(
        reason(6).contains("error 4025") && reason(6).contains("\"price_positive\""),
        "{}",
        reason(6)
    );
    assert!(
        reason(7).contains("UNIQUE index other than the primary key"),
        "{}",
        reason(7)
    );
    assert!(
        reason(8).contains("does not exist here") && reason(8).contains("\"must\""),
        "{}",
        reason(8)
    );
    let sql = "SELECT CONCAT_WS('|', id, name, IFNULL(email, '-')) FROM r ORDER BY id";
    // Row 100 kept its e-mail: the colliding row 8 did not overwrite it.
    assert_eq!(
        lines(&mut c, sql).await,
        ["1|ok|-", "10|ok|-", "100|new|S3CRET@x"]
    );
}

#[tokio::test]
async fn a_duplicate_in_a_unique_column_names_the_key_not_the_value() {
    let (_m, mut c) = apply_server().await;
    let info = table(
        &mut c,
        "u",
        "CREATE TABLE u (id INT PRIMARY KEY, email VARCHAR(30), UNIQUE KEY email_once (email))",
    )
    .await;
    exec(&mut c, "INSERT INTO u VALUES (1, 'S3CRET@x'), (2, 'b@x')").await;
    // Row 2 exists: its update collides with row 1's e-mail (error 1062, not the guard).
    let refused = write(&mut c, &info, &[up(2, &[("email", text("S3CRET@x"))])]).await;
    assert_eq!(refused.len(), 1);
    let reason = &refused[0].1;
    assert!(
        reason.contains("error 1062") && reason.contains("\"email_once\""),
        "{reason}"
    );
    assert!(!reason.contains(SECRET), "{reason}");
}

#[tokio::test]
async fn writes_outside_a_transaction_or_on_a_dead_connection_are_errors() {
    let (m, mut c) = apply_server().await;
    let info = table(
        &mut c,
        "t",
        "CREATE TABLE t (id INT PRIMARY KEY, a INT, b INT, c INT)",
    )
    .await;
    let err = write_rows(&mut c, Flavour::MariaDb, &info, &[up(1, &[])])
        .await
        .unwrap_err();
    assert!(matches!(err, MariaDbError::NotInTransaction), "{err:?}");
    assert_eq!(
        scalar(&mut c, "SELECT CAST(COUNT(*) AS CHAR) FROM t").await,
        Some("0".into())
    );

    // The server kills the session mid-transaction: Err, transient, never a refused row.
    let id = scalar(&mut c, "SELECT CAST(CONNECTION_ID() AS CHAR)")
        .await
        .unwrap();
    let mut tx = c.begin().await.unwrap();
    let mut killer = m.connect("app").await.unwrap();
    exec(&mut killer, &format!("KILL {id}")).await;
    let err = write_rows(
        &mut tx,
        Flavour::MariaDb,
        &info,
        &[up(1, &[("a", Value::Int(1))])],
    )
    .await
    .unwrap_err();
    assert!(err.is_transient(), "{err:?}");
}

#[tokio::test]
async fn a_required_column_added_after_the_catalog_was_read_still_allows_updates() {
    let (_m, mut c) = apply_server().await;
    let info = table(&mut c, "t", "CREATE TABLE t (id INT PRIMARY KEY, a INT)").await;
    exec(&mut c, "INSERT INTO t VALUES (1, 1)").await;
    // DDL after the catalog was read: the stale entry does not know `must` is required.
    exec(&mut c, "ALTER TABLE t ADD COLUMN must INT NOT NULL").await;
    let refused = write(
        &mut c,
        &info,
        &[
            up(1, &[("a", Value::Int(5))]),
            up(2, &[("a", Value::Int(6))]),
        ],
    )
    .await;
    assert_eq!(refused.len(), 1, "{refused:?}");
    assert_eq!(refused[0].0, 1);
    assert!(refused[0].1.contains("error 1364"), "{}", refused[0].1);
    let sql = "SELECT CONCAT_WS('|', id, a, must) FROM t ORDER BY id";
    assert_eq!(lines(&mut c, sql).await, ["1|5|0"]);
}

#[tokio::test]
async fn rows_beyond_max_allowed_packet_are_refused_and_big_batches_split() {
    let m = start_with(&["--max-allowed-packet=1M"]).await;
    m.create_database("app").await.unwrap();
    let mut c = open_apply_session(&m.url("app")).await.unwrap();
    let info = table(
        &mut c,
        "b",
        "CREATE TABLE b (id INT PRIMARY KEY, t LONGTEXT)",
    )
    .await;
    // Sent, the first row would make the server drop the connection, on every retry.
    let mut writes = vec![up(0, &[("t", text(&"x".repeat(2 << 20)))])];
    // Six rows of 300 kB: 1.8 MB together, so they need more than one statement.
    writes.extend((1..=6).map(|i| up(i, &[("t", text(&"y".repeat(300_000)))])));
    let refused = write(&mut c, &info, &writes).await;
    assert_eq!(refused.len(), 1, "{refused:?}");
    assert_eq!(refused[0].0, 0);
    assert!(
        refused[0].1.contains("max_allowed_packet"),
        "{}",
        refused[0].1
    );
    assert_eq!(
        scalar(
            &mut c,
            "SELECT CAST(CONCAT(COUNT(*), ' ', SUM(LENGTH(t))) AS CHAR) FROM b"
        )
        .await,
        Some("6 1800000".into())
    );
}
