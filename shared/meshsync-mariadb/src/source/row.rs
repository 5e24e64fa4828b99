//! Row images ([`RowImage`], the engine-neutral one of meshsync-core) from decoded binlog
//! rows: the primary key and the cells of an insert, update or delete. Columns are matched by
//! name (binlog_row_metadata=FULL sends names), so a column the image lacks is
//! [`Cell::Unchanged`] rather than a shifted value.
//!
//! For an update, a column equal to its before-image is [`Cell::Kept`], a changed one
//! [`Cell::Value`], and `previous` holds the before-image value of every changed column
//! (capture sends counter columns as the difference).

use mysql_async::binlog::{
    events::{RowsEventData, TableMapEvent},
    row::BinlogRow,
};

pub use meshsync_core::RowImage;
use meshsync_core::{Cell, Op, Value};

use crate::{catalog::TableInfo, error::MariaDbError, types::from_binlog};

/// The values of `row` in the table's column order (`None` where the image lacks a column).
fn values(table: &TableInfo, row: &BinlogRow) -> Result<Vec<Option<Value>>, MariaDbError> {
    let names = row.columns_ref();
    let mut out = Vec::with_capacity(table.columns.len());
    for (i, col) in table.columns.iter().enumerate() {
        // With names (FULL metadata) match by name; without, binlog names are `@<index>`.
        let j = names
            .iter()
            .position(|c| c.name_ref() == col.name.as_bytes())
            .or_else(|| {
                let fallback = format!("@{i}");
                names
                    .iter()
                    .position(|c| c.name_ref() == fallback.as_bytes())
            });
        let v = match j.and_then(|j| row.as_ref(j)) {
            Some(bv) => Some(
                from_binlog(bv, &col.ty).map_err(|source| MariaDbError::Type {
                    table: table.name.clone(),
                    column: col.name.clone(),
                    source: Box::new(source),
                })?,
            ),
            None => None,
        };
        out.push(v);
    }
    Ok(out)
}

/// The primary key out of column values.
fn key_of(table: &TableInfo, vals: &[Option<Value>]) -> Result<Vec<(String, Value)>, MariaDbError> {
    table
        .key
        .iter()
        .map(|k| {
            table
                .columns
                .iter()
                .position(|c| &c.name == k)
                .and_then(|i| vals.get(i).cloned().flatten())
                .map(|v| (k.clone(), v))
                .ok_or_else(|| MariaDbError::SchemaMismatch {
                    table: table.name.clone(),
                    why: format!("the row image has no value for key column {k:?}"),
                })
        })
        .collect()
}

/// The row image of one decoded row (`before` for update/delete, `after` for insert/update).
pub fn row_image(
    table: &TableInfo,
    before: Option<&BinlogRow>,
    after: Option<&BinlogRow>,
) -> Result<RowImage, MariaDbError> {
    let before = before.map(|r| values(table, r)).transpose()?;
    let after = after.map(|r| values(table, r)).transpose()?;
    let names = table.columns.iter().map(|c| c.name.clone());
    let mut previous = Vec::new();
    let (op, key, old_key, columns) = match (before, after) {
        (None, Some(after)) => {
            let key = key_of(table, &after)?;
            let cols = names
                .zip(after)
                .map(|(n, v)| (n, v.map_or(Cell::Unchanged, Cell::Value)))
                .collect();
            (Op::Insert, key, None, cols)
        }
        (Some(before), Some(after)) => {
            let key = key_of(table, &after)?;
            let old = key_of(table, &before)?;
            let old_key = (old != key).then_some(old);
            let mut cols = Vec::with_capacity(after.len());
            for (n, (a, b)) in names.zip(after.into_iter().zip(before)) {
                let cell = match (a, b) {
                    (None, _) => Cell::Unchanged,
                    (Some(a), Some(b)) if a == b => Cell::Kept(a),
                    (Some(a), Some(b)) => {
                        previous.push((n.clone(), b));
                        Cell::Value(a)
                    }
                    (Some(a), None) => Cell::Value(a),
                };
                cols.push((n, cell));
            }
            (Op::Update, key, old_key, cols)
        }
        (Some(before), None) => (Op::Delete, key_of(table, &before)?, None, Vec::new()),
        (None, None) => {
            return Err(MariaDbError::Decode(format!(
                "row event for {} with neither a before nor an after image",
                table.name
            )));
        }
    };
    Ok(RowImage {
        op,
        table: table.name.clone(),
        key,
        old_key,
        columns,
        previous,
    })
}

/// The row images of a rows event of `table`, decoded with its table map `tme`. A partial
/// JSON update (MySQL `binlog_row_value_options=PARTIAL_JSON`) is refused: it holds diffs
/// against a before-image, not the value.
pub fn decode_rows(
    rows_ev: &RowsEventData<'_>,
    tme: &TableMapEvent<'_>,
    table: &TableInfo,
) -> Result<Vec<RowImage>, MariaDbError> {
    if matches!(rows_ev, RowsEventData::PartialUpdateRowsEvent(_)) {
        return Err(MariaDbError::Check(
            crate::check::CheckError::RowValueOptions {
                found: "PARTIAL_JSON".into(),
            },
        ));
    }
    super::guard::decoding("a rows event", || {
        let decoded: Vec<(Option<BinlogRow>, Option<BinlogRow>)> = rows_ev
            .rows(tme)
            .collect::<Result<_, _>>()
            .map_err(|e| MariaDbError::Decode(e.to_string()))?;
        decoded
            .iter()
            .map(|(before, after)| row_image(table, before.as_ref(), after.as_ref()))
            .collect()
    })
}
