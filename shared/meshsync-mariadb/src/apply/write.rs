//! The SQL of row writes: deletes as one `DELETE .. WHERE (key) IN (..)` per chunk, upserts
//! grouped by the columns they write as one multi-row `INSERT .. ON DUPLICATE KEY UPDATE`
//! per chunk. Chunks stay under MariaDB's 65,535 placeholders per statement and a few MiB
//! per packet (`max_allowed_packet` is 16 MiB by default).
//!
//! Upserts that lack a column an insert needs (NOT NULL without default) are written as
//! multi-row `UPDATE`s instead: MariaDB checks the insert half of `INSERT .. ON DUPLICATE KEY
//! UPDATE` first and refuses it (error 1364) even when the row exists.
//!
//! On MariaDB every statement carries its own `sql_mode` and `time_zone` (`SET STATEMENT ..
//! FOR`), so values are refused rather than truncated, and TIMESTAMP text means UTC, whatever
//! session the caller hands in. MySQL has no `SET STATEMENT` (and `time_zone` is no
//! `SET_VAR` hint): there the session of [`super::open_apply_session`] sets both.

use sqlx::{MySql, MySqlConnection, mysql::MySqlArguments, query::Query};

use super::{APPLY_SQL_MODE, row::Bound};
use crate::{
    catalog::{TableInfo, ident, qualified},
    flavour::Flavour,
    types::SqlValue,
};

/// Placeholders one prepared statement may have.
const MAX_PARAMS: usize = 65_535;
/// Bound bytes per statement at most (a single larger row still goes alone); less when the
/// server's `max_allowed_packet` is small (see [`super::write_rows`]).
pub(super) const MAX_BYTES: usize = 4 << 20;

/// Statement prefix: strict and UTC for this statement only (MariaDB; nothing on MySQL).
fn prefix(flavour: Flavour) -> String {
    match flavour {
        Flavour::MariaDb => {
            format!("SET STATEMENT sql_mode = '{APPLY_SQL_MODE}', time_zone = '+00:00' FOR ")
        }
        Flavour::MySql => String::new(),
    }
}

/// The rows of `rows` in runs that fit one statement each: at most `max_rows` rows and
/// `max_bytes` of values.
fn chunks<'a, 'b>(
    rows: &'b [&'a Bound],
    params_per_row: usize,
    max_rows: usize,
    max_bytes: usize,
) -> Vec<&'b [&'a Bound]> {
    let per_row = params_per_row.max(1);
    let mut out = Vec::new();
    let (mut start, mut params, mut bytes) = (0, 0, 0);
    for (i, r) in rows.iter().enumerate() {
        let b = r.wire_bytes();
        let full = params + per_row > MAX_PARAMS || bytes + b > max_bytes || i - start >= max_rows;
        if i > start && full {
            out.push(&rows[start..i]);
            (start, params, bytes) = (i, 0, 0);
        }
        params += per_row;
        bytes += b;
    }
    if start < rows.len() {
        out.push(&rows[start..]);
    }
    out
}

/// `(?, ?, ?)` for `n` values.
fn tuple(n: usize) -> String {
    format!("({})", vec!["?"; n].join(", "))
}

/// Binds the key values, then the written values, of every row.
fn bind_all<'q>(
    mut q: Query<'q, MySql, MySqlArguments>,
    rows: &[&Bound],
    with_columns: bool,
) -> Query<'q, MySql, MySqlArguments> {
    for r in rows {
        for v in &r.key {
            q = v.clone().bind(q);
        }
        if with_columns {
            for v in r.upsert.iter().flat_map(|u| &u.values) {
                q = v.clone().bind(q);
            }
        }
    }
    q
}

/// Why a statement did not write every row it was given.
#[derive(Debug)]
pub(super) enum Failure {
    /// MariaDB refused the statement.
    Sql(sqlx::Error),
    /// An update-only write found no row to update, and inserting it would need `column`.
    Missing {
        /// A required column the write does not give.
        column: String,
    },
}

impl From<sqlx::Error> for Failure {
    fn from(e: sqlx::Error) -> Self {
        Failure::Sql(e)
    }
}

/// How to write upserts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Mode {
    /// Insert-or-update where the columns allow an insert, update-only where they do not.
    ByColumns,
    /// Update-only: the row must exist (MariaDB said an insert lacks a column).
    UpdateOnly,
}

