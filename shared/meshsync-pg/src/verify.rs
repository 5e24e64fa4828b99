//! PostgreSQL side of `meshsync verify`: reads a table's rows as engine-neutral values and
//! summarizes them with [`meshsync_core::digest`], so that peers compare digests instead of
//! rows, then drill into the buckets that differ.
//!
//! Rows are streamed (never the whole table in memory) inside a transaction whose session
//! settings are fixed with `SET LOCAL` (ISO dates, UTC, shortest exact floats, hex bytea), so
//! the text PostgreSQL prints is what [`from_text`] parses, whatever the caller's session
//! said; the caller's settings are restored afterwards. Errors name the table and column,
//! never a value.

use futures::TryStreamExt;
use meshsync_core::{
    Value,
    digest::{BucketRows, TableDigest, row_digest},
};
use sqlx::{Connection, PgConnection, Row};

use crate::{
    catalog::{TableInfo, ident, qualified},
    error::PgError,
    types::{PgType, from_text},
};

/// Session settings under which every column prints the text [`from_text`] expects.
const SETTINGS: &str = "SET LOCAL DateStyle = 'ISO, MDY'; SET LOCAL TimeZone = 'UTC'; \
     SET LOCAL extra_float_digits = 1; SET LOCAL bytea_output = 'hex'";

/// Digests every row of `info`'s table into `buckets` buckets (see
/// [`meshsync_core::digest`]). One statement, so one consistent snapshot of the table.
pub async fn digest_table(
    conn: &mut PgConnection,
    info: &TableInfo,
    buckets: u32,
) -> Result<TableDigest, PgError> {
    let mut digest = TableDigest::new(buckets);
    for_each_row(conn, info, |key, row| digest.add(&key, row)).await?;
    Ok(digest)
}

/// The key and row digest of every row whose key falls in one of `wanted` (of `buckets`),
/// sorted by canonical key bytes ([`BucketRows`]): the drill-down after
/// [`meshsync_core::digest::differing_buckets`].
pub async fn rows_in_buckets(
    conn: &mut PgConnection,
    info: &TableInfo,
    buckets: u32,
    wanted: &[u32],
) -> Result<Vec<(Vec<Value>, u64)>, PgError> {
    let mut rows = BucketRows::new(buckets, wanted);
    for_each_row(conn, info, |key, row| rows.add(key, row)).await?;
    Ok(rows.into_sorted())
}

/// The select-list expression printing `column` as its type's output function does (the
/// text pgoutput sends). A plain `::text` cast differs for two types: `bool` casts to
/// `true`/`false` and `char(n)` casts with its padding stripped; `concat` prints both with
/// their output functions.
fn text_expr(name: &str, ty: &PgType) -> String {
    let col = ident(name);
    match ty {
        PgType::Bool | PgType::Bpchar => {
            format!("CASE WHEN {col} IS NULL THEN NULL ELSE concat({col}) END")
        }
        _ => format!("{col}::text"),
    }
}

/// Streams the table's rows, calling `f` with each row's key (in `info.key` order) and
/// [`row_digest`].
async fn for_each_row(
    conn: &mut PgConnection,
    info: &TableInfo,
    mut f: impl FnMut(Vec<Value>, u64),
) -> Result<(), PgError> {
    let table = &info.name;
    let key_idx = info
        .key
        .iter()
        .map(|k| {
            info.columns
                .iter()
                .position(|c| &c.name == k)
                .ok_or_else(|| {
                    PgError::Verify(format!(
                        "table {table}: key column {k:?} is not among its columns"
                    ))
                })
        })
        .collect::<Result<Vec<usize>, _>>()?;
    if info.columns.is_empty() {
        return Err(PgError::Verify(format!("table {table} has no columns")));
    }
    let list: Vec<String> = info
        .columns
        .iter()
        .map(|c| text_expr(&c.name, &c.ty))
        .collect();
    let sql = format!("SELECT {} FROM {}", list.join(", "), qualified(table));

    let mut tx = conn
        .begin()
        .await
        .map_err(PgError::query("begin verify read"))?;
    sqlx::raw_sql(SETTINGS)
        .execute(&mut *tx)
        .await
        .map_err(PgError::query("set verify session settings"))?;
    {
        let mut stream = sqlx::query(sqlx::AssertSqlSafe(sql)).fetch(&mut *tx);
        let mut values = Vec::with_capacity(info.columns.len());
        while let Some(row) = stream
            .try_next()
            .await
            .map_err(PgError::query("read rows for verify"))?
        {
            values.clear();
            for (i, c) in info.columns.iter().enumerate() {
                let text: Option<&str> = row
                    .try_get(i)
                    .map_err(PgError::query("read a column for verify"))?;
                let v = match text {
                    None => Value::Null,
                    Some(t) => from_text(t, &c.ty).map_err(|e| {
                        PgError::Verify(format!("table {table}, column {:?}: {e}", c.name))
                    })?,
                };
                values.push(v);
            }
            let key: Vec<Value> = key_idx.iter().map(|&i| values[i].clone()).collect();
            let columns: Vec<(&str, &Value)> = info
                .columns
                .iter()
                .zip(&values)
                .map(|(c, v)| (c.name.as_str(), v))
                .collect();
            let digest = row_digest(&key, &columns);
            f(key, digest);
        }
    }
    // Read-only: rolling back restores the caller's session settings.
    tx.rollback()
        .await
        .map_err(PgError::query("end verify read"))?;
    Ok(())
}
