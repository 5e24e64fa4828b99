//! Why MariaDB refused a row, for the dead-letter reason. The server's messages quote the
//! offending value (`Duplicate entry 'x' for key ..`, `Incorrect integer value: 'x' ..`), and
//! values are customer data: the reason keeps the error number, the SQLSTATE, and the
//! column, key or constraint the message names, never the message itself.

use sqlx::mysql::MySqlDatabaseError;

use super::write::Failure;
use crate::catalog::TableInfo;

/// ER_SUBQUERY_NO_1_ROW: raised on purpose by the upsert guard (`write::upsert_assignments`).
const GUARD_ERROR: u16 = 1242;

/// The server's error number of `e`, if the server sent one.
pub(super) fn number(e: &sqlx::Error) -> Option<u16> {
    server_error(e).map(MySqlDatabaseError::number)
}

/// The server's error in `e`.
fn server_error(e: &sqlx::Error) -> Option<&MySqlDatabaseError> {
    match e {
        sqlx::Error::Database(db) => db.try_downcast_ref::<MySqlDatabaseError>(),
        _ => None,
    }
}

/// The reason a row was refused with `failure`.
pub(super) fn reason(info: &TableInfo, failure: &Failure) -> String {
    let e = match failure {
        Failure::Missing { column } if column.is_empty() => {
            return "the row does not exist here, and MariaDB cannot insert it without \
                    columns it lacks (error 1364)"
                .to_owned();
        }
        Failure::Missing { column } => {
            return format!(
                "the row does not exist here, and cannot be inserted without column \
                 {column:?} (NOT NULL without a default)"
            );
        }
        Failure::Sql(e) => e,
    };
    let Some(db) = server_error(e) else {
        return "MariaDB refused the row".to_owned();
    };
    let number = db.number();
    let state = db.code().unwrap_or("HY000");
    if number == GUARD_ERROR {
        return "MariaDB refused the row: another row already holds one of its values in a \
                UNIQUE index other than the primary key (SQLSTATE 23000)"
            .to_owned();
    }
    let mut out = format!("MariaDB refused the row: error {number} (SQLSTATE {state})");
    let msg = db.message();
    if let Some(col) = column(info, msg) {
        out.push_str(&format!(", column {col:?}"));
    }
    // Key and constraint names are schema, not data: `for key 'name'` ends the message
    // (after the quoted value), `CONSTRAINT `name`` opens CHECK and foreign-key messages.
    if number == 1062
        && let Some(key) = after_last(msg, "for key '").and_then(|s| s.strip_suffix('\''))
    {
        out.push_str(&format!(", key {key:?}"));
    }
    if matches!(number, 4025 | 1451 | 1452 | 1216 | 1217)
        && let Some(c) = msg
            .split_once("CONSTRAINT `")
            .and_then(|(_, rest)| rest.split_once('`'))
            .map(|(name, _)| name)
    {
        out.push_str(&format!(", constraint {c:?}"));
    }
    out
}

/// The text after the last occurrence of `marker` (values come before the names the
/// server appends, so the last occurrence is the server's own).
fn after_last<'m>(msg: &'m str, marker: &str) -> Option<&'m str> {
    let lower = msg.to_ascii_lowercase();
    let at = lower.rfind(&marker.to_ascii_lowercase())?;
    msg.get(at + marker.len()..)
}

/// The column a message names (`column 'c'`, ``column `db`.`t`.`c` ``, `Field 'c'`), if it
/// is a column of the table: nothing else of the message is ever echoed.
fn column<'i>(info: &'i TableInfo, msg: &str) -> Option<&'i str> {
    let named = ["column ", "field "]
        .iter()
        .filter_map(|m| after_last(msg, m))
        .filter_map(|rest| {
            let quote = rest.chars().next().filter(|c| *c == '\'' || *c == '`')?;
            // ``db`.`t`.`c``: the last quoted part before the first space is the column.
            let word = rest.split(' ').next().unwrap_or(rest);
            let last = word.rsplit('.').next().unwrap_or(word);
            Some(
                last.trim_matches(quote)
                    .trim_matches(['\'', '`', ','])
                    .to_owned(),
            )
        })
        .collect::<Vec<_>>();
    info.columns
        .iter()
        .map(|c| c.name.as_str())
        .find(|c| named.iter().any(|n| n == c))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{catalog::Column, types::MariaType};
    use meshsync_core::{SchemaVersion, TableName};

    fn info() -> TableInfo {
        let c = |n: &str| Column {
            name: n.into(),
            ty: MariaType::Json,
            column_type: String::new(),
            not_null: false,
            required: false,
            generated: false,
        };
        TableInfo {
            name: TableName::new("db", "t"),
            columns: vec![c("id"), c("vc"), c("n")],
            key: vec!["id".into()],
            schema: SchemaVersion::of_columns(std::iter::empty::<(&str, String)>()),
        }
    }

    #[test]
    fn columns_are_found_only_among_the_table_columns() {
        let i = info();
        assert_eq!(
            column(&i, "Data too long for column 'vc' at row 1"),
            Some("vc")
        );
        assert_eq!(column(&i, "Column 'n' cannot be null"), Some("n"));
        assert_eq!(
            column(&i, "Field 'n' doesn't have a default value"),
            Some("n")
        );
        assert_eq!(
            column(
                &i,
                "Incorrect integer value: 'for column 'vc'' for column `db`.`t`.`id` at row 1"
            ),
            Some("id")
        );
        assert_eq!(
            column(&i, "Data too long for column 'secret' at row 1"),
            None
        );
    }
}
