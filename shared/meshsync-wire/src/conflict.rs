//! Resolved conflicts on NATS: one message per conflict, readable with the NATS CLI.
//!
//! Every conflict apply resolves is published by the peer that resolved it on its own subject
//! of the conflict stream, kept where the peer is (so an edge site keeps its conflicts while
//! offline from the hub):
//!
//! | topology | subject | stream |
//! |---|---|---|
//! | direct | `mesh.conflicts.<peer>` | `MESH_CONFLICTS` (`mesh.conflicts.>`) |
//! | edge, site `<d>` | `mesh.site.<d>.conflicts.<peer>` | `CONFLICTS_<d>` (`mesh.site.<d>.conflicts.>`) |
//!
//! The headers tell the story without the body ([`ConflictMessage::headers`]): `Mesh-Table`,
//! `Mesh-Key` (canonical JSON of the key values), `Mesh-Column` (or `row`), `Mesh-Policy`,
//! `Mesh-Winner`, `Mesh-Local-Version` / `Mesh-Incoming-Version` (`<hlc>@<origin>#<index>`,
//! the HLC as `Mesh-Hlc` shows it), `Mesh-Resolved-By`, `Mesh-Values` (`included` or
//! `omitted`) and, when included, `Mesh-Local-Value` / `Mesh-Incoming-Value` (JSON, cut at
//! [`HEADER_VALUE_MAX`] bytes). The body is the whole record as indented JSON
//! ([`ConflictMessage`]). For a sensitive table ([`Values::Omitted`]) the values are in
//! neither.
//!
//! Values are shown as JSON a person reads: numbers, strings, `null`; decimals as strings;
//! bytes as `"\\x<hex>"`; times as ISO 8601 text (`2026-05-01T10:00:00.000000Z` for an instant,
//! without `Z` for a wall-clock time); UUIDs hyphenated; JSON documents as themselves.

use meshsync_core::{PeerId, Value, Version, digest};
use meshsync_merge::{ConflictRecord, Winner};
use serde::{Deserialize, Deserializer, Serialize};
use time::{Date, OffsetDateTime, macros::format_description};

use crate::{headers, subject};

/// Format of the JSON body this build writes and the highest it reads.
pub const FORMAT_VERSION: u16 = 1;

/// The conflict stream of the direct topology.
pub const STREAM: &str = "MESH_CONFLICTS";
/// Subjects of [`STREAM`].
pub const SUBJECTS: &str = "mesh.conflicts.>";

/// `Mesh-Key`: the key values as canonical JSON (`[42]`, `["eu",7]`).
pub const KEY: &str = "Mesh-Key";
/// `Mesh-Column`: the column the conflict was about, or [`ROW`].
pub const COLUMN: &str = "Mesh-Column";
/// `Mesh-Policy`: the policy that decided (`lww-column`, `lww`, `max`, ..., `tombstone`).
pub const POLICY: &str = "Mesh-Policy";
/// `Mesh-Winner`: `local` (the stored side stayed), `incoming` (the arriving change
/// replaced it) or `combined` (both merged: counter, set-union).
pub const WINNER: &str = "Mesh-Winner";
/// `Mesh-Local-Version`: version of the stored side, `<hlc>@<origin>#<index>`.
pub const LOCAL_VERSION: &str = "Mesh-Local-Version";
/// `Mesh-Incoming-Version`: version of the arriving change, `<hlc>@<origin>#<index>`.
pub const INCOMING_VERSION: &str = "Mesh-Incoming-Version";
/// `Mesh-Resolved-By`: the peer whose apply resolved the conflict.
pub const RESOLVED_BY: &str = "Mesh-Resolved-By";
/// `Mesh-Values`: `included`, or `omitted` for a sensitive table.
pub const VALUES: &str = "Mesh-Values";
/// `Mesh-Local-Value`: the stored side's value as JSON (column conflicts, values included).
pub const LOCAL_VALUE: &str = "Mesh-Local-Value";
/// `Mesh-Incoming-Value`: the arriving value as JSON (column conflicts, values included).
pub const INCOMING_VALUE: &str = "Mesh-Incoming-Value";
/// `Mesh-Conflict-Format`: [`FORMAT_VERSION`] of the body.
pub const FORMAT: &str = "Mesh-Conflict-Format";

/// `Mesh-Column` of a row conflict (a delete against an insert or update).
pub const ROW: &str = "row";
/// Longest value header, in bytes; a longer value is cut and ends in `…`. The body has it whole.
pub const HEADER_VALUE_MAX: usize = 256;

/// Subject a directly connected peer logs its conflicts on.
pub fn subject(peer: &PeerId) -> String {
    format!("mesh.conflicts.{peer}")
}

/// Subject a peer at edge site `domain` logs its conflicts on (kept at the site).
pub fn site_subject(domain: &str, peer: &PeerId) -> String {
    format!("mesh.site.{domain}.conflicts.{peer}")
}

