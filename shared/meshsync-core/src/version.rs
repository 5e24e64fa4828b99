//! The order every merge uses.

use serde::{Deserialize, Serialize};

use crate::ident::PeerId;
use meshsync_hlc::Hlc;

/// Version of a row or column: ordered by HLC, then by origin peer id, so that equal stamps
/// from two peers still have one winner, the same on every peer.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Version {
    /// Stamp of the transaction that wrote it.
    pub hlc: Hlc,
    /// Peer where the transaction was committed.
    pub origin: PeerId,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ties_on_hlc_break_on_origin() {
        let h = Hlc { time: 5, node: 1 };
        let a = Version {
            hlc: h,
            origin: PeerId::new("a").unwrap(),
        };
        let b = Version {
            hlc: h,
            origin: PeerId::new("b").unwrap(),
        };
        let later = Version {
            hlc: Hlc { time: 6, node: 0 },
            origin: PeerId::new("a").unwrap(),
        };
        assert!(a < b && b < later);
    }
}
