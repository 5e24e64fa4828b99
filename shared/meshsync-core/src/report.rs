//! What an apply sink reports per batch, the same for every engine.

/// A row (or a whole batch) that cannot be applied here: park it with this reason (I10).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Parked {
    /// Index of the row in its transaction; `None` for the whole batch.
    pub row: Option<u32>,
    /// Why, for the `Mesh-Park-Reason` header. Never contains row values.
    pub reason: String,
}

/// What one batch did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BatchReport {
    /// Rows that changed the stored state.
    pub applied: usize,
    /// Rows beaten by newer versions (or a tombstone), or already applied.
    pub superseded: usize,
    /// Rows that could not be applied.
    pub parked: Vec<Parked>,
}

impl BatchReport {
    /// The whole batch parked with `reason`.
    pub fn park_all(reason: String) -> BatchReport {
        BatchReport {
            parked: vec![Parked { row: None, reason }],
            ..Default::default()
        }
    }
}
