//! MySQL GTID sets (`uuid:1-5:7,uuid2:1-3`, as `@@gtid_executed` prints them): the resume
//! state of capture on MySQL 8. The text always holds a `:` when not empty, and a MariaDB
//! state (`domain-server-seq`) never does, so a stored state tells which server wrote it.

use std::{collections::BTreeMap, fmt};

use mysql_async::{GnoInterval, Sid, binlog::events::PreviousGtidsEvent};

/// A server UUID (`source_uuid`), 16 bytes.
pub type Uuid = [u8; 16];

/// Text that is not a MySQL GTID set; carries the offending text (GTIDs are not customer
/// data).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "{text:?} is not a MySQL GTID set ({why}): write `uuid:interval[:interval..]` entries \
     separated by commas, e.g. \"3e11fa47-71ca-11e1-9e33-c80aa9429562:1-5:7\" (as SELECT \
     @@gtid_executed prints it)"
)]
pub struct BadGtidSet {
    /// The text.
    pub text: String,
    /// What is wrong.
    pub why: &'static str,
}

/// A set of MySQL GTIDs: per server UUID, sorted disjoint intervals of transaction numbers
/// (inclusive at both ends, as the text writes them), never touching (`1-3:4-5` is kept as
/// `1-5`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GtidSet(BTreeMap<Uuid, Vec<(u64, u64)>>);

impl GtidSet {
    /// Parses `uuid:a-b:c,uuid2:d-e` (whitespace and newlines around entries are allowed,
    /// a UUID may appear twice, intervals may overlap: they are merged). Empty text is the
    /// empty set. Tagged GTIDs (`uuid:tag:1-5`, MySQL 8.4) are refused.
    pub fn parse(text: &str) -> Result<Self, BadGtidSet> {
        let bad = |why| BadGtidSet {
            text: text.to_owned(),
            why,
        };
        let mut set = GtidSet::default();
        for entry in text.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let mut parts = entry.split(':');
            let uuid = parse_uuid(parts.next().unwrap_or_default())
                .ok_or_else(|| bad("a server UUID is malformed"))?;
            let mut any = false;
            for part in parts {
                let (start, end) = match part.trim().split_once('-') {
                    Some((a, b)) => (a.trim().parse::<u64>(), b.trim().parse::<u64>()),
                    None => (part.trim().parse::<u64>(), part.trim().parse::<u64>()),
                };
                let (Ok(start), Ok(end)) = (start, end) else {
                    return Err(bad(
                        "an interval is not numbers (tagged GTIDs are not supported)",
                    ));
                };
                if start == 0 || start > end || end == u64::MAX {
                    return Err(bad("an interval is empty or starts at 0"));
                }
                set.add_interval(uuid, start, end);
                any = true;
            }
            if !any {
                return Err(bad("a server UUID has no interval"));
            }
        }
        Ok(set)
    }

    /// Adds transaction `gno` of server `uuid`.
    pub fn add(&mut self, uuid: Uuid, gno: u64) {
        self.add_interval(uuid, gno, gno);
    }

    /// Adds `start..=end` of server `uuid`, merging intervals that overlap or touch.
    fn add_interval(&mut self, uuid: Uuid, start: u64, end: u64) {
        let intervals = self.0.entry(uuid).or_default();
        intervals.push((start, end));
        intervals.sort_unstable();
        let mut merged: Vec<(u64, u64)> = Vec::with_capacity(intervals.len());
        for &(s, e) in intervals.iter() {
            match merged.last_mut() {
                Some(last) if s <= last.1.saturating_add(1) => last.1 = last.1.max(e),
                _ => merged.push((s, e)),
            }
        }
        *intervals = merged;
    }

    /// Adds every GTID of `other`.
    pub fn union(&mut self, other: &GtidSet) {
        for (uuid, intervals) in &other.0 {
            for &(s, e) in intervals {
                self.add_interval(*uuid, s, e);
            }
        }
    }

    /// Adds the GTIDs a PREVIOUS_GTIDS event lists (the binlogs before the one it starts).
    /// Tagged entries are refused.
    pub fn union_previous(&mut self, ev: &PreviousGtidsEvent<'_>) -> Result<(), BadGtidSet> {
        for sid in ev.sids() {
            if sid.tag().is_some() {
                return Err(BadGtidSet {
                    text: String::new(),
                    why: "PREVIOUS_GTIDS lists tagged GTIDs, which are not supported",
                });
            }
            for i in sid.intervals() {
                // Intervals on the wire end exclusively.
                if i.start() > 0 && i.end() > i.start() {
                    self.add_interval(sid.uuid(), i.start(), i.end() - 1);
                }
            }
        }
        Ok(())
    }

    /// Whether transaction `gno` of `uuid` is in the set.
    pub fn contains(&self, uuid: &Uuid, gno: u64) -> bool {
        self.0
            .get(uuid)
            .is_some_and(|iv| iv.iter().any(|&(s, e)| s <= gno && gno <= e))
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The set as COM_BINLOG_DUMP_GTID wants it (intervals ending exclusively).
    pub fn to_sids(&self) -> Vec<Sid<'static>> {
        self.0
            .iter()
            .map(|(uuid, intervals)| {
                Sid::new(*uuid).with_intervals(
                    intervals
                        .iter()
                        .map(|&(s, e)| GnoInterval::new(s, e + 1))
                        .collect(),
                )
            })
            .collect()
    }
}

