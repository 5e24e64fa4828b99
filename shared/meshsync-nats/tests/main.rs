//! JetStream plumbing against a real nats-server: publish and consume, de-duplication by
//! message id, redelivery of unacked messages, the edge topology with the hub offline, and
//! the conflict streams of both topologies.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::time::Duration;

use async_nats::jetstream;
use meshsync_core::{
    Cell, ChangeBatch, Hlc, Op, PeerId, RowChange, SchemaVersion, SourcePosition, TableName, TxnId,
    Value,
};
use meshsync_nats::{
    Topology,
    inbox::{Inbox, InboxSettings},
    provision,
    publisher::Publisher,
    topology::{CONFLICT_MAX_AGE, CONFLICT_MAX_BYTES},
};
use meshsync_testkit::{NatsServer, wait_until};
use meshsync_wire::{conflict, decode, headers, subject};

mod secure;

pub(crate) fn batch(origin: &str, position: &str, v: i64) -> ChangeBatch {
    ChangeBatch {
        origin: PeerId::new(origin).unwrap(),
        database: "app".into(),
        table: TableName::new("public", "items"),
        hlc: Hlc {
            time: 1_000 + v as u64,
            node: 7,
        },
        position: SourcePosition(position.into()),
        txn: TxnId("1".into()),
        chunk: 0,
        schema: SchemaVersion(1),
        key_columns: vec!["id".into()],
        columns: vec!["id".into(), "v".into()],
        rows: vec![RowChange {
            index: 0,
            op: Op::Insert,
            key: vec![Value::Int(v)],
            cells: vec![Cell::Value(Value::Int(v)), Cell::Value(Value::Int(v))],
            deltas: Vec::new(),
        }],
    }
}

/// Checks the conflict stream `name`: its subjects, file storage, replicas and retention.
async fn assert_conflict_stream(
    js: &jetstream::Context,
    name: &str,
    subjects: &str,
    replicas: usize,
) {
    let mut s = js
        .get_stream(name)
        .await
        .unwrap_or_else(|e| panic!("conflict stream {name} missing: {e}"));
    let c = s.info().await.unwrap().config.clone();
    assert_eq!(c.subjects, vec![subjects.to_owned()], "{name}");
    assert_eq!(c.storage, jetstream::stream::StorageType::File, "{name}");
    assert_eq!(c.num_replicas, replicas, "{name}");
    assert_eq!(c.max_age, CONFLICT_MAX_AGE, "{name}");
    assert_eq!(c.max_age, Duration::from_secs(7 * 24 * 3600), "{name}");
    assert_eq!(c.max_bytes, CONFLICT_MAX_BYTES, "{name}");
    assert_eq!(c.discard, jetstream::stream::DiscardPolicy::Old, "{name}");
}

/// Publishes a conflict-shaped message on `subject` through `client`; the stream's ack.
async fn log_conflict(
    client: &async_nats::Client,
    subject: String,
    id: &str,
) -> jetstream::publish::PublishAck {
    let mut h = async_nats::HeaderMap::new();
    h.insert(headers::MSG_ID, id);
    h.insert(headers::TABLE, "public.items");
    h.insert(conflict::WINNER, "incoming");
    jetstream::new(client.clone())
        .publish_with_headers(subject, h, "{}".into())
        .await
        .unwrap()
        .await
        .unwrap()
}

async fn stream_count(js: &jetstream::Context, name: &str) -> u64 {
    match js.get_stream(name).await {
        Ok(mut s) => s.info().await.map(|i| i.state.messages).unwrap_or(0),
        Err(_) => 0,
    }
}

