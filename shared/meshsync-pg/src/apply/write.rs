//! Writing merged rows to a replicated table: multi-row statements (one delete, one upsert
//! per column set), values as one text array per column with explicit casts. A statement that
//! fails on data is retried row by row under savepoints, so one bad row is parked and its
//! neighbours still apply (I10).

use sqlx::PgConnection;

use crate::{
    catalog::{TableInfo, ident, qualified},
    error::{PgError, is_transient_sqlx},
};

/// One row to write, as SQL text.
pub struct RowWrite {
    /// Caller's id for the row (reported back when it fails).
    pub id: usize,
    /// Delete the row instead of upserting it.
    pub delete: bool,
    /// Key values in key order.
    pub key: Vec<Option<String>>,
    /// The whole row as the merge state knows it (upserts only): inserted when the row is
    /// missing here, so a row never appears with only some of its columns.
    pub cells: Vec<(String, Option<String>)>,
    /// Of `cells`, the columns to overwrite when the row exists (the ones the merge changed);
    /// the others keep their value (e.g. an unchanged TOASTed one).
    pub changed: Vec<String>,
}

/// Writes `writes` inside the open transaction. Returns the ids of rows PostgreSQL refused,
/// with the reason; `Err` when the database itself failed (retry the transaction).
pub async fn write(
    conn: &mut PgConnection,
    info: &TableInfo,
    writes: &[RowWrite],
) -> Result<Vec<(usize, String)>, PgError> {
    if writes.is_empty() {
        return Ok(Vec::new());
    }
    let all: Vec<&RowWrite> = writes.iter().collect();
    sqlx::query("SAVEPOINT meshsync_batch")
        .execute(&mut *conn)
        .await
        .map_err(PgError::query("savepoint"))?;
    match write_rows(conn, info, &all).await {
        Ok(()) => Ok(Vec::new()),
        Err(e) if is_transient_sqlx(&e) => Err(PgError::query("write rows")(e)),
        Err(_) => {
            sqlx::query("ROLLBACK TO SAVEPOINT meshsync_batch")
                .execute(&mut *conn)
                .await
                .map_err(PgError::query("rollback to savepoint"))?;
            one_by_one(conn, info, &all).await
        }
    }
}

async fn one_by_one(
    conn: &mut PgConnection,
    info: &TableInfo,
    writes: &[&RowWrite],
) -> Result<Vec<(usize, String)>, PgError> {
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
                failed.push((p.id, reason));
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
    writes: &[&RowWrite],
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

    let deletes: Vec<&&RowWrite> = writes.iter().filter(|p| p.delete).collect();
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

    // Upserts, grouped by the columns they carry and the columns they overwrite.
    type Group<'w> = (Vec<&'w str>, &'w [String], Vec<&'w RowWrite>);
    let mut groups: Vec<Group<'_>> = Vec::new();
    for p in writes.iter().filter(|p| !p.delete) {
        let cols: Vec<&str> = p.cells.iter().map(|(c, _)| c.as_str()).collect();
        match groups
            .iter_mut()
            .find(|(g, changed, _)| *g == cols && *changed == p.changed.as_slice())
        {
            Some((_, _, rows)) => rows.push(p),
            None => groups.push((cols, p.changed.as_slice(), vec![p])),
        }
    }
    for (cols, changed, rows) in groups {
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
            .filter(|c| !key_names.contains(c) && changed.iter().any(|x| x == c))
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