/// Writes `rows` (no key twice): deletes first, then upserts per column set.
pub(super) async fn execute(
    conn: &mut MySqlConnection,
    flavour: Flavour,
    info: &TableInfo,
    rows: &[&Bound],
    mode: Mode,
    max_bytes: usize,
) -> Result<(), Failure> {
    let table = qualified(&info.name);
    let keys: Vec<String> = info.key.iter().map(|k| ident(k)).collect();

    let deletes: Vec<&Bound> = rows
        .iter()
        .copied()
        .filter(|r| r.upsert.is_none())
        .collect();
    for chunk in chunks(&deletes, keys.len(), usize::MAX, max_bytes) {
        let sql = format!(
            "{}DELETE FROM {table} WHERE {}",
            prefix(flavour),
            key_in(&keys, chunk.len())
        );
        let q = bind_all(sqlx::query(sqlx::AssertSqlSafe(sql)), chunk, false);
        q.execute(&mut *conn).await?;
    }

    // Upserts grouped by the set of columns they write and the subset they overwrite.
    type Group<'r, 'b> = (&'r [usize], &'r [usize], Vec<&'b Bound>);
    let mut groups: Vec<Group<'_, '_>> = Vec::new();
    for r in rows {
        let Some(u) = &r.upsert else { continue };
        match groups.iter_mut().find(|(cols, update, _)| {
            *cols == u.indexes.as_slice() && *update == u.update.as_slice()
        }) {
            Some((_, _, members)) => members.push(r),
            None => groups.push((&u.indexes, &u.update, vec![r])),
        }
    }
    for (cols, overwritten, members) in groups {
        let name_of = |i: &usize| info.columns.get(*i).map(|c| ident(&c.name));
        let names: Vec<String> = cols.iter().filter_map(name_of).collect();
        let overwrite: Vec<String> = overwritten
            .iter()
            .filter_map(|p| cols.get(*p))
            .filter_map(name_of)
            .collect();
        // A required column the group lacks: an insert is impossible, so update only.
        let lacking = info
            .columns
            .iter()
            .enumerate()
            .find(|(i, c)| c.required && !cols.contains(i) && !info.key.contains(&c.name))
            .map(|(_, c)| c.name.clone());
        let lacking = match (mode, lacking) {
            (Mode::UpdateOnly, None) => Some(String::new()),
            (_, lacking) => lacking,
        };
        if let Some(column) = lacking {
            let set = Overwrite {
                names: &overwrite,
                positions: overwritten,
            };
            update(
                conn, flavour, &table, &keys, &set, &members, &column, max_bytes,
            )
            .await?;
            continue;
        }
        let all: Vec<String> = keys.iter().chain(&names).cloned().collect();
        let set = upsert_assignments(&keys, &overwrite);
        for chunk in chunks(&members, all.len(), usize::MAX, max_bytes) {
            let values = vec![tuple(all.len()); chunk.len()].join(", ");
            let sql = format!(
                "{}INSERT INTO {table} ({}) VALUES {values} ON DUPLICATE KEY UPDATE {set}",
                prefix(flavour),
                all.join(", ")
            );
            let q = bind_all(sqlx::query(sqlx::AssertSqlSafe(sql)), chunk, true);
            q.execute(&mut *conn).await?;
        }
    }
    Ok(())
}

/// `(k1, k2) IN ((?, ?), ..)`, or `k IN (?, ..)` for a one-column key, for `n` rows.
fn key_in(keys: &[String], n: usize) -> String {
    if let [k] = keys {
        format!("{k} IN ({})", vec!["?"; n].join(", "))
    } else {
        let tuples = vec![tuple(keys.len()); n].join(", ");
        format!("({}) IN ({tuples})", keys.join(", "))
    }
}

/// Rows per update-only statement: each `CASE` has a branch per row, evaluated for every
/// row updated, so cost grows with the square of this.
const UPDATE_ROWS: usize = 200;

/// The columns an update-only write sets: quoted names, and their positions among the
/// group's written values.
struct Overwrite<'a> {
    /// Quoted column names.
    names: &'a [String],
    /// Position of each in `Columns::values`.
    positions: &'a [usize],
}

