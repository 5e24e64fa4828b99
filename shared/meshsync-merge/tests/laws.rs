//! Join laws for every built-in policy and order independence of row merge under each (I5).

use meshsync_merge::{
    Counter, Lww, Max, Min, OriginPriority, PolicyKind, SetUnion, TablePolicies,
    laws::{check_join_laws, check_row_merge_order_independence},
};

use crate::support::peer;

/// Cases per law check; the proptest budget for one policy.
const LAW_CASES: u32 = 512;
/// Cases per order-independence check.
const ORDER_CASES: u32 = 512;

#[test]
fn lww_is_a_join() {
    check_join_laws(&Lww, LAW_CASES);
}

#[test]
fn max_is_a_join() {
    check_join_laws(&Max, LAW_CASES);
}

#[test]
fn min_is_a_join() {
    check_join_laws(&Min, LAW_CASES);
}

#[test]
fn counter_is_a_join() {
    check_join_laws(&Counter, LAW_CASES);
}

#[test]
fn set_union_is_a_join() {
    check_join_laws(&SetUnion, LAW_CASES);
}

#[test]
fn origin_priority_is_a_join() {
    check_join_laws(&OriginPriority(vec![peer("b"), peer("a")]), LAW_CASES);
}

/// Every built-in as a table default, plus a table mixing them per column.
fn all_table_policies() -> Vec<TablePolicies> {
    let kinds = [
        "lww",
        "lww-column",
        "max",
        "min",
        "counter",
        "set-union",
        "origin-priority:c,a",
    ];
    let mut out: Vec<TablePolicies> = kinds
        .iter()
        .map(|k| TablePolicies::new(k.parse::<PolicyKind>().unwrap()))
        .collect();
    out.push(
        TablePolicies::new(PolicyKind::Lww)
            .with_column("x", PolicyKind::Counter)
            .with_column("y", PolicyKind::Max),
    );
    out
}

#[test]
fn row_merge_is_order_independent_for_every_policy() {
    for policies in all_table_policies() {
        check_row_merge_order_independence(&policies, ORDER_CASES);
    }
}
