//! MariaDB side of `meshsync verify`: reads a table's rows as the engine-neutral values
//! capture would produce for them and summarizes them with [`meshsync_core::digest`], so
//! that peers (of either engine) compare digests instead of rows, then drill into the
//! buckets that differ. The same API as the PostgreSQL engine's `verify`.
//!
//! Each column is selected in a form that does not depend on the session (TIMESTAMP through
//! `UNIX_TIMESTAMP`, so UTC whatever `time_zone` says; text as its stored bytes, decoded in
//! the column's character set as capture does; FLOAT and DOUBLE as binary floats), and the
//! statement carries its own `sql_mode` (no `PAD_CHAR_TO_FULL_LENGTH`: CHAR values without
//! their padding, as the binlog has them). Rows are streamed, never the whole table in
//! memory; one statement, so one consistent InnoDB snapshot. Errors name the table and
//! column, never a value.

use futures::TryStreamExt;
use meshsync_core::{
    Value,
    digest::{BucketRows, TableDigest, row_digest},
};
use sqlx::{MySqlConnection, Row, mysql::MySqlRow};

use crate::{
    apply::APPLY_SQL_MODE,
    catalog::{Column, TableInfo, ident, qualified},
    error::MariaDbError,
    flavour::Flavour,
    types::{MariaType, TypeError, from_select_text},
};

/// Digests every row of `info`'s table into `buckets` buckets (see
/// [`meshsync_core::digest`]).
pub async fn digest_table(
    conn: &mut MySqlConnection,
    info: &TableInfo,
    buckets: u32,
) -> Result<TableDigest, MariaDbError> {
    let mut digest = TableDigest::new(buckets);
    for_each_row(conn, info, |key, row| digest.add(&key, row)).await?;
    Ok(digest)
}

/// The key and row digest of every row whose key falls in one of `wanted` (of `buckets`),
/// sorted by canonical key bytes ([`BucketRows`]): the drill-down after
/// [`meshsync_core::digest::differing_buckets`].
pub async fn rows_in_buckets(
    conn: &mut MySqlConnection,
    info: &TableInfo,
    buckets: u32,
    wanted: &[u32],
) -> Result<Vec<(Vec<Value>, u64)>, MariaDbError> {
    let mut rows = BucketRows::new(buckets, wanted);
    for_each_row(conn, info, |key, row| rows.add(key, row)).await?;
    Ok(rows.into_sorted())
}

/// How a column's select-list expression is read back.
#[derive(Clone, Copy)]
enum Read {
    /// Printed text, parsed with [`from_select_text`].
    Printed,
    /// Stored bytes.
    Bytes,
    /// A single-precision float.
    F32,
    /// A double.
    F64,
}

/// The select-list expression of `col`, and how to read it.
fn select_expr(col: &Column) -> (String, Read) {
    let c = ident(&col.name);
    match &col.ty {
        MariaType::Int { .. }
        | MariaType::Decimal { .. }
        | MariaType::Date
        | MariaType::DateTime { .. }
        | MariaType::Time { .. }
        | MariaType::Uuid => (format!("CAST({c} AS CHAR)"), Read::Printed),
        MariaType::Bit { .. } | MariaType::Year => (
            format!("CAST(CAST({c} AS UNSIGNED) AS CHAR)"),
            Read::Printed,
        ),
        // Seconds since the epoch with the column's fractional digits: UTC in any session.
        MariaType::Timestamp { .. } => {
            (format!("CAST(UNIX_TIMESTAMP({c}) AS CHAR)"), Read::Printed)
        }
        MariaType::Enum(_) | MariaType::Set(_) => {
            (format!("CONVERT({c} USING utf8mb4)"), Read::Printed)
        }
        MariaType::Text { .. } | MariaType::Json => (format!("CAST({c} AS BINARY)"), Read::Bytes),
        MariaType::Binary { .. } => (c, Read::Bytes),
        MariaType::Float => (c, Read::F32),
        MariaType::Double => (c, Read::F64),
    }
}

