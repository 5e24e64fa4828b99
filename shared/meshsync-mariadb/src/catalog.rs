//! What `information_schema` says about the replicated tables: columns in table order, their
//! types, the primary key, and a schema version hash.

use std::collections::HashMap;

use meshsync_core::{SchemaVersion, TableName};
use sqlx::{MySqlConnection, Row};

use crate::{
    error::MariaDbError,
    flavour::Flavour,
    types::{CatalogColumn, MariaType},
};

/// One column of a replicated table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Column {
    /// Column name.
    pub name: String,
    /// How meshsync carries it.
    pub ty: MariaType,
    /// `COLUMN_TYPE` as the server prints it (`int(10) unsigned`).
    pub column_type: String,
    /// `NOT NULL`.
    pub not_null: bool,
    /// An INSERT must give it a value: NOT NULL without a default, and not AUTO_INCREMENT,
    /// generated or ENUM (whose implicit default is its first label). Apply writes rows that
    /// lack such a column as updates only: MariaDB refuses even an `INSERT .. ON DUPLICATE
    /// KEY UPDATE` of an existing row without it (error 1364).
    pub required: bool,
    /// A generated (VIRTUAL or PERSISTENT) column: MariaDB computes it and refuses values
    /// for it (error 1906), so apply never writes it.
    pub generated: bool,
}

/// The shape of a replicated table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TableInfo {
    /// The table (`database.table`).
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

/// Quotes an identifier for SQL (backticks).
pub fn ident(name: &str) -> String {
    format!("`{}`", name.replace('`', "``"))
}

/// `` `database`.`table` ``.
pub fn qualified(t: &TableName) -> String {
    format!("{}.{}", ident(&t.schema), ident(&t.name))
}

/// Reads the shape of every table; refuses tables without a primary key or with a column
/// type meshsync cannot carry, naming table, column and type.
pub async fn load(
    conn: &mut MySqlConnection,
    tables: &[TableName],
) -> Result<HashMap<TableName, TableInfo>, MariaDbError> {
    let flavour = Flavour::detect(&mut *conn).await?;
    load_as(conn, flavour, tables).await
}

/// As [`load`], on a server whose flavour is known.
pub async fn load_as(
    conn: &mut MySqlConnection,
    flavour: Flavour,
    tables: &[TableName],
) -> Result<HashMap<TableName, TableInfo>, MariaDbError> {
    let mut out = HashMap::new();
    for t in tables {
        out.insert(t.clone(), load_one_as(conn, flavour, t).await?);
    }
    Ok(out)
}

/// Reads the shape of one table.
pub async fn load_one(
    conn: &mut MySqlConnection,
    t: &TableName,
) -> Result<TableInfo, MariaDbError> {
    let flavour = Flavour::detect(&mut *conn).await?;
    load_one_as(conn, flavour, t).await
}

/// The columns both servers describe alike.
const COMMON_COLUMNS: &str = "CAST(c.COLUMN_NAME AS CHAR) AS name,
        CAST(c.DATA_TYPE AS CHAR) AS data_type, CAST(c.COLUMN_TYPE AS CHAR) AS column_type,
        CAST(c.IS_NULLABLE AS CHAR) AS nullable,
        CAST(c.NUMERIC_PRECISION AS SIGNED) AS num_precision,
        CAST(c.NUMERIC_SCALE AS SIGNED) AS num_scale,
        CAST(c.DATETIME_PRECISION AS SIGNED) AS fsp,
        CAST(c.CHARACTER_MAXIMUM_LENGTH AS SIGNED) AS max_chars,
        CAST(c.CHARACTER_OCTET_LENGTH AS SIGNED) AS max_bytes,
        CAST(c.CHARACTER_SET_NAME AS CHAR) AS charset";

/// MariaDB's JSON is LONGTEXT with a `json_valid` CHECK, and it has IS_GENERATED.
const MARIADB_COLUMNS: &str = "CAST(EXISTS (SELECT 1 FROM information_schema.CHECK_CONSTRAINTS k
                WHERE k.CONSTRAINT_SCHEMA = c.TABLE_SCHEMA AND k.TABLE_NAME = c.TABLE_NAME
                  AND k.CHECK_CLAUSE = CONCAT('json_valid(`', c.COLUMN_NAME, '`)'))
             AS SIGNED) AS json_check,
        CAST(c.COLUMN_DEFAULT IS NULL AND c.IS_NULLABLE = 'NO'
             AND c.EXTRA NOT LIKE '%auto_increment%' AND c.IS_GENERATED = 'NEVER'
             AND c.DATA_TYPE <> 'enum' AS SIGNED) AS required,
        CAST(c.IS_GENERATED = 'ALWAYS' AS SIGNED) AS generated";

