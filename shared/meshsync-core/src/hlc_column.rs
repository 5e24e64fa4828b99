//! How an HLC is stored in a database: its u64 time with the top bit flipped, so that a
//! signed BIGINT's order is HLC order (and times past 2038 still fit), and its node as a
//! BIGINT of the same bits. Every engine stores stamps this way, so stored stamps compare
//! alike: capture resume states, tombstone times for retention, MariaDB's applied images.

use crate::Hlc;

/// `(hlc_time, hlc_node)` columns of a stamp.
pub fn to_columns(hlc: Hlc) -> (i64, i64) {
    ((hlc.time ^ (1 << 63)) as i64, hlc.node as i64)
}

/// The stamp stored in `(hlc_time, hlc_node)` columns.
pub fn from_columns(time: i64, node: i64) -> Hlc {
    Hlc {
        time: (time as u64) ^ (1 << 63),
        node: node as u64,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn column_order_is_hlc_order_and_round_trips() {
        let stamps = [0, 1, (1 << 63) - 1, 1 << 63, u64::MAX].map(|time| Hlc { time, node: 7 });
        for w in stamps.windows(2) {
            assert!(to_columns(w[0]).0 < to_columns(w[1]).0);
        }
        for h in stamps {
            let (t, n) = to_columns(h);
            assert_eq!(from_columns(t, n), h);
        }
        let big_node = Hlc {
            time: 5,
            node: u64::MAX,
        };
        assert_eq!(
            from_columns(to_columns(big_node).0, to_columns(big_node).1),
            big_node
        );
    }
}
