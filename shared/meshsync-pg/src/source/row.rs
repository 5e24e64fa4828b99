//! Row images from decoded row messages: the primary key and the cells of an insert, update or
//! delete, with [`Cell::Kept`] / [`Cell::Unchanged`] for columns the change did not write.
//!
//! The key comes from the primary-key columns the caller read from `pg_index`, not from the
//! relation's identity flags (REPLICA IDENTITY FULL flags every column).

use std::collections::HashMap;

pub use meshsync_core::RowImage;
use meshsync_core::{Cell, Op, TableName, Value};

use super::pgoutput::{
    Delete, Insert, Oid, OldTuple, PgMessage, Relation, TupleColumn, TupleData, Update,
};
use crate::types::{PgType, TypeError, from_text};

/// The latest `R` message per relation OID, plus the types of non-built-in OIDs (enums).
#[derive(Debug, Clone, Default)]
pub struct RelationCache {
    /// Latest shape per relation OID.
    relations: HashMap<Oid, Relation>,
    /// Types of non-built-in type OIDs.
    types: HashMap<Oid, PgType>,
}

impl RelationCache {
    /// An empty cache.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records a relation (on every `R` message); returns the shape it replaces, if any, so
    /// the caller can notice a schema change.
    pub fn update(&mut self, relation: Relation) -> Option<Relation> {
        self.relations.insert(relation.oid, relation)
    }

    /// Records the type of a non-built-in type OID (e.g. `PgType::Enum` after a catalog lookup
    /// prompted by a `Y` message).
    pub fn register_type(&mut self, oid: Oid, ty: PgType) {
        self.types.insert(oid, ty);
    }

    /// The relation with this OID.
    pub fn get(&self, oid: Oid) -> Option<&Relation> {
        self.relations.get(&oid)
    }

    /// The type of a column type OID: built in, or registered.
    pub fn column_type(&self, type_oid: Oid) -> Option<PgType> {
        PgType::from_oid(type_oid).or_else(|| self.types.get(&type_oid).cloned())
    }
}

/// A row message, borrowed from a [`PgMessage`].
#[derive(Debug, Clone, Copy)]
pub enum RowMessage<'a> {
    /// `I`.
    Insert(&'a Insert),
    /// `U`.
    Update(&'a Update),
    /// `D`.
    Delete(&'a Delete),
}

impl<'a> RowMessage<'a> {
    /// The row message inside `msg`, if it is one.
    pub fn from_message(msg: &'a PgMessage) -> Option<Self> {
        match msg {
            PgMessage::Insert(m) => Some(RowMessage::Insert(m)),
            PgMessage::Update(m) => Some(RowMessage::Update(m)),
            PgMessage::Delete(m) => Some(RowMessage::Delete(m)),
            _ => None,
        }
    }

    /// The relation OID it refers to.
    pub fn relation(&self) -> Oid {
        match self {
            RowMessage::Insert(m) => m.relation,
            RowMessage::Update(m) => m.relation,
            RowMessage::Delete(m) => m.relation,
        }
    }
}

/// A row message that cannot become a [`RowImage`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RowError {
    /// No `R` message was seen for the OID.
    #[error("row change for relation oid {oid} before its relation message")]
    UnknownRelation {
        /// The OID.
        oid: Oid,
    },
    /// A tuple does not have one entry per relation column.
    #[error("row change for {table} has {actual} columns, its relation message {expected}")]
    ColumnCountMismatch {
        /// The table.
        table: TableName,
        /// Columns of the relation.
        expected: usize,
        /// Columns of the tuple.
        actual: usize,
    },
    /// A primary-key column is not published (not in the relation).
    #[error("primary-key column {column:?} of {table} is not in the publication's column list")]
    KeyColumnNotPublished {
        /// The table.
        table: TableName,
        /// The column.
        column: String,
    },
    /// The message carries no value for a primary-key column.
    #[error(
        "row change for {table} has no value for primary-key column {column:?} \
         (is the replica identity a different index than the primary key?)"
    )]
    KeyColumnMissing {
        /// The table.
        table: TableName,
        /// The column.
        column: String,
    },
    /// A column's type OID is neither built in nor registered.
    #[error("column {column:?} of {table} has type oid {oid}, which meshsync does not support")]
    UnsupportedType {
        /// The table.
        table: TableName,
        /// The column.
        column: String,
        /// Its type OID.
        oid: Oid,
    },
    /// A value in binary format (the `binary` option is not supported).
    #[error("column {column:?} of {table} arrived in binary format; use the text format")]
    BinaryFormat {
        /// The table.
        table: TableName,
        /// The column.
        column: String,
    },
    /// An insert marked a column as an unchanged TOAST value.
    #[error("insert into {table} has no value for column {column:?}")]
    UnexpectedUnchanged {
        /// The table.
        table: TableName,
        /// The column.
        column: String,
    },
    /// A value does not parse as its column type.
    #[error("column {column:?} of {table}: {source}")]
    Value {
        /// The table.
        table: TableName,
        /// The column.
        column: String,
        /// What is wrong.
        source: TypeError,
    },
}

