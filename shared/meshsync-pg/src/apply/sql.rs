//! The SQL of one batch: read versions, decide, write rows, write versions.
//!
//! Rows are written with multi-row statements (one upsert per column set, one delete), not
//! one statement per row; values travel as text parameters with explicit casts. A statement
//! that fails on data is retried row by row under savepoints, so one bad row is parked and
//! its neighbours still apply (I10).

use std::collections::HashMap;

use meshsync_core::{Cell, ChangeBatch, Op, PeerId, RowChange, Value};
use sqlx::{PgConnection, Row};

use super::{
    BatchReport, Parked,
    decide::{Decision, StoredVersion, decide, stored_after},
};
use crate::{
    catalog::{TableInfo, ident, qualified},
    error::{PgError, is_transient_sqlx},
    hlc_column,
    types::to_sql_text,
};

/// Canonical text of a key: the same on every peer for the same key values.
pub fn key_text(key: &[Value]) -> String {
    serde_json::to_string(key).unwrap_or_default()
}

/// Whether the batch's shape fits the table here; the reason otherwise.
pub fn check_shape(info: &TableInfo, batch: &ChangeBatch) -> Result<(), String> {
    if batch.key_columns != info.key {
        return Err(format!(
            "primary key of {} is ({}) here but ({}) at origin {}",
            batch.table,
            info.key.join(", "),
            batch.key_columns.join(", "),
            batch.origin
        ));
    }
    for c in &batch.columns {
        if info.column(c).is_none() {
            return Err(format!(
                "column {c:?} of {} does not exist on this peer",
                batch.table
            ));
        }
    }
    for row in &batch.rows {
        if row.key.len() != batch.key_columns.len()
            || (!row.cells.is_empty() && row.cells.len() != batch.columns.len())
        {
            return Err(format!(
                "row {} of the batch does not match its column list",
                row.index
            ));
        }
    }
    Ok(())
}

/// A row ready to write: its text parameters.
struct Prepared<'b> {
    /// Which of the batches it came from.
    batch: usize,
    row: &'b RowChange,
    key: Vec<Option<String>>,
    /// Column name and text value of every cell that carries a value.
    cells: Vec<(&'b str, Option<String>)>,
}

fn prepare<'b>(
    info: &TableInfo,
    batch_no: usize,
    batch: &'b ChangeBatch,
    row: &'b RowChange,
) -> Result<Prepared<'b>, String> {
    let mut key = Vec::new();
    for (name, v) in batch.key_columns.iter().zip(&row.key) {
        let col = info
            .column(name)
            .ok_or_else(|| format!("no key column {name:?}"))?;
        key.push(to_sql_text(v, &col.ty).map_err(|e| format!("key column {name:?}: {e}"))?);
    }
    let mut cells = Vec::new();
    if row.op != Op::Delete {
        for (name, cell) in batch.columns.iter().zip(&row.cells) {
            // Row-level LWW writes the winner's whole image: written and kept values.
            let (Cell::Value(v) | Cell::Kept(v)) = cell else {
                continue;
            };
            let col = info
                .column(name)
                .ok_or_else(|| format!("no column {name:?}"))?;
            if v.is_null() && col.not_null {
                return Err(format!(
                    "column {name:?} is NOT NULL here but the change sets it to NULL"
                ));
            }
            cells.push((
                name.as_str(),
                to_sql_text(v, &col.ty).map_err(|e| format!("column {name:?}: {e}"))?,
            ));
        }
    }
    Ok(Prepared {
        batch: batch_no,
        row,
        key,
        cells,
    })
}

