//! Helpers of the `MariaDbSink` tests: batches, a prepared server, applying and reading
//! back tables and row states.

use std::collections::HashMap;

use meshsync_core::{
    BatchReport, Cell, ChangeBatch, Hlc, Op, PeerId, RowChange, SchemaVersion, SourcePosition,
    TableName, TxnId, Value,
};
use meshsync_mariadb::{apply::MariaDbSink, catalog, setup};
use meshsync_merge::PolicySet;
use sqlx::MySqlConnection;

use crate::support::{Server, exec, rows, server};

/// This peer: the one every test sink applies for.
pub const ME: &str = "me";

/// A stamp at `secs` seconds after the epoch (plus a day, so it is a plausible time).
pub fn hlc(secs: u64) -> Hlc {
    Hlc {
        time: (86_400 + secs) << 32,
        node: 1,
    }
}

pub fn peer(p: &str) -> PeerId {
    PeerId::new(p).unwrap()
}

/// A batch of `origin` at `hlc(secs)` for `app.<table>` with key `id` and `columns`.
pub fn batch(
    origin: &str,
    secs: u64,
    table: &str,
    columns: &[&str],
    rows: Vec<RowChange>,
) -> ChangeBatch {
    ChangeBatch {
        origin: peer(origin),
        database: "app".into(),
        table: TableName::new("app", table),
        hlc: hlc(secs),
        position: SourcePosition(secs.to_string()),
        txn: TxnId(secs.to_string()),
        chunk: 0,
        schema: SchemaVersion(1),
        key_columns: vec!["id".into()],
        columns: columns.iter().map(|c| (*c).to_owned()).collect(),
        rows,
    }
}

/// A row change with key `id`.
pub fn change(index: u32, op: Op, id: i64, cells: Vec<Cell>) -> RowChange {
    RowChange {
        index,
        op,
        key: vec![Value::Int(id)],
        cells,
        deltas: Vec::new(),
    }
}

pub fn v(x: Value) -> Cell {
    Cell::Value(x)
}

pub fn kept(x: Value) -> Cell {
    Cell::Kept(x)
}

pub fn int(i: i64) -> Value {
    Value::Int(i)
}

pub fn txt(s: &str) -> Value {
    Value::Text(s.into())
}

/// A server with database `app` (tables from `ddl`) and the `meshsync` database.
pub async fn prepared(ddl: &str) -> (Server, MySqlConnection) {
    let m = server("app").await;
    let mut c = m.connect("app").await.unwrap();
    setup::prepare(&mut c).await.unwrap();
    exec(&mut c, ddl).await;
    (m, c)
}

/// A sink for `tables` of `app` with `policies`.
pub async fn sink_with(m: &Server, tables: &[&str], policies: PolicySet) -> MariaDbSink {
    let mut c = m.connect("app").await.unwrap();
    let names: Vec<TableName> = tables.iter().map(|t| TableName::new("app", *t)).collect();
    let infos: HashMap<_, _> = catalog::load(&mut c, &names).await.unwrap();
    MariaDbSink::connect(&m.url("app"), infos, policies, peer(ME), "apply_me".into())
        .await
        .unwrap()
}

/// A sink with the default policies.
pub async fn sink(m: &Server, tables: &[&str]) -> MariaDbSink {
    sink_with(m, tables, PolicySet::default()).await
}

/// Applies `batches` in one committed transaction with checkpoint `upto`.
pub async fn apply(
    sink: &mut MariaDbSink,
    batches: &[&ChangeBatch],
    upto: u64,
) -> Vec<BatchReport> {
    let mut txn = sink.begin().await.unwrap();
    let reports = txn.apply(batches).await.unwrap();
    txn.commit(upto).await.unwrap();
    reports
}

/// Every row of `app.<table>`, columns joined by `|`, by key.
pub async fn dump(c: &mut MySqlConnection, table: &str, columns: &str) -> Vec<String> {
    let sql =
        format!("SELECT CAST(CONCAT_WS('|', {columns}) AS CHAR) FROM app.{table} ORDER BY id");
    rows(c, &sql)
        .await
        .into_iter()
        .map(|r| r[0].clone().unwrap())
        .collect()
}

/// Every stored state: table, key, state bytes and tombstone time, in hex, in key order.
pub async fn states(c: &mut MySqlConnection) -> Vec<String> {
    let sql = "SELECT CAST(CONCAT_WS('|', tbl, HEX(pk), HEX(state), IFNULL(deleted_at, 'NULL'))
               AS CHAR) FROM meshsync.row_state ORDER BY tbl, pk";
    rows(c, sql)
        .await
        .into_iter()
        .map(|r| r[0].clone().unwrap())
        .collect()
}

/// Number of rows `sql` (a `SELECT COUNT(*)`) counts.
pub async fn count(c: &mut MySqlConnection, sql: &str) -> i64 {
    let (n,): (i64,) = sqlx::query_as(sqlx::AssertSqlSafe(sql.to_owned()))
        .fetch_one(c)
        .await
        .unwrap();
    n
}

/// Applied, superseded and parked counts of `reports`.
pub fn tally(reports: &[BatchReport]) -> (usize, usize, usize) {
    reports.iter().fold((0, 0, 0), |(a, s, p), r| {
        (a + r.applied, s + r.superseded, p + r.parked.len())
    })
}
