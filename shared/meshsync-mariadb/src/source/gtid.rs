//! MariaDB global transaction ids (`domain-server-seq`), the resume state (the last GTID of
//! each replication domain), and the bodies of the MariaDB-only GTID (162) and GTID_LIST (163)
//! events, which mysql_common does not decode.

use std::{collections::BTreeMap, fmt, str::FromStr};

/// One MariaDB GTID: `domain-server-seq`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Gtid {
    /// Replication domain (`gtid_domain_id`).
    pub domain: u32,
    /// `server_id` of the server that committed the transaction first.
    pub server: u32,
    /// Sequence number, increasing within the domain.
    pub seq: u64,
}

impl fmt::Display for Gtid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}-{}", self.domain, self.server, self.seq)
    }
}

/// Text that is not a GTID or a GTID state; carries the offending text (GTIDs are not
/// customer data).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "{0:?} is not a MariaDB GTID state: write `domain-server-seq` entries separated by commas, \
     e.g. \"0-1-42,1-7-3\" (as SELECT @@gtid_binlog_pos prints it)"
)]
pub struct BadGtid(pub String);

impl FromStr for Gtid {
    type Err = BadGtid;

    fn from_str(s: &str) -> Result<Self, BadGtid> {
        let bad = || BadGtid(s.to_owned());
        let mut parts = s.trim().split('-');
        let domain = parts.next().and_then(|p| p.parse().ok()).ok_or_else(bad)?;
        let server = parts.next().and_then(|p| p.parse().ok()).ok_or_else(bad)?;
        let seq = parts.next().and_then(|p| p.parse().ok()).ok_or_else(bad)?;
        if parts.next().is_some() {
            return Err(bad());
        }
        Ok(Gtid {
            domain,
            server,
            seq,
        })
    }
}

/// Where to resume: the last GTID seen in each domain, as `@slave_connect_state` wants it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GtidState(BTreeMap<u32, Gtid>);

impl GtidState {
    /// No position: the stream starts at the oldest binlog the server still has.
    pub fn empty() -> Self {
        Self::default()
    }

    /// Parses `domain-server-seq,...` (empty text is the empty state). Two entries for one
    /// domain are refused: the state would be ambiguous.
    pub fn parse(text: &str) -> Result<Self, BadGtid> {
        let mut out = BTreeMap::new();
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let g: Gtid = part.parse().map_err(|_| BadGtid(text.to_owned()))?;
            if out.insert(g.domain, g).is_some() {
                return Err(BadGtid(text.to_owned()));
            }
        }
        Ok(GtidState(out))
    }

    /// Records `g` as the last transaction of its domain.
    pub fn advance(&mut self, g: Gtid) {
        self.0.insert(g.domain, g);
    }

    /// Adds the domains of `list` this state does not track yet (a GTID_LIST event names the
    /// state before the events that follow it; domains already tracked are at least as new).
    pub fn merge_missing(&mut self, list: &[Gtid]) {
        for g in list {
            self.0.entry(g.domain).or_insert(*g);
        }
    }

    /// The last GTID of `domain`.
    pub fn get(&self, domain: u32) -> Option<Gtid> {
        self.0.get(&domain).copied()
    }

    /// Whether no domain is tracked.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Display for GtidState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, g) in self.0.values().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{g}")?;
        }
        Ok(())
    }
}

/// GTID event flag: the transaction is a single statement without BEGIN/COMMIT (DDL).
pub const FL_STANDALONE: u8 = 1;

/// The body of a GTID event (162): `seq_no` u64 LE, `domain_id` u32 LE, `flags` u8 (more
/// bytes may follow, e.g. a group-commit id, and are ignored).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GtidEvent {
    /// The transaction's GTID (server from the event header).
    pub gtid: Gtid,
    /// `flags2` of the event ([`FL_STANDALONE`], ...).
    pub flags: u8,
}

