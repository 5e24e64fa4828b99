//! What the database says about the replicated tables: columns, types, primary keys.
//!
//! The primary key comes from `pg_index`, never from the relation message's key flags (with
//! REPLICA IDENTITY FULL every column is flagged).

use std::collections::HashMap;

use meshsync_core::{SchemaVersion, TableName};
use sqlx::{PgConnection, Row};

use crate::{
    error::PgError,
    types::{PgType, TypeHint, UnsupportedType, check_supported_hinted},
};

/// One column of a replicated table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Column {
    /// Column name.
    pub name: String,
    /// How meshsync carries it.
    pub ty: PgType,
    /// The type as a cast target (`int4`, `"public"."mood"`, `text[]`).
    pub cast: String,
    /// `NOT NULL`.
    pub not_null: bool,
}

/// The shape of a replicated table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TableInfo {
    /// The table.
    pub name: TableName,
    /// Columns in table order.
    pub columns: Vec<Column>,
    /// Primary-key column names, in key order.
    pub key: Vec<String>,
    /// Hash of the column names and types: changes when the shape does.
    pub schema: SchemaVersion,
}

impl TableInfo {
    /// The column called `name`.
    pub fn column(&self, name: &str) -> Option<&Column> {
        self.columns.iter().find(|c| c.name == name)
    }
}

/// Quotes an identifier for SQL.
pub fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// `"schema"."table"`.
pub fn qualified(t: &TableName) -> String {
    format!("{}.{}", ident(&t.schema), ident(&t.name))
}

/// Reads the shape of every table; refuses tables without a primary key or with a column
/// type meshsync cannot carry, naming table, column and type.
pub async fn load(
    conn: &mut PgConnection,
    tables: &[TableName],
) -> Result<HashMap<TableName, TableInfo>, PgError> {
    let mut out = HashMap::new();
    for t in tables {
        let info = load_one(conn, t).await?;
        out.insert(t.clone(), info);
    }
    Ok(out)
}

/// The oid of table `t` (plain or partitioned); [`PgError::MissingTable`] if there is none.
pub(crate) async fn table_oid(conn: &mut PgConnection, t: &TableName) -> Result<i64, PgError> {
    let rel: Option<(i64,)> = sqlx::query_as(
        "SELECT c.oid::int8 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE n.nspname = $1 AND c.relname = $2 AND c.relkind IN ('r', 'p')",
    )
    .bind(&t.schema)
    .bind(&t.name)
    .fetch_optional(&mut *conn)
    .await
    .map_err(PgError::query("find table"))?;
    rel.map(|(oid,)| oid)
        .ok_or_else(|| PgError::MissingTable { table: t.clone() })
}

async fn load_one(conn: &mut PgConnection, t: &TableName) -> Result<TableInfo, PgError> {
    let oid = table_oid(conn, t).await?;
    let rows = sqlx::query(
        "SELECT a.attname::text AS name, a.attnotnull AS not_null, a.atttypid::int8 AS oid,
                format_type(a.atttypid, NULL) AS type_name,
                t.typtype::text AS typtype, coalesce(e.typtype::text, '') AS elem_typtype,
                t.typname::text AS typname, tn.nspname::text AS typnsp
         FROM pg_attribute a
         JOIN pg_type t ON t.oid = a.atttypid
         JOIN pg_namespace tn ON tn.oid = t.typnamespace
         LEFT JOIN pg_type e ON e.oid = t.typelem AND t.typcategory = 'A'
         WHERE a.attrelid = $1::int8::oid AND a.attnum > 0 AND NOT a.attisdropped
         ORDER BY a.attnum",
    )
    .bind(oid)
    .fetch_all(&mut *conn)
    .await
    .map_err(PgError::query("read columns"))?;
    let mut columns = Vec::new();
    for r in rows {
        let name: String = r.get("name");
        let type_name: String = r.get("type_name");
        let typtype: String = r.get("typtype");
        let elem: String = r.get("elem_typtype");
        let type_oid: i64 = r.get("oid");
        let hint = match (typtype.as_str(), elem.as_str()) {
            ("e", _) => TypeHint::Enum,
            (_, "e") => TypeHint::EnumArray,
            _ => TypeHint::None,
        };
        let ty = check_supported_hinted(t, &name, &type_name, type_oid as u32, hint)
            .map_err(|e: UnsupportedType| PgError::Unsupported(Box::new(e)))?;
        let cast = match &ty {
            PgType::Enum => {
                format!(
                    "{}.{}",
                    ident(&r.get::<String, _>("typnsp")),
                    ident(&r.get::<String, _>("typname"))
                )
            }
            PgType::Array(e) if **e == PgType::Enum => type_name.clone(),
            other => other.to_string(),
        };
        columns.push(Column {
            name,
            ty,
            cast,
            not_null: r.get("not_null"),
        });
    }
    let key: Vec<(String,)> = sqlx::query_as(
        "SELECT a.attname::text FROM pg_index i
         JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord) ON true
         JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
         WHERE i.indrelid = $1::int8::oid AND i.indisprimary ORDER BY k.ord",
    )
    .bind(oid)
    .fetch_all(&mut *conn)
    .await
    .map_err(PgError::query("read primary key"))?;
    if key.is_empty() {
        return Err(PgError::NoPrimaryKey { table: t.clone() });
    }
    let schema = schema_version(&columns);
    Ok(TableInfo {
        name: t.clone(),
        columns,
        key: key.into_iter().map(|(k,)| k).collect(),
        schema,
    })
}

/// FNV-1a over names and types: stable across processes and versions of Rust.
fn schema_version(columns: &[Column]) -> SchemaVersion {
    SchemaVersion::of_columns(columns.iter().map(|c| (c.name.as_str(), c.ty.to_string())))
}