/// Update-only writes: `UPDATE t SET c = CASE WHEN k = ? THEN ? .. END .. WHERE k IN (..)`,
/// with parameters compared to the columns themselves (their collation, their index). A
/// chunk that matches fewer rows than it has is a [`Failure::Missing`] (the connection
/// reports found rows, not changed rows).
#[allow(clippy::too_many_arguments)]
async fn update(
    conn: &mut MySqlConnection,
    flavour: Flavour,
    table: &str,
    keys: &[String],
    set: &Overwrite<'_>,
    rows: &[&Bound],
    lacking: &str,
    max_bytes: usize,
) -> Result<(), Failure> {
    let names = set.names;
    let when = keys
        .iter()
        .map(|k| format!("{k} = ?"))
        .collect::<Vec<_>>()
        .join(" AND ");
    let per_row = names.len() * (keys.len() + 1) + keys.len();
    for chunk in chunks(rows, per_row, UPDATE_ROWS, max_bytes) {
        let assignments = if names.is_empty() {
            // Nothing to change: the statement only finds the rows.
            format!(
                "{0} = {0}",
                keys.first().map(String::as_str).unwrap_or("``")
            )
        } else {
            let branches = vec![format!("WHEN {when} THEN ?"); chunk.len()].join(" ");
            names
                .iter()
                .map(|c| format!("{c} = CASE {branches} ELSE {c} END"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let sql = format!(
            "{}UPDATE {table} SET {assignments} WHERE {}",
            prefix(flavour),
            key_in(keys, chunk.len())
        );
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
        for pos in set.positions {
            for r in chunk {
                for v in &r.key {
                    q = v.clone().bind(q);
                }
                let v = r.upsert.as_ref().and_then(|u| u.values.get(*pos));
                q = v.cloned().unwrap_or(SqlValue::Null).bind(q);
            }
        }
        q = bind_all(q, chunk, false);
        let found = q.execute(&mut *conn).await?.rows_affected();
        if found < chunk.len() as u64 {
            return Err(Failure::Missing {
                column: lacking.to_owned(),
            });
        }
    }
    Ok(())
}

/// The `ON DUPLICATE KEY UPDATE` list. It starts with a guard: MariaDB takes a duplicate in
/// *any* unique index as "the row exists", so a new row whose value collides with another
/// row's UNIQUE column would overwrite that other row. When the existing row's primary key
/// is not this row's, the guard evaluates a subquery returning two rows, which fails the
/// statement with error 1242 instead; [`super::refusal`] names the cause.
fn upsert_assignments(keys: &[String], names: &[String]) -> String {
    let same_key = keys
        .iter()
        .map(|k| format!("{k} = VALUES({k})"))
        .collect::<Vec<_>>()
        .join(" AND ");
    let first = keys.first().map(String::as_str).unwrap_or("``");
    let mut out = vec![format!(
        "{first} = IF({same_key}, {first}, (SELECT 1 UNION ALL SELECT 2))"
    )];
    out.extend(names.iter().map(|c| format!("{c} = VALUES({c})")));
    out.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(index: usize, text: usize) -> Bound {
        Bound {
            index,
            key: vec![SqlValue::Int(1), SqlValue::Text("x".repeat(text))],
            upsert: None,
        }
    }

    #[test]
    fn chunks_respect_placeholders_and_bytes() {
        let small: Vec<Bound> = (0..40_000).map(|i| row(i, 1)).collect();
        let refs: Vec<&Bound> = small.iter().collect();
        let sizes: Vec<usize> = chunks(&refs, 2, usize::MAX, MAX_BYTES)
            .iter()
            .map(|c| c.len())
            .collect();
        assert_eq!(sizes, [32_767, 7_233]);
        let sizes: Vec<usize> = chunks(&refs[..450], 2, 200, MAX_BYTES)
            .iter()
            .map(|c| c.len())
            .collect();
        assert_eq!(sizes, [200, 200, 50]);
        let big: Vec<Bound> = (0..3).map(|i| row(i, 3 << 20)).collect();
        let refs: Vec<&Bound> = big.iter().collect();
        assert_eq!(
            chunks(&refs, 2, usize::MAX, MAX_BYTES).len(),
            3,
            "one oversized row per statement"
        );
        assert!(chunks(&[], 2, usize::MAX, MAX_BYTES).is_empty());
    }

    #[test]
    fn guard_covers_every_key_column() {
        let sql = upsert_assignments(&["`a`".into(), "`b`".into()], &["`c`".into()]);
        assert_eq!(
            sql,
            "`a` = IF(`a` = VALUES(`a`) AND `b` = VALUES(`b`), `a`, (SELECT 1 UNION ALL \
             SELECT 2)), `c` = VALUES(`c`)"
        );
    }
}
