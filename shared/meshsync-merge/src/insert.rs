//! The merge of a plain insert into a key with no stored state, without the planner.
//!
//! Catching up is mostly inserts of keys a peer has never seen. For those the general merge
//! ([`crate::plan_table`]) clones every cell three times over (incoming row, joined state,
//! visible row) and walks join machinery that has nothing to join: it was half the agent's
//! work in a catch-up. Here the state is built straight from the change. It must equal what
//! the planner makes, byte for byte once stored; the tests below hold the two side by side.

use std::collections::BTreeMap;

use meshsync_core::{Cell, ChangeBatch, Op, PeerId, RowChange};

use crate::{
    config::TablePolicies,
    state::{Breakpoint, CellState, ColumnState, RowState},
    stored::StoredRow,
};

/// The state a plain insert gives a key with no stored state: every column it writes at the
/// change's version, passed through the column's policy ([`crate::MergePolicy::canonical`]).
///
/// `None` when the row is not plain, and the caller must plan it: a batch from `me` (its rows
/// are already in the table, only their states are recorded), not an insert, a counter delta,
/// a cell the change did not write, or a column named twice.
pub fn fresh_insert(
    batch: &ChangeBatch,
    row: &RowChange,
    policies: &TablePolicies,
    me: &PeerId,
) -> Option<StoredRow> {
    if batch.origin == *me || row.op != Op::Insert || !row.deltas.is_empty() {
        return None;
    }
    let version = batch.row_version(row);
    let mut columns = BTreeMap::new();
    for (name, cell) in batch.columns.iter().zip(&row.cells) {
        let Cell::Value(value) = cell else {
            return None;
        };
        let written = CellState::written(value.clone(), version.clone());
        let state = policies.for_column(name).policy.canonical(&written);
        let column = ColumnState {
            written: vec![Breakpoint {
                since: version.clone(),
                state,
            }],
            kept: None,
        };
        if columns.insert(name.clone(), column).is_some() {
            return None;
        }
    }
    Some(StoredRow {
        state: RowState {
            columns,
            tombstone: None,
            live: Some(version),
        },
        counted: BTreeMap::new(),
    })
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use meshsync_core::{
        Cell, ChangeBatch, Hlc, Op, PeerId, RowChange, SchemaVersion, SourcePosition, TableName,
        TxnId, Value,
    };

    use super::fresh_insert;
    use crate::{PolicyKind, RowAction, RowInput, TablePolicies, plan_table, stored::StoredRow};

    fn peer(s: &str) -> PeerId {
        PeerId::new(s).unwrap()
    }

    fn batch(origin: &str, columns: &[&str], rows: Vec<RowChange>) -> ChangeBatch {
        ChangeBatch {
            origin: peer(origin),
            database: "db".into(),
            table: TableName::parse("public.t").unwrap(),
            hlc: Hlc {
                time: 1_700_000_000_000_000,
                node: 3,
            },
            position: SourcePosition("000000000000002a".into()),
            txn: TxnId("7".into()),
            chunk: 0,
            schema: SchemaVersion(1),
            key_columns: vec!["id".into()],
            columns: columns.iter().map(|c| (*c).to_owned()).collect(),
            rows,
        }
    }

    fn insert(index: u32, cells: Vec<Cell>) -> RowChange {
        RowChange {
            index,
            op: Op::Insert,
            key: vec![Value::Int(i64::from(index))],
            cells,
            deltas: Vec::new(),
        }
    }

    /// What the planner stores and writes for `b`'s first row against no state.
    fn planned(b: &ChangeBatch, policies: &TablePolicies) -> (StoredRow, Option<RowAction>) {
        let inputs = [RowInput {
            batch: 0,
            row: &b.rows[0],
            key: b"k".to_vec(),
        }];
        let plan = plan_table(&[b], &inputs, &HashMap::new(), policies, &peer("me"));
        let row = plan.rows.into_iter().next().unwrap();
        (row.stored, row.write)
    }

    fn policies(spec: &[(&str, PolicyKind)]) -> TablePolicies {
        spec.iter()
            .fold(TablePolicies::new(PolicyKind::Lww), |p, (column, kind)| {
                p.with_column(*column, kind.clone())
            })
    }

    #[test]
    fn a_plain_insert_stores_and_shows_what_the_planner_does() {
        let values = [
            Value::Int(5),
            Value::Text("tab\tand ünïcode".into()),
            Value::Null,
            Value::Json(r#"[3, 1, {"b": 1, "a": 2}, 1]"#.into()),
            Value::Float(f64::NAN),
        ];
        let cols = ["id", "v", "n", "tags", "f"];
        for spec in [
            vec![],
            vec![("v", PolicyKind::Max), ("n", PolicyKind::Counter)],
            vec![("tags", PolicyKind::SetUnion)],
            vec![("id", PolicyKind::Min), ("f", PolicyKind::LwwColumn)],
        ] {
            let p = policies(&spec);
            let cells = values.iter().cloned().map(Cell::Value).collect();
            let b = batch("a", &cols, vec![insert(9, cells)]);
            let (want, write) = planned(&b, &p);
            let got = fresh_insert(&b, &b.rows[0], &p, &peer("me")).expect("plain insert");
            assert_eq!(got, want, "policies {spec:?}");
            assert_eq!(got.encode(), want.encode(), "policies {spec:?}");
            let shown: std::collections::BTreeMap<String, Value> = got
                .state
                .visible_cells()
                .map(|(c, v)| (c.clone(), v.clone()))
                .collect();
            match write {
                Some(RowAction::Insert(row)) => {
                    assert_eq!(
                        format!("{shown:?}"),
                        format!("{row:?}"),
                        "policies {spec:?}"
                    );
                }
                other => panic!("planner did not insert: {other:?}"),
            }
        }
    }

    #[test]
    fn rows_that_are_not_plain_inserts_go_to_the_planner() {
        let p = policies(&[]);
        let me = peer("me");
        let plain = vec![Cell::Value(Value::Int(1)), Cell::Value(Value::Int(2))];
        let cases: Vec<(&str, ChangeBatch)> = vec![
            (
                "own change",
                batch("me", &["id", "n"], vec![insert(1, plain.clone())]),
            ),
            ("update", {
                let mut r = insert(1, plain.clone());
                r.op = Op::Update;
                batch("a", &["id", "n"], vec![r])
            }),
            ("counter delta", {
                let mut r = insert(1, plain.clone());
                r.deltas = vec![(1, 2)];
                batch("a", &["id", "n"], vec![r])
            }),
            (
                "kept cell",
                batch(
                    "a",
                    &["id", "n"],
                    vec![insert(
                        1,
                        vec![Cell::Value(Value::Int(1)), Cell::Kept(Value::Int(2))],
                    )],
                ),
            ),
            (
                "unchanged cell",
                batch(
                    "a",
                    &["id", "n"],
                    vec![insert(1, vec![Cell::Value(Value::Int(1)), Cell::Unchanged])],
                ),
            ),
            (
                "column twice",
                batch("a", &["id", "id"], vec![insert(1, plain.clone())]),
            ),
        ];
        for (what, b) in cases {
            assert!(fresh_insert(&b, &b.rows[0], &p, &me).is_none(), "{what}");
        }
        let b = batch("a", &["id", "n"], vec![insert(1, plain)]);
        assert!(fresh_insert(&b, &b.rows[0], &p, &me).is_some());
    }
}
