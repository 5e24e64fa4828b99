//! Merge policies through real PostgreSQL peers: per-column LWW keeps concurrent writes to
//! different columns, counters add up, deletes beat older writes and lose to newer ones, and
//! the delivery order does not matter.

use std::time::Duration;

use sqlx::PgConnection;

use crate::support::{Mesh, verify};

const WAIT: Duration = Duration::from_secs(60);

async fn exec(c: &mut PgConnection, sql: &str) {
    sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_owned()))
        .execute(c)
        .await
        .unwrap();
}

fn row(rows: &[(i32, String, Option<i64>)], id: i32) -> Option<(String, Option<i64>)> {
    rows.iter().find(|r| r.0 == id).map(|r| (r.1.clone(), r.2))
}

#[tokio::test]
async fn concurrent_updates_of_different_columns_both_survive() {
    let mut mesh = Mesh::start(&["a", "b"]).await.unwrap();
    let mut a = mesh.peers[0].connect().await.unwrap();
    exec(
        &mut a,
        "INSERT INTO public.items (id, v, n) VALUES (1, 'base', 0)",
    )
    .await;
    mesh.wait_all("the row", WAIT, |r| row(r, 1).is_some())
        .await;
    mesh.wait_drained(WAIT).await;

    // b's agent is down, so neither update sees the other: they are concurrent. b's is later
    // in time, so row-level LWW would bring back v = 'base'.
    mesh.peers[1].agent.as_mut().unwrap().kill9().unwrap();
    exec(&mut a, "UPDATE public.items SET v = 'from a' WHERE id = 1").await;
    let mut b = mesh.peers[1].connect().await.unwrap();
    exec(&mut b, "UPDATE public.items SET n = 5 WHERE id = 1").await;
    mesh.peers[1].agent.as_mut().unwrap().restart().unwrap();

    mesh.wait_all("both columns", WAIT, |r| {
        row(r, 1) == Some(("from a".into(), Some(5)))
    })
    .await;
}

