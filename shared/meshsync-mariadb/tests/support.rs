//! Shared helpers: a server with one database, SQL execution, reading transactions.

use std::time::Duration;

use meshsync_core::{TableName, Value};
use meshsync_mariadb::{
    CapturedTxn, Flavour, MariaDbSource, SourceConfig, SourceEvent,
    apply::{RowWrite, open_apply_session, write_rows},
    catalog::{self, TableInfo},
};
use meshsync_testkit::MariaDb;
use sqlx::{Connection, MySqlConnection};

/// Runs SQL text (one or more statements).
pub async fn exec(conn: &mut MySqlConnection, sql: &str) {
    sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_owned()))
        .execute(conn)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
}

/// A MariaDB of the testkit (its server and its bootstrap keep temporary files in its own
/// folder: parallel servers sharing `/tmp` collided).
pub struct Server {
    /// The server.
    pub m: MariaDb,
}

impl std::ops::Deref for Server {
    type Target = MariaDb;
    fn deref(&self) -> &MariaDb {
        &self.m
    }
}

impl std::ops::DerefMut for Server {
    fn deref_mut(&mut self) -> &mut MariaDb {
        &mut self.m
    }
}

/// A started server (with `extra` arguments).
pub async fn start_with(extra: &[&str]) -> Server {
    let m = MariaDb::start_with(extra)
        .await
        .unwrap_or_else(|e| panic!("start MariaDB: {e:#}"));
    Server { m }
}

/// A started server with database `db` created.
pub async fn server(db: &str) -> Server {
    let m = start_with(&[]).await;
    m.create_database(db).await.unwrap();
    m
}

/// Capture config for `tables` of `db`, resuming from `resume`.
pub fn config(m: &MariaDb, db: &str, tables: &[&str], resume: &str) -> SourceConfig {
    SourceConfig {
        url: m.url(db),
        server_id: 4_000_000_000 - m.server_id(),
        tables: tables.iter().map(|t| TableName::new(db, *t)).collect(),
        resume: resume.to_owned(),
        heartbeat: Duration::from_millis(300),
    }
}

/// The next transaction that has rows (others, e.g. DDL, are skipped).
pub async fn next_rows(src: &mut MariaDbSource) -> CapturedTxn {
    loop {
        match tokio::time::timeout(Duration::from_secs(20), src.next_event())
            .await
            .expect("a transaction within 20 s")
            .unwrap()
        {
            SourceEvent::Txn(t) if !t.rows.is_empty() => return t,
            _ => {}
        }
    }
}

/// Reads until a heartbeat arrives, returning the transactions with rows seen before it.
pub async fn drain(src: &mut MariaDbSource) -> Vec<CapturedTxn> {
    let mut all = drain_all(src).await;
    all.retain(|t| !t.rows.is_empty());
    all
}

/// Reads until a heartbeat arrives, returning every transaction seen before it.
pub async fn drain_all(src: &mut MariaDbSource) -> Vec<CapturedTxn> {
    let mut out = Vec::new();
    loop {
        match tokio::time::timeout(Duration::from_secs(20), src.next_event())
            .await
            .expect("an event within 20 s")
            .unwrap()
        {
            SourceEvent::Heartbeat => return out,
            SourceEvent::Txn(t) => out.push(t),
        }
    }
}

/// One value of the first row of `sql` (a SELECT), as text (NULL as `None`).
pub async fn scalar(conn: &mut MySqlConnection, sql: &str) -> Option<String> {
    let (v,): (Option<String>,) = sqlx::query_as(sqlx::AssertSqlSafe(sql.to_owned()))
        .fetch_one(conn)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    v
}

/// All rows of `sql`, every column cast to text by the query itself.
pub async fn rows(conn: &mut MySqlConnection, sql: &str) -> Vec<Vec<Option<String>>> {
    use sqlx::Row;
    sqlx::query(sqlx::AssertSqlSafe(sql.to_owned()))
        .fetch_all(conn)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .iter()
        .map(|r| (0..r.len()).map(|i| r.try_get(i).unwrap()).collect())
        .collect()
}

// Apply helpers.

/// Creates a table in `app` and loads its catalog entry.
pub async fn table(c: &mut MySqlConnection, name: &str, ddl: &str) -> TableInfo {
    exec(c, ddl).await;
    catalog::load_one(c, &TableName::new("app", name))
        .await
        .unwrap()
}

/// `write_rows` in its own committed transaction.
pub async fn write(
    c: &mut MySqlConnection,
    info: &TableInfo,
    writes: &[RowWrite],
) -> Vec<(usize, String)> {
    let mut tx = c.begin().await.unwrap();
    let refused = write_rows(&mut tx, Flavour::MariaDb, info, writes)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    refused
}

/// An upsert with an integer key.
pub fn up(id: i64, cols: &[(&str, Value)]) -> RowWrite {
    RowWrite::Upsert {
        key: vec![Value::Int(id)],
        columns: cols
            .iter()
            .map(|(n, v)| ((*n).to_owned(), v.clone()))
            .collect(),
    }
}

pub fn text(s: &str) -> Value {
    Value::Text(s.into())
}

/// Every row of `sql` (which selects one text expression), in order.
pub async fn lines(c: &mut MySqlConnection, sql: &str) -> Vec<String> {
    rows(c, sql)
        .await
        .into_iter()
        .map(|r| r[0].clone().unwrap())
        .collect()
}

/// A server with database `app` and an apply session on it.
pub async fn apply_server() -> (Server, MySqlConnection) {
    let m = server("app").await;
    let c = open_apply_session(&m.url("app")).await.unwrap();
    (m, c)
}
