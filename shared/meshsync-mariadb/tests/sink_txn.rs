//! `MariaDbSink` transactions: what is parked, the checkpoint and applied HLC committed with
//! the data (and seen by capture), tombstone collection, key normalisation.

use std::time::Duration;

use meshsync_core::{ChangeBatch, Op, TableName, Value};
use meshsync_mariadb::{
    MariaDbSource, SourceConfig, apply::APPLIED_TABLE, hlc_column, source::current_gtid_state,
};

use crate::{
    sink_support::{
        ME, apply, batch, change, count, dump, hlc, int, kept, prepared, sink, tally, txt, v,
    },
    support::{exec, next_rows},
};

const T: &str = "CREATE TABLE t (id INT PRIMARY KEY, a VARCHAR(20), n INT NOT NULL DEFAULT 0)";
const COLS: [&str; 3] = ["id", "a", "n"];

fn insert(origin: &str, secs: u64, ids: &[i64]) -> ChangeBatch {
    let rows = ids
        .iter()
        .enumerate()
        .map(|(i, id)| {
            let cells = vec![v(int(*id)), v(txt(&format!("r{id}"))), v(int(0))];
            change(i as u32, Op::Insert, *id, cells)
        })
        .collect();
    batch(origin, secs, "t", &COLS, rows)
}

fn delete(origin: &str, secs: u64, ids: &[i64]) -> ChangeBatch {
    let rows = ids
        .iter()
        .enumerate()
        .map(|(i, id)| change(i as u32, Op::Delete, *id, Vec::new()))
        .collect();
    batch(origin, secs, "t", &COLS, rows)
}

#[tokio::test]
async fn unknown_tables_bad_shapes_and_bad_values_are_parked() {
    let (m, mut c) = prepared(T).await;
    let mut s = sink(&m, &["t"]).await;
    let unknown = batch("x", 100, "nope", &COLS, Vec::new());
    let mut other_key = insert("x", 100, &[9]);
    other_key.key_columns = vec!["a".into()];
    let extra = batch("x", 100, "t", &["id", "zz"], vec![]);
    let values = batch(
        "x",
        101,
        "t",
        &COLS,
        vec![
            change(0, Op::Insert, 1, vec![v(int(1)), v(txt("ok")), v(int(1))]),
            change(
                1,
                Op::Insert,
                2,
                vec![v(int(2)), v(txt(&"x".repeat(21))), v(int(1))],
            ),
            change(
                2,
                Op::Insert,
                3,
                vec![v(int(3)), v(txt("null n")), v(Value::Null)],
            ),
            {
                let mut bad_key = change(3, Op::Insert, 4, vec![v(int(4)), v(txt("k")), v(int(1))]);
                bad_key.key = vec![txt("4")];
                bad_key
            },
        ],
    );
    let reports = apply(&mut s, &[&unknown, &other_key, &extra, &values], 1).await;
    let whole = |i: usize| {
        assert_eq!(reports[i].parked.len(), 1, "{:?}", reports[i]);
        assert_eq!(reports[i].parked[0].row, None);
        reports[i].parked[0].reason.clone()
    };
    let r = whole(0);
    assert!(
        r.contains("app.nope") && r.contains("database.tables"),
        "{r}"
    );
    assert!(whole(1).contains("primary key"));
    assert!(whole(2).contains("\"zz\""));
    let rows: Vec<(Option<u32>, &str)> = reports[3]
        .parked
        .iter()
        .map(|p| (p.row, p.reason.as_str()))
        .collect();
    assert_eq!(
        rows.iter().map(|r| r.0).collect::<Vec<_>>(),
        [Some(1), Some(2), Some(3)]
    );
    assert!(rows[0].1.contains("column \"a\""), "{rows:?}");
    assert!(rows[1].1.contains("NOT NULL"), "{rows:?}");
    assert!(rows[2].1.contains("key column \"id\""), "{rows:?}");
    assert_eq!(reports[3].applied, 1);
    assert_eq!(dump(&mut c, "t", "id, a, n").await, ["1|ok|1"]);
}

