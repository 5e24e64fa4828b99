//! Policy specs from config strings.

use meshsync_core::TableName;
use meshsync_merge::{PolicyError, PolicyKind, PolicySet};

use crate::support::peer;

#[test]
fn every_builtin_spec_parses_and_prints_back() {
    for spec in [
        "lww",
        "lww-column",
        "max",
        "min",
        "counter",
        "set-union",
        "origin-priority:a,b,c",
    ] {
        let kind: PolicyKind = spec.parse().unwrap();
        assert_eq!(kind.to_string(), spec);
    }
    assert_eq!(
        " origin-priority: b , a ".parse::<PolicyKind>().unwrap(),
        PolicyKind::OriginPriority(vec![peer("b"), peer("a")])
    );
}

#[test]
fn unknown_and_malformed_specs_are_named() {
    let err = PolicySet::default().resolve("lwww").unwrap_err();
    assert!(matches!(&err, PolicyError::Unknown { name, .. } if name == "lwww"));
    assert!(err.to_string().contains("\"lwww\""));
    for bad in [
        "origin-priority",
        "origin-priority:",
        "origin-priority:a,,b",
        "origin-priority:a.b",
    ] {
        assert!(
            matches!(
                bad.parse::<PolicyKind>(),
                Err(PolicyError::BadOriginPriority { .. })
            ),
            "{bad}"
        );
    }
}

#[test]
fn tables_and_columns_override_the_default() {
    let mut set = PolicySet::new("lww").unwrap();
    let items = TableName::parse("public.items").unwrap();
    let other = TableName::parse("public.other").unwrap();
    set.set_column(&items, "hits", "counter").unwrap();
    set.set_table(&items, "lww-column").unwrap();
    let t = set.table(&items);
    assert_eq!(t.for_column("hits").label, "counter");
    assert_eq!(t.for_column("name").label, "lww-column");
    assert!(!t.for_column("name").row_level);
    assert!(
        set.table(&other).for_column("name").row_level,
        "mesh default: row-level lww"
    );
}

#[test]
fn the_fingerprint_tells_policy_sets_apart_and_ignores_spelling_and_order() {
    let items = TableName::parse("public.items").unwrap();
    let other = TableName::parse("public.other").unwrap();
    let build = |first: &TableName, second: &TableName, priority: &str| {
        let mut set = PolicySet::new("lww-column").unwrap();
        set.set_column(first, "n", "counter").unwrap();
        set.set_table(second, priority).unwrap();
        set
    };
    let a = build(&items, &other, "origin-priority:a,b");
    let same = build(&items, &other, " origin-priority: a , b ");
    assert_eq!(a.fingerprint(), same.fingerprint());
    assert_eq!(a.fingerprint().len(), 16);
    assert_eq!(
        a.describe(),
        "default=lww-column; public.items=lww-column {n=counter}; \
         public.other=origin-priority:a,b"
    );
    // Any different choice changes it: the default, a table, a column, a priority order.
    let mut differ = vec![
        build(&items, &other, "origin-priority:b,a"),
        build(&other, &items, "origin-priority:a,b"),
        PolicySet::default(),
    ];
    let mut lww = build(&items, &other, "origin-priority:a,b");
    lww.set_default("lww").unwrap();
    differ.push(lww);
    for d in &differ {
        assert_ne!(a.fingerprint(), d.fingerprint(), "{}", d.describe());
    }
}
