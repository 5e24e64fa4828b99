//! `setup::prepare` against a real PostgreSQL: a restart changes nothing that is already in
//! place, so it takes no lock that would queue a replicated table's users or wait for an
//! autovacuum of the merge states; a lock held through
//! the first set-up is reported by name and retried; the publication follows the table list;
//! a missing table is named.

use meshsync_core::TableName;
use meshsync_pg::{
    PgError,
    setup::{self, Names},
};
use meshsync_testkit::Postgres;
use sqlx::{Connection, PgConnection};

use crate::sink::peer;

fn names() -> Names {
    Names::for_peer(&peer("me"))
}

fn tables(list: &[&str]) -> Vec<TableName> {
    list.iter().map(|t| TableName::new("public", *t)).collect()
}

/// A server with tables `public.t` and `public.u`, and a connection to it.
async fn server() -> (Postgres, PgConnection) {
    let pg = Postgres::start().await.unwrap();
    let mut c = pg.connect("postgres").await.unwrap();
    sqlx::raw_sql(
        "CREATE TABLE public.t (id int8 PRIMARY KEY, a text);
         CREATE TABLE public.u (id int8 PRIMARY KEY, a text);",
    )
    .execute(&mut c)
    .await
    .unwrap();
    (pg, c)
}

/// A second session that has read `public.t` in an open transaction: it holds the lock every
/// reader takes, which ALTER TABLE and DROP TRIGGER must wait for.
async fn reader(pg: &Postgres) -> PgConnection {
    let mut r = pg.connect("postgres").await.unwrap();
    sqlx::raw_sql("BEGIN; SELECT count(*) FROM public.t;")
        .execute(&mut r)
        .await
        .unwrap();
    r
}

#[tokio::test]
async fn a_restart_takes_no_lock_on_a_table_already_set_up() {
    let (pg, mut c) = server().await;
    setup::prepare(&mut c, &names(), &tables(&["t"]))
        .await
        .unwrap();
    let (identity, guards): (String, i64) = sqlx::query_as(
        "SELECT c.relreplident::text,
                (SELECT count(*) FROM pg_trigger g WHERE g.tgrelid = c.oid AND g.tgname = 'meshsync_refuse_truncate')
         FROM pg_class c WHERE c.oid = 'public.t'::regclass",
    )
    .fetch_one(&mut c)
    .await
    .unwrap();
    assert_eq!(
        (identity.as_str(), guards),
        ("f", 1),
        "set up the first time"
    );

    let mut r = reader(&pg).await;
    // Again, as on every start, while the reader's transaction is open: nothing to change,
    // so nothing waits for its lock (a wait would end in PgError::Locked after 5 s).
    let mut again = pg.connect("postgres").await.unwrap();
    setup::prepare(&mut again, &names(), &tables(&["t"]))
        .await
        .unwrap();
    let waited: i64 = sqlx::query_scalar("SELECT count(*) FROM pg_locks WHERE NOT granted")
        .fetch_one(&mut c)
        .await
        .unwrap();
    assert_eq!(waited, 0);
    sqlx::query("ROLLBACK").execute(&mut r).await.unwrap();
    // The lock timeout and the quiet notices are the set-up's own: the session is back to
    // the server's defaults.
    let timeout: String = sqlx::query_scalar("SHOW lock_timeout")
        .fetch_one(&mut again)
        .await
        .unwrap();
    assert_eq!(timeout, "0");
    let notices: String = sqlx::query_scalar("SHOW client_min_messages")
        .fetch_one(&mut again)
        .await
        .unwrap();
    assert_eq!(notices, "notice");
    r.close().await.unwrap();
}

#[tokio::test]
async fn a_restart_does_not_wait_for_an_autovacuum_of_the_merge_states() {
    let (pg, mut c) = server().await;
    setup::prepare(&mut c, &names(), &tables(&["t"]))
        .await
        .unwrap();
    // The lock an autovacuum of meshsync.row_state holds (it is due soon after a large
    // catch-up). `CREATE INDEX IF NOT EXISTS` takes a SHARE lock even when the index exists,
    // which waits for it: the set-up ran into its 5 s lock timeout here.
    let mut vacuum = pg.connect("postgres").await.unwrap();
    sqlx::raw_sql("BEGIN; LOCK TABLE meshsync.row_state IN SHARE UPDATE EXCLUSIVE MODE;")
        .execute(&mut vacuum)
        .await
        .unwrap();
    let mut again = pg.connect("postgres").await.unwrap();
    setup::prepare(&mut again, &names(), &tables(&["t"]))
        .await
        .unwrap();
    sqlx::query("ROLLBACK").execute(&mut vacuum).await.unwrap();
    // The index is there all the same.
    let index: Option<String> =
        sqlx::query_scalar("SELECT to_regclass('meshsync.row_state_deleted_at')::text")
            .fetch_one(&mut c)
            .await
            .unwrap();
    assert_eq!(index.as_deref(), Some("meshsync.row_state_deleted_at"));
}

#[tokio::test]
async fn a_lock_held_through_the_first_set_up_names_the_table_and_is_retried() {
    let (pg, mut c) = server().await;
    let mut r = reader(&pg).await;
    let err = setup::prepare(&mut c, &names(), &tables(&["t"]))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, PgError::Locked { table, .. } if table.name == "t"),
        "{err:?}"
    );
    assert!(err.is_transient(), "the agent's set-up loop retries it");
    assert!(
        err.to_string().contains("table public.t stayed locked"),
        "{err}"
    );
    // Nothing half done: the identity was not changed without the guard.
    let identity: String = sqlx::query_scalar(
        "SELECT relreplident::text FROM pg_class WHERE oid = 'public.t'::regclass",
    )
    .fetch_one(&mut c)
    .await
    .unwrap();
    assert_eq!(identity, "d");
    sqlx::query("ROLLBACK").execute(&mut r).await.unwrap();
    setup::prepare(&mut c, &names(), &tables(&["t"]))
        .await
        .unwrap();
}

#[tokio::test]
async fn the_publication_follows_the_table_list() {
    let (_pg, mut c) = server().await;
    for (list, want) in [
        (&["t"][..], &["t"][..]),
        (&["t", "u"], &["t", "u"]),
        (&["u"], &["u"]),
        (&["u"], &["u"]),
    ] {
        setup::prepare(&mut c, &names(), &tables(list))
            .await
            .unwrap();
        assert_eq!(published(&mut c).await, want);
    }
}

/// The tables of this peer's publication, sorted.
async fn published(c: &mut PgConnection) -> Vec<String> {
    let mut v: Vec<String> =
        sqlx::query_scalar("SELECT tablename::text FROM pg_publication_tables WHERE pubname = $1")
            .bind(names().publication)
            .fetch_all(c)
            .await
            .unwrap();
    v.sort();
    v
}

#[tokio::test]
async fn a_missing_table_is_named() {
    let (_pg, mut c) = server().await;
    let err = setup::prepare(&mut c, &names(), &tables(&["t", "nope"]))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, PgError::MissingTable { table } if table.name == "nope"),
        "{err:?}"
    );
    assert!(err.to_string().contains("remove it from database.tables"));
}
