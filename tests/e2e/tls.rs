//! A peer whose PostgreSQL takes TCP only over TLS, reached with `sslmode=verify-full` and a
//! client certificate (capture's replication connection, apply's and set-up's sessions, and
//! `verify`, all from the one URL), in a mesh with a plain peer, both agents on a NATS server
//! that wants TLS, a client certificate and a password: writes flow both ways, `verify`
//! reports the two identical, and `meshsync conflicts` reads the secured server too. And a
//! MariaDB peer behind TLS (`VERIFY_IDENTITY`, a client certificate; its binlog connection
//! too) replicating with such a PostgreSQL peer.

use std::time::Duration;

use meshsync_e2e::{maria_peer::MariaPeer, peer::Peer};
use meshsync_testkit::{NatsServer, wait_until};

use crate::support::{Mesh, verify, wait_agent_started};

#[tokio::test]
async fn a_peer_behind_tls_with_a_client_certificate_replicates_both_ways() {
    let dir = tempfile::tempdir().unwrap();
    let nats = NatsServer::start_secure().await.unwrap();
    let url = nats.secure_url();
    let mut peers = vec![
        Peer::start_tls("a", &url, dir.path()).await.unwrap(),
        Peer::start("b", &url, dir.path()).await.unwrap(),
    ];
    let files = nats.tls_files().unwrap();
    let nats_tls = format!(
        "url = \"{url}\"\ntls_ca_file = \"{}\"\ntls_cert_file = \"{}\"\ntls_key_file = \"{}\"\n",
        files.ca.display(),
        files.client_cert.display(),
        files.client_key.display()
    );
    for p in &mut peers {
        let config = std::fs::read_to_string(&p.config).unwrap();
        let config = config.replace(&format!("url = \"{url}\"\n"), &nats_tls);
        std::fs::write(&p.config, config).unwrap();
        p.start_agent().unwrap();
    }
    let client = meshsync_nats::connect(
        &url,
        "test",
        &meshsync_nats::NatsTls {
            ca_file: Some(files.ca.clone()),
            client: Some(meshsync_nats::ClientCertificate {
                cert_file: files.client_cert.clone(),
                key_file: files.client_key.clone(),
            }),
        },
    )
    .await
    .unwrap();
    let mesh = Mesh {
        nats,
        peers,
        client,
        dir,
    };
    for i in 0..2 {
        mesh.wait_started(i).await.unwrap();
    }
    for (peer, id) in mesh.peers.iter().zip([1, 2]) {
        let mut c = peer.connect().await.unwrap();
        sqlx::query("INSERT INTO public.items (id, v) VALUES ($1, $2)")
            .bind(id)
            .bind(format!("from {}", peer.id))
            .execute(&mut c)
            .await
            .unwrap();
    }
    mesh.wait_all("both rows", Duration::from_secs(30), |rows| rows.len() == 2)
        .await;
    // The agent's own connections to the TLS server are encrypted, as the server sees them.
    let mut c = mesh.peers[0].connect().await.unwrap();
    let (plain,): (i64,) = sqlx::query_as(
        "SELECT count(*) FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid)
         WHERE a.usename = 'cert_user' AND NOT s.ssl",
    )
    .fetch_one(&mut c)
    .await
    .unwrap();
    let (encrypted,): (i64,) = sqlx::query_as(
        "SELECT count(*) FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid)
         WHERE a.usename = 'cert_user' AND s.ssl AND a.backend_type = 'walsender'",
    )
    .fetch_one(&mut c)
    .await
    .unwrap();
    assert_eq!(plain, 0, "every connection of the agent should use TLS");
    assert_eq!(encrypted, 1, "capture's walsender should run over TLS");
    let configs: Vec<_> = mesh.peers.iter().map(|p| p.config.clone()).collect();
    let (same, out) = verify(&configs);
    assert!(same, "verify over TLS: {out}");
    let conflicts = std::process::Command::new(meshsync_e2e::agent::binary().unwrap())
        .args(["conflicts", "--config"])
        .arg(&configs[0])
        .output()
        .unwrap();
    assert!(
        conflicts.status.success(),
        "meshsync conflicts on the secured server: {}",
        String::from_utf8_lossy(&conflicts.stderr)
    );
}

