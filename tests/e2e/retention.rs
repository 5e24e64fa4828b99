//! Tombstone retention: a deleted row's state is forgotten once older than
//! `merge.tombstone_retention_s`, and a change stamped before the retention is parked, so it
//! cannot bring back a row whose delete was forgotten.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_nats::jetstream;
use meshsync_core::{
    Cell, ChangeBatch, Hlc, Op, PeerId, RowChange, SchemaVersion, SourcePosition, TableName, TxnId,
    Value,
};
use meshsync_hlc::NodeId;
use meshsync_testkit::wait_until;

use crate::support::Mesh;

const WAIT: Duration = Duration::from_secs(60);

async fn tombstones(mesh: &Mesh, i: usize) -> (i64, i64) {
    let mut c = mesh.peers[i].connect().await.unwrap();
    sqlx::query_as("SELECT count(*), count(deleted_at) FROM meshsync.row_state")
        .fetch_one(&mut c)
        .await
        .unwrap()
}

#[tokio::test]
async fn old_tombstones_are_forgotten_and_older_changes_parked() {
    let config = "[merge]\ntombstone_retention_s = 6\n";
    let mesh = Mesh::start_configured(&["a", "b"], "", &[], config)
        .await
        .unwrap();
    let mut a = mesh.peers[0].connect().await.unwrap();
    sqlx::query("INSERT INTO public.items (id, v, n) VALUES (1, 'doomed', 1), (2, 'stays', 2)")
        .execute(&mut a)
        .await
        .unwrap();
    mesh.wait_all("both rows", WAIT, |r| r.len() == 2).await;
    sqlx::query("DELETE FROM public.items WHERE id = 1")
        .execute(&mut a)
        .await
        .unwrap();
    mesh.wait_all("the delete", WAIT, |r| r.len() == 1).await;
    mesh.wait_drained(WAIT).await;
    // Right after the delete every peer keeps its tombstone (and the live row's state)...
    for i in 0..2 {
        assert_eq!(tombstones(&mesh, i).await, (2, 1), "peer {i}");
    }
    // ...and forgets it once it is older than the retention, keeping the live row's.
    for i in 0..2 {
        wait_until("the tombstone forgotten", WAIT, || async {
            (tombstones(&mesh, i).await == (1, 0)).then_some(())
        })
        .await
        .unwrap();
    }

    // An insert of key 1 stamped before the retention is parked, not applied.
    let old = SystemTime::now().duration_since(UNIX_EPOCH).unwrap() - Duration::from_secs(30);
    let late = ChangeBatch {
        origin: PeerId::new("late").unwrap(),
        database: "app".into(),
        table: TableName::new("public", "items"),
        hlc: Hlc::from_unix(old, NodeId::from_peer("late")),
        position: SourcePosition("1".into()),
        txn: TxnId("1".into()),
        chunk: 0,
        schema: SchemaVersion(1),
        key_columns: vec!["id".into()],
        columns: vec!["id".into(), "v".into(), "n".into()],
        rows: vec![RowChange {
            index: 0,
            op: Op::Insert,
            key: vec![Value::Int(1)],
            cells: vec![
                Cell::Value(Value::Int(1)),
                Cell::Value(Value::Text("resurrected".into())),
                Cell::Value(Value::Int(9)),
            ],
            deltas: Vec::new(),
        }],
    };
    jetstream::new(mesh.client.clone())
        .publish(
            "mesh.changes.late",
            meshsync_wire::encode(&late).unwrap().into(),
        )
        .await
        .unwrap()
        .await
        .unwrap();
    mesh.wait_drained(WAIT).await;
    let parked = mesh.parked().await;
    for peer in ["a", "b"] {
        assert!(
            parked
                .iter()
                .any(|(s, r)| s == &format!("mesh.dlq.{peer}")
                    && r.contains("tombstone_retention_s")),
            "{peer} parked {parked:?}"
        );
    }
    for p in &mesh.peers {
        let ids: Vec<i32> = p.rows().await.unwrap().iter().map(|r| r.0).collect();
        assert_eq!(ids, vec![2], "the old insert did not apply on {}", p.id);
    }
}