#[tokio::test]
async fn publish_then_consume_with_headers() {
    let nats = NatsServer::start_single().await.unwrap();
    let client = meshsync_nats::connect(&nats.client_url(), "test", &Default::default())
        .await
        .unwrap();
    provision(&client, &Topology::Direct { replicas: 1 })
        .await
        .unwrap();
    provision(&client, &Topology::Direct { replicas: 1 })
        .await
        .unwrap(); // idempotent
    let a = PeerId::new("a").unwrap();
    let endpoints = Topology::Direct { replicas: 1 }.endpoints(&a);
    assert_eq!(endpoints.conflict_subject, "mesh.conflicts.a");
    assert_eq!(endpoints.conflict_stream, "MESH_CONFLICTS");
    let js = jetstream::new(client.clone());
    assert_conflict_stream(&js, "MESH_CONFLICTS", "mesh.conflicts.>", 1).await;
    // A peer's conflict lands in the conflict stream, and nowhere else.
    let logged = log_conflict(&client, endpoints.conflict_subject.clone(), "c1").await;
    assert_eq!(logged.stream, "MESH_CONFLICTS");
    let stored = js
        .get_stream("MESH_CONFLICTS")
        .await
        .unwrap()
        .get_last_raw_message_by_subject("mesh.conflicts.a")
        .await
        .unwrap();
    assert_eq!(
        stored.headers.get(conflict::WINNER).map(|v| v.as_str()),
        Some("incoming")
    );
    assert_eq!(stream_count(&js, subject::GLOBAL_STREAM).await, 0);
    assert_eq!(stream_count(&js, subject::DEAD_LETTER_STREAM).await, 0);
    let publisher = Publisher::new(client.clone(), subject::direct(&a));
    let sent = batch("a", "0000000000000010", 1);
    let stored = publisher.send(&sent).await.unwrap().acked().await.unwrap();
    assert!(!stored.duplicate);
    assert_eq!(stored.position.get(), &sent.position);

    let inbox = Inbox::open(
        client,
        subject::GLOBAL_STREAM,
        &InboxSettings::for_durable("apply_b"),
    )
    .await
    .unwrap();
    let got = inbox.fetch(10, Duration::from_secs(5)).await.unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(decode(got[0].payload()).unwrap(), sent);
    assert_eq!(got[0].header(headers::MSG_ID), Some("a:0000000000000010:0"));
    assert_eq!(got[0].header(headers::TABLE), Some("public.items"));
    assert_eq!(got[0].header(headers::OP), Some("insert"));
    got[0].double_ack().await.unwrap();
    assert!(
        inbox
            .fetch(10, Duration::from_millis(500))
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn the_same_message_id_is_stored_once() {
    let nats = NatsServer::start_single().await.unwrap();
    let client = meshsync_nats::connect(&nats.client_url(), "test", &Default::default())
        .await
        .unwrap();
    provision(&client, &Topology::Direct { replicas: 1 })
        .await
        .unwrap();
    let publisher = Publisher::new(client.clone(), "mesh.changes.a");
    let b = batch("a", "0000000000000020", 2);
    let first = publisher.send(&b).await.unwrap().acked().await.unwrap();
    // A re-capture after a crash publishes the same batch again.
    let again = publisher.send(&b).await.unwrap().acked().await.unwrap();
    assert!(!first.duplicate);
    assert!(
        again.duplicate,
        "JetStream must recognise the repeated Nats-Msg-Id"
    );
    assert_eq!(again.sequence, first.sequence);
    let js = jetstream::new(client);
    assert_eq!(stream_count(&js, subject::GLOBAL_STREAM).await, 1);
}

#[tokio::test]
async fn an_unacked_message_is_redelivered() {
    let nats = NatsServer::start_single().await.unwrap();
    let client = meshsync_nats::connect(&nats.client_url(), "test", &Default::default())
        .await
        .unwrap();
    provision(&client, &Topology::Direct { replicas: 1 })
        .await
        .unwrap();
    Publisher::new(client.clone(), "mesh.changes.a")
        .send(&batch("a", "30", 3))
        .await
        .unwrap()
        .acked()
        .await
        .unwrap();
    let settings = InboxSettings {
        ack_wait: Duration::from_secs(1),
        ..InboxSettings::for_durable("apply_c")
    };
    let inbox = Inbox::open(client, subject::GLOBAL_STREAM, &settings)
        .await
        .unwrap();
    let first = inbox.fetch(1, Duration::from_secs(5)).await.unwrap();
    assert_eq!(first.len(), 1);
    assert_eq!(first[0].delivered(), 1);
    // Not acked: an apply that crashed before its commit. JetStream sends it again.
    let again = wait_until("redelivery", Duration::from_secs(20), || {
        let inbox = &inbox;
        async move {
            inbox
                .fetch(1, Duration::from_millis(500))
                .await
                .ok()
                .filter(|v| !v.is_empty())
        }
    })
    .await
    .unwrap();
    assert_eq!(again[0].sequence(), first[0].sequence());
    assert_eq!(again[0].delivered(), 2);
}

#[tokio::test]
async fn an_edge_site_publishes_offline_and_catches_up_exactly_once() {
    let mut hub = NatsServer::start_hub().await.unwrap();
    let leaf_url = hub.leaf_url().unwrap();
    let site_a = NatsServer::start_leaf(&leaf_url, "a").await.unwrap();
    let site_b = NatsServer::start_leaf(&leaf_url, "b").await.unwrap();
    let ca = meshsync_nats::connect(&site_a.client_url(), "site a", &Default::default())
        .await
        .unwrap();
    let cb = meshsync_nats::connect(&site_b.client_url(), "site b", &Default::default())
        .await
        .unwrap();
    let hub_client = meshsync_nats::connect(&hub.client_url(), "hub", &Default::default())
        .await
        .unwrap();
    for (c, d) in [(&ca, "a"), (&cb, "b")] {
        let topo = Topology::Edge {
            domain: d.into(),
            hub_replicas: 1,
        };
        let topo = &topo;
        wait_until(
            "edge provisioning",
            Duration::from_secs(30),
            || async move {
                match provision(c, topo).await {
                    Ok(()) => Some(()),
                    Err(e) => {
                        eprintln!("provision: {e}: {:?}", std::error::Error::source(&e));
                        None
                    }
                }
            },
        )
        .await
        .unwrap();
    }
    let hub_js = jetstream::new(hub_client);
    let b_js = jetstream::new(cb.clone());
    let a_js = jetstream::new(ca.clone());
    assert_conflict_stream(&a_js, "CONFLICTS_a", "mesh.site.a.conflicts.>", 1).await;
    assert_conflict_stream(&b_js, "CONFLICTS_b", "mesh.site.b.conflicts.>", 1).await;
    // The hub holds no conflict stream: conflicts stay at their site.
    assert!(hub_js.get_stream("MESH_CONFLICTS").await.is_err());
    assert!(hub_js.get_stream("CONFLICTS_a").await.is_err());

    hub.stop().unwrap();
    let peer = PeerId::new("pa").unwrap();
    // With the hub down, the site's leaf still stores a conflict of its peer.
    let edge_a = Topology::Edge {
        domain: "a".into(),
        hub_replicas: 1,
    }
    .endpoints(&peer);
    assert_eq!(edge_a.conflict_subject, "mesh.site.a.conflicts.pa");
    assert_eq!(edge_a.conflict_stream, "CONFLICTS_a");
    let logged = log_conflict(&ca, edge_a.conflict_subject.clone(), "c-offline").await;
    assert_eq!(logged.stream, "CONFLICTS_a");
    assert_eq!(stream_count(&a_js, "CONFLICTS_a").await, 1);
    let publisher = Publisher::new(ca.clone(), subject::outbox("a", &peer));
    let stored = publisher
        .send(&batch("pa", "40", 4))
        .await
        .unwrap()
        .acked()
        .await
        .unwrap();
    assert!(
        !stored.duplicate,
        "the leaf acked the publish with the hub down"
    );

    hub.restart().await.unwrap();
    let hub_js2 = hub_js.clone();
    wait_until(
        "the change in the hub's MESH",
        Duration::from_secs(60),
        || {
            let js = hub_js2.clone();
            async move { (stream_count(&js, subject::GLOBAL_STREAM).await >= 1).then_some(()) }
        },
    )
    .await
    .unwrap();
    let in_b = subject::site_copy_stream("b");
    wait_until(
        "the change in site b's copy",
        Duration::from_secs(60),
        || {
            let js = b_js.clone();
            let name = in_b.clone();
            async move { (stream_count(&js, &name).await >= 1).then_some(()) }
        },
    )
    .await
    .unwrap();
    // A second publish flows through too; counting both proves the first arrived once.
    publisher
        .send(&batch("pa", "41", 5))
        .await
        .unwrap()
        .acked()
        .await
        .unwrap();
    wait_until(
        "the second change at site b",
        Duration::from_secs(60),
        || {
            let js = b_js.clone();
            let name = in_b.clone();
            async move { (stream_count(&js, &name).await >= 2).then_some(()) }
        },
    )
    .await
    .unwrap();
    assert_eq!(stream_count(&hub_js, subject::GLOBAL_STREAM).await, 2);
    assert_eq!(stream_count(&b_js, &in_b).await, 2);
    let inbox = Inbox::open(cb, &in_b, &InboxSettings::for_durable("apply_pb"))
        .await
        .unwrap();
    let got = inbox.fetch(10, Duration::from_secs(5)).await.unwrap();
    let positions: Vec<String> = got
        .iter()
        .map(|d| decode(d.payload()).unwrap().position.0)
        .collect();
    assert_eq!(positions, ["40", "41"]);
}

#[tokio::test]
async fn on_a_hub_cluster_the_global_stream_is_r3() {
    let cluster = meshsync_testkit::NatsCluster::start(3).await.unwrap();
    let client = meshsync_nats::connect(&cluster.client_url(), "test", &Default::default())
        .await
        .unwrap();
    provision(&client, &Topology::Direct { replicas: 3 })
        .await
        .unwrap();
    let js = jetstream::new(client.clone());
    let mut s = js.get_stream(subject::GLOBAL_STREAM).await.unwrap();
    let info = s.info().await.unwrap();
    assert_eq!(info.config.num_replicas, 3);
    assert_eq!(info.config.storage, jetstream::stream::StorageType::File);
    assert_conflict_stream(&js, conflict::STREAM, conflict::SUBJECTS, 3).await;
    // An R3 publish is acknowledged once a quorum stored it.
    let stored = Publisher::new(client, "mesh.changes.a")
        .send(&batch("a", "50", 5))
        .await
        .unwrap()
        .acked()
        .await
        .unwrap();
    assert_eq!(stored.sequence, 1);
}