/// Runs an agent on `config` that must stop by itself; its stderr.
async fn failed_run(config: &std::path::Path) -> String {
    let run = tokio::process::Command::new(meshsync_e2e::agent::binary().unwrap())
        .args(["run", "--config"])
        .arg(config)
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(60), run)
        .await
        .expect("the agent should stop, not retry what only configuration can mend")
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "the agent must not run: {err}");
    err
}

#[tokio::test]
async fn a_host_not_in_the_certificate_or_a_missing_file_stops_the_agent_naming_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    let nats = NatsServer::start_single().await.unwrap();
    let peer = Peer::start_tls("a", &nats.client_url(), dir.path())
        .await
        .unwrap();
    let good = std::fs::read_to_string(&peer.config).unwrap();
    // The certificate names `localhost`, not `127.0.0.1`.
    std::fs::write(&peer.config, good.replace("@localhost:", "@127.0.0.1:")).unwrap();
    let err = failed_run(&peer.config).await;
    assert!(
        err.contains("TLS") && err.contains("certificate") && err.contains("sslrootcert"),
        "{err}"
    );
    // A root certificate file that is not there (sqlx alone would report a bare "not found").
    let ca = peer.pg.tls_files().unwrap().ca.display().to_string();
    std::fs::write(&peer.config, good.replace(&ca, "/nonexistent/ca.crt")).unwrap();
    let err = failed_run(&peer.config).await;
    assert!(
        err.contains("sslrootcert") && err.contains("/nonexistent/ca.crt"),
        "{err}"
    );
}

#[tokio::test]
async fn a_nats_server_that_refuses_the_agent_stops_it_naming_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    let nats = NatsServer::start_secure().await.unwrap();
    // Right certificates, wrong password.
    let url = nats.secure_url().replace("mesh-secret", "guess");
    let peer = Peer::start("a", &url, dir.path()).await.unwrap();
    let files = nats.tls_files().unwrap();
    let config = std::fs::read_to_string(&peer.config).unwrap().replace(
        "[database]",
        &format!(
            "tls_ca_file = \"{}\"\ntls_cert_file = \"{}\"\ntls_key_file = \"{}\"\n[database]",
            files.ca.display(),
            files.client_cert.display(),
            files.client_key.display()
        ),
    );
    std::fs::write(&peer.config, config).unwrap();
    let err = failed_run(&peer.config).await;
    assert!(
        err.contains("NATS refused") && err.contains("password") && !err.contains("guess"),
        "{err}"
    );
}

#[tokio::test]
async fn a_mariadb_peer_behind_tls_replicates_with_a_postgres_peer_behind_tls() {
    let dir = tempfile::tempdir().unwrap();
    let nats = NatsServer::start_single().await.unwrap();
    let url = nats.client_url();
    let mut pg = Peer::start_tls("p", &url, dir.path()).await.unwrap();
    let mut maria = MariaPeer::start_tls("m", &url, dir.path()).await.unwrap();
    pg.start_agent().unwrap();
    maria.start_agent().unwrap();
    for agent in [&pg.agent, &maria.agent] {
        wait_agent_started(agent.as_ref().unwrap()).await.unwrap();
    }
    let mut c = pg.connect().await.unwrap();
    sqlx::query("INSERT INTO public.items (id, v) VALUES (1, 'from p')")
        .execute(&mut c)
        .await
        .unwrap();
    let mut c = maria.connect().await.unwrap();
    sqlx::query("INSERT INTO public.items (id, v) VALUES (2, 'from m')")
        .execute(&mut c)
        .await
        .unwrap();
    let both = vec![
        (1, "from p".to_owned(), None),
        (2, "from m".to_owned(), None),
    ];
    wait_until(
        "both rows on both peers",
        Duration::from_secs(30),
        || async {
            let (p, m) = (pg.rows().await.ok()?, maria.rows().await.ok()?);
            (p == both && m == both).then_some(())
        },
    )
    .await
    .unwrap();
    let (same, out) = verify(&[pg.config.clone(), maria.config.clone()]);
    assert!(same, "verify over TLS on both engines: {out}");
}
