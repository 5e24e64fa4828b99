//! A mixed-engine mesh: two MariaDB peers and one PostgreSQL peer write the same keys at once
//! and converge (I1, I2, I3); nothing is echoed, between MariaDB peers neither (I7); crashes of
//! a MariaDB agent and of its server, with a binlog rotation in between, lose and duplicate
//! nothing.

use std::time::Duration;

use meshsync_e2e::{
    agent::Agent,
    checker::{self, Write},
    maria_peer::MariaPeer,
    peer::Peer,
    workload,
};
use meshsync_testkit::{MariaDb, NatsServer, wait_until};

use crate::support::verify;

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
        let dir = tempfile::tempdir().unwrap();
        let nats = NatsServer::start_single().await.unwrap();
        let url = nats.client_url();
        let mut pg = Peer::start("p", &url, dir.path()).await.unwrap();
        pg.start_agent().unwrap();
        let mut maria = Vec::new();
        for id in ["m1", "m2"] {
            let mut m = MariaPeer::start(id, &url, dir.path()).await.unwrap();
            m.start_agent().unwrap();
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
            wait_started(a).await;
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
        assert_eq!(self.pg.rows().await.unwrap(), expected, "peer p");
        for m in &self.maria {
            let rows = m.rows().await.unwrap();
            if rows != expected {
                let logs = m.agent.as_ref().map(Agent::log).unwrap_or_default();
                let notable: Vec<&str> = logs
                    .lines()
                    .filter(|l| l.contains("WARN") || l.contains("ERROR") || l.contains("parked"))
                    .collect();
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
                    notable.join("\n")
                );
            }
        }
        let (ok, out) = verify(&self.configs());
        assert!(ok, "verify across engines:\n{out}");
        assert!(out.contains("identical on p, m1, m2"), "{out}");
    }
}

async fn wait_started(agent: &Agent) {
    wait_until("agent started", Duration::from_secs(60), || async {
        let log = agent.log();
        (log.contains("capture started") && log.contains("apply started")).then_some(())
    })
    .await
    .unwrap_or_else(|e| panic!("{e}; log:\n{}", agent.log()));
}

#[tokio::test]
async fn two_mariadb_peers_and_a_postgres_peer_converge_under_conflicting_writes() {
    let mesh = Mixed::start().await;
    let writes = mesh.workload(0x3e7, 120).await;
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
    m1.db.kill9().unwrap();
    m1.db.restart().await.unwrap();
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
