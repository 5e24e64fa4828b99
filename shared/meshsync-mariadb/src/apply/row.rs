//! A [`RowWrite`] checked against the table and turned into values to bind, before anything
//! is sent: a value the column cannot hold exactly (range, length, NOT NULL, ...), an
//! unknown column or a key of the wrong shape refuses the row with a reason that names the
//! column and never the value.

use std::collections::HashSet;

use meshsync_core::Value;

use super::RowWrite;
use crate::{
    catalog::{Column, TableInfo},
    types::{SqlValue, to_sql},
};

/// What an upsert writes besides the key.
#[derive(Clone, Debug)]
pub(super) struct Columns {
    /// Indexes into `TableInfo::columns` of the non-key columns written, in table order.
    pub indexes: Vec<usize>,
    /// Their values, same order.
    pub values: Vec<SqlValue>,
    /// Positions in `indexes` (ascending) of the columns an existing row gets overwritten
    /// with; all of them for [`RowWrite::Upsert`].
    pub update: Vec<usize>,
}

/// A write ready for SQL.
#[derive(Clone, Debug)]
pub(super) struct Bound {
    /// Index of the write in the caller's slice.
    pub index: usize,
    /// Key values in `TableInfo::key` order.
    pub key: Vec<SqlValue>,
    /// `None` for a delete.
    pub upsert: Option<Columns>,
}

impl Bound {
    /// Size on the wire, generously (a length prefix, a type and a bit of NULL map per
    /// value), to keep statements under `max_allowed_packet`.
    pub fn wire_bytes(&self) -> usize {
        let values = self
            .key
            .iter()
            .chain(self.upsert.iter().flat_map(|u| &u.values));
        values.map(|v| 12 + value_bytes(v)).sum()
    }

    /// Identity of the key as bound (for spotting two writes to one row in a batch).
    pub fn key_identity(&self) -> String {
        format!("{:?}", self.key)
    }
}

/// Bytes of a bound value.
fn value_bytes(v: &SqlValue) -> usize {
    match v {
        SqlValue::Text(s) => s.len(),
        SqlValue::Bytes(b) => b.len(),
        _ => 8,
    }
}

/// The key columns of `info`, in key order.
pub(super) fn key_columns(info: &TableInfo) -> Result<Vec<(usize, &Column)>, String> {
    if info.key.is_empty() {
        return Err(format!("{} has no primary key to find rows by", info.name));
    }
    info.key
        .iter()
        .map(|k| {
            info.columns
                .iter()
                .enumerate()
                .find(|(_, c)| &c.name == k)
                .ok_or_else(|| format!("key column {k:?} is not a column of {}", info.name))
        })
        .collect()
}

/// Checks and converts write `index`; `Err` is the reason the row is refused.
pub(super) fn bind(
    info: &TableInfo,
    keys: &[(usize, &Column)],
    index: usize,
    write: &RowWrite,
) -> Result<Bound, String> {
    let (key, columns, changed) = match write {
        RowWrite::Upsert { key, columns } => (key, Some(columns), None),
        RowWrite::UpsertChanged {
            key,
            columns,
            changed,
        } => (key, Some(columns), Some(changed)),
        RowWrite::Delete { key } => (key, None, None),
    };
    if key.len() != keys.len() {
        return Err(format!(
            "the key has {} values; {} has {} key columns",
            key.len(),
            info.name,
            keys.len()
        ));
    }
    let key: Vec<SqlValue> = keys
        .iter()
        .zip(key)
        .map(|((_, c), v)| convert(c, v, "key column"))
        .collect::<Result<_, _>>()?;
    let Some(columns) = columns else {
        return Ok(Bound {
            index,
            key,
            upsert: None,
        });
    };
    let mut seen = HashSet::new();
    let mut written: Vec<(usize, SqlValue)> = Vec::with_capacity(columns.len());
    for (name, value) in columns {
        if !seen.insert(name.as_str()) {
            return Err(format!("column {name:?} is given twice"));
        }
        let Some((i, col)) = info
            .columns
            .iter()
            .enumerate()
            .find(|(_, c)| &c.name == name)
        else {
            return Err(format!("column {name:?} does not exist in {}", info.name));
        };
        if col.generated {
            // Computed by MariaDB from the other columns, here as on the origin.
            continue;
        }
        let v = convert(col, value, "column")?;
        match keys.iter().position(|(k, _)| *k == i) {
            // A key column is written from the key; a different value would move the row.
            Some(pos) if key.get(pos) != Some(&v) => {
                return Err(format!(
                    "key column {name:?} is given a value other than the row's key"
                ));
            }
            Some(_) => {}
            None => written.push((i, v)),
        }
    }
    written.sort_by_key(|(i, _)| *i);
    let (indexes, values): (Vec<usize>, Vec<SqlValue>) = written.into_iter().unzip();
    let update = match changed {
        None => (0..indexes.len()).collect(),
        Some(changed) => {
            let mut update = Vec::with_capacity(changed.len());
            for name in changed {
                if !seen.contains(name.as_str()) {
                    return Err(format!(
                        "column {name:?} is to be overwritten but the write does not give it"
                    ));
                }
                // Key and generated columns are not among `indexes`: nothing to overwrite.
                let found = info.columns.iter().position(|c| &c.name == name);
                if let Some(p) = found.and_then(|i| indexes.iter().position(|x| *x == i)) {
                    update.push(p);
                }
            }
            update.sort_unstable();
            update.dedup();
            update
        }
    };
    Ok(Bound {
        index,
        key,
        upsert: Some(Columns {
            indexes,
            values,
            update,
        }),
    })
}

/// `value` for `col`, or the reason it does not fit (names the column, not the value).
fn convert(col: &Column, value: &Value, what: &str) -> Result<SqlValue, String> {
    to_sql(value, col).map_err(|e| format!("{what} {:?}: {e}", col.name))
}
