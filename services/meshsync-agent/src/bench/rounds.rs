//! Catch-up rounds: each system catches up `--rounds` times, the two taking turns (native,
//! meshsync, native, ...), so that a change in the machine's load during the run falls on
//! both alike. The verdict is the median of the per-round ratios: on a shared two-core
//! machine a single 0.5 s catch-up moved by a third from one run to the next.

use std::ops::RangeInclusive;

use anyhow::{Context, Result};
use tracing::info;

use super::{
    Params,
    mesh::ProcStats,
    report::{CatchUp, Resources, SystemResult},
    workload::Steady,
};

/// One replication system set up for the bench (both its servers, and its agents or
/// subscription), with its receiver off between rounds.
pub(crate) trait Replicator {
    /// `native` or `meshsync`.
    fn name(&self) -> &'static str;

    /// Writes `ids` on the source while the receiver is off, then starts the receiver and
    /// times it until it holds every row written so far; stops the receiver again.
    async fn catch_up(&mut self, params: &Params, ids: RangeInclusive<i64>) -> Result<Round>;

    /// The steady workload (ids after [`Params::steady_base`]), receiver running.
    async fn steady(&mut self, params: &Params) -> Result<Steady>;
}

/// What one catch-up round measured.
pub struct Round {
    /// Its figures.
    pub catch_up: CatchUp,
    /// CPU over the round and peak memory of each replicating process, by role.
    pub processes: Vec<(String, ProcStats)>,
}

/// Runs `params.rounds` catch-up rounds of each system in turn, then each one's steady
/// workload.
pub async fn compare(
    native: &mut impl Replicator,
    meshsync: &mut impl Replicator,
    params: &Params,
) -> Result<(SystemResult, SystemResult)> {
    let (mut native_rounds, mut mesh_rounds) = (Vec::new(), Vec::new());
    for round in 0..params.rounds {
        native_rounds.push(one_round(native, params, round).await?);
        mesh_rounds.push(one_round(meshsync, params, round).await?);
    }
    Ok((
        finish(native, native_rounds, params).await?,
        finish(meshsync, mesh_rounds, params).await?,
    ))
}

/// Catch-up round `round` (from 0) of `system`.
async fn one_round(system: &mut impl Replicator, params: &Params, round: u64) -> Result<Round> {
    let (name, n) = (system.name(), round + 1);
    info!(
        system = name,
        round = n,
        of = params.rounds,
        "catch-up round"
    );
    let r = system
        .catch_up(params, params.round_ids(round))
        .await
        .with_context(|| format!("{name}: catch-up round {n}"))?;
    info!(
        system = name,
        round = n,
        rows_per_sec = r.catch_up.rows_per_sec,
        "caught up"
    );
    Ok(r)
}

/// `system`'s steady workload, and its results with `rounds`.
async fn finish(
    system: &mut impl Replicator,
    rounds: Vec<Round>,
    params: &Params,
) -> Result<SystemResult> {
    let name = system.name();
    info!(
        system = name,
        rate = params.rate,
        seconds = params.seconds,
        "steady workload"
    );
    let steady = system
        .steady(params)
        .await
        .with_context(|| format!("{name}: steady workload"))?;
    let rows = params.rows * rounds.len() as u64;
    let (catch_up, processes): (Vec<CatchUp>, Vec<_>) = rounds
        .into_iter()
        .map(|r| (r.catch_up, r.processes))
        .unzip();
    SystemResult::new(name, catch_up, steady, Resources::merged(rows, processes))
}
