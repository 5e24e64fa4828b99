//! COPY for keys taken as new: their states (binary format) and rows (text format) in one
//! statement each. PostgreSQL inserts COPY rows in batches, about half the time of an
//! `INSERT .. SELECT FROM unnest(..)` per 4,000 rows. Only used once the connection has
//! TCP_NODELAY ([`crate::nodelay`]): otherwise every COPY waits 40 ms for a delayed ACK.

use sqlx::PgConnection;
use tracing::debug;

use crate::{
    catalog::{TableInfo, ident, qualified},
    error::{PgError, is_transient_sqlx},
};

/// Binary COPY data for `meshsync.row_state (tbl, pk, state, deleted_at)`.
pub struct StatesCopy {
    /// The header, then the rows.
    data: Vec<u8>,
    tbl: Vec<u8>,
    rows: usize,
}

/// The binary COPY signature, flags and header extension length.
const BINARY_HEADER: &[u8] = b"PGCOPY\n\xff\r\n\0\0\0\0\0\0\0\0\0";

impl StatesCopy {
    pub fn new(tbl: &str) -> StatesCopy {
        StatesCopy {
            data: BINARY_HEADER.to_vec(),
            tbl: tbl.as_bytes().to_vec(),
            rows: 0,
        }
    }

    pub fn push(&mut self, key: &[u8], state: &[u8], deleted_at: Option<i64>) {
        let d = &mut self.data;
        d.extend_from_slice(&4i16.to_be_bytes());
        for field in [self.tbl.as_slice(), key, state] {
            // A field is at most a row state or key: far below 2 GiB.
            d.extend_from_slice(&(field.len() as i32).to_be_bytes());
            d.extend_from_slice(field);
        }
        match deleted_at {
            Some(t) => {
                d.extend_from_slice(&8i32.to_be_bytes());
                d.extend_from_slice(&t.to_be_bytes());
            }
            None => d.extend_from_slice(&(-1i32).to_be_bytes()),
        }
        self.rows += 1;
    }

    /// Adds the rows of `other` (prepared for the same table), without its header.
    pub fn append(&mut self, other: &StatesCopy) {
        self.data
            .extend_from_slice(&other.data[BINARY_HEADER.len()..]);
        self.rows += other.rows;
    }

    /// The COPY data, trailer included; `None` without states.
    pub fn finish(mut self) -> Option<Vec<u8>> {
        if self.rows == 0 {
            return None;
        }
        self.data.extend_from_slice(&(-1i16).to_be_bytes());
        Some(self.data)
    }
}

/// Text COPY data for some columns of a replicated table.
#[derive(Clone)]
pub struct RowsCopy {
    /// Column names, in the order of every line.
    pub columns: Vec<String>,
    data: Vec<u8>,
    /// Rows pushed.
    pub len: u64,
}

impl RowsCopy {
    pub fn new(columns: Vec<String>) -> RowsCopy {
        RowsCopy {
            columns,
            data: Vec::new(),
            len: 0,
        }
    }

    /// One row: a value per column, `None` for NULL, as the column's type reads text.
    pub fn push<'v>(&mut self, values: impl Iterator<Item = Option<&'v str>>) {
        for (i, v) in values.enumerate() {
            if i > 0 {
                self.data.push(b'\t');
            }
            match v {
                None => self.data.extend_from_slice(b"\\N"),
                Some(v) => escape(v, &mut self.data),
            }
        }
        self.data.push(b'\n');
        self.len += 1;
    }

    /// Adds the rows of `other`, which has the same columns.
    pub fn append(&mut self, other: &RowsCopy) {
        self.data.extend_from_slice(&other.data);
        self.len += other.len;
    }
}

