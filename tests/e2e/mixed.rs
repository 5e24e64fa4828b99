//! A mixed-engine mesh: two MariaDB peers and one PostgreSQL peer write the same keys at once
//! and converge (I1, I2, I3); nothing is echoed, between MariaDB peers neither (I7); crashes of
//! a MariaDB agent and of its server, with a binlog rotation in between, lose and duplicate
//! nothing.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use meshsync_core::Op;
use meshsync_e2e::{
    agent::Agent,
    checker::{self, Write},
    maria_peer::MariaPeer,
    peer::Peer,
    workload,
};
use meshsync_testkit::{MariaDb, NatsServer, wait_until};

use crate::support::{log_field, verify, wait_agent_started};

const WAIT: Duration = Duration::from_secs(60);

/// One nats-server, PostgreSQL peer `p`, MariaDB peers `m1` and `m2`, all agents started.
struct Mixed {
    _nats: NatsServer,
    client: async_nats::Client,
    pg: Peer,
    maria: Vec<MariaPeer>,
    _dir: tempfile::TempDir,
}

impl Mixed {
    async fn start() -> Mixed {
        Mixed::start_with(&[]).await
    }

    /// As [`Mixed::start`], with `m2` on the external MySQL server `mysql_url` instead of a
    /// MariaDB of its own.
    async fn start_with_mysql(mysql_url: &str) -> Mixed {
        Mixed::start_servers(&[], Some(mysql_url)).await
    }

    /// As [`Mixed::start`], with extra environment for `m1`'s agent.
    async fn start_with(m1_env: &[(&str, &str)]) -> Mixed {
        Mixed::start_servers(m1_env, None).await
    }

    async fn start_servers(m1_env: &[(&str, &str)], mysql_url: Option<&str>) -> Mixed {
        let dir = tempfile::tempdir().unwrap();
        let nats = NatsServer::start_single().await.unwrap();
        let url = nats.client_url();
        let mut pg = Peer::start("p", &url, dir.path()).await.unwrap();
        pg.start_agent().unwrap();
        let mut maria = Vec::new();
        for id in ["m1", "m2"] {
            let mut m = match mysql_url.filter(|_| id == "m2") {
                Some(server) => MariaPeer::external(id, &url, dir.path(), server).await,
                None => MariaPeer::start(id, &url, dir.path()).await,
            }
            .unwrap();
            let env = if id == "m1" { m1_env } else { &[] };
            m.start_agent_with_env(env).unwrap();
            maria.push(m);
        }
        let mixed = Mixed {
            client: async_nats::connect(&url).await.unwrap(),
            _nats: nats,
            pg,
            maria,
            _dir: dir,
        };
        let agents: Vec<&Agent> = std::iter::once(&mixed.pg.agent)
            .chain(mixed.maria.iter().map(|m| &m.agent))
            .filter_map(Option::as_ref)
            .collect();
        for a in agents {
            wait_agent_started(a).await.unwrap();
        }
        mixed
    }

    fn consumers(&self) -> Vec<String> {
        ["p", "m1", "m2"]
            .iter()
            .map(|p| format!("apply_{p}"))
            .collect()
    }

    fn configs(&self) -> Vec<std::path::PathBuf> {
        std::iter::once(self.pg.config.clone())
            .chain(self.maria.iter().map(|m| m.config.clone()))
            .collect()
    }

    /// Concurrent random writes on all three peers; the committed writes.
    async fn workload(&self, seed: u64, ops: usize) -> Vec<Write> {
        let mut c = self.pg.connect().await.unwrap();
        let pg = tokio::spawn(async move { workload::run(&mut c, "p", seed, ops, 12).await });
        let mut tasks = Vec::new();
        for (i, m) in self.maria.iter().enumerate() {
            let mut c = m.connect().await.unwrap();
            let id = m.id.clone();
            tasks.push(tokio::spawn(async move {
                workload::run_mysql(&mut c, &id, seed + 1 + i as u64, ops, 12).await
            }));
        }
        let mut writes = pg.await.unwrap().unwrap();
        for t in tasks {
            writes.extend(t.await.unwrap().unwrap());
        }
        writes
    }