/// Subjects of a site's conflict stream.
pub fn site_subjects(domain: &str) -> String {
    format!("mesh.site.{domain}.conflicts.>")
}

/// Name of a site's conflict stream.
pub fn site_stream(domain: &str) -> String {
    format!("CONFLICTS_{}", subject::stream_safe(domain))
}

/// Why a conflict message could not be written or read.
#[derive(Debug, thiserror::Error)]
pub enum ConflictError {
    /// Written by a newer meshsync.
    #[error(
        "conflict record format {found} is newer than this meshsync reads (up to {supported}); \
         upgrade meshsync here"
    )]
    FutureFormat {
        /// Format in the message.
        found: u16,
        /// Highest format this build reads.
        supported: u16,
    },
    /// Not a conflict record, or damaged.
    #[error("malformed conflict record")]
    Malformed(#[source] serde_json::Error),
    /// Encoding failed (a bug, not bad input).
    #[error("cannot encode conflict record")]
    Encode(#[source] serde_json::Error),
    /// A version whose text is not `<time>.<node>` with a valid origin.
    #[error("malformed version {0:?} in conflict record")]
    BadVersion(String),
}

/// Whether a record carries its values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Values {
    /// Values in the body and headers.
    Included,
    /// Left out: the table is listed in `merge.sensitive`.
    Omitted,
}

impl Values {
    /// `included` or `omitted`.
    pub fn as_str(self) -> &'static str {
        match self {
            Values::Included => "included",
            Values::Omitted => "omitted",
        }
    }
}

/// A version as people and machines read it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionText {
    /// The HLC as `Mesh-Hlc` shows it: RFC 3339 UTC time and counter
    /// (`2026-11-26T17:21:39.102608Z/0`).
    pub hlc: String,
    /// The exact HLC, `<time>.<node>` ([`meshsync_core::Hlc`]'s `Display`).
    pub stamp: String,
    /// The peer where the change was committed.
    pub origin: String,
    /// Index of the change in its transaction.
    pub index: u32,
}

impl VersionText {
    /// The text of `v`.
    pub fn of(v: &Version) -> Self {
        VersionText {
            hlc: v.hlc.to_header(),
            stamp: v.hlc.to_string(),
            origin: v.origin.to_string(),
            index: v.index,
        }
    }

    /// `<hlc>@<origin>#<index>`, the version headers.
    pub fn header(&self) -> String {
        format!("{}@{}#{}", self.hlc, self.origin, self.index)
    }

    /// The exact version back.
    pub fn to_version(&self) -> Result<Version, ConflictError> {
        let bad = || ConflictError::BadVersion(format!("{}@{}", self.stamp, self.origin));
        let hlc = self.stamp.parse().map_err(|_| bad())?;
        let origin = PeerId::new(self.origin.as_str()).map_err(|_| bad())?;
        Ok(Version::new(hlc, origin, self.index))
    }
}

/// One resolved conflict: the JSON body of a conflict message.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ConflictMessage {
    /// [`FORMAT_VERSION`] it was written with.
    pub format: u16,
    /// Peer whose apply resolved it.
    pub resolved_by: String,
    /// `schema.table`.
    pub table: String,
    /// Key values (see the module documentation for how values look).
    pub key: Vec<serde_json::Value>,
    /// The column; `None` for a row conflict (a delete against an insert or update).
    pub column: Option<String>,
    /// Label of the deciding policy.
    pub policy: String,
    /// Which side won.
    pub winner: Winner,
    /// Version of the stored side.
    pub local: VersionText,
    /// Version of the arriving side.
    pub incoming: VersionText,
    /// Whether the values are in the record.
    pub values: Values,
    /// Value of the stored side (column conflicts with values included; SQL NULL is `null`).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "present"
    )]
    pub local_value: Option<serde_json::Value>,
    /// Value of the arriving side (column conflicts with values included).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "present"
    )]
    pub incoming_value: Option<serde_json::Value>,
}

/// A field that is there is `Some`, even when it is `null` (SQL NULL); a missing one is `None`.
fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<serde_json::Value>, D::Error> {
    serde_json::Value::deserialize(d).map(Some)
}

/// Only the format, read before the rest.
#[derive(Deserialize)]
struct FormatOnly {
    format: u16,
}