/// Event bytes that are too short for their type.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("MariaDB {event} event body has {len} bytes, at least {need} expected")]
pub struct ShortEvent {
    /// Event name.
    pub event: &'static str,
    /// Bytes present.
    pub len: usize,
    /// Bytes needed.
    pub need: usize,
}

/// Little-endian integer of `N` bytes at `at`, if present.
fn le<const N: usize>(body: &[u8], at: usize) -> Option<[u8; N]> {
    body.get(at..at + N)?.try_into().ok()
}

impl GtidEvent {
    /// Parses the body (`ev.data()`) of a GTID event written by `server_id`.
    pub fn parse(body: &[u8], server_id: u32) -> Result<Self, ShortEvent> {
        let short = ShortEvent {
            event: "GTID",
            len: body.len(),
            need: 13,
        };
        let seq = le::<8>(body, 0).ok_or_else(|| short.clone())?;
        let domain = le::<4>(body, 8).ok_or_else(|| short.clone())?;
        let flags = *body.get(12).ok_or(short)?;
        Ok(GtidEvent {
            gtid: Gtid {
                domain: u32::from_le_bytes(domain),
                server: server_id,
                seq: u64::from_le_bytes(seq),
            },
            flags,
        })
    }

    /// Whether the transaction has no COMMIT/XID of its own.
    pub fn standalone(&self) -> bool {
        self.flags & FL_STANDALONE != 0
    }
}

/// Parses the body of a GTID_LIST event (163): count u32 LE (low 28 bits; the top 4 are
/// flags), then per entry `domain` u32, `server` u32, `seq` u64, all LE.
pub fn parse_gtid_list(body: &[u8]) -> Result<Vec<Gtid>, ShortEvent> {
    let head = le::<4>(body, 0).ok_or(ShortEvent {
        event: "GTID_LIST",
        len: body.len(),
        need: 4,
    })?;
    let count = (u32::from_le_bytes(head) & 0x0fff_ffff) as usize;
    let need = count.saturating_mul(16).saturating_add(4);
    let short = || ShortEvent {
        event: "GTID_LIST",
        len: body.len(),
        need,
    };
    let mut out = Vec::with_capacity(count.min(body.len() / 16));
    for i in 0..count {
        let at = 4 + i * 16;
        let domain = le::<4>(body, at).ok_or_else(short)?;
        let server = le::<4>(body, at + 4).ok_or_else(short)?;
        let seq = le::<8>(body, at + 8).ok_or_else(short)?;
        out.push(Gtid {
            domain: u32::from_le_bytes(domain),
            server: u32::from_le_bytes(server),
            seq: u64::from_le_bytes(seq),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_round_trips_and_orders_domains() {
        let s = GtidState::parse("99-1-1, 0-1-8").unwrap();
        assert_eq!(s.to_string(), "0-1-8,99-1-1");
        assert!(GtidState::parse("").unwrap().is_empty());
        for bad in ["0-1", "a-b-c", "0-1-2-3", "0-1-2,0-1-3"] {
            assert!(GtidState::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn gtid_event_body() {
        let mut body = 42u64.to_le_bytes().to_vec();
        body.extend(7u32.to_le_bytes());
        body.push(FL_STANDALONE);
        let ev = GtidEvent::parse(&body, 3).unwrap();
        assert_eq!(ev.gtid.to_string(), "7-3-42");
        assert!(ev.standalone());
        assert!(GtidEvent::parse(&body[..12], 3).is_err());
    }

    #[test]
    fn gtid_list_body() {
        let mut body = 0x1000_0001u32.to_le_bytes().to_vec();
        body.extend(0u32.to_le_bytes());
        body.extend(5u32.to_le_bytes());
        body.extend(9u64.to_le_bytes());
        assert_eq!(parse_gtid_list(&body).unwrap()[0].to_string(), "0-5-9");
        assert!(parse_gtid_list(&body[..10]).is_err());
        let huge = u32::MAX.to_le_bytes();
        assert!(parse_gtid_list(&huge).is_err());
    }
}