    /// Waits for quiet, then: the stream holds each write once (I7), every peer holds each
    /// key's highest-HLC write (I1, I2, I3), and `meshsync verify` agrees across engines.
    async fn assert_converged(&self, writes: &[Write]) {
        if let Err(e) =
            checker::wait_quiet(&self.client, "MESH", writes.len(), &self.consumers(), WAIT).await
        {
            let logs: Vec<String> = std::iter::once(&self.pg.agent)
                .chain(self.maria.iter().map(|m| &m.agent))
                .filter_map(|a| a.as_ref().map(Agent::log))
                .collect();
            let rows = checker::rows_of(&checker::read_stream(&self.client, "MESH").await.unwrap());
            let mut by_peer = std::collections::BTreeMap::<String, (usize, usize)>::new();
            for w in writes {
                by_peer.entry(w.peer.clone()).or_default().0 += 1;
            }
            for r in &rows {
                by_peer.entry(r.origin.clone()).or_default().1 += 1;
            }
            let seen: std::collections::BTreeSet<(String, Option<String>)> = rows
                .iter()
                .map(|r| (r.origin.clone(), r.v.clone()))
                .collect();
            let missing: Vec<&Write> = writes
                .iter()
                .filter(|w| w.op != "delete" && !seen.contains(&(w.peer.clone(), w.v.clone())))
                .collect();
            panic!(
                "{e}; (writes, stream rows) per peer: {by_peer:?}; missing {missing:?}; agent logs:\n{}",
                logs.join("\n-----\n")
            );
        }
        let stream = checker::rows_of(&checker::read_stream(&self.client, "MESH").await.unwrap());
        checker::check_stream_matches_writes(&stream, writes).unwrap();
        let expected = checker::expected(&stream);
        let rows = self.pg.rows().await.unwrap();
        if rows != expected {
            // What the agent said about parking, retrying or failing, to tell a merge that
            // decided wrongly from an apply that never ran.
            let log = self.pg.agent.as_ref().map(Agent::log).unwrap_or_default();
            panic!(
                "peer p holds {rows:?}\nexpected {expected:?}\n{}",
                notable(&log)
            );
        }
        for m in &self.maria {
            let rows = m.rows().await.unwrap();
            if rows != expected {
                let logs = m.agent.as_ref().map(Agent::log).unwrap_or_default();
                let mut c = m.connect().await.unwrap();
                let states: Vec<(Vec<u8>, Option<i64>, i64)> = sqlx::query_as(
                    "SELECT pk, deleted_at, LENGTH(state) FROM meshsync.row_state ORDER BY pk",
                )
                .fetch_all(&mut c)
                .await
                .unwrap();
                let states: Vec<(String, Option<i64>, i64)> = states
                    .into_iter()
                    .map(|(k, d, l)| (String::from_utf8_lossy(&k).into_owned(), d, l))
                    .collect();
                let extra: Vec<i32> = rows
                    .iter()
                    .filter(|r| !expected.contains(r))
                    .map(|r| r.0)
                    .collect();
                let history: Vec<String> = stream
                    .iter()
                    .filter(|r| extra.contains(&r.id))
                    .map(|r| format!("{} {:?} {} {:?} {:?}", r.id, r.op, r.origin, r.hlc, r.v))
                    .collect();
                panic!(
                    "peer {} holds {rows:?}\nexpected {expected:?}\nhistory {history:#?}\nstates {states:?}\n{}",
                    m.id,
                    notable(&logs)
                );
            }
        }
        let (ok, out) = verify(&self.configs());
        assert!(ok, "verify across engines:\n{out}");
        assert!(out.contains("identical on p, m1, m2"), "{out}");
    }
}

#[tokio::test]
async fn two_mariadb_peers_and_a_postgres_peer_converge_under_conflicting_writes() {
    let mesh = Mixed::start().await;
    let writes = mesh.workload(0x3e7, 120).await;
    mesh.assert_converged(&writes).await;
    // A MariaDB peer's capture publishes its own rows and drops apply's (skipped transactions,
    // I7); the progress line counts both.
    for m in &mesh.maria {
        let agent = m.agent.as_ref().unwrap();
        let own = writes.iter().filter(|w| w.peer == m.id).count() as u64;
        wait_until("progress totals", WAIT, || async {
            let line = agent
                .log()
                .lines()
                .rev()
                .find(|l| l.contains(" progress "))?
                .to_owned();
            let total = |field: &str| -> Option<u64> { log_field(&line, field)?.parse().ok() };
            // Every write of its own, once; some of the others' rows applied and dropped.
            (total("captured")? == own && total("echoed")? > 0).then_some(())
        })
        .await
        .unwrap_or_else(|e| panic!("{e}; {} wrote {own}; log:\n{}", m.id, agent.log()));
    }
}

