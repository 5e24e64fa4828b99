//! The bytes a sink stores per replicated row: [`StoredRow`] in a packed MessagePack form.
//!
//! A row's state names the same few versions many times (every column of an insert carries
//! the insert's version twice), so the packed form lists each distinct version once and refers
//! to it by position: an inserted row of a few columns costs tens of bytes, not hundreds. The
//! first element is a format number, so a newer meshsync's state is refused, not misread.

use std::collections::BTreeMap;

use meshsync_core::{PeerId, Value, Version};
use serde::{Deserialize, Serialize};

use crate::state::{Breakpoint, CellState, ColumnState, CounterParts, RowState};

/// Format of [`StoredRow::encode`].
const FORMAT: u8 = 1;

/// What a peer stores per replicated row: the merge state and, per counter column and origin,
/// the newest version whose delta is already counted (a delta travels once per change, so
/// redelivery must not add it twice).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StoredRow {
    /// The merge state.
    pub state: RowState,
    /// Counter column -> origin -> newest counted version.
    pub counted: BTreeMap<String, BTreeMap<PeerId, Version>>,
}

/// A stored state that cannot be read back: written by a newer meshsync, or damaged.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// Not MessagePack of the packed shape.
    #[error("stored row state is unreadable ({0})")]
    Malformed(#[source] rmp_serde::decode::Error),
    /// A format this build does not know.
    #[error("stored row state has format {0}; this meshsync reads format {FORMAT}: upgrade it")]
    Format(u8),
    /// A version reference past the version list.
    #[error("stored row state refers to a version it does not hold")]
    Dangling,
}

/// A cell with its version by position.
#[derive(Serialize, Deserialize)]
struct PackedCell(Option<Value>, u16, Option<CounterParts>);

/// `(column, [(since, cell)], kept)`.
type PackedColumn = (String, Vec<(u16, PackedCell)>, Option<PackedCell>);

/// The packed form: `(format, versions, columns, tombstone, live, counted)`.
#[derive(Serialize, Deserialize)]
struct Packed(
    u8,
    Vec<Version>,
    Vec<PackedColumn>,
    Option<u16>,
    Option<u16>,
    Vec<(String, Vec<(PeerId, u16)>)>,
);

/// [`PackedCell`] borrowed from the state: serialises to the same bytes without copying.
#[derive(Serialize)]
struct PackedCellRef<'a>(Option<&'a Value>, u16, Option<&'a CounterParts>);

/// [`PackedColumn`], borrowed.
type PackedColumnRef<'a> = (
    &'a str,
    Vec<(u16, PackedCellRef<'a>)>,
    Option<PackedCellRef<'a>>,
);

/// [`Packed`], borrowed: what [`StoredRow::encode`] serialises.
#[derive(Serialize)]
struct PackedRef<'a>(
    u8,
    Vec<&'a Version>,
    Vec<PackedColumnRef<'a>>,
    Option<u16>,
    Option<u16>,
    Vec<(&'a str, Vec<(&'a PeerId, u16)>)>,
);

/// Collects distinct versions while packing.
#[derive(Default)]
struct Versions<'a>(Vec<&'a Version>);

impl<'a> Versions<'a> {
    /// The position of `v`, added if new.
    fn at(&mut self, v: &'a Version) -> u16 {
        match self.0.iter().position(|x| *x == v) {
            Some(i) => i as u16,
            None => {
                self.0.push(v);
                (self.0.len() - 1) as u16
            }
        }
    }

    /// The packed form of a cell.
    fn cell(&mut self, c: &'a CellState) -> PackedCellRef<'a> {
        PackedCellRef(c.value.as_ref(), self.at(&c.version), c.parts.as_ref())
    }
}

/// The MessagePack bytes of `packed`.
fn write(packed: &PackedRef<'_>) -> Vec<u8> {
    // Sized for a few columns up front: growing it step by step was a fifth of the encoding.
    let mut out = Vec::with_capacity(128);
    // Serialising plain data into a Vec cannot fail.
    match rmp_serde::encode::write(&mut out, packed) {
        Ok(()) => out,
        Err(_) => Vec::new(),
    }
}

impl StoredRow {
    /// The stored bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut versions = Versions::default();
        let columns = self
            .state
            .columns
            .iter()
            .map(|(name, c)| {
                let written = c
                    .written
                    .iter()
                    .map(|b| (versions.at(&b.since), versions.cell(&b.state)))
                    .collect();
                let kept = c.kept.as_ref().map(|k| versions.cell(k));
                (name.as_str(), written, kept)
            })
            .collect();
        let tombstone = self.state.tombstone.as_ref().map(|v| versions.at(v));
        let live = self.state.live.as_ref().map(|v| versions.at(v));
        let counted = self
            .counted
            .iter()
            .map(|(col, by)| {
                let by = by.iter().map(|(p, v)| (p, versions.at(v))).collect();
                (col.as_str(), by)
            })
            .collect();
        let packed = PackedRef(FORMAT, versions.0, columns, tombstone, live, counted);
        write(&packed)
    }

    /// What [`StoredRow::encode`] gives the state of a plain insert of `cells` at `version` into
    /// a key with no state, under policies whose canonical form is the state itself (see
    /// [`crate::fresh_insert_bytes`]), without building that state. `cells` sorted by column,
    /// each once.
    pub(crate) fn encode_fresh(version: &Version, cells: &[(&String, &Value)]) -> Vec<u8> {
        // Every cell and the row's life have the one version: position 0.
        let columns = cells
            .iter()
            .map(|(name, v)| {
                let cell = PackedCellRef(Some(*v), 0, None);
                (name.as_str(), vec![(0, cell)], None)
            })
            .collect();
        let packed = PackedRef(FORMAT, vec![version], columns, None, Some(0), Vec::new());
        write(&packed)
    }

    /// Reads stored bytes.
    pub fn decode(bytes: &[u8]) -> Result<StoredRow, StateError> {
        // A fixarray whose first element is a positive fixint: the format, readable whatever
        // shape a later format has.
        if let [0x90..=0x9f, format @ 0..=0x7f, ..] = bytes
            && *format != FORMAT
        {
            return Err(StateError::Format(*format));
        }
        let Packed(format, versions, columns, tombstone, live, counted) =
            rmp_serde::from_slice(bytes).map_err(StateError::Malformed)?;
        if format != FORMAT {
            return Err(StateError::Format(format));
        }
        let v = |i: u16| {
            versions
                .get(usize::from(i))
                .cloned()
                .ok_or(StateError::Dangling)
        };
        let cell = |c: PackedCell| -> Result<CellState, StateError> {
            Ok(CellState {
                value: c.0,
                version: v(c.1)?,
                parts: c.2,
            })
        };
        let mut state = RowState {
            columns: BTreeMap::new(),
            tombstone: tombstone.map(v).transpose()?,
            live: live.map(v).transpose()?,
        };
        for (name, written, kept) in columns {
            let written = written
                .into_iter()
                .map(|(since, c)| {
                    Ok(Breakpoint {
                        since: v(since)?,
                        state: cell(c)?,
                    })
                })
                .collect::<Result<_, StateError>>()?;
            let kept = kept.map(cell).transpose()?;
            state.columns.insert(name, ColumnState { written, kept });
        }
        let mut out = StoredRow {
            state,
            counted: BTreeMap::new(),
        };
        for (col, by) in counted {
            let by = by
                .into_iter()
                .map(|(p, i)| Ok((p, v(i)?)))
                .collect::<Result<_, StateError>>()?;
            out.counted.insert(col, by);
        }
        Ok(out)
    }
}
