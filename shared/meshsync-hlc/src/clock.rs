//! The per-agent clock: strictly increasing stamps, the HLC receive rule, and the future bound.

use std::time::Duration;

use uhlc::{HLC, HLCBuilder, ID, NTP64, Timestamp};

use crate::stamp::{Hlc, NodeId};

/// Default bound on how far ahead of local physical time a remote stamp may be (I11).
pub const DEFAULT_MAX_DRIFT: Duration = Duration::from_millis(500);

/// A remote stamp too far in the future: it must be parked, and it did not move the clock.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "stamp {remote} is {ahead:?} ahead of local time, beyond the bound of {bound:?}; \
     check the clock of node {node} (NTP), or raise the future bound"
)]
pub struct ClockSkew {
    /// The rejected stamp.
    pub remote: Hlc,
    /// Node id of the stamp's clock.
    pub node: u64,
    /// How far ahead of local physical time it was.
    pub ahead: Duration,
    /// The configured bound.
    pub bound: Duration,
}

/// The hybrid logical clock of one peer agent, shared by its capture and apply (I8).
///
/// `now()` is strictly increasing, even with a frozen or backward-jumping physical clock;
/// `observe()` applies the HLC receive rule so that later local stamps exceed every stamp
/// observed, and rejects stamps beyond the future bound without moving the clock (I11).
pub struct Clock {
    inner: HLC,
    node: NodeId,
    max_drift: Duration,
    physical: fn() -> NTP64,
}

impl std::fmt::Debug for Clock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Clock")
            .field("node", &self.node)
            .field("max_drift", &self.max_drift)
            .finish()
    }
}

fn system_time() -> NTP64 {
    uhlc::system_time_clock()
}

impl Clock {
    /// A clock on the system's real time.
    pub fn new(node: NodeId, max_drift: Duration) -> Self {
        Self::with_physical(node, max_drift, system_time)
    }

    /// A clock on a given physical time source (tests freeze or skew it).
    pub fn with_physical(node: NodeId, max_drift: Duration, physical: fn() -> NTP64) -> Self {
        let id = ID::try_from(u128::from(node.get())).unwrap_or_else(|_| ID::rand());
        let inner = HLCBuilder::new()
            .with_id(id)
            .with_max_delta(max_drift)
            .with_clock(physical)
            .build();
        Clock {
            inner,
            node,
            max_drift,
            physical,
        }
    }

    /// This clock's node id.
    pub fn node(&self) -> NodeId {
        self.node
    }

    /// The configured future bound.
    pub fn max_drift(&self) -> Duration {
        self.max_drift
    }

    /// A new stamp, strictly greater than every stamp this clock made or accepted before.
    pub fn now(&self) -> Hlc {
        let ts = self.inner.new_timestamp();
        Hlc::new(ts.get_time().as_u64(), self.node)
    }

    /// Whether `remote` is within the future bound, without touching the clock.
    pub fn check(&self, remote: Hlc) -> Result<(), ClockSkew> {
        let now = (self.physical)().to_duration();
        let at = remote.physical();
        match at.checked_sub(now) {
            Some(ahead) if ahead > self.max_drift => Err(ClockSkew {
                remote,
                node: remote.node,
                ahead,
                bound: self.max_drift,
            }),
            _ => Ok(()),
        }
    }

    /// The HLC receive rule: after this, `now()` exceeds `remote`. A stamp beyond the future
    /// bound is refused with [`ClockSkew`] and leaves the clock as it was.
    pub fn observe(&self, remote: Hlc) -> Result<(), ClockSkew> {
        self.check(remote)?;
        let id = ID::try_from(u128::from(remote.node.max(1))).unwrap_or_else(|_| ID::rand());
        let ts = Timestamp::new(NTP64(remote.time), id);
        // uhlc checks the same bound against the same physical clock; a stamp that passed
        // `check` a moment ago can only be nearer now.
        self.inner
            .update_with_timestamp(&ts)
            .map_err(|_| ClockSkew {
                remote,
                node: remote.node,
                ahead: remote
                    .physical()
                    .saturating_sub((self.physical)().to_duration()),
                bound: self.max_drift,
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A frozen physical clock: 2026-01-01T00:00:00Z.
    fn frozen() -> NTP64 {
        NTP64::from(Duration::from_secs(1_767_225_600))
    }

    fn node(n: u64) -> NodeId {
        NodeId::new(n)
    }

    #[test]
    fn stamps_strictly_increase_under_a_frozen_clock() {
        let clock = Clock::with_physical(node(1), DEFAULT_MAX_DRIFT, frozen);
        let mut last = clock.now();
        for _ in 0..10_000 {
            let next = clock.now();
            assert!(next > last, "{next} not after {last}");
            last = next;
        }
    }

    #[test]
    fn receive_rule_puts_later_stamps_after_the_remote_one() {
        let clock = Clock::with_physical(node(1), DEFAULT_MAX_DRIFT, frozen);
        let remote = Hlc::from_unix(frozen().to_duration() + Duration::from_millis(300), node(2));
        clock.observe(remote).unwrap();
        let local = clock.now();
        assert!(
            local > remote,
            "local {local} must follow observed {remote}"
        );
        // A stamp from the past is accepted and changes nothing about monotonicity.
        let old = Hlc::from_unix(Duration::from_secs(1_000), node(3));
        clock.observe(old).unwrap();
        assert!(clock.now() > local);
    }

    #[test]
    fn far_future_stamp_is_rejected_and_does_not_move_the_clock() {
        let clock = Clock::with_physical(node(1), DEFAULT_MAX_DRIFT, frozen);
        let before = clock.now();
        let future = Hlc::from_unix(frozen().to_duration() + Duration::from_secs(2), node(2));
        let err = clock.observe(future).unwrap_err();
        assert_eq!(err.remote, future);
        assert_eq!(err.bound, DEFAULT_MAX_DRIFT);
        assert!(err.ahead >= Duration::from_millis(1_999));
        let after = clock.now();
        assert!(after > before);
        assert!(
            after < future,
            "the rejected stamp dragged the clock to {after}"
        );
        assert!(after.physical() < frozen().to_duration() + Duration::from_millis(1));
    }

    #[test]
    fn the_bound_is_configurable() {
        let clock = Clock::with_physical(node(1), Duration::from_secs(5), frozen);
        let future = Hlc::from_unix(frozen().to_duration() + Duration::from_secs(2), node(2));
        clock.observe(future).unwrap();
        assert!(clock.now() > future);
    }
}
