//! Causality (I8): a local write made after the peer applied a remote change is stamped
//! later than it, even when the remote clock runs ahead of the local one.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_nats::jetstream;
use meshsync_core::{
    Cell, ChangeBatch, Hlc, Op, PeerId, RowChange, SchemaVersion, SourcePosition, TableName, TxnId,
    Value,
};
use meshsync_hlc::NodeId;
use meshsync_testkit::wait_until;

use crate::support::Mesh;

#[tokio::test]
async fn a_write_after_applying_a_change_from_a_fast_clock_still_wins() {
    let mesh = Mesh::start(&["a", "b"]).await.unwrap();
    // A peer whose clock is 400 ms ahead (inside the 500 ms bound) writes key 77.
    let ahead = SystemTime::now().duration_since(UNIX_EPOCH).unwrap() + Duration::from_millis(400);
    let remote = ChangeBatch {
        origin: PeerId::new("fast").unwrap(),
        database: "app".into(),
        table: TableName::new("public", "items"),
        hlc: Hlc::from_unix(ahead, NodeId::from_peer("fast")),
        position: SourcePosition("1".into()),
        txn: TxnId("1".into()),
        chunk: 0,
        schema: SchemaVersion(1),
        key_columns: vec!["id".into()],
        columns: vec!["id".into(), "v".into(), "n".into()],
        rows: vec![RowChange {
            index: 0,
            op: Op::Insert,
            key: vec![Value::Int(77)],
            cells: vec![
                Cell::Value(Value::Int(77)),
                Cell::Value(Value::Text("remote".into())),
                Cell::Value(Value::Int(1)),
            ],
            deltas: Vec::new(),
        }],
    };
    let js = jetstream::new(mesh.client.clone());
    js.publish(
        "mesh.changes.fast",
        meshsync_wire::encode(&remote).unwrap().into(),
    )
    .await
    .unwrap()
    .await
    .unwrap();

    // Peer b sees the remote row, then overwrites it at once: its wall clock is behind the
    // remote stamp, so only the HLC carried through the WAL can order b's write after it.
    let b = &mesh.peers[1];
    wait_until("the remote row on b", Duration::from_secs(30), || async {
        b.rows()
            .await
            .ok()?
            .iter()
            .any(|r| r.0 == 77 && r.1 == "remote")
            .then_some(())
    })
    .await
    .unwrap();
    let mut c = b.connect().await.unwrap();
    sqlx::query("UPDATE public.items SET v = 'local after remote' WHERE id = 77")
        .execute(&mut c)
        .await
        .unwrap();

    for p in &mesh.peers {
        wait_until(
            &format!("b's later write on {}", p.id),
            Duration::from_secs(30),
            || async {
                p.rows()
                    .await
                    .ok()?
                    .iter()
                    .any(|r| r.0 == 77 && r.1 == "local after remote")
                    .then_some(())
            },
        )
        .await
        .unwrap();
    }
}