/// COPY's text format: backslash escapes for the delimiter, line ends and the backslash.
fn escape(v: &str, out: &mut Vec<u8>) {
    // Most values have nothing to escape: copied whole.
    if !v
        .bytes()
        .any(|b| matches!(b, b'\\' | b'\t' | b'\n' | b'\r'))
    {
        out.extend_from_slice(v.as_bytes());
        return;
    }
    for b in v.bytes() {
        match b {
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\t' => out.extend_from_slice(b"\\t"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            _ => out.push(b),
        }
    }
}

/// Inserts the states; false when the database refused them (a key had a state already):
/// the transaction must go back to its savepoint.
pub async fn states(conn: &mut PgConnection, data: &[u8]) -> Result<bool, PgError> {
    copy_in(
        conn,
        "COPY meshsync.row_state (tbl, pk, state, deleted_at) FROM STDIN (FORMAT binary)",
        data,
    )
    .await
}

/// Inserts the rows; false when the database refused one (a row with the key exists here,
/// or a value breaks a constraint): the transaction must go back to its savepoint, and the
/// path that reads states finds which.
pub async fn rows(
    conn: &mut PgConnection,
    info: &TableInfo,
    rows: &RowsCopy,
) -> Result<bool, PgError> {
    if rows.data.is_empty() {
        return Ok(true);
    }
    let columns = rows
        .columns
        .iter()
        .map(|c| ident(c))
        .collect::<Vec<_>>()
        .join(", ");
    let sql = format!("COPY {} ({columns}) FROM STDIN", qualified(&info.name));
    copy_in(conn, &sql, &rows.data).await
}

async fn copy_in(conn: &mut PgConnection, sql: &str, data: &[u8]) -> Result<bool, PgError> {
    let run = async {
        let mut copy = conn.copy_in_raw(sql).await?;
        copy.send(data).await?;
        copy.finish().await
    };
    match run.await {
        Ok(_) => Ok(true),
        Err(e) if is_transient_sqlx(&e) => Err(PgError::query("copy rows of new keys")(e)),
        Err(e) => {
            // The code and constraint only: the server's message may quote a value.
            let (code, constraint) = match &e {
                sqlx::Error::Database(db) => (
                    db.code().map(|c| c.to_string()),
                    db.constraint().map(str::to_owned),
                ),
                _ => (None, None),
            };
            debug!(
                ?code,
                ?constraint,
                "COPY refused; the states are read instead"
            );
            Ok(false)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{RowsCopy, StatesCopy};

    #[test]
    fn text_values_escape_what_copy_reads_as_syntax() {
        let mut rows = RowsCopy::new(vec!["a".into(), "b".into()]);
        rows.push([Some("x\ty\\z\r\n"), None].into_iter());
        rows.push([Some("\\N"), Some("")].into_iter());
        assert_eq!(rows.data, b"x\\ty\\\\z\\r\\n\t\\N\n\\\\N\t\n");
    }

    #[test]
    fn no_states_no_copy() {
        assert_eq!(StatesCopy::new("public.t").finish(), None);
    }

    #[test]
    fn appended_states_keep_one_header() {
        let mut one = StatesCopy::new("public.t");
        one.push(b"k", b"st", None);
        let mut all = StatesCopy::new("public.t");
        all.append(&one);
        all.append(&StatesCopy::new("public.t"));
        assert_eq!(all.finish(), one.finish());
    }

    #[test]
    fn binary_states_carry_four_fields_and_the_trailer() {
        let mut s = StatesCopy::new("public.t");
        s.push(b"k", b"st", None);
        let data = s.finish().unwrap();
        let mut want = b"PGCOPY\n\xff\r\n\0\0\0\0\0\0\0\0\0".to_vec();
        want.extend_from_slice(&[0, 4]);
        want.extend_from_slice(&[0, 0, 0, 8]);
        want.extend_from_slice(b"public.t");
        want.extend_from_slice(&[0, 0, 0, 1, b'k', 0, 0, 0, 2, b's', b't']);
        want.extend_from_slice(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff]);
        assert_eq!(data, want);
    }
}