/// Turns a row message into a [`RowImage`], given the table's primary-key column names.
pub fn decode_row(
    cache: &RelationCache,
    key_columns: &[String],
    msg: RowMessage<'_>,
) -> Result<RowImage, RowError> {
    let oid = msg.relation();
    let rel = cache.get(oid).ok_or(RowError::UnknownRelation { oid })?;
    let schema = if rel.namespace.is_empty() {
        "pg_catalog"
    } else {
        rel.namespace.as_str()
    };
    let cx = Ctx {
        cache,
        rel,
        table: TableName::new(schema, rel.name.clone()),
    };
    let key_idx = key_columns
        .iter()
        .map(|k| {
            rel.columns
                .iter()
                .position(|c| c.name == *k)
                .ok_or_else(|| RowError::KeyColumnNotPublished {
                    table: cx.table.clone(),
                    column: k.clone(),
                })
        })
        .collect::<Result<Vec<_>, _>>()?;
    match msg {
        RowMessage::Insert(m) => {
            cx.check_len(&m.new)?;
            let mut columns = Vec::with_capacity(m.new.len());
            for (i, col) in m.new.iter().enumerate() {
                if *col == TupleColumn::UnchangedToast {
                    return Err(RowError::UnexpectedUnchanged {
                        table: cx.table.clone(),
                        column: cx.name(i),
                    });
                }
                columns.push((cx.name(i), Cell::Value(cx.value(i, col)?)));
            }
            let key = key_idx
                .iter()
                .map(|&i| {
                    (
                        cx.name(i),
                        columns
                            .get(i)
                            .and_then(|(_, c)| c.value().cloned())
                            .unwrap_or(Value::Null),
                    )
                })
                .collect();
            Ok(RowImage {
                op: Op::Insert,
                table: cx.table,
                key,
                old_key: None,
                columns,
                previous: Vec::new(),
            })
        }
        RowMessage::Update(m) => cx.update(m, &key_idx),
        RowMessage::Delete(m) => {
            cx.check_len(m.old.columns())?;
            let key = cx.old_key(&m.old, &key_idx)?;
            Ok(RowImage {
                op: Op::Delete,
                table: cx.table,
                key,
                old_key: None,
                columns: Vec::new(),
                previous: Vec::new(),
            })
        }
    }
}

/// What one decoding needs.
struct Ctx<'a> {
    /// Relations and registered types.
    cache: &'a RelationCache,
    /// The row's relation.
    rel: &'a Relation,
    /// Its name, for errors and the image.
    table: TableName,
}