#[tokio::test]
async fn keys_sent_as_int_and_uint_decimal_scales_and_padding_are_one_row() {
    let (m, mut c) = prepared(
        "CREATE TABLE k (id INT UNSIGNED, code DECIMAL(5,2), bin BINARY(3), v VARCHAR(10),
                         PRIMARY KEY (id, code, bin))",
    )
    .await;
    let mut s = sink(&m, &["k"]).await;
    let cols = ["id", "code", "bin", "v"];
    let keyed = |mut b: ChangeBatch| {
        b.key_columns = vec!["id".into(), "code".into(), "bin".into()];
        b
    };
    // As a PostgreSQL origin sends it (int8, numeric, bytea).
    let pg_key = vec![
        Value::Int(5),
        Value::Decimal("1.5".into()),
        Value::Bytes(vec![7]),
    ];
    let mut pg_row = change(0, Op::Insert, 0, Vec::new());
    pg_row.key = pg_key.clone();
    pg_row.cells = pg_key
        .iter()
        .cloned()
        .map(v)
        .chain([v(txt("pg"))])
        .collect();
    let from_pg = keyed(batch("pg", 100, "k", &cols, vec![pg_row]));
    // As a MariaDB origin sends it (unsigned, printed scale, padded BINARY).
    let maria_key = vec![
        Value::UInt(5),
        Value::Decimal("1.50".into()),
        Value::Bytes(vec![7, 0, 0]),
    ];
    let mut maria_row = change(0, Op::Update, 0, Vec::new());
    maria_row.key = maria_key.clone();
    maria_row.cells = maria_key
        .iter()
        .cloned()
        .map(kept)
        .chain([v(txt("maria"))])
        .collect();
    let from_maria = keyed(batch("maria", 110, "k", &cols, vec![maria_row]));

    apply(&mut s, &[&from_pg], 1).await;
    apply(&mut s, &[&from_maria], 2).await;
    // The older insert again: the same state, so superseded.
    let again = apply(&mut s, &[&from_pg], 3).await;
    assert_eq!(tally(&again), (0, 1, 0));
    assert_eq!(
        count(&mut c, "SELECT COUNT(*) FROM meshsync.row_state").await,
        1,
        "one merge state for the row"
    );
    assert_eq!(
        dump(&mut c, "k", "id, code, HEX(bin), v").await,
        ["5|1.50|070000|maria"]
    );
}

#[tokio::test]
async fn keys_too_long_for_row_state_are_parked() {
    let (m, mut c) = prepared("CREATE TABLE t (id VARBINARY(1500) PRIMARY KEY, n INT)").await;
    let mut s = sink(&m, &["t"]).await;
    let row = |i, key: Vec<u8>| {
        let mut ch = change(
            i,
            Op::Insert,
            0,
            vec![v(Value::Bytes(key.clone())), v(int(1))],
        );
        ch.key = vec![Value::Bytes(key)];
        ch
    };
    let b = batch(
        "x",
        100,
        "t",
        &["id", "n"],
        vec![row(0, vec![1; 1100]), row(1, vec![2; 10])],
    );
    let reports = apply(&mut s, &[&b], 1).await;
    assert_eq!(reports[0].applied, 1);
    assert_eq!(reports[0].parked.len(), 1);
    assert_eq!(reports[0].parked[0].row, Some(0));
    assert!(reports[0].parked[0].reason.contains("2048"), "{reports:?}");
    assert_eq!(count(&mut c, "SELECT COUNT(*) FROM app.t").await, 1);
}

