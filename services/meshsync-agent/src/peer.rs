//! One peer agent: one database, its capture and apply under one clock (I8), restarted with
//! back-off when a connection fails, stopped on a set-up error that a retry cannot cure.

use std::{sync::Arc, time::Duration};

use anyhow::{Result, bail};
use meshsync_config::{Config, Engine};
use meshsync_core::{PeerId, TableName};
use meshsync_hlc::{Clock, NodeId};
use meshsync_nats::{
    Topology, dead_letter::DeadLetters, inbox::InboxSettings, provision, publisher::Publisher,
};
use meshsync_wire::headers::MERGE_POLICIES;
use tracing::{Instrument, error, info, info_span};

use crate::{apply, conflict_log::ConflictLog, metrics::Counters, setup};

/// The topology a config describes (a hub cluster is reached the same way as one server).
pub fn topology(config: &Config) -> Topology {
    match &config.nats.domain {
        Some(domain) => Topology::Edge {
            domain: domain.clone(),
            hub_replicas: config.nats.replicas,
        },
        None => Topology::Direct {
            replicas: config.nats.replicas,
        },
    }
}

/// Runs the agent of `config` until it is stopped, logging progress every `progress_interval`.
pub async fn run(config: Config, progress_interval: Duration) -> Result<()> {
    let peer = PeerId::new(&config.peer.id)?;
    let url = config.database.url.expose().to_owned();
    let tables: Vec<TableName> = config
        .database
        .tables
        .iter()
        .map(|t| TableName::parse(t))
        .collect::<Result<_, _>>()?;
    let policies = crate::policies::from_config(&config.merge)?;
    let policy_check =
        crate::policies::PolicyCheck::new(&policies, config.merge.tombstone_retention_s);
    // The database first: a set-up problem fails before anything is created in NATS; a
    // connection lost on the way (the database restarting) is waited out.
    let set_up = async {
        let mut attempt = 0;
        loop {
            let result = match config.database.engine {
                Engine::Postgres => setup::postgres(&url, &peer, &tables).await,
                Engine::Mysql => setup::mariadb(&url, &tables).await,
                other => bail!(
                    "database.engine = {:?} is not supported by this build yet; supported: postgres, mysql",
                    other.as_str()
                ),
            };
            match result {
                Ok(p) => return Ok(p),
                Err(e) if attempt < 60 && setup::is_transient(&e) => {
                    attempt += 1;
                    info!(
                        error = format!("{e:#}"),
                        "database set-up interrupted, retrying"
                    );
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                Err(e) => return Err(e),
            }
        }
    };
    // Connecting to NATS creates nothing there, so it overlaps the set-up (a restart's
    // catch-up starts that much sooner).
    // try_join: a set-up error is reported at once, not after NATS answers.
    let name = format!("meshsync {peer}");
    let connect = async {
        let tls = nats_tls(&config.nats);
        Ok::<_, anyhow::Error>(meshsync_nats::connect(config.nats.url.expose(), &name, &tls).await?)
    };
    let (prepared, client) = tokio::try_join!(set_up, connect)?;
    let topo = topology(&config);
    provision(&client, &topo).await?;
    let endpoints = topo.endpoints(&peer);

    let clock = Arc::new(Clock::new(
        NodeId::from_peer(peer.as_str()),
        config.clock.future_bound(),
    ));
    let counters = Arc::new(Counters::default());
    let counter_columns = prepared
        .columns
        .iter()
        .map(|(name, columns)| {
            let counters = crate::policies::counter_columns(&policies, name, columns);
            (name.clone(), counters)
        })
        .collect();
    let capture = prepared.capture(
        &peer,
        clock.node(),
        counter_columns,
        Publisher::new(client.clone(), endpoints.publish_subject.clone())
            .with_header(MERGE_POLICIES, policy_check.fingerprint()),
        Arc::clone(&counters),
    );
    let apply_ctx = Arc::new(apply::ApplyContext {
        policy_check,
        peer: peer.clone(),
        target: prepared.target.clone(),
        client: client.clone(),
        stream: endpoints.consume_stream.clone(),
        inbox: InboxSettings::for_durable(meshsync_wire::subject::apply_consumer(&peer)),
        policies,
        tombstone_retention: config.merge.tombstone_retention(),
        dead_letters: DeadLetters::new(client.clone(), endpoints.dead_letter_subject.clone()),
        conflict_log: ConflictLog::new(
            async_nats::jetstream::new(client.clone()),
            peer.clone(),
            &topo,
            config
                .merge
                .sensitive
                .iter()
                .map(|t| TableName::parse(t))
                .collect::<Result<_, _>>()?,
        )
        .with_counters(Arc::clone(&counters)),
        clock,
        counters: Arc::clone(&counters),
    });
    info!(peer = %peer, engine = config.database.engine.as_str(), stream = %endpoints.consume_stream, subject = %endpoints.publish_subject, conflicts = %apply_ctx.conflict_log.subject(), "agent ready");

    let capture =
        supervise("capture", || capture.run()).instrument(info_span!("capture", peer = %peer));
    let apply = supervise("apply", || apply::run(Arc::clone(&apply_ctx)))
        .instrument(info_span!("apply", peer = %peer));
    let report = async {
        let mut tick = tokio::time::interval(progress_interval);
        loop {
            tick.tick().await;
            let (applied, superseded, parked) = counters.snapshot();
            let (conflicts, conflict_log_failures) = counters.conflicts();
            let policy_mismatches = counters.policy_mismatches();
            let (captured, echoed) = counters.capture();
            info!(
                captured,
                echoed,
                applied,
                superseded,
                parked,
                conflicts,
                conflict_log_failures,
                policy_mismatches,
                "progress"
            );
        }
    };
    tokio::select! {
        r = capture => r,
        r = apply => r,
        _ = report => Ok(()),
        signal = stop_signal() => { info!(signal = signal?, "stopping"); Ok(()) }
    }
}

/// The TLS settings of `[nats]`.
pub fn nats_tls(config: &meshsync_config::NatsConfig) -> meshsync_nats::NatsTls {
    meshsync_nats::NatsTls {
        ca_file: config.tls_ca_file.clone(),
        client: config
            .tls_cert_file
            .clone()
            .zip(config.tls_key_file.clone())
            .map(|(cert_file, key_file)| meshsync_nats::ClientCertificate {
                cert_file,
                key_file,
            }),
    }
}

/// The first of SIGINT (Ctrl-C) and SIGTERM (what `docker stop`, systemd and Kubernetes
/// send), by name. Stopping at any point is safe (I4, I9); this way the log says why.
async fn stop_signal() -> Result<&'static str> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => r.map(|()| "SIGINT").map_err(Into::into),
        _ = term.recv() => Ok("SIGTERM"),
    }
}

/// Runs `task` again after a failure, with back-off; an error that names a set-up problem
/// (missing table, wrong wal_level) stops the agent instead.
async fn supervise<F, Fut>(name: &str, mut task: F) -> Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<()>>,
{
    let mut attempt = 0;
    loop {
        let started = tokio::time::Instant::now();
        let err = match task().await {
            Ok(()) => anyhow::anyhow!("{name} stopped"),
            Err(e) => e,
        };
        if let Some(pg) = err.downcast_ref::<meshsync_pg::PgError>()
            && !pg.is_transient()
            && !matches!(
                pg,
                meshsync_pg::PgError::Query { .. } | meshsync_pg::PgError::Url(_)
            )
        {
            return Err(err);
        }
        if err
            .downcast_ref::<meshsync_mariadb::MariaDbError>()
            .is_some_and(meshsync_mariadb::MariaDbError::is_tls_failure)
        {
            return Err(err.context(crate::setup::MARIADB_TLS_HINT));
        }
        if started.elapsed() > Duration::from_secs(30) {
            attempt = 0;
        }
        error!(
            task = name,
            error = format!("{err:#}"),
            "task failed; restarting"
        );
        tokio::time::sleep(apply::backoff(attempt)).await;
        attempt += 1;
    }
}