/// Applies batches of one table, in stream order, inside the open transaction: one version
/// read, one set of row writes and one version write for all of them (set-based apply: the
/// cost per message is a few rows of SQL, not a few round trips). One report per batch.
pub async fn apply_batches(
    conn: &mut PgConnection,
    info: &TableInfo,
    batches: &[&ChangeBatch],
    me: &PeerId,
) -> Result<Vec<BatchReport>, PgError> {
    let mut reports = vec![BatchReport::default(); batches.len()];
    let tbl = info.name.to_string();
    let rows_in_order: Vec<(usize, &ChangeBatch, &RowChange, String)> = batches
        .iter()
        .enumerate()
        .flat_map(|(i, b)| b.rows.iter().map(move |r| (i, *b, r, key_text(&r.key))))
        .collect();
    let mut keys: Vec<String> = rows_in_order.iter().map(|(_, _, _, k)| k.clone()).collect();
    keys.sort_unstable();
    keys.dedup();
    let mut stored = read_versions(conn, &tbl, &keys).await?;

    // Decide row by row in stream and transaction order; the last winner per key is written.
    let mut finals: HashMap<&str, (Decision, Prepared<'_>)> = HashMap::new();
    let mut order: Vec<&str> = Vec::new();
    for (i, batch, row, key) in &rows_in_order {
        let decision = decide(
            stored.get(key.as_str()),
            batch.hlc,
            &batch.origin,
            row.index,
            me,
        );
        if decision == Decision::Skip {
            reports[*i].superseded += 1;
            continue;
        }
        let prepared = match prepare(info, *i, batch, row) {
            Ok(p) => p,
            Err(reason) => {
                reports[*i].parked.push(Parked {
                    row: Some(row.index),
                    reason,
                });
                continue;
            }
        };
        stored.insert(
            key.clone(),
            stored_after(row.op, batch.hlc, &batch.origin, row.index),
        );
        if finals.insert(key.as_str(), (decision, prepared)).is_none() {
            order.push(key.as_str());
        }
    }
    let rows: Vec<(&str, Decision, Prepared<'_>)> = order
        .into_iter()
        .filter_map(|k| finals.remove(k).map(|(d, p)| (k, d, p)))
        .collect();
    let writes: Vec<&Prepared<'_>> = rows
        .iter()
        .filter(|(_, d, _)| *d == Decision::Write)
        .map(|(_, _, p)| p)
        .collect();

    sqlx::query("SAVEPOINT meshsync_batch")
        .execute(&mut *conn)
        .await
        .map_err(PgError::query("savepoint"))?;
    let failed: Vec<((usize, u32), String)> = match write_rows(conn, info, &writes).await {
        Ok(()) => Vec::new(),
        Err(e) if is_transient_sqlx(&e) => return Err(PgError::query("write rows")(e)),
        Err(_) => {
            sqlx::query("ROLLBACK TO SAVEPOINT meshsync_batch")
                .execute(&mut *conn)
                .await
                .map_err(PgError::query("rollback to savepoint"))?;
            one_by_one(conn, info, &writes).await?
        }
    };
    let failed_rows: std::collections::HashSet<(usize, u32)> =
        failed.iter().map(|(id, _)| *id).collect();
    for ((batch, index), reason) in failed {
        reports[batch].parked.push(Parked {
            row: Some(index),
            reason,
        });
    }
    let mut versions = Vec::new();
    for (key, _, p) in &rows {
        if failed_rows.contains(&(p.batch, p.row.index)) {
            continue;
        }
        reports[p.batch].applied += 1;
        let b = batches[p.batch];
        versions.push((*key, stored_after(p.row.op, b.hlc, &b.origin, p.row.index)));
    }
    write_versions(conn, &tbl, &versions).await?;
    Ok(reports)
}

async fn read_versions(
    conn: &mut PgConnection,
    tbl: &str,
    keys: &[String],
) -> Result<HashMap<String, StoredVersion>, PgError> {
    let rows = sqlx::query(
        "SELECT pk, hlc_time, hlc_node, origin, idx, deleted FROM meshsync.versions
         WHERE tbl = $1 AND pk = ANY($2) FOR UPDATE",
    )
    .bind(tbl)
    .bind(keys)
    .fetch_all(&mut *conn)
    .await
    .map_err(PgError::query("read row versions"))?;
    Ok(rows
        .into_iter()
        .map(|r| {
            let v = StoredVersion {
                hlc: hlc_column::from_columns(r.get("hlc_time"), r.get("hlc_node")),
                origin: r.get("origin"),
                index: r.get::<i32, _>("idx") as u32,
                deleted: r.get("deleted"),
            };
            (r.get::<String, _>("pk"), v)
        })
        .collect())
}

async fn write_versions(
    conn: &mut PgConnection,
    tbl: &str,
    versions: &[(&str, StoredVersion)],
) -> Result<(), PgError> {
    if versions.is_empty() {
        return Ok(());
    }
    let pks: Vec<&str> = versions.iter().map(|(k, _)| *k).collect();
    let (times, nodes): (Vec<i64>, Vec<i64>) = versions
        .iter()
        .map(|(_, v)| hlc_column::to_columns(v.hlc))
        .unzip();
    let origins: Vec<&str> = versions.iter().map(|(_, v)| v.origin.as_str()).collect();
    let idx: Vec<i32> = versions.iter().map(|(_, v)| v.index as i32).collect();
    let deleted: Vec<bool> = versions.iter().map(|(_, v)| v.deleted).collect();
    sqlx::query(
        "INSERT INTO meshsync.versions (tbl, pk, hlc_time, hlc_node, origin, idx, deleted)
         SELECT $1, * FROM unnest($2::text[], $3::int8[], $4::int8[], $5::text[], $6::int4[], $7::bool[])
         ON CONFLICT (tbl, pk) DO UPDATE SET hlc_time = EXCLUDED.hlc_time, hlc_node = EXCLUDED.hlc_node,
             origin = EXCLUDED.origin, idx = EXCLUDED.idx, deleted = EXCLUDED.deleted",
    )
    .bind(tbl)
    .bind(pks)
    .bind(times)
    .bind(nodes)
    .bind(origins)
    .bind(idx)
    .bind(deleted)
    .execute(&mut *conn)
    .await
    .map_err(PgError::query("write row versions"))?;
    Ok(())
}

async fn one_by_one(
    conn: &mut PgConnection,
    info: &TableInfo,
    writes: &[&Prepared<'_>],
) -> Result<Vec<((usize, u32), String)>, PgError> {
    let mut failed = Vec::new();
    for p in writes {
        sqlx::query("SAVEPOINT meshsync_row")
            .execute(&mut *conn)
            .await
            .map_err(PgError::query("savepoint"))?;
        match write_rows(conn, info, std::slice::from_ref(p)).await {
            Ok(()) => {}
            Err(e) if is_transient_sqlx(&e) => return Err(PgError::query("write a row")(e)),
            Err(e) => {
                sqlx::query("ROLLBACK TO SAVEPOINT meshsync_row")
                    .execute(&mut *conn)
                    .await
                    .map_err(PgError::query("rollback to savepoint"))?;
                // The server's message may quote the value; name only the code and constraint.
                let reason = match &e {
                    sqlx::Error::Database(db) => format!(
                        "postgres refused the row (SQLSTATE {}{})",
                        db.code().unwrap_or_default(),
                        db.constraint()
                            .map(|c| format!(", constraint {c}"))
                            .unwrap_or_default()
                    ),
                    _ => "postgres refused the row".to_owned(),
                };
                failed.push(((p.batch, p.row.index), reason));
            }
        }
    }
    Ok(failed)
}

/// `u.c1::cast1, u.c2::cast2, .. FROM unnest($1::text[], $2::text[], ..) AS u(c1, c2, ..)`:
/// one text array parameter per column, so a statement costs the same to plan for one row or
/// for twenty thousand (a VALUES list with a parameter per value does not).
fn unnest_select(cols: &[&str], casts: &[&str]) -> String {
    let select = (0..cols.len())
        .map(|i| format!("u.c{i}::{}", casts.get(i).copied().unwrap_or("text")))
        .collect::<Vec<_>>()
        .join(", ");
    let arrays = (1..=cols.len())
        .map(|n| format!("${n}::text[]"))
        .collect::<Vec<_>>()
        .join(", ");
    let names = (0..cols.len())
        .map(|i| format!("c{i}"))
        .collect::<Vec<_>>()
        .join(", ");
    format!("{select} FROM unnest({arrays}) AS u({names})")
}

/// Deletes, then upserts grouped by column set: one statement each, values as text arrays.
async fn write_rows(
    conn: &mut PgConnection,
    info: &TableInfo,
    writes: &[&Prepared<'_>],
) -> Result<(), sqlx::Error> {
    let table = qualified(&info.name);
    let key_names: Vec<&str> = info.key.iter().map(String::as_str).collect();
    let key_casts: Vec<&str> = info
        .key
        .iter()
        .map(|k| info.column(k).map(|c| c.cast.as_str()).unwrap_or("text"))
        .collect();
    let key_list = key_names
        .iter()
        .map(|k| ident(k))
        .collect::<Vec<_>>()
        .join(", ");

    let deletes: Vec<&&Prepared<'_>> = writes.iter().filter(|p| p.row.op == Op::Delete).collect();
    if !deletes.is_empty() {
        let sql = format!(
            "DELETE FROM {table} WHERE ({key_list}) IN (SELECT {})",
            unnest_select(&key_names, &key_casts)
        );
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
        for k in 0..key_names.len() {
            let column: Vec<Option<String>> = deletes
                .iter()
                .map(|p| p.key.get(k).cloned().flatten())
                .collect();
            q = q.bind(column);
        }
        q.execute(&mut *conn).await?;
    }

    // Upserts, grouped by the set of columns they carry (unchanged cells stay out of SET).
    let mut groups: Vec<(Vec<&str>, Vec<&Prepared<'_>>)> = Vec::new();
    for p in writes.iter().filter(|p| p.row.op != Op::Delete) {
        let cols: Vec<&str> = p.cells.iter().map(|(c, _)| *c).collect();
        match groups.iter_mut().find(|(g, _)| *g == cols) {
            Some((_, rows)) => rows.push(p),
            None => groups.push((cols, vec![p])),
        }
    }
    for (cols, rows) in groups {
        // Key columns the cells do not carry come from the key.
        let mut all: Vec<&str> = key_names
            .iter()
            .copied()
            .filter(|k| !cols.contains(k))
            .collect();
        let from_key = all.len();
        all.extend(cols.iter().copied());
        let casts: Vec<&str> = all
            .iter()
            .map(|c| info.column(c).map(|c| c.cast.as_str()).unwrap_or("text"))
            .collect();
        let non_key: Vec<&str> = cols
            .iter()
            .copied()
            .filter(|c| !key_names.contains(c))
            .collect();
        let conflict = if non_key.is_empty() {
            "DO NOTHING".to_owned()
        } else {
            format!(
                "DO UPDATE SET {}",
                non_key
                    .iter()
                    .map(|c| format!("{0} = EXCLUDED.{0}", ident(c)))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        };
        let sql = format!(
            "INSERT INTO {table} ({}) SELECT {} ON CONFLICT ({key_list}) {conflict}",
            all.iter().map(|c| ident(c)).collect::<Vec<_>>().join(", "),
            unnest_select(&all, &casts)
        );
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
        for name in &all[..from_key] {
            let pos = key_names.iter().position(|k| k == name).unwrap_or(0);
            let column: Vec<Option<String>> = rows
                .iter()
                .map(|p| p.key.get(pos).cloned().flatten())
                .collect();
            q = q.bind(column);
        }
        for i in 0..cols.len() {
            let column: Vec<Option<String>> = rows
                .iter()
                .map(|p| p.cells.get(i).and_then(|(_, v)| v.clone()))
                .collect();
            q = q.bind(column);
        }
        q.execute(&mut *conn).await?;
    }
    Ok(())
}