/// A local insert that commits while the apply transaction of a newer remote delete of the
/// same key is still open, after that transaction's DELETE found no row (READ COMMITTED does
/// not wait for rows not yet committed), lands after the delete in the table but loses to it
/// (MariaDB stamps to the second): when it comes back from the stream, apply deletes it again.
#[tokio::test]
async fn a_local_insert_racing_a_newer_remote_delete_is_deleted_again() {
    let mesh = Mixed::start_with(&[("MESHSYNC_FAILPOINT", "apply-pause-before-commit:1500")]).await;
    let m1 = &mesh.maria[0];
    let m1_log = || m1.agent.as_ref().map(Agent::log).unwrap_or_default();
    let mut pg = mesh.pg.connect().await.unwrap();
    let mut maria = m1.connect().await.unwrap();
    let js = async_nats::jetstream::new(mesh.client.clone());
    let mut writes = Vec::new();
    let mut raced = 0;
    for attempt in 0..4 {
        let id = 100 + attempt;
        // Early in a second, so that the MariaDB insert below lands in the same second as the
        // remote delete and is stamped before it.
        let into_second = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .subsec_millis();
        tokio::time::sleep(Duration::from_millis(u64::from(1020 - into_second))).await;
        let before = stream_messages(&js).await.unwrap().0;
        let v = format!("p-race-{attempt}");
        let mut tx = sqlx::Connection::begin(&mut pg).await.unwrap();
        sqlx::query("INSERT INTO public.items (id, v) VALUES ($1, $2)")
            .bind(id)
            .bind(&v)
            .execute(&mut *tx)
            .await
            .unwrap();
        sqlx::query("DELETE FROM public.items WHERE id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await
            .unwrap();
        tx.commit().await.unwrap();
        writes.push(write("p", id, "insert", Some(v)));
        writes.push(write("p", id, "delete", None));
        // Once m1's apply of that transaction has run its DELETE and holds the transaction
        // open, insert the key on m1.
        let sequence = wait_until("the delete on the stream", WAIT, || async {
            let (messages, last) = stream_messages(&js).await?;
            (messages > before).then_some(last)
        })
        .await
        .unwrap();
        let paused = format!("upto={sequence}");
        wait_until("m1's apply paused before its commit", WAIT, || async {
            m1_log()
                .lines()
                .any(|l| l.contains("apply paused before commit") && l.ends_with(&paused))
                .then_some(())
        })
        .await
        .unwrap();
        let mine = format!("m1-race-{attempt}");
        sqlx::query("INSERT INTO public.items (id, v) VALUES (?, ?)")
            .bind(id)
            .bind(&mine)
            .execute(&mut maria)
            .await
            .unwrap();
        writes.push(write("m1", id, "insert", Some(mine)));
        mesh.assert_converged(&writes).await;
        let stream = checker::rows_of(&checker::read_stream(&mesh.client, "MESH").await.unwrap());
        let stamp = |origin: &str, op: Op| {
            stream
                .iter()
                .find(|r| r.id == id && r.origin == origin && r.op == op)
                .map(|r| r.hlc)
                .unwrap()
        };
        if stamp("m1", Op::Insert) < stamp("p", Op::Delete) {
            // The insert lost: converged means m1 deleted its own row again.
            assert!(!m1.rows().await.unwrap().iter().any(|r| r.0 == id));
            raced += 1;
            break;
        }
    }
    assert!(
        raced > 0,
        "the local insert never fell in the remote delete's second; log:\n{}",
        m1_log()
    );
}

/// The global stream's message count and last sequence.
async fn stream_messages(js: &async_nats::jetstream::Context) -> Option<(u64, u64)> {
    let mut stream = js.get_stream("MESH").await.ok()?;
    let state = &stream.info().await.ok()?.state;
    Some((state.messages, state.last_sequence))
}

/// Causality on MariaDB (I8): its binlog stamps commits to the second, so a local write made
/// right after applying a PostgreSQL change of the same second is ordered after it only by
/// the applied HLC that capture reads from `meshsync.applied`.
#[tokio::test]
async fn a_mariadb_write_after_applying_a_change_of_the_same_second_wins() {
    let mesh = Mixed::start().await;
    let m1 = &mesh.maria[0];
    let mut pg = mesh.pg.connect().await.unwrap();
    let mut maria = m1.connect().await.unwrap();
    let mut writes = Vec::new();
    for attempt in 0..3 {
        let id = 200 + attempt;
        let remote = format!("p-{attempt}");
        // Late in a second: the MariaDB update below most likely lands in the same second,
        // whose start is before the PostgreSQL stamp.
        let into_second = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .subsec_millis();
        tokio::time::sleep(Duration::from_millis(u64::from(
            (1500 - into_second) % 1000,
        )))
        .await;
        sqlx::query("INSERT INTO public.items (id, v) VALUES ($1, $2)")
            .bind(id)
            .bind(&remote)
            .execute(&mut pg)
            .await
            .unwrap();
        writes.push(write("p", id, "insert", Some(remote.clone())));
        wait_until("the remote row on m1", WAIT, || async {
            m1.rows()
                .await
                .ok()?
                .iter()
                .any(|r| r.0 == id && r.1 == remote)
                .then_some(())
        })
        .await
        .unwrap();
        let local = format!("m1-after-{attempt}");
        sqlx::query("UPDATE public.items SET v = ? WHERE id = ?")
            .bind(&local)
            .bind(id)
            .execute(&mut maria)
            .await
            .unwrap();
        writes.push(write("m1", id, "update", Some(local.clone())));
        // Every peer, m1 included, ends with the later write.
        mesh.assert_converged(&writes).await;
        assert!(
            mesh.pg
                .rows()
                .await
                .unwrap()
                .iter()
                .any(|r| r.0 == id && r.1 == local),
            "the write made after the remote one must win"
        );
    }
}

fn write(peer: &str, id: i32, op: &'static str, v: Option<String>) -> Write {
    Write {
        peer: peer.to_owned(),
        id,
        op,
        v,
    }
}

/// The mesh above with a MySQL 8 peer: runs when `MESHSYNC_TEST_MYSQL_URL` names a disposable
/// MySQL 8 server (`mysql://root:pw@host:port`; its databases `public` and `meshsync` are
/// replaced). No MySQL server can run on our machines: without the variable the test says so
/// and passes.
#[tokio::test]
async fn a_mysql8_peer_converges_with_mariadb_and_postgres_peers() {
    let Ok(server) = std::env::var("MESHSYNC_TEST_MYSQL_URL") else {
        println!(
            "skipped: MESHSYNC_TEST_MYSQL_URL is not set (MySQL 8 cannot run on this machine; \
             set it to a disposable MySQL 8 server to run this test)"
        );
        return;
    };
    let mesh = Mixed::start_with_mysql(&server).await;
    let writes = mesh.workload(0x5e8, 120).await;
    mesh.assert_converged(&writes).await;
}

#[tokio::test]
async fn mariadb_agent_and_server_crashes_with_a_binlog_rotation_lose_nothing() {
    let mut mesh = Mixed::start().await;
    let mut writes = mesh.workload(0xc4a5, 40).await;
    // The agent dies mid-stream; writes go on and the binlog rotates while it is down.
    let m1 = &mut mesh.maria[0];
    m1.agent.as_mut().unwrap().kill9().unwrap();
    let mut c = m1.connect().await.unwrap();
    writes.extend(workload::run_mysql(&mut c, "m1", 77, 30, 12).await.unwrap());
    sqlx::raw_sql("FLUSH BINARY LOGS")
        .execute(&mut c)
        .await
        .unwrap();
    writes.extend(workload::run_mysql(&mut c, "m1", 78, 30, 12).await.unwrap());
    drop(c);
    m1.agent.as_mut().unwrap().restart().unwrap();
    writes.extend(mesh.workload(0xc4a6, 30).await);
    // Then the MariaDB server itself dies under load and comes back.
    let m1 = &mut mesh.maria[0];
    let server = m1.db.as_mut().unwrap();
    server.kill9().unwrap();
    server.restart().await.unwrap();
    writes.extend(mesh.workload(0xc4a7, 30).await);
    mesh.assert_converged(&writes).await;
}

#[tokio::test]
async fn a_statement_format_binlog_is_refused_at_start_naming_the_setting() {
    let dir = tempfile::tempdir().unwrap();
    let nats = NatsServer::start_single().await.unwrap();
    let db = MariaDb::start_with(&["--binlog-format=STATEMENT"])
        .await
        .unwrap();
    db.create_database("public").await.unwrap();
    let config = dir.path().join("peer-s.toml");
    std::fs::write(
        &config,
        format!(
            "[peer]\nid = \"s\"\n[nats]\nurl = \"{}\"\n[database]\nengine = \"mysql\"\nurl = \"{}\"\ntables = [\"public.items\"]\n",
            nats.client_url(),
            db.url("public")
        ),
    )
    .unwrap();
    let mut agent = Agent::start(&config).unwrap();
    let status = agent.wait_exit(Duration::from_secs(60)).await.unwrap();
    assert!(!status.success());
    let log = agent.log();
    assert!(
        log.contains("binlog_format") && log.contains("ROW"),
        "the error names the setting and the fix:\n{log}"
    );
}

/// The lines of an agent's log that say it parked, retried or failed (progress lines only
/// when something was parked).
fn notable(log: &str) -> String {
    log.lines()
        .filter(|l| {
            l.contains("WARN")
                || l.contains("ERROR")
                || (l.contains("parked") && !l.contains("parked=0"))
        })
        .collect::<Vec<_>>()
        .join("\n")
}
