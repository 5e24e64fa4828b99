//! The streams of both topologies, created idempotently.
//!
//! - [`Topology::Direct`]: every peer talks to one server or the hub cluster; one global
//!   stream `MESH` (R3 on a cluster) plus the dead-letter stream `MESH_DLQ` and the conflict
//!   stream `MESH_CONFLICTS`.
//! - [`Topology::Edge`]: a leaf node per site with its own JetStream domain; the site outbox
//!   `OUT_<d>` is sourced into the hub's `MESH` (through `external` API prefixes, never
//!   `Source.domain`, which 2.15 rejects), and the site copy `IN_<d>` sources `MESH` back, so
//!   an offline site still publishes (acked by its leaf) and applies what it already has.
//!   Dead letters (`DLQ_<d>`) and resolved conflicts (`CONFLICTS_<d>`) stay at the site.
//!
//! The conflict streams keep [`CONFLICT_MAX_AGE`] (7 days) and at most [`CONFLICT_MAX_BYTES`]
//! (1 GiB), dropping the oldest first: a log to read, not data to keep.

use std::time::Duration;

use async_nats::jetstream::{
    self, Context,
    stream::{Config, DiscardPolicy, External, Source, StorageType},
};
use meshsync_core::PeerId;
use meshsync_wire::{conflict, subject};

use crate::NatsError;

/// JetStream domain of the hub in the edge topology.
pub const HUB_DOMAIN: &str = "hub";

/// How long JetStream remembers message ids for de-duplication. Longer than a capture
/// restart-and-replay; apply is idempotent beyond it anyway (I4).
pub const DUPLICATE_WINDOW: Duration = Duration::from_secs(600);

/// How long the conflict stream keeps a conflict.
pub const CONFLICT_MAX_AGE: Duration = Duration::from_secs(7 * 24 * 3600);

/// Most bytes the conflict stream holds; beyond it the oldest conflicts go first.
pub const CONFLICT_MAX_BYTES: i64 = 1 << 30;

/// Where a peer's streams are.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Topology {
    /// Straight to a server or the hub cluster.
    Direct {
        /// Replicas of the global stream (1 on a single server, 3 on a hub cluster).
        replicas: usize,
    },
    /// Through this site's leaf node, JetStream domain `domain`.
    Edge {
        /// The site's JetStream domain.
        domain: String,
        /// Replicas of the global stream on the hub.
        hub_replicas: usize,
    },
}

/// Where a peer publishes, where it consumes, and where it parks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoints {
    /// Subject capture publishes on.
    pub publish_subject: String,
    /// Stream apply consumes (the global stream, or the site copy).
    pub consume_stream: String,
    /// Subject bad messages are parked on.
    pub dead_letter_subject: String,
    /// Stream holding parked messages.
    pub dead_letter_stream: String,
    /// Subject resolved conflicts are logged on.
    pub conflict_subject: String,
    /// Stream holding the conflicts (of every peer at this site, or of every direct peer).
    pub conflict_stream: String,
    /// Subjects of [`Endpoints::conflict_stream`]: every peer's conflicts there.
    pub conflict_subjects: String,
}

impl Topology {
    /// The endpoints of `peer` in this topology.
    pub fn endpoints(&self, peer: &PeerId) -> Endpoints {
        match self {
            Topology::Direct { .. } => Endpoints {
                publish_subject: subject::direct(peer),
                consume_stream: subject::GLOBAL_STREAM.to_owned(),
                dead_letter_subject: subject::dead_letter(peer),
                dead_letter_stream: subject::DEAD_LETTER_STREAM.to_owned(),
                conflict_subject: conflict::subject(peer),
                conflict_stream: conflict::STREAM.to_owned(),
                conflict_subjects: conflict::SUBJECTS.to_owned(),
            },
            Topology::Edge { domain, .. } => Endpoints {
                publish_subject: subject::outbox(domain, peer),
                consume_stream: subject::site_copy_stream(domain),
                dead_letter_subject: subject::site_dead_letter(domain, peer),
                dead_letter_stream: subject::site_dead_letter_stream(domain),
                conflict_subject: conflict::site_subject(domain, peer),
                conflict_stream: conflict::site_stream(domain),
                conflict_subjects: conflict::site_subjects(domain),
            },
        }
    }
}