impl ConflictMessage {
    /// The message for `record`, resolved by `resolved_by`; [`Values::Omitted`] leaves the
    /// values out (sensitive tables).
    pub fn from_record(record: &ConflictRecord, resolved_by: &PeerId, values: Values) -> Self {
        let c = &record.conflict;
        let shown = |v: &Option<Value>| match values {
            Values::Included => v.as_ref().map(value_json),
            Values::Omitted => None,
        };
        ConflictMessage {
            format: FORMAT_VERSION,
            resolved_by: resolved_by.to_string(),
            table: record.table.to_string(),
            key: record.key_values.iter().map(key_json).collect(),
            column: c.column.clone(),
            policy: c.policy.clone(),
            winner: c.winner,
            local: VersionText::of(&c.local),
            incoming: VersionText::of(&c.incoming),
            values,
            local_value: shown(&record.local_value),
            incoming_value: shown(&record.incoming_value),
        }
    }

    /// The key as canonical JSON: the `Mesh-Key` header.
    pub fn key_text(&self) -> String {
        serde_json::to_string(&self.key).unwrap_or_else(|_| "[]".to_owned())
    }

    /// The column, or `row`.
    pub fn column_text(&self) -> &str {
        self.column.as_deref().unwrap_or(ROW)
    }

    /// `Nats-Msg-Id`: `<resolved by>:<hash>` of the table, key, column and both versions, so
    /// a conflict published twice (apply redelivered after a crash) is stored once.
    pub fn msg_id(&self) -> String {
        let identity = format!(
            "{}\u{0}{}\u{0}{}\u{0}{}@{}#{}\u{0}{}@{}#{}",
            self.table,
            self.key_text(),
            self.column.as_deref().unwrap_or("\u{0}row"),
            self.local.stamp,
            self.local.origin,
            self.local.index,
            self.incoming.stamp,
            self.incoming.origin,
            self.incoming.index,
        );
        format!(
            "{}:{:016x}{:016x}",
            self.resolved_by,
            fnv1a(identity.as_bytes(), 0xcbf2_9ce4_8422_2325),
            fnv1a(identity.as_bytes(), 0x6c62_272e_07bb_0142)
        )
    }

    /// The headers, `Nats-Msg-Id` first. No value contains a line break.
    pub fn headers(&self) -> Vec<(&'static str, String)> {
        let mut out = vec![
            (headers::MSG_ID, one_line(&self.msg_id())),
            (headers::TABLE, one_line(&self.table)),
            (KEY, cut(&one_line(&self.key_text()))),
            (COLUMN, one_line(self.column_text())),
            (POLICY, one_line(&self.policy)),
            (WINNER, self.winner.as_str().to_owned()),
            (LOCAL_VERSION, one_line(&self.local.header())),
            (INCOMING_VERSION, one_line(&self.incoming.header())),
            (RESOLVED_BY, one_line(&self.resolved_by)),
            (VALUES, self.values.as_str().to_owned()),
        ];
        if self.values == Values::Included {
            for (name, v) in [
                (LOCAL_VALUE, &self.local_value),
                (INCOMING_VALUE, &self.incoming_value),
            ] {
                if let Some(v) = v {
                    out.push((name, cut(&one_line(&v.to_string()))));
                }
            }
        }
        out.push((FORMAT, self.format.to_string()));
        out
    }

    /// The body: indented JSON.
    pub fn body(&self) -> Result<Vec<u8>, ConflictError> {
        serde_json::to_vec_pretty(self).map_err(ConflictError::Encode)
    }

    /// Reads a body; refuses a format newer than [`FORMAT_VERSION`] before reading the rest.
    pub fn decode(body: &[u8]) -> Result<Self, ConflictError> {
        let FormatOnly { format } =
            serde_json::from_slice(body).map_err(ConflictError::Malformed)?;
        if format > FORMAT_VERSION || format == 0 {
            return Err(ConflictError::FutureFormat {
                found: format,
                supported: FORMAT_VERSION,
            });
        }
        serde_json::from_slice(body).map_err(ConflictError::Malformed)
    }
}