impl fmt::Display for GtidSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (uuid, intervals)) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{}", UuidText(uuid))?;
            for &(s, e) in intervals {
                if s == e {
                    write!(f, ":{s}")?;
                } else {
                    write!(f, ":{s}-{e}")?;
                }
            }
        }
        Ok(())
    }
}

/// A UUID in its usual text form, lowercase.
pub struct UuidText<'a>(pub &'a Uuid);

impl fmt::Display for UuidText<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, b) in self.0.iter().enumerate() {
            if matches!(i, 4 | 6 | 8 | 10) {
                f.write_str("-")?;
            }
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

/// Parses `3e11fa47-71ca-11e1-9e33-c80aa9429562` (dashes optional, any case).
fn parse_uuid(text: &str) -> Option<Uuid> {
    let hex: Vec<u8> = text.trim().bytes().filter(|b| *b != b'-').collect();
    if hex.len() != 32 {
        return None;
    }
    let mut out = [0u8; 16];
    for (i, pair) in hex.chunks(2).enumerate() {
        let s = std::str::from_utf8(pair).ok()?;
        *out.get_mut(i)? = u8::from_str_radix(s, 16).ok()?;
    }
    Some(out)
}

/// Whether a stored resume state was written for MySQL (a GTID set): it holds a `:`. Empty
/// text suits both servers (the oldest binlog).
pub fn is_mysql_state(text: &str) -> bool {
    text.contains(':')
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "3e11fa47-71ca-11e1-9e33-c80aa9429562";
    const B: &str = "4a5b0000-0000-0000-0000-00000000000b";

    #[test]
    fn parses_merges_and_prints() {
        let text = format!("{B}:1-3,\n{}:1-5:7:6,{A}:9", A.to_uppercase());
        let s = GtidSet::parse(&text).unwrap();
        assert_eq!(s.to_string(), format!("{A}:1-7:9,{B}:1-3"));
        assert_eq!(GtidSet::parse(&s.to_string()).unwrap(), s);
        assert!(GtidSet::parse("").unwrap().is_empty());
        assert!(GtidSet::parse(" \n").unwrap().is_empty());
    }

    #[test]
    fn add_fills_gaps_and_extends() {
        let mut s = GtidSet::parse(&format!("{A}:1-5:7")).unwrap();
        let uuid = parse_uuid(A).unwrap();
        assert!(!s.contains(&uuid, 6));
        s.add(uuid, 6);
        assert_eq!(s.to_string(), format!("{A}:1-7"));
        s.add(uuid, 8);
        s.add(uuid, 10);
        assert_eq!(s.to_string(), format!("{A}:1-8:10"));
        s.add(uuid, 3);
        assert_eq!(s.to_string(), format!("{A}:1-8:10"));
        let mut empty = GtidSet::default();
        empty.add(uuid, 1);
        assert_eq!(empty.to_string(), format!("{A}:1"));
        let mut u = GtidSet::parse(&format!("{B}:2")).unwrap();
        u.union(&s);
        assert_eq!(u.to_string(), format!("{A}:1-8:10,{B}:2"));
    }

    #[test]
    fn refuses_what_is_not_a_set() {
        for bad in [
            "0-1-42",
            "3e11fa47:1-5",
            A,
            &format!("{A}:0-3"),
            &format!("{A}:5-3"),
            &format!("{A}:x"),
            &format!("{A}:mytag:1-5"),
        ] {
            assert!(GtidSet::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn request_intervals_end_exclusively() {
        let s = GtidSet::parse(&format!("{A}:1-5:7")).unwrap();
        let sids = s.to_sids();
        assert_eq!(sids.len(), 1);
        let iv: Vec<(u64, u64)> = sids[0]
            .intervals()
            .iter()
            .map(|i| (i.start(), i.end()))
            .collect();
        assert_eq!(iv, [(1, 6), (7, 8)]);
        assert_eq!(sids[0].uuid(), parse_uuid(A).unwrap());
    }

    #[test]
    fn state_formats_are_told_apart() {
        assert!(is_mysql_state(&format!("{A}:1-5")));
        assert!(!is_mysql_state("0-1-42,1-2-7"));
        assert!(!is_mysql_state(""));
    }
}
