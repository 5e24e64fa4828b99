//! Row-level last-writer-wins: which incoming rows win, in pure code.

use meshsync_core::{Hlc, Op, PeerId};

/// The version stored for a key (a live row or a tombstone).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredVersion {
    /// Stamp of the winning write.
    pub hlc: Hlc,
    /// Its origin.
    pub origin: String,
    /// Its index in its transaction.
    pub index: u32,
    /// The winner was a delete: a tombstone.
    pub deleted: bool,
}

impl StoredVersion {
    fn order(&self) -> (Hlc, &str, u32) {
        (self.hlc, self.origin.as_str(), self.index)
    }
}

/// What to do with one incoming row.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Write it (upsert, or delete and leave a tombstone).
    Write,
    /// It is this peer's own write, already in the database and never overwritten: only
    /// record its version.
    RecordOnly,
    /// An equal or newer version is stored: nothing to do (I4, I3).
    Skip,
}

/// Decides one row against the stored version, (HLC, origin, index) order.
pub fn decide(
    stored: Option<&StoredVersion>,
    hlc: Hlc,
    origin: &PeerId,
    index: u32,
    me: &PeerId,
) -> Decision {
    match stored {
        None if origin == me => Decision::RecordOnly,
        None => Decision::Write,
        Some(s) if (hlc, origin.as_str(), index) > s.order() => Decision::Write,
        Some(_) => Decision::Skip,
    }
}

/// The version a decided row leaves behind.
pub fn stored_after(op: Op, hlc: Hlc, origin: &PeerId, index: u32) -> StoredVersion {
    StoredVersion {
        hlc,
        origin: origin.to_string(),
        index,
        deleted: op == Op::Delete,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> PeerId {
        PeerId::new(s).unwrap()
    }

    fn v(time: u64, origin: &str, index: u32) -> StoredVersion {
        StoredVersion {
            hlc: Hlc { time, node: 1 },
            origin: origin.into(),
            index,
            deleted: false,
        }
    }

    #[test]
    fn newer_wins_older_and_equal_skip() {
        let me = p("me");
        let h = |t| Hlc { time: t, node: 1 };
        assert_eq!(
            decide(Some(&v(5, "a", 0)), h(6), &p("a"), 0, &me),
            Decision::Write
        );
        assert_eq!(
            decide(Some(&v(5, "a", 0)), h(4), &p("b"), 0, &me),
            Decision::Skip
        );
        assert_eq!(
            decide(Some(&v(5, "a", 0)), h(5), &p("a"), 0, &me),
            Decision::Skip,
            "redelivery"
        );
        assert_eq!(
            decide(Some(&v(5, "a", 0)), h(5), &p("b"), 0, &me),
            Decision::Write,
            "tie breaks on origin"
        );
        assert_eq!(
            decide(Some(&v(5, "a", 0)), h(5), &p("a"), 1, &me),
            Decision::Write,
            "later in the same txn"
        );
    }

    #[test]
    fn own_writes_never_overwritten_are_only_recorded() {
        let me = p("me");
        assert_eq!(
            decide(None, Hlc { time: 1, node: 1 }, &me, 0, &me),
            Decision::RecordOnly
        );
        assert_eq!(
            decide(None, Hlc { time: 1, node: 1 }, &p("x"), 0, &me),
            Decision::Write
        );
        assert_eq!(
            decide(Some(&v(0, "x", 0)), Hlc { time: 1, node: 1 }, &me, 0, &me),
            Decision::Write
        );
    }
}
