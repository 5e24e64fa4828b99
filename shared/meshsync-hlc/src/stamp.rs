//! The HLC stamp and its human-readable form.

use std::{fmt, str::FromStr, time::Duration};

use serde::{Deserialize, Serialize};
use time::{OffsetDateTime, format_description::well_known::Rfc3339};

/// Bits of the NTP64 time that uhlc uses as the logical counter.
const COUNTER_BITS: u32 = 4;
/// Mask of the counter bits.
const COUNTER_MASK: u64 = (1 << COUNTER_BITS) - 1;

/// Identity of a clock in the mesh: non-zero, derived from the peer id.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct NodeId(u64);

impl NodeId {
    /// Derives a stable node id from a peer id (FNV-1a, never zero).
    pub fn from_peer(peer: &str) -> Self {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in peer.as_bytes() {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        NodeId(h.max(1))
    }

    /// Wraps a raw id; zero is not a valid id and becomes one.
    pub fn new(raw: u64) -> Self {
        NodeId(raw.max(1))
    }

    /// The raw id.
    pub fn get(self) -> u64 {
        self.0
    }
}

/// A hybrid-logical-clock stamp: NTP64 time since the Unix epoch (upper 32 bits seconds, lower
/// 32 bits fraction, the lowest 4 bits a logical counter) and the node that made it.
///
/// Ordered by time, then node: total and the same on every peer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Hlc {
    /// NTP64 time; the low 4 bits are the logical counter.
    pub time: u64,
    /// Node id of the clock that made the stamp.
    pub node: u64,
}

impl Hlc {
    /// The smallest stamp; below every real one.
    pub const ZERO: Hlc = Hlc { time: 0, node: 0 };

    /// A stamp from NTP64 time and node.
    pub fn new(time: u64, node: NodeId) -> Self {
        Hlc {
            time,
            node: node.get(),
        }
    }

    /// A stamp whose physical part is `since_epoch` (counter zero).
    pub fn from_unix(since_epoch: Duration, node: NodeId) -> Self {
        let ntp = uhlc::NTP64::from(since_epoch).as_u64() & !COUNTER_MASK;
        Hlc {
            time: ntp,
            node: node.get(),
        }
    }

    /// Physical part as a duration since the Unix epoch (counter bits ignored).
    pub fn physical(&self) -> Duration {
        uhlc::NTP64(self.time & !COUNTER_MASK).to_duration()
    }

    /// Logical counter (0..16; bursts carry into the physical bits).
    pub fn counter(&self) -> u64 {
        self.time & COUNTER_MASK
    }

    /// The next stamp after this one for the same node: one tick later.
    pub fn successor(&self) -> Hlc {
        Hlc {
            time: self.time.saturating_add(1),
            node: self.node,
        }
    }

    /// RFC 3339 time (nanoseconds, UTC) and counter: `2026-11-26T17:21:39.102608908Z/3`.
    /// This is the `Mesh-Hlc` header, readable with the NATS CLI.
    pub fn to_header(&self) -> String {
        // NTP fractions do not map exactly onto decimal nanoseconds; show whole microseconds
        // when the stamp is within a nanosecond of one (commit times are microseconds).
        let exact = self.physical();
        let micros = Duration::from_micros(((exact.as_nanos() + 500) / 1000) as u64);
        let d = if micros.abs_diff(exact) <= Duration::from_nanos(1) {
            micros
        } else {
            exact
        };
        let ts = OffsetDateTime::UNIX_EPOCH + d;
        let text = ts
            .format(&Rfc3339)
            .unwrap_or_else(|_| format!("{}s", d.as_secs()));
        format!("{text}/{}", self.counter())
    }
}

impl fmt::Display for Hlc {
    /// `time.node` as two decimal u64s: exact, parseable with [`Hlc::from_str`].
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.time, self.node)
    }
}

/// A text that is not `time.node`.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid HLC {text:?}: expected `<time u64>.<node u64>`")]
pub struct HlcParseError {
    /// The text that was rejected.
    pub text: String,
}

impl FromStr for Hlc {
    type Err = HlcParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || HlcParseError { text: s.to_owned() };
        let (t, n) = s.split_once('.').ok_or_else(err)?;
        Ok(Hlc {
            time: t.parse().map_err(|_| err())?,
            node: n.parse().map_err(|_| err())?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_shows_utc_time_and_counter() {
        let h = Hlc::from_unix(Duration::from_secs(1_800_000_000), NodeId::new(7));
        let h = Hlc {
            time: h.time + 3,
            ..h
        };
        assert_eq!(h.to_header(), "2027-01-15T08:00:00Z/3");
    }

    #[test]
    fn display_round_trips() {
        let h = Hlc {
            time: 123_456_789,
            node: 42,
        };
        assert_eq!(h.to_string().parse::<Hlc>(), Ok(h));
        assert!("12".parse::<Hlc>().is_err());
    }

    #[test]
    fn order_is_time_then_node() {
        let a = Hlc { time: 10, node: 9 };
        let b = Hlc { time: 11, node: 1 };
        let c = Hlc { time: 11, node: 2 };
        assert!(a < b && b < c);
    }

    #[test]
    fn node_ids_are_stable_and_distinct() {
        assert_eq!(NodeId::from_peer("a"), NodeId::from_peer("a"));
        assert_ne!(NodeId::from_peer("a"), NodeId::from_peer("b"));
        assert_ne!(NodeId::new(0).get(), 0);
    }
}
