//! Crashes of real processes in the middle of a stream of writes: the mesh still converges,
//! nothing is applied twice, nothing comes back (I4, I6, I9).

use std::{collections::HashMap, time::Duration};

use meshsync_e2e::{agent::Agent, workload};

use crate::support::{Mesh, log_field};

/// `(lsn, hlc)` of every "transaction published" line of an agent log.
fn published(log: &str) -> Vec<(String, String)> {
    log.lines()
        .filter(|l| l.contains("transaction published"))
        .filter_map(|l| {
            Some((
                log_field(l, "lsn")?.to_owned(),
                log_field(l, "hlc")?.to_owned(),
            ))
        })
        .collect()
}

#[tokio::test]
async fn recapture_after_a_crash_between_publish_and_confirm_keeps_ids_and_stamps() {
    let mut mesh = Mesh::start(&["a", "b"]).await.unwrap();
    // Restart a's agent with a crash point right after the 5th acknowledged transaction.
    let a = &mut mesh.peers[0];
    drop(a.agent.take());
    a.agent = Some(
        Agent::start_with_env(
            &a.config,
            &[("MESHSYNC_FAILPOINT", "capture-abort-after-ack:5")],
        )
        .unwrap(),
    );
    mesh.wait_started(0).await.unwrap();

    let mut conn = mesh.peers[0].connect().await.unwrap();
    let mut writes = workload::run(&mut conn, "a", 7, 30, 10).await.unwrap();
    let agent = mesh.peers[0].agent.as_mut().unwrap();
    let status = agent.wait_exit(Duration::from_secs(60)).await.unwrap();
    assert!(
        !status.success(),
        "the failpoint must have crashed the agent"
    );
    agent.set_env(&[]);
    agent.restart().unwrap();
    writes.extend(workload::run(&mut conn, "a", 8, 10, 10).await.unwrap());

    mesh.assert_converged(&writes, Duration::from_secs(120))
        .await;

    // Transactions published before the crash and again after it carry the same stamp.
    let log = mesh.peers[0].agent.as_ref().unwrap().log();
    let mut first: HashMap<String, String> = HashMap::new();
    let mut again = 0;
    for (lsn, hlc) in published(&log) {
        match first.get(&lsn) {
            Some(before) => {
                assert_eq!(
                    before, &hlc,
                    "transaction at {lsn} restamped differently after the crash (I6)"
                );
                again += 1;
            }
            None => {
                first.insert(lsn, hlc);
            }
        }
    }
    assert!(
        again > 0,
        "no transaction was captured twice: the crash point missed its window; log:\n{}",
        log.lines()
            .filter(|l| l.contains("capture"))
            .collect::<Vec<_>>()
            .join("\n")
    );
}

#[tokio::test]
async fn kill9_of_an_agent_and_of_postgres_mid_stream_still_converges() {
    let mut mesh = Mesh::start(&["a", "b", "c"]).await.unwrap();
    let mut writers = Vec::new();
    for (i, p) in mesh.peers.iter().enumerate() {
        let mut conn = p.connect().await.unwrap();
        let id = p.id.clone();
        writers.push(tokio::spawn(async move {
            workload::run(&mut conn, &id, 100 + i as u64, 200, 15).await
        }));
    }
    // Crash b's agent while everyone writes, and bring it back.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let b = mesh.peers[1].agent.as_mut().unwrap();
    b.kill9().unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    b.restart().unwrap();
    let mut writes = Vec::new();
    for w in writers {
        writes.extend(w.await.unwrap().unwrap());
    }
    // Crash c's PostgreSQL (its agent keeps running and must reconnect), then write more.
    mesh.peers[2].pg.kill9().unwrap();
    mesh.peers[2].pg.restart().await.unwrap();
    let mut conn = mesh.peers[2].connect().await.unwrap();
    writes.extend(workload::run(&mut conn, "c", 999, 40, 15).await.unwrap());

    mesh.assert_converged(&writes, Duration::from_secs(180))
        .await;
}