#[tokio::test]
async fn counter_increments_from_three_peers_sum_exactly() {
    let config = "[merge.tables.\"public.items\"]\ncolumns = { n = \"counter\" }\n";
    let mesh = Mesh::start_configured(&["a", "b", "c"], "", &[], config)
        .await
        .unwrap();
    let mut a = mesh.peers[0].connect().await.unwrap();
    exec(
        &mut a,
        "INSERT INTO public.items (id, v, n) VALUES (1, 'counter', 10)",
    )
    .await;
    mesh.wait_all("the row", WAIT, |r| row(r, 1).is_some())
        .await;

    // Every peer changes n at the same time, many times: +1 on a, +2 on b, -1 on c.
    let steps = [1, 2, -1];
    let rounds = 25;
    let mut tasks = Vec::new();
    for (p, step) in mesh.peers.iter().zip(steps) {
        let mut c = p.connect().await.unwrap();
        tasks.push(tokio::spawn(async move {
            for _ in 0..rounds {
                exec(
                    &mut c,
                    &format!("UPDATE public.items SET n = n + {step} WHERE id = 1"),
                )
                .await;
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let expected = 10 + rounds * steps.iter().sum::<i64>();
    mesh.wait_all("the exact sum", WAIT, |r| {
        row(r, 1).and_then(|(_, n)| n) == Some(expected)
    })
    .await;
    mesh.wait_drained(WAIT).await;
    for p in &mesh.peers {
        assert_eq!(
            row(&p.rows().await.unwrap(), 1),
            Some(("counter".into(), Some(expected))),
            "peer {} after the mesh went quiet",
            p.id
        );
    }
}

#[tokio::test]
async fn a_delete_beats_an_older_update_and_a_newer_update_brings_the_row_back() {
    let mut mesh = Mesh::start(&["a", "b"]).await.unwrap();
    let mut a = mesh.peers[0].connect().await.unwrap();
    exec(
        &mut a,
        "INSERT INTO public.items (id, v, n, doc) VALUES (1, 'one', 1, '{\"d\": 1}'), \
         (2, 'two', 2, '{\"d\": 2}')",
    )
    .await;
    mesh.wait_all("the rows", WAIT, |r| r.len() == 2).await;
    mesh.wait_drained(WAIT).await;

    mesh.peers[1].agent.as_mut().unwrap().kill9().unwrap();
    let mut b = mesh.peers[1].connect().await.unwrap();
    // Key 1: b's update, then a's (newer) delete. Key 2: a's delete, then b's newer update.
    exec(
        &mut b,
        "UPDATE public.items SET v = 'older update' WHERE id = 1",
    )
    .await;
    tokio::time::sleep(Duration::from_millis(20)).await;
    exec(&mut a, "DELETE FROM public.items WHERE id IN (1, 2)").await;
    tokio::time::sleep(Duration::from_millis(20)).await;
    exec(
        &mut b,
        "UPDATE public.items SET v = 'newer update' WHERE id = 2",
    )
    .await;
    mesh.peers[1].agent.as_mut().unwrap().restart().unwrap();

    mesh.wait_all("key 1 deleted, key 2 back", WAIT, |r| {
        row(r, 1).is_none() && row(r, 2) == Some(("newer update".into(), Some(2)))
    })
    .await;
    mesh.wait_drained(WAIT).await;
    for p in &mesh.peers {
        let mut c = p.connect().await.unwrap();
        let doc: (String,) = sqlx::query_as("SELECT doc::text FROM public.items WHERE id = 2")
            .fetch_one(&mut c)
            .await
            .unwrap();
        assert_eq!(doc.0, "{\"d\": 2}", "the revived row is whole on {}", p.id);
        assert_eq!(row(&p.rows().await.unwrap(), 1), None, "key 1 on {}", p.id);
    }
}

/// Peers whose merge policies differ never converge: each agent names the peer whose changes
/// were merged under other policies (once) and counts them; peers that agree say nothing.
#[tokio::test]
async fn a_peer_merging_with_other_policies_is_named_by_the_others() {
    let mut mesh = Mesh::start(&["a", "b", "c"]).await.unwrap();
    // c merges rows whole; a and b per column (the default).
    let c = &mut mesh.peers[2];
    let mut config = std::fs::read_to_string(&c.config).unwrap();
    config.push_str("\n[merge]\ndefault = \"lww\"\n");
    std::fs::write(&c.config, config).unwrap();
    let agent = c.agent.as_mut().unwrap();
    agent.kill9().unwrap();
    agent.restart().unwrap();
    for (i, id) in [(0, 1), (1, 2), (2, 3)] {
        let mut conn = mesh.peers[i].connect().await.unwrap();
        exec(
            &mut conn,
            &format!("INSERT INTO public.items (id, v, n) VALUES ({id}, 'x', 0)"),
        )
        .await;
    }
    mesh.wait_all("every row", WAIT, |r| r.len() == 3).await;
    mesh.wait_drained(WAIT).await;

    let log = |i: usize| mesh.peers[i].agent.as_ref().unwrap().log();
    let names = |log: &str, other: &str| {
        log.matches(&format!("peer {other} merges with other policies"))
            .count()
    };
    let (a, b, c) = (log(0), log(1), log(2));
    assert_eq!(names(&a, "c"), 1, "a names c once:\n{a}");
    assert_eq!(names(&b, "c"), 1, "b names c once:\n{b}");
    assert_eq!(
        (names(&c, "a"), names(&c, "b")),
        (1, 1),
        "c names a and b:\n{c}"
    );
    assert_eq!(names(&a, "b") + names(&b, "a"), 0, "a and b agree");
    assert!(
        a.contains("make [merge] the same"),
        "the fix is named:\n{a}"
    );

    // `meshsync verify` says so too, and fails, although the rows are the same today.
    let configs: Vec<_> = mesh.peers.iter().map(|p| p.config.clone()).collect();
    let (ok, out) = verify(&configs);
    assert!(!ok, "{out}");
    assert!(
        out.contains("merge policies: DIFFER") && out.contains("c: default=lww"),
        "{out}"
    );
    assert!(out.contains("public.items: identical"), "{out}");

    // A tombstone retention other than the default counts as a difference too: b would park
    // old changes that a applies.
    let b = &mesh.peers[1];
    let mut config = std::fs::read_to_string(&b.config).unwrap();
    config.push_str("\n[merge]\ntombstone_retention_s = 3600\n");
    std::fs::write(&b.config, config).unwrap();
    let (ok, out) = verify(&configs[..2]);
    assert!(!ok, "{out}");
    assert!(
        out.contains("merge policies: DIFFER") && out.contains("tombstone_retention_s = 3600"),
        "{out}"
    );
}
