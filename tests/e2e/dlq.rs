//! Bad input never stops the mesh (I10) and far-future stamps are parked (I11): each bad
//! message is parked with its reason on the dead-letter stream, and everything after it
//! still applies.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_nats::jetstream;
use meshsync_core::{
    Cell, ChangeBatch, Hlc, Op, PeerId, RowChange, SchemaVersion, SourcePosition, TableName, TxnId,
    Value,
};
use meshsync_e2e::checker;
use meshsync_hlc::NodeId;
use meshsync_testkit::wait_until;

use crate::support::Mesh;

fn batch(table: &str, hlc: Hlc, position: &str, rows: Vec<(i64, Cell)>) -> ChangeBatch {
    ChangeBatch {
        origin: PeerId::new("intruder").unwrap(),
        database: "app".into(),
        table: TableName::parse(table).unwrap(),
        hlc,
        position: SourcePosition(position.into()),
        txn: TxnId("1".into()),
        chunk: 0,
        schema: SchemaVersion(1),
        key_columns: vec!["id".into()],
        columns: vec!["id".into(), "v".into(), "n".into()],
        rows: rows
            .into_iter()
            .enumerate()
            .map(|(i, (id, n))| RowChange {
                index: i as u32,
                op: Op::Insert,
                key: vec![Value::Int(id)],
                cells: vec![
                    Cell::Value(Value::Int(id)),
                    Cell::Value(Value::Text(format!("row {id}"))),
                    n,
                ],
                deltas: Vec::new(),
            })
            .collect(),
    }
}

async fn inject(client: &async_nats::Client, id: &str, body: Vec<u8>) {
    let js = jetstream::new(client.clone());
    let mut h = async_nats::HeaderMap::new();
    h.insert("Nats-Msg-Id", id);
    js.publish_with_headers("mesh.changes.intruder", h, body.into())
        .await
        .unwrap()
        .await
        .unwrap();
}

#[tokio::test]
async fn bad_messages_are_parked_with_reasons_and_the_rest_applies() {
    let mesh = Mesh::start(&["a", "b"]).await.unwrap();
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    let node = NodeId::from_peer("intruder");
    let encode = |b: &ChangeBatch| meshsync_wire::encode(b).unwrap();

    inject(&mesh.client, "bad-1", b"\x93not msgpack at all".to_vec()).await;
    inject(
        &mesh.client,
        "bad-2",
        encode(&batch(
            "public.nope",
            Hlc::from_unix(now, node),
            "2",
            vec![(1, Cell::Value(Value::Int(1)))],
        )),
    )
    .await;
    let future = Hlc::from_unix(now + Duration::from_secs(3600), node);
    inject(
        &mesh.client,
        "bad-3",
        encode(&batch(
            "public.items",
            future,
            "3",
            vec![(900, Cell::Value(Value::Int(1)))],
        )),
    )
    .await;
    // One row the column cannot hold (text into int8) between two good ones.
    let mixed = batch(
        "public.items",
        Hlc::from_unix(now, node),
        "4",
        vec![
            (1001, Cell::Value(Value::Int(7))),
            (1002, Cell::Value(Value::Text("not a number".into()))),
            (1003, Cell::Value(Value::Int(9))),
        ],
    );
    inject(&mesh.client, "bad-4", encode(&mixed)).await;

    // A normal write after all of that still reaches every peer.
    let mut a = mesh.peers[0].connect().await.unwrap();
    sqlx::query("INSERT INTO public.items (id, v, n) VALUES (500, 'after', 1)")
        .execute(&mut a)
        .await
        .unwrap();
    for p in &mesh.peers {
        wait_until(
            &format!("the later write on {}", p.id),
            Duration::from_secs(60),
            || async {
                p.rows()
                    .await
                    .ok()?
                    .iter()
                    .any(|r| r.0 == 500)
                    .then_some(())
            },
        )
        .await
        .unwrap();
    }
    checker::wait_drained(
        &mesh.client,
        "MESH",
        &mesh.consumers(),
        Duration::from_secs(60),
    )
    .await
    .unwrap();
    for p in &mesh.peers {
        let ids: Vec<i32> = p.rows().await.unwrap().iter().map(|r| r.0).collect();
        assert_eq!(
            ids,
            vec![500, 1001, 1003],
            "peer {}: only the good rows apply",
            p.id
        );
    }

    // Each peer parked the four bad messages, each with its reason.
    let reasons = mesh.parked().await;
    for peer in ["a", "b"] {
        let mine: Vec<&String> = reasons
            .iter()
            .filter(|(s, _)| s == &format!("mesh.dlq.{peer}"))
            .map(|(_, r)| r)
            .collect();
        assert_eq!(mine.len(), 4, "peer {peer} parked {mine:?}");
        assert!(
            mine.iter().any(|r| r.contains("malformed envelope")),
            "{mine:?}"
        );
        assert!(
            mine.iter()
                .any(|r| r.contains("public.nope is not replicated")),
            "{mine:?}"
        );
        assert!(
            mine.iter().any(|r| r.contains("ahead of local time")),
            "{mine:?}"
        );
        assert!(
            mine.iter()
                .any(|r| r.starts_with("row 1:") && r.contains("\"n\"")),
            "{mine:?}"
        );
        assert!(
            mine.iter().all(|r| !r.contains("not a number")),
            "row values must not leak into reasons: {mine:?}"
        );
    }
}