#[tokio::test]
async fn checkpoint_and_applied_hlc_commit_with_the_data_or_not_at_all() {
    let (m, mut c) = prepared(T).await;
    let mut s = sink(&m, &["t"]).await;
    assert_eq!(s.checkpoint().await.unwrap(), 0);
    exec(
        &mut c,
        "CREATE TRIGGER meshsync.refuse_applied BEFORE INSERT ON meshsync.applied
         FOR EACH ROW SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'refused by the test'",
    )
    .await;
    // Only this peer's own changes: no applied HLC to record, so the trigger never fires.
    apply(&mut s, &[&insert(ME, 100, &[1])], 5).await;
    assert_eq!(s.checkpoint().await.unwrap(), 5);

    // A remote change: the applied-HLC row fails, and with it everything.
    let remote = insert("x", 200, &[2]);
    let mut txn = s.begin().await.unwrap();
    assert_eq!(tally(&txn.apply(&[&remote]).await.unwrap()), (1, 0, 0));
    assert!(txn.commit(6).await.is_err());
    let nothing = [
        ("SELECT COUNT(*) FROM app.t", 0),
        ("SELECT COUNT(*) FROM meshsync.row_state", 1),
        ("SELECT COUNT(*) FROM meshsync.applied", 0),
    ];
    for (sql, n) in nothing {
        assert_eq!(count(&mut c, sql).await, n, "{sql}");
    }
    assert_eq!(s.checkpoint().await.unwrap(), 5);

    exec(&mut c, "DROP TRIGGER meshsync.refuse_applied").await;
    apply(&mut s, &[&remote], 6).await;
    assert_eq!(dump(&mut c, "t", "id, a").await, ["2|r2"]);
    assert_eq!(s.checkpoint().await.unwrap(), 6);
    // The checkpoint never goes back.
    apply(&mut s, &[], 3).await;
    assert_eq!(s.checkpoint().await.unwrap(), 6);
    let (time, node): (i64, i64) =
        sqlx::query_as("SELECT hlc_time, hlc_node FROM meshsync.applied WHERE consumer = ?")
            .bind("apply_me")
            .fetch_one(&mut c)
            .await
            .unwrap();
    assert_eq!(hlc_column::from_columns(time, node), hlc(200));
}

/// Capture of this server reads the applied HLC from the same `from_apply` transaction as
/// the data, checkpoint and states, decoding `meshsync.applied` like any table.
#[tokio::test]
async fn capture_sees_data_states_checkpoint_and_applied_hlc_in_one_transaction() {
    let (m, mut c) = prepared(T).await;
    let mut s = sink(&m, &["t"]).await;
    let resume = current_gtid_state(&mut c).await.unwrap();
    let tables = [
        "app.t",
        APPLIED_TABLE,
        "meshsync.checkpoint",
        "meshsync.row_state",
    ];
    let config = SourceConfig {
        url: m.url("app"),
        server_id: 4_000_000_000 - m.server_id(),
        tables: tables
            .iter()
            .map(|t| TableName::parse(t).unwrap())
            .collect(),
        resume,
        heartbeat: Duration::from_millis(300),
    };
    let mut src = MariaDbSource::connect(&config).await.unwrap();
    // Two remote batches and one of this peer's, stamped later: the applied HLC is the
    // highest remote one.
    apply(
        &mut s,
        &[
            &insert("x", 100, &[1]),
            &insert("y", 150, &[2]),
            &insert(ME, 900, &[3]),
        ],
        7,
    )
    .await;
    // The binlog holds data, states, checkpoint and applied HLC in one transaction.
    assert_eq!(
        last_txn_tables(&mut c).await,
        [
            "app.t",
            "meshsync.applied",
            "meshsync.checkpoint",
            "meshsync.row_state"
        ]
    );
    // Capture decodes only the applied row of an apply transaction.
    let txn = next_rows(&mut src).await;
    assert!(txn.from_apply);
    let seen: Vec<String> = txn.rows.iter().map(|r| r.table.to_string()).collect();
    assert_eq!(seen, [APPLIED_TABLE]);
    let applied = txn
        .rows
        .iter()
        .find(|r| r.table.to_string() == APPLIED_TABLE)
        .unwrap();
    let col = |name: &str| {
        applied
            .columns
            .iter()
            .find(|(n, _)| n == name)
            .and_then(|(_, c)| c.value().cloned())
    };
    let (Some(Value::Int(time)), Some(Value::Int(node))) = (col("hlc_time"), col("hlc_node"))
    else {
        panic!("{applied:?}");
    };
    assert_eq!(hlc_column::from_columns(time, node), hlc(150));
    assert_eq!(col("consumer"), Some(txt("apply_me")));
}

