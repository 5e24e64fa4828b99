//! One peer agent: one database, its capture and apply under one clock (I8), restarted with
//! back-off when a connection fails, stopped on a set-up error that a retry cannot cure.

use std::{sync::Arc, time::Duration};

use anyhow::{Context, Result, bail};
use meshsync_config::{Config, Engine};
use meshsync_core::{PeerId, TableName};
use meshsync_hlc::{Clock, NodeId};
use meshsync_nats::{
    Topology, dead_letter::DeadLetters, inbox::InboxSettings, provision, publisher::Publisher,
};
use meshsync_pg::{
    catalog,
    setup::{self, Names},
    source::stream::ConnParts,
};
use sqlx::{Connection, PgConnection};
use tracing::{Instrument, error, info, info_span};

use crate::{apply, capture, metrics::Counters};

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

/// Runs the agent of `config` until it is stopped.
pub async fn run(config: Config) -> Result<()> {
    if config.database.engine != Engine::Postgres {
        bail!(
            "database.engine = {:?} is not supported by this build yet; supported: postgres",
            config.database.engine.as_str()
        );
    }
    let peer = PeerId::new(&config.peer.id)?;
    let names = Names::for_peer(&peer);
    let url = config.database.url.expose().to_owned();
    let tables: Vec<TableName> = config
        .database
        .tables
        .iter()
        .map(|t| TableName::parse(t))
        .collect::<Result<_, _>>()?;

    let mut conn = connect_with_retry(&url).await?;
    setup::prepare(&mut conn, &names, &tables).await?;
    let shapes = catalog::load(&mut conn, &tables).await?;
    drop(conn);

    let client =
        meshsync_nats::connect(config.nats.url.expose(), &format!("meshsync {peer}")).await?;
    let topo = topology(&config);
    provision(&client, &topo).await?;
    let endpoints = topo.endpoints(&peer);

    let clock = Arc::new(Clock::new(
        NodeId::from_peer(peer.as_str()),
        config.clock.future_bound(),
    ));
    let counters = Arc::new(Counters::default());
    let policies = crate::policies::from_config(&config.merge)?;
    let counter_columns = shapes
        .iter()
        .map(|(name, info)| {
            let columns: Vec<String> = info.columns.iter().map(|c| c.name.clone()).collect();
            let counters = crate::policies::counter_columns(&policies, name, &columns);
            (name.clone(), counters)
        })
        .collect();
    let capture_ctx = capture::postgres::CaptureContext {
        peer: peer.clone(),
        node: clock.node(),
        url: url.clone(),
        parts: ConnParts::from_url(&url)?,
        names: names.clone(),
        tables: shapes.clone(),
        counters: counter_columns,
        publisher: Publisher::new(client.clone(), endpoints.publish_subject.clone()),
    };
    let apply_ctx = apply::ApplyContext {
        peer: peer.clone(),
        url,
        names,
        tables: shapes,
        client: client.clone(),
        stream: endpoints.consume_stream.clone(),
        inbox: InboxSettings::for_durable(format!("apply_{peer}")),
        policies,
        tombstone_retention: config.merge.tombstone_retention(),
        dead_letters: DeadLetters::new(client.clone(), endpoints.dead_letter_subject.clone()),
        clock,
        counters: Arc::clone(&counters),
    };
    info!(peer = %peer, stream = %endpoints.consume_stream, subject = %endpoints.publish_subject, "agent ready");

    let capture = supervise("capture", || capture::postgres::run(&capture_ctx))
        .instrument(info_span!("capture", peer = %peer));
    let apply =
        supervise("apply", || apply::run(&apply_ctx)).instrument(info_span!("apply", peer = %peer));
    let report = async {
        let mut tick = tokio::time::interval(Duration::from_secs(10));
        loop {
            tick.tick().await;
            let (applied, superseded, parked) = counters.snapshot();
            info!(applied, superseded, parked, "progress");
        }
    };
    tokio::select! {
        r = capture => r,
        r = apply => r,
        _ = report => Ok(()),
        _ = tokio::signal::ctrl_c() => { info!("stopping"); Ok(()) }
    }
}

/// Connects, retrying for a while: the database may still be starting.
async fn connect_with_retry(url: &str) -> Result<PgConnection> {
    let mut attempt = 0;
    loop {
        match PgConnection::connect(url).await {
            Ok(c) => return Ok(c),
            Err(e) if attempt < 30 => {
                attempt += 1;
                info!(error = %e, "database not reachable yet, retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            Err(e) => return Err(e).context("connect to the database"),
        }
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