/// A conflict ready to publish: headers and body.
#[derive(Clone, Debug, PartialEq)]
pub struct Encoded {
    /// Header names and values, `Nats-Msg-Id` first.
    pub headers: Vec<(&'static str, String)>,
    /// Indented JSON of the [`ConflictMessage`].
    pub body: Vec<u8>,
}

/// Headers and body of `record` as `resolved_by` logs it.
pub fn encode(
    record: &ConflictRecord,
    resolved_by: &PeerId,
    values: Values,
) -> Result<Encoded, ConflictError> {
    let message = ConflictMessage::from_record(record, resolved_by, values);
    Ok(Encoded {
        headers: message.headers(),
        body: message.body()?,
    })
}

/// Reads the body of a conflict message.
pub fn decode(body: &[u8]) -> Result<ConflictMessage, ConflictError> {
    ConflictMessage::decode(body)
}

/// A value as a person reads it in JSON (see the module documentation).
pub fn value_json(v: &Value) -> serde_json::Value {
    use serde_json::Value as J;
    match v {
        Value::Null => J::Null,
        Value::Bool(b) => J::Bool(*b),
        Value::Int(i) => J::from(*i),
        Value::UInt(u) => J::from(*u),
        Value::Float(f) => serde_json::Number::from_f64(*f)
            .map(J::Number)
            .unwrap_or_else(|| J::String(f.to_string())),
        Value::Decimal(d) => J::String(d.clone()),
        Value::Text(t) => J::String(t.clone()),
        Value::Bytes(b) => J::String(bytes_text(b)),
        Value::Timestamp(us) => J::String(timestamp_text(*us, true)),
        Value::LocalTimestamp(us) => J::String(timestamp_text(*us, false)),
        Value::Date(days) => J::String(date_text(*days)),
        Value::Time(us) => J::String(time_text(*us)),
        Value::Uuid(u) => J::String(uuid_text(u)),
        Value::Json(s) => serde_json::from_str(s).unwrap_or_else(|_| J::String(s.clone())),
    }
}

/// A key value: as [`value_json`], with decimals in canonical form (the same key prints the
/// same whichever engine's spelling it came in).
pub fn key_json(v: &Value) -> serde_json::Value {
    match v {
        Value::Decimal(d) => serde_json::Value::String(digest::normalize_decimal(d).into_owned()),
        other => value_json(other),
    }
}

fn bytes_text(b: &[u8]) -> String {
    let mut s = String::with_capacity(2 + 2 * b.len());
    s.push_str("\\x");
    for byte in b {
        s.push_str(&format!("{byte:02x}"));
    }
    s
}

fn uuid_text(u: &[u8; 16]) -> String {
    let hex: String = u.iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

/// Microseconds since the epoch as ISO 8601 (`Z` for an instant); out of range: the number.
fn timestamp_text(us: i64, utc: bool) -> String {
    let Ok(t) = OffsetDateTime::from_unix_timestamp_nanos(i128::from(us) * 1000) else {
        return format!("{us} µs since 1970-01-01");
    };
    let format =
        format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:6]");
    match t.format(&format) {
        Ok(text) if utc => format!("{text}Z"),
        Ok(text) => text,
        Err(_) => format!("{us} µs since 1970-01-01"),
    }
}

/// Days since the epoch as `YYYY-MM-DD`; out of range: the number.
fn date_text(days: i32) -> String {
    const UNIX_EPOCH_JULIAN_DAY: i32 = 2_440_588;
    days.checked_add(UNIX_EPOCH_JULIAN_DAY)
        .and_then(|jd| Date::from_julian_day(jd).ok())
        .and_then(|d| d.format(format_description!("[year]-[month]-[day]")).ok())
        .unwrap_or_else(|| format!("{days} days since 1970-01-01"))
}

/// Microseconds since midnight as `HH:MM:SS.ffffff`.
fn time_text(us: i64) -> String {
    let sign = if us < 0 { "-" } else { "" };
    let us = us.unsigned_abs();
    format!(
        "{sign}{:02}:{:02}:{:02}.{:06}",
        us / 3_600_000_000,
        us / 60_000_000 % 60,
        us / 1_000_000 % 60,
        us % 1_000_000
    )
}

/// `s` with control characters (line breaks above all: NATS headers are lines) escaped.
fn one_line(s: &str) -> String {
    if !s.chars().any(char::is_control) {
        return s.to_owned();
    }
    s.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

/// `s` cut to at most [`HEADER_VALUE_MAX`] bytes on a character boundary, ending in `…` if cut.
fn cut(s: &str) -> String {
    if s.len() <= HEADER_VALUE_MAX {
        return s.to_owned();
    }
    let ellipsis = '…';
    let mut end = HEADER_VALUE_MAX - ellipsis.len_utf8();
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}{ellipsis}", &s[..end])
}

/// FNV-1a 64 from `basis`.
fn fnv1a(bytes: &[u8], basis: u64) -> u64 {
    bytes.iter().fold(basis, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_read_as_iso_8601() {
        assert_eq!(
            timestamp_text(1_700_000_000_123_456, true),
            "2023-11-14T22:13:20.123456Z"
        );
        assert_eq!(timestamp_text(0, false), "1970-01-01T00:00:00.000000");
        assert_eq!(date_text(0), "1970-01-01");
        assert_eq!(date_text(-1), "1969-12-31");
        assert_eq!(date_text(i32::MAX), "2147483647 days since 1970-01-01");
        assert_eq!(time_text(3_723_000_004), "01:02:03.000004");
        assert_eq!(
            timestamp_text(i64::MAX, true),
            "9223372036854775807 µs since 1970-01-01"
        );
    }

    #[test]
    fn header_values_are_single_lines_and_short() {
        assert_eq!(one_line("a\r\nb"), "a\\r\\nb");
        let long = "é".repeat(400);
        let c = cut(&long);
        assert!(c.len() <= HEADER_VALUE_MAX && c.ends_with('…'));
    }
}
