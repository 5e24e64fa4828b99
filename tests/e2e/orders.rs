//! The same random changes from three origins, delivered to two PostgreSQL peers in two
//! different orders (with duplicates), leave identical tables (I4, I5).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_nats::jetstream;
use meshsync_core::{
    Cell, ChangeBatch, Hlc, Op, PeerId, RowChange, SchemaVersion, SourcePosition, TableName, TxnId,
    Value,
};
use meshsync_e2e::workload::Rng;
use meshsync_hlc::NodeId;
use sqlx::Row;

use crate::support::Mesh;

/// `n` one-row changes on keys 1..=5 from origins x, y, z, stamped in the last minute (ties
/// between origins included), each origin's in increasing stamp order.
fn random_changes(seed: u64, n: usize) -> Vec<ChangeBatch> {
    let mut rng = Rng::new(seed);
    let base = SystemTime::now().duration_since(UNIX_EPOCH).unwrap() - Duration::from_secs(60);
    let origins = ["x", "y", "z"];
    let mut out = Vec::new();
    for i in 0..n {
        let origin = origins[rng.below(3) as usize];
        let at = base + Duration::from_millis(rng.below(40) * 250);
        let id = 1 + rng.below(5) as i32;
        let op = match rng.below(10) {
            0..=3 => Op::Insert,
            4..=7 => Op::Update,
            _ => Op::Delete,
        };
        let tag = format!("{origin}{i}");
        let write = |yes: bool, v: Value| if yes { Cell::Value(v) } else { Cell::Kept(v) };
        let cells = match op {
            Op::Delete => Vec::new(),
            Op::Insert => vec![
                Cell::Value(Value::Int(id.into())),
                Cell::Value(Value::Text(tag.clone())),
                Cell::Value(Value::Int(i as i64)),
                Cell::Value(Value::Null),
            ],
            _ => {
                let (v, n) = match rng.below(3) {
                    0 => (true, false),
                    1 => (false, true),
                    _ => (true, true),
                };
                vec![
                    Cell::Kept(Value::Int(id.into())),
                    write(v, Value::Text(tag.clone())),
                    write(n, Value::Int(i as i64)),
                    Cell::Kept(Value::Null),
                ]
            }
        };
        out.push(ChangeBatch {
            origin: PeerId::new(origin).unwrap(),
            database: "app".into(),
            table: TableName::new("public", "items"),
            hlc: Hlc::from_unix(at, NodeId::from_peer(origin)),
            position: SourcePosition(format!("{i:016X}")),
            txn: TxnId(i.to_string()),
            chunk: 0,
            schema: SchemaVersion(1),
            key_columns: vec!["id".into()],
            columns: vec!["id".into(), "v".into(), "n".into(), "doc".into()],
            rows: vec![RowChange {
                index: 0,
                op,
                key: vec![Value::Int(id.into())],
                cells,
                deltas: Vec::new(),
            }],
        });
    }
    out
}

async fn publish(mesh: &Mesh, batches: &[&ChangeBatch]) {
    let js = jetstream::new(mesh.client.clone());
    for b in batches {
        js.publish(
            format!("mesh.changes.{}", b.origin),
            meshsync_wire::encode(b).unwrap().into(),
        )
        .await
        .unwrap()
        .await
        .unwrap();
    }
}

async fn table(mesh: &Mesh) -> Vec<(i32, String, Option<i64>, Option<String>)> {
    let mut c = mesh.peers[0].connect().await.unwrap();
    sqlx::query("SELECT id, v, n, doc::text FROM public.items ORDER BY id")
        .fetch_all(&mut c)
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
        .collect()
}

#[tokio::test]
async fn two_delivery_orders_with_duplicates_give_identical_tables() {
    let seed = std::env::var("MESHSYNC_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x0_5eed);
    println!("seed {seed}");
    let changes = random_changes(seed, 120);
    let (one, two) = tokio::join!(Mesh::start(&["p"]), Mesh::start(&["q"]));
    let (one, two) = (one.unwrap(), two.unwrap());

    // One: origin by origin. Two: stream order reversed, every third change twice.
    let mut by_origin: Vec<&ChangeBatch> = changes.iter().collect();
    by_origin.sort_by_key(|b| b.origin.to_string());
    let mut reversed = Vec::new();
    for (i, b) in changes.iter().rev().enumerate() {
        reversed.push(b);
        if i % 3 == 0 {
            reversed.push(b);
        }
    }
    publish(&one, &by_origin).await;
    publish(&two, &reversed).await;
    one.wait_drained(Duration::from_secs(60)).await;
    two.wait_drained(Duration::from_secs(60)).await;

    let (a, b) = (table(&one).await, table(&two).await);
    assert!(!a.is_empty(), "the workload leaves some rows");
    assert_eq!(a, b, "delivery order changed the result (seed {seed})");
}