/// MySQL 8's JSON is a type of its own (no `json_valid` CHECK, and its CHECK_CONSTRAINTS has
/// no TABLE_NAME), and it has no IS_GENERATED (EXTRA says `VIRTUAL GENERATED` or
/// `STORED GENERATED`; `DEFAULT_GENERATED` is an expression default).
const MYSQL_COLUMNS: &str = "CAST(0 AS SIGNED) AS json_check,
        CAST(c.COLUMN_DEFAULT IS NULL AND c.IS_NULLABLE = 'NO'
             AND c.EXTRA NOT LIKE '%auto_increment%'
             AND c.EXTRA NOT LIKE '%VIRTUAL GENERATED%' AND c.EXTRA NOT LIKE '%STORED GENERATED%'
             AND c.DATA_TYPE <> 'enum' AS SIGNED) AS required,
        CAST(c.EXTRA LIKE '%VIRTUAL GENERATED%' OR c.EXTRA LIKE '%STORED GENERATED%'
             AS SIGNED) AS generated";

/// The columns query of a server of `flavour`.
fn columns_query(flavour: Flavour) -> String {
    let specific = match flavour {
        Flavour::MariaDb => MARIADB_COLUMNS,
        Flavour::MySql => MYSQL_COLUMNS,
    };
    format!(
        "SELECT {COMMON_COLUMNS}, {specific} FROM information_schema.COLUMNS c
         WHERE c.TABLE_SCHEMA = ? AND c.TABLE_NAME = ? ORDER BY c.ORDINAL_POSITION"
    )
}

/// Reads the shape of one table of a server of `flavour`.
pub async fn load_one_as(
    conn: &mut MySqlConnection,
    flavour: Flavour,
    t: &TableName,
) -> Result<TableInfo, MariaDbError> {
    let rows = sqlx::query(sqlx::AssertSqlSafe(columns_query(flavour)))
        .bind(&t.schema)
        .bind(&t.name)
        .fetch_all(&mut *conn)
        .await
        .map_err(MariaDbError::query("read columns"))?;
    if rows.is_empty() {
        return Err(MariaDbError::MissingTable { table: t.clone() });
    }
    let mut columns = Vec::with_capacity(rows.len());
    for r in rows {
        let name: String = r
            .try_get("name")
            .map_err(MariaDbError::query("read columns"))?;
        let get_u = |col: &str| -> Option<u64> {
            r.try_get::<Option<i64>, _>(col)
                .ok()
                .flatten()
                .and_then(|v| u64::try_from(v).ok())
        };
        let cat = CatalogColumn {
            data_type: r.try_get("data_type").unwrap_or_default(),
            column_type: r.try_get("column_type").unwrap_or_default(),
            precision: get_u("num_precision"),
            scale: get_u("num_scale"),
            fsp: get_u("fsp"),
            max_chars: get_u("max_chars"),
            max_bytes: get_u("max_bytes"),
            charset: r.try_get::<Option<String>, _>("charset").ok().flatten(),
            json_check: get_u("json_check") == Some(1),
        };
        let ty = MariaType::from_catalog(&cat).map_err(|source| MariaDbError::Unsupported {
            table: t.clone(),
            column: name.clone(),
            source: Box::new(source),
        })?;
        let nullable: String = r.try_get("nullable").unwrap_or_default();
        columns.push(Column {
            name,
            ty,
            column_type: cat.column_type,
            not_null: nullable.eq_ignore_ascii_case("NO"),
            required: get_u("required") == Some(1),
            generated: get_u("generated") == Some(1),
        });
    }
    let key: Vec<(String,)> = sqlx::query_as(
        "SELECT CAST(COLUMN_NAME AS CHAR) FROM information_schema.STATISTICS
         WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? AND INDEX_NAME = 'PRIMARY'
         ORDER BY SEQ_IN_INDEX",
    )
    .bind(&t.schema)
    .bind(&t.name)
    .fetch_all(&mut *conn)
    .await
    .map_err(MariaDbError::query("read primary key"))?;
    if key.is_empty() {
        return Err(MariaDbError::NoPrimaryKey { table: t.clone() });
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
pub fn schema_version(columns: &[Column]) -> SchemaVersion {
    SchemaVersion::of_columns(columns.iter().map(|c| (c.name.as_str(), c.ty.to_string())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_changes_with_shape() {
        let c = |n: &str, ty| Column {
            name: n.into(),
            ty,
            column_type: String::new(),
            not_null: false,
            required: false,
            generated: false,
        };
        let a = [c("id", MariaType::Json)];
        let b = [c("id", MariaType::Uuid)];
        assert_ne!(schema_version(&a), schema_version(&b));
        assert_eq!(schema_version(&a), schema_version(&a.clone()));
        assert_eq!(qualified(&TableName::new("d", "t`x")), "`d`.`t``x`");
    }
}
