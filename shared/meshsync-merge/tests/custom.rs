//! The crate-doc custom policy, as a test: "longest text wins".

use std::sync::Arc;

use meshsync_core::{TableName, Value};
use meshsync_merge::{
    CellState, Joined, MergePolicy, PolicyError, PolicySet,
    laws::{check_join_laws, check_row_merge_order_independence},
    pick,
};

/// The longest text wins; ties go to the greater state (newer version first).
#[derive(Debug)]
struct LongestText;

/// Length in characters of a state's text (0 for other values).
fn len(s: &CellState) -> usize {
    match &s.value {
        Some(Value::Text(t)) => t.chars().count(),
        _ => 0,
    }
}

impl MergePolicy for LongestText {
    fn name(&self) -> &'static str {
        "longest-text"
    }

    fn join(&self, local: &CellState, incoming: &CellState) -> Joined {
        pick(
            self.name(),
            local,
            incoming,
            (len(incoming), incoming) > (len(local), local),
        )
    }
}

#[test]
fn longest_text_registers_and_keeps_the_laws() {
    let mut set = PolicySet::default();
    set.register_custom("longest-text", Arc::new(LongestText))
        .unwrap();
    assert_eq!(
        set.register_custom("max", Arc::new(LongestText)),
        Err(PolicyError::ReservedName("max".into()))
    );
    let items = TableName::parse("public.items").unwrap();
    set.set_table(&items, "longest-text").unwrap();
    let table = set.table(&items);
    assert_eq!(table.for_column("anything").label, "longest-text");
    check_join_laws(&LongestText, 512);
    check_row_merge_order_independence(&table, 128);
}
