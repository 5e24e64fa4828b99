//! The order every merge uses.

use serde::{Deserialize, Serialize};

use crate::ident::PeerId;
use meshsync_hlc::Hlc;

/// Version of a row or column: ordered by HLC, then by origin peer id, so that equal stamps
/// from two peers still have one winner, the same on every peer, then by the change's index in
/// its transaction, so a later change of one key in the same transaction wins.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Version {
    /// Stamp of the transaction that wrote it.
    pub hlc: Hlc,
    /// Peer where the transaction was committed.
    pub origin: PeerId,
    /// Index of the change inside its transaction (0 for whole-transaction versions).
    #[serde(default)]
    pub index: u32,
}

impl Version {
    /// The version of change `index` of the transaction stamped `hlc` at `origin`.
    pub fn new(hlc: Hlc, origin: PeerId, index: u32) -> Version {
        Version { hlc, origin, index }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ties_on_hlc_break_on_origin() {
        let h = Hlc { time: 5, node: 1 };
        let a = Version::new(h, PeerId::new("a").unwrap(), 0);
        let a_next = Version::new(h, PeerId::new("a").unwrap(), 1);
        let b = Version::new(h, PeerId::new("b").unwrap(), 0);
        let later = Version::new(Hlc { time: 6, node: 0 }, PeerId::new("a").unwrap(), 0);
        assert!(a < a_next && a_next < b && b < later);
    }
}