impl Ctx<'_> {
    /// Name of column `i`.
    fn name(&self, i: usize) -> String {
        self.rel
            .columns
            .get(i)
            .map(|c| c.name.clone())
            .unwrap_or_default()
    }

    /// Fails unless the tuple has one entry per relation column.
    fn check_len(&self, t: &TupleData) -> Result<(), RowError> {
        if t.len() == self.rel.columns.len() {
            Ok(())
        } else {
            Err(RowError::ColumnCountMismatch {
                table: self.table.clone(),
                expected: self.rel.columns.len(),
                actual: t.len(),
            })
        }
    }

    /// The value of column `i` (NULL for `n`; `u` must be handled by the caller).
    fn value(&self, i: usize, col: &TupleColumn) -> Result<Value, RowError> {
        let bytes = match col {
            TupleColumn::Null | TupleColumn::UnchangedToast => return Ok(Value::Null),
            TupleColumn::Binary(_) => {
                return Err(RowError::BinaryFormat {
                    table: self.table.clone(),
                    column: self.name(i),
                });
            }
            TupleColumn::Text(b) => b,
        };
        let oid = self.rel.columns.get(i).map_or(0, |c| c.type_oid);
        let ty = self
            .cache
            .column_type(oid)
            .ok_or_else(|| RowError::UnsupportedType {
                table: self.table.clone(),
                column: self.name(i),
                oid,
            })?;
        let err = |source| RowError::Value {
            table: self.table.clone(),
            column: self.name(i),
            source,
        };
        let text = std::str::from_utf8(bytes)
            .map_err(|_| err(TypeError::invalid(&ty, "not valid UTF-8")))?;
        from_text(text, &ty).map_err(err)
    }

    /// The key read from an old tuple. In a `K` tuple, columns outside the replica identity are
    /// `n` without being NULL, and key columns are never NULL: `n` means "not sent".
    fn old_key(&self, old: &OldTuple, key_idx: &[usize]) -> Result<Vec<(String, Value)>, RowError> {
        let missing = |i| RowError::KeyColumnMissing {
            table: self.table.clone(),
            column: self.name(i),
        };
        key_idx
            .iter()
            .map(|&i| match (old, old.columns().get(i)) {
                (_, Some(col @ TupleColumn::Text(_)))
                | (OldTuple::Full(_), Some(col @ TupleColumn::Null)) => {
                    Ok((self.name(i), self.value(i, col)?))
                }
                _ => Err(missing(i)),
            })
            .collect()
    }

    /// An update: new values as written; with a full old row, `u` (TOAST not re-sent) and
    /// values equal to the old ones as kept, with their value; without one, `u` as unchanged.
    fn update(&self, m: &Update, key_idx: &[usize]) -> Result<RowImage, RowError> {
        self.check_len(&m.new)?;
        if let Some(old) = &m.old {
            self.check_len(old.columns())?;
        }
        let full_old = match &m.old {
            Some(OldTuple::Full(t)) => Some(t),
            _ => None,
        };
        let mut columns = Vec::with_capacity(m.new.len());
        let mut previous = Vec::new();
        for (i, col) in m.new.iter().enumerate() {
            let old = full_old.and_then(|t| t.get(i));
            let cell = match (col, old) {
                (TupleColumn::UnchangedToast, Some(o)) if *o != TupleColumn::UnchangedToast => {
                    Cell::Kept(self.value(i, o)?)
                }
                (TupleColumn::UnchangedToast, _) => Cell::Unchanged,
                (_, Some(o)) if o == col => Cell::Kept(self.value(i, col)?),
                (_, Some(o @ (TupleColumn::Text(_) | TupleColumn::Null))) => {
                    previous.push((self.name(i), self.value(i, o)?));
                    Cell::Value(self.value(i, col)?)
                }
                _ => Cell::Value(self.value(i, col)?),
            };
            columns.push((self.name(i), cell));
        }
        let old_key = m
            .old
            .as_ref()
            .map(|o| self.old_key(o, key_idx))
            .transpose()?;
        let mut key = Vec::with_capacity(key_idx.len());
        for &i in key_idx {
            let value = match m.new.get(i) {
                Some(TupleColumn::UnchangedToast) | None => {
                    let pos = key.len();
                    let from_old = old_key
                        .as_ref()
                        .and_then(|k| k.get(pos))
                        .map(|(_, v): &(String, Value)| v.clone());
                    from_old.ok_or_else(|| RowError::KeyColumnMissing {
                        table: self.table.clone(),
                        column: self.name(i),
                    })?
                }
                Some(col) => self.value(i, col)?,
            };
            key.push((self.name(i), value));
        }
        let old_key = old_key.filter(|k| *k != key);
        Ok(RowImage {
            op: Op::Update,
            table: self.table.clone(),
            key,
            old_key,
            columns,
            previous,
        })
    }
}
