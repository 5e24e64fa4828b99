//! Apply's own writes and this peer's capture (I7, I8), on whichever PostgreSQL the testkit
//! runs: the applied-HLC message of an apply transaction always reaches capture, and a local
//! write after it is captured; apply's rows reach capture only on PostgreSQL 15 (which drops
//! them there), never on 16 and later, whose server leaves them out (`origin 'none'`).

use std::time::Duration;

use meshsync_core::TableName;
use meshsync_pg::{
    catalog,
    setup::Names,
    source::stream::{CapturedTxn, ConnParts, ORIGIN_FILTER_VERSION, PgSource, SourceEvent},
};
use meshsync_testkit::Postgres;

use crate::sink::{T, apply, insert, peer, try_sink_of};

#[tokio::test]
async fn apply_rows_stay_out_of_capture_but_its_applied_hlc_reaches_it() {
    let pg = Postgres::start().await.unwrap();
    let mut c = pg.connect("postgres").await.unwrap();
    sqlx::raw_sql(T).execute(&mut c).await.unwrap();
    let mut sink = try_sink_of(&pg, &mut c, &["t"]).await.unwrap();
    let names = Names::for_peer(&peer("me"));
    let table = TableName::new("public", "t");
    let infos = catalog::load(&mut c, &[table]).await.unwrap();
    let parts = ConnParts::from_url(&pg.url("postgres")).unwrap();
    let mut source = PgSource::connect(&parts, &names, infos).await.unwrap();

    let remote = insert("other", 5, &[(1, "a", 1), (2, "b", 2), (3, "c", 3)]);
    assert_eq!(apply(&mut sink, &remote, 1).await.0, 3);
    sqlx::query("INSERT INTO public.t VALUES (10, 'local', 5)")
        .execute(&mut c)
        .await
        .unwrap();

    let mut seen: Vec<CapturedTxn> = Vec::new();
    let read = async {
        loop {
            if let SourceEvent::Txn(t) = source.next().await.unwrap() {
                let local = !t.rows.is_empty();
                seen.push(t);
                if local {
                    break;
                }
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(30), read)
        .await
        .expect("the local write reaches capture");
    let applied: Vec<_> = seen.iter().filter_map(|t| t.applied_hlc).collect();
    assert_eq!(
        applied,
        vec![remote.hlc],
        "the applied HLC reaches capture once"
    );
    let local = seen.last().unwrap();
    assert!(local.applied_hlc.is_none() && !local.from_apply);
    assert_eq!(local.rows.len(), 1);
    assert!(
        seen.iter()
            .all(|t| t.applied_hlc.is_none() || t.rows.is_empty()),
        "apply's rows are never captured"
    );
    let expected_echo = if source.server_version() >= ORIGIN_FILTER_VERSION {
        0
    } else {
        3
    };
    assert_eq!(
        seen.iter().map(|t| t.echoed).sum::<u64>(),
        expected_echo,
        "rows of apply's transaction sent to capture by PostgreSQL {}",
        source.server_version()
    );
}