/// The tables of the last transaction in the server's current binlog, sorted.
async fn last_txn_tables(c: &mut sqlx::MySqlConnection) -> Vec<String> {
    use sqlx::Row;
    let status = sqlx::query("SHOW MASTER STATUS")
        .fetch_one(&mut *c)
        .await
        .unwrap();
    let file: String = status.try_get(0).unwrap();
    let events = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SHOW BINLOG EVENTS IN '{file}'"
    )))
    .fetch_all(&mut *c)
    .await
    .unwrap();
    let mut tables: Vec<String> = Vec::new();
    for e in events {
        let kind: String = e.try_get(2).unwrap();
        // Info may hold binary bytes (statement texts); only table names are read.
        let info: Vec<u8> = e.try_get(5).unwrap_or_default();
        let info = String::from_utf8_lossy(&info);
        match kind.as_str() {
            "Gtid" => tables.clear(),
            // "table_id: 33 (app.t)"
            "Table_map" => tables.extend(
                info.rsplit_once('(')
                    .map(|(_, t)| t.trim_end_matches(')').to_owned()),
            ),
            _ => {}
        }
    }
    tables.sort();
    tables.dedup();
    tables
}

#[tokio::test]
async fn tombstones_older_than_the_cutoff_are_collected_in_rounds() {
    let (m, mut c) = prepared(T).await;
    let mut s = sink(&m, &["t"]).await;
    apply(&mut s, &[&insert("x", 100, &[1, 2, 3])], 1).await;
    apply(&mut s, &[&delete("y", 200, &[1])], 2).await;
    apply(&mut s, &[&delete("y", 300, &[2])], 3).await;
    let deleted_at = |id: i64| {
        format!(
            "SELECT COUNT(*) FROM meshsync.row_state WHERE pk = '[\"{id}\"]' AND deleted_at {}",
            match id {
                1 => format!("= {}", hlc_column::to_columns(hlc(200)).0),
                2 => format!("= {}", hlc_column::to_columns(hlc(300)).0),
                _ => "IS NULL".to_owned(),
            }
        )
    };
    for id in 1..=3 {
        assert_eq!(count(&mut c, &deleted_at(id)).await, 1, "row {id}");
    }
    assert_eq!(s.collect_tombstones(hlc(250)).await.unwrap(), 1);
    assert_eq!(
        count(&mut c, "SELECT COUNT(*) FROM meshsync.row_state").await,
        2
    );
    // Row 2 comes back: no longer a tombstone, so never collected.
    let revive = batch(
        "x",
        400,
        "t",
        &COLS,
        vec![change(
            0,
            Op::Update,
            2,
            vec![kept(int(2)), v(txt("back")), kept(int(0))],
        )],
    );
    apply(&mut s, &[&revive], 4).await;
    assert_eq!(
        count(&mut c, &deleted_at(3).replace("\"3\"", "\"2\"")).await,
        1
    );
    assert_eq!(s.collect_tombstones(hlc(10_000)).await.unwrap(), 0);
    assert_eq!(dump(&mut c, "t", "id, a").await, ["2|back", "3|r3"]);

    // More tombstones than one round holds.
    let many: Vec<i64> = (1_000..11_005).collect();
    apply(&mut s, &[&delete("y", 500, &many)], 5).await;
    assert_eq!(s.collect_tombstones(hlc(10_000)).await.unwrap(), 10_005);
    assert_eq!(
        count(&mut c, "SELECT COUNT(*) FROM meshsync.row_state").await,
        2
    );
}