/// Column `i` of `row` as capture would give it.
fn read_value(row: &MySqlRow, i: usize, col: &Column, how: Read) -> Result<Value, TypeError> {
    let capture = |why: &'static str| TypeError::Capture {
        ty: col.ty.to_string(),
        why,
    };
    let unreadable = || capture("the server sent a value of an unexpected type");
    let value = match how {
        Read::Printed => row
            .try_get::<Option<String>, _>(i)
            .map_err(|_| unreadable())?
            .map(|t| from_select_text(&t, &col.ty))
            .transpose()?,
        Read::F32 => row
            .try_get::<Option<f32>, _>(i)
            .map_err(|_| unreadable())?
            .map(|f| Value::Float(f64::from(f))),
        Read::F64 => row
            .try_get::<Option<f64>, _>(i)
            .map_err(|_| unreadable())?
            .map(Value::Float),
        Read::Bytes => {
            let Some(b) = row
                .try_get::<Option<Vec<u8>>, _>(i)
                .map_err(|_| unreadable())?
            else {
                return Ok(Value::Null);
            };
            Some(match &col.ty {
                MariaType::Text { charset, .. } => {
                    Value::Text(charset.decode(&b).ok_or_else(|| {
                        capture("text is not valid in the column's character set")
                    })?)
                }
                MariaType::Json => Value::Json(
                    String::from_utf8(b).map_err(|_| capture("JSON text is not valid UTF-8"))?,
                ),
                _ => Value::Bytes(b),
            })
        }
    };
    Ok(value.unwrap_or(Value::Null))
}

/// Streams the table's rows, calling `f` with each row's key (in `info.key` order) and
/// [`row_digest`].
async fn for_each_row(
    conn: &mut MySqlConnection,
    info: &TableInfo,
    mut f: impl FnMut(Vec<Value>, u64),
) -> Result<(), MariaDbError> {
    let table = &info.name;
    let key_idx = info
        .key
        .iter()
        .map(|k| {
            info.columns
                .iter()
                .position(|c| &c.name == k)
                .ok_or_else(|| {
                    MariaDbError::Verify(format!(
                        "table {table}: key column {k:?} is not among its columns"
                    ))
                })
        })
        .collect::<Result<Vec<usize>, _>>()?;
    if info.columns.is_empty() {
        return Err(MariaDbError::Verify(format!(
            "table {table} has no columns"
        )));
    }
    let (list, reads): (Vec<String>, Vec<Read>) = info.columns.iter().map(select_expr).unzip();
    // MySQL has no `SET STATEMENT`: its session's sql_mode stands.
    let prefix = match Flavour::detect(&mut *conn).await? {
        Flavour::MariaDb => format!("SET STATEMENT sql_mode = '{APPLY_SQL_MODE}' FOR "),
        Flavour::MySql => String::new(),
    };
    let sql = format!(
        "{prefix}SELECT {} FROM {}",
        list.join(", "),
        qualified(table)
    );
    let mut stream = sqlx::query(sqlx::AssertSqlSafe(sql)).fetch(&mut *conn);
    let mut values = Vec::with_capacity(info.columns.len());
    while let Some(row) = stream
        .try_next()
        .await
        .map_err(MariaDbError::query("read rows for verify"))?
    {
        values.clear();
        for (i, (c, how)) in info.columns.iter().zip(&reads).enumerate() {
            let v = read_value(&row, i, c, *how).map_err(|source| MariaDbError::Type {
                table: table.clone(),
                column: c.name.clone(),
                source: Box::new(source),
            })?;
            values.push(v);
        }
        let key: Vec<Value> = key_idx
            .iter()
            .map(|&i| values.get(i).cloned().unwrap_or(Value::Null))
            .collect();
        let columns: Vec<(&str, &Value)> = info
            .columns
            .iter()
            .zip(&values)
            .map(|(c, v)| (c.name.as_str(), v))
            .collect();
        let digest = row_digest(&key, &columns);
        f(key, digest);
    }
    Ok(())
}