fn base(name: String, subjects: Vec<String>, replicas: usize) -> Config {
    Config {
        name,
        subjects,
        storage: StorageType::File,
        num_replicas: replicas.max(1),
        duplicate_window: DUPLICATE_WINDOW,
        discard: DiscardPolicy::New,
        deny_delete: true,
        ..Default::default()
    }
}

fn global(replicas: usize) -> Config {
    base(
        subject::GLOBAL_STREAM.to_owned(),
        vec![subject::GLOBAL_SUBJECTS.to_owned()],
        replicas,
    )
}

/// The conflict stream: a bounded log, oldest dropped first.
fn conflicts(name: String, subjects: String, replicas: usize) -> Config {
    Config {
        max_age: CONFLICT_MAX_AGE,
        max_bytes: CONFLICT_MAX_BYTES,
        discard: DiscardPolicy::Old,
        ..base(name, vec![subjects], replicas)
    }
}

fn external(domain: &str) -> Option<External> {
    Some(External {
        api_prefix: format!("$JS.{domain}.API"),
        delivery_prefix: None,
    })
}

async fn ensure(js: &Context, config: Config) -> Result<(), NatsError> {
    let name = config.name.clone();
    js.get_or_create_stream(config)
        .await
        .map_err(|e| NatsError::provision(&name, e))?;
    Ok(())
}

/// Creates whatever streams of `topology` are missing; safe to run on every start, by every
/// peer. `client` is connected to the hub (direct) or to this site's leaf node (edge).
pub async fn provision(client: &async_nats::Client, topology: &Topology) -> Result<(), NatsError> {
    match topology {
        Topology::Direct { replicas } => {
            let js = jetstream::new(client.clone());
            ensure(&js, global(*replicas)).await?;
            let dlq = base(
                subject::DEAD_LETTER_STREAM.to_owned(),
                vec![subject::DEAD_LETTER_SUBJECTS.to_owned()],
                *replicas,
            );
            ensure(&js, dlq).await?;
            ensure(
                &js,
                conflicts(
                    conflict::STREAM.to_owned(),
                    conflict::SUBJECTS.to_owned(),
                    *replicas,
                ),
            )
            .await
        }
        Topology::Edge {
            domain,
            hub_replicas,
        } => {
            let site = jetstream::new(client.clone());
            let outbox = subject::outbox_stream(domain);
            ensure(
                &site,
                base(outbox.clone(), vec![subject::outbox_subjects(domain)], 1),
            )
            .await?;
            let dlq = base(
                subject::site_dead_letter_stream(domain),
                vec![subject::site_dead_letter_subjects(domain)],
                1,
            );
            ensure(&site, dlq).await?;
            ensure(
                &site,
                conflicts(
                    conflict::site_stream(domain),
                    conflict::site_subjects(domain),
                    1,
                ),
            )
            .await?;

            let hub = jetstream::with_domain(client.clone(), HUB_DOMAIN);
            add_source(
                &hub,
                global(*hub_replicas),
                Source {
                    name: outbox,
                    external: external(domain),
                    ..Default::default()
                },
            )
            .await?;

            let mut copy = base(subject::site_copy_stream(domain), Vec::new(), 1);
            copy.sources = Some(vec![Source {
                name: subject::GLOBAL_STREAM.to_owned(),
                external: external(HUB_DOMAIN),
                ..Default::default()
            }]);
            ensure(&site, copy).await
        }
    }
}

/// Creates `config` with `source`, or adds `source` to the existing stream if it lacks it.
async fn add_source(js: &Context, config: Config, source: Source) -> Result<(), NatsError> {
    let name = config.name.clone();
    let mut stream = js
        .get_or_create_stream(config)
        .await
        .map_err(|e| NatsError::provision(&name, e))?;
    let info = stream
        .info()
        .await
        .map_err(|e| NatsError::provision(&name, e))?;
    let mut current = info.config.clone();
    let sources = current.sources.get_or_insert_with(Vec::new);
    if sources
        .iter()
        .any(|s| s.name == source.name && s.external == source.external)
    {
        return Ok(());
    }
    sources.push(source);
    js.update_stream(current)
        .await
        .map_err(|e| NatsError::provision(&name, e))?;
    Ok(())
}
