//! A captured row change before batching, the same for every engine's capture.

use crate::{
    change::Op,
    ident::TableName,
    value::{Cell, Value},
};

/// One row change, ready to become a [`crate::Change`].
#[derive(Debug, Clone, PartialEq)]
pub struct RowImage {
    /// What happened.
    pub op: Op,
    /// The table.
    pub table: TableName,
    /// Primary key (the new one for an update), in key column order.
    pub key: Vec<(String, Value)>,
    /// For an update that changed the key: the old key, so the caller can emit its delete.
    pub old_key: Option<Vec<(String, Value)>>,
    /// Every published column, in table order; empty for a delete.
    pub columns: Vec<(String, Cell)>,
    /// For an update with the full old row: the value before, of each written column (so
    /// capture can send a counter's delta).
    pub previous: Vec<(String, Value)>,
}
