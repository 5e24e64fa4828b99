//! Reusable proptest strategies and law checks (feature `laws`).
//!
//! Strategies draw from small sets (three origins, a few HLCs, a few values per kind) so that
//! ties, equal versions and duplicates actually occur. Every check prints its case count and
//! seed; rerun a failure with `PROPTEST_RNG_SEED=<seed>` (and `PROPTEST_CASES` to change the
//! case count). Each check is also time-budgeted: cases starting after
//! `MESHSYNC_PROPTEST_BUDGET_S` seconds (default 30) are skipped, so a slow machine shortens a
//! check instead of timing out; the number of cases actually checked is printed.

use std::{
    collections::BTreeMap,
    hash::{BuildHasher, RandomState},
    sync::atomic::{AtomicU32, Ordering},
    time::{Duration, Instant, SystemTime},
};

use meshsync_core::{Cell, Hlc, Op, PeerId, Value, Version};
use proptest::{
    collection::vec,
    option,
    prelude::*,
    sample::{Index, select},
    test_runner::{Config, RngSeed, TestRunner},
};

use crate::{
    config::TablePolicies,
    policy::MergePolicy,
    row::{IncomingRow, RowAction, merge_row},
    state::{CellState, CounterParts, RowState},
};

/// The three origins every strategy draws from.
pub const ORIGINS: [&str; 3] = ["a", "b", "c"];

/// The columns of generated rows.
pub const COLUMNS: [&str; 3] = ["x", "y", "z"];

/// One of [`ORIGINS`].
pub fn peer() -> impl Strategy<Value = PeerId> {
    select(ORIGINS.to_vec()).prop_map(|p| PeerId::new(p).unwrap_or_else(|_| unreachable!()))
}

/// A small HLC (time 1-4, node 0-1), so that equal stamps occur.
pub fn hlc() -> impl Strategy<Value = Hlc> {
    (1u64..=4, 0u64..=1).prop_map(|(time, node)| Hlc { time, node })
}

/// A version from [`hlc`] and [`peer`].
pub fn version() -> impl Strategy<Value = Version> {
    (hlc(), peer(), 0u32..3).prop_map(|(hlc, origin, index)| Version::new(hlc, origin, index))
}

/// A value of any kind, including NaN, signed zeros, equal numbers of different kinds, decimal
/// texts of equal value and JSON arrays in non-canonical form.
pub fn value() -> impl Strategy<Value = Value> {
    let numbers = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        (-2i64..=2).prop_map(Value::Int),
        select(vec![0u64, 2, u64::MAX]).prop_map(Value::UInt),
        select(vec![-0.0, 0.0, 1.5, 2.0, f64::NAN, f64::INFINITY]).prop_map(Value::Float),
        select(vec!["1.0", "1.00", "-0", "0", "-12.340", "x"])
            .prop_map(|d| Value::Decimal(d.into())),
    ];
    let others = prop_oneof![
        select(vec!["", "a", "ab", "b"]).prop_map(|t| Value::Text(t.into())),
        select(vec![vec![], vec![0u8], vec![1]]).prop_map(Value::Bytes),
        (0i64..2).prop_map(Value::Timestamp),
        (0i32..2).prop_map(Value::Date),
        select(vec![[0u8; 16], [1; 16]]).prop_map(Value::Uuid),
        select(vec![
            "[]",
            "[1]",
            "[2, 1]",
            "[1,2]",
            r#"["x",{"b":1,"a":2}]"#,
            "{}",
            "1",
            "[1"
        ])
        .prop_map(|j| Value::Json(j.into())),
    ];
    prop_oneof![numbers, others]
}

/// Counter parts over [`ORIGINS`] with small totals (and one saturated).
pub fn counter_parts() -> impl Strategy<Value = CounterParts> {
    vec(
        (peer(), select(vec![0u64, 1, 2, 5, u64::MAX]), 0u64..3),
        0..3,
    )
    .prop_map(CounterParts::from_totals)
}

/// A cell state: mostly a present value, sometimes absent, sometimes with counter parts
/// (not necessarily consistent with the value: policies canonicalize).
pub fn cell_state() -> impl Strategy<Value = CellState> {
    (
        option::weighted(0.9, value()),
        version(),
        option::weighted(0.3, counter_parts()),
    )
        .prop_map(|(value, version, parts)| CellState {
            value,
            version,
            parts,
        })
}

/// A test runner with `cases` cases (unless `PROPTEST_CASES` says otherwise), a seed from
/// `PROPTEST_RNG_SEED` or a fresh one, printed, and no failure files.
fn runner(what: &str, cases: u32) -> TestRunner {
    let mut config = Config::default();
    if std::env::var_os("PROPTEST_CASES").is_none() {
        config.cases = cases;
    }
    let seed = match config.rng_seed {
        RngSeed::Fixed(seed) => seed,
        RngSeed::Random => RandomState::new().hash_one(SystemTime::now()),
    };
    config.rng_seed = RngSeed::Fixed(seed);
    config.failure_persistence = None;
    eprintln!(
        "{what}: {} cases; replay with PROPTEST_RNG_SEED={seed}",
        config.cases
    );
    TestRunner::new(config)
}

/// The time budget of one check: cases are checked until it is spent.
struct Budget {
    /// When the check began.
    start: Instant,
    /// How long it may check cases.
    limit: Duration,
    /// Cases checked so far.
    checked: AtomicU32,
}

impl Budget {
    /// The budget from `MESHSYNC_PROPTEST_BUDGET_S`, starting now.
    fn new() -> Budget {
        let secs = std::env::var("MESHSYNC_PROPTEST_BUDGET_S")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(30);
        Budget {
            start: Instant::now(),
            limit: Duration::from_secs(secs),
            checked: AtomicU32::new(0),
        }
    }

    /// Whether another case may run (and counts it).
    fn admit(&self) -> bool {
        let ok = self.start.elapsed() < self.limit;
        if ok {
            self.checked.fetch_add(1, Ordering::Relaxed);
        }
        ok
    }

    /// Prints how many cases were checked.
    fn report(&self, what: &str) {
        eprintln!(
            "{what}: {} cases checked in {:.1?}",
            self.checked.load(Ordering::Relaxed),
            self.start.elapsed()
        );
    }
}

/// Asserts that `policy` is a join-semilattice on its canonical states: commutative,
/// associative, idempotent, with canonical output. Panics with the failing case and the seed.
pub fn check_join_laws(policy: &dyn MergePolicy, cases: u32) {
    let what = format!("check_join_laws({})", policy.name());
    let mut runner = runner(&what, cases);
    let budget = Budget::new();
    let result = runner.run(&(cell_state(), cell_state(), cell_state()), |(a, b, c)| {
        if !budget.admit() {
            return Ok(());
        }
        let (a, b, c) = (
            policy.canonical(&a),
            policy.canonical(&b),
            policy.canonical(&c),
        );
        let join = |x: &CellState, y: &CellState| policy.join(x, y).state;
        prop_assert_eq!(&join(&a, &a), &a, "idempotence");
        let ab = join(&a, &b);
        prop_assert_eq!(&ab, &join(&b, &a), "commutativity");
        prop_assert_eq!(&policy.canonical(&ab), &ab, "canonical output");
        prop_assert_eq!(join(&ab, &c), join(&a, &join(&b, &c)), "associativity");
        Ok(())
    });
    budget.report(&what);
    if let Err(e) = result {
        panic!("{what} failed: {e}");
    }
}

/// One cell of a generated change: written, kept or unchanged.
fn cell() -> impl Strategy<Value = Cell> {
    prop_oneof![
        3 => value().prop_map(Cell::Value),
        2 => value().prop_map(Cell::Kept),
        1 => Just(Cell::Unchanged),
    ]
}

/// A change to one of two keys: inserts write every column, updates a mix, deletes none;
/// written cells carry counter parts half of the time.
pub fn keyed_change() -> impl Strategy<Value = (u8, IncomingRow)> {
    let op = prop_oneof![3 => Just(Op::Insert), 4 => Just(Op::Update), 2 => Just(Op::Delete)];
    let parts = vec(option::weighted(0.5, counter_parts()), COLUMNS.len());
    (0u8..2, op, version(), vec(cell(), COLUMNS.len()), parts).prop_map(
        |(key, op, version, cells, parts)| {
            let mut row = IncomingRow {
                op,
                version,
                cells: Vec::new(),
                counters: BTreeMap::new(),
            };
            if op != Op::Delete {
                for ((name, cell), part) in COLUMNS.iter().zip(cells).zip(parts) {
                    let cell = match (op, cell) {
                        (Op::Insert, Cell::Kept(v)) => Cell::Value(v),
                        (Op::Insert, Cell::Unchanged) => Cell::Value(Value::Null),
                        (_, c) => c,
                    };
                    if let (Cell::Value(_), Some(p)) = (&cell, part) {
                        row.counters.insert((*name).to_owned(), p);
                    }
                    row.cells.push(((*name).to_owned(), cell));
                }
            }
            (key, row)
        },
    )
}

/// Applies `changes` in `order`, checking that the emitted actions rebuild the visible rows.
fn deliver(
    changes: &[(u8, IncomingRow)],
    order: &[usize],
    policies: &TablePolicies,
) -> Result<BTreeMap<u8, RowState>, TestCaseError> {
    let mut rows: BTreeMap<u8, RowState> = BTreeMap::new();
    let mut table: BTreeMap<u8, BTreeMap<String, Value>> = BTreeMap::new();
    for &i in order {
        let Some((key, change)) = changes.get(i) else {
            continue;
        };
        let row = rows.entry(*key).or_default();
        let merged = merge_row(row, change, policies);
        match merged.action {
            RowAction::None => {}
            RowAction::Insert(r) => {
                table.insert(*key, r);
            }
            RowAction::Update(cols) => table.entry(*key).or_default().extend(cols),
            RowAction::Delete => {
                table.remove(key);
            }
        }
        *row = merged.state;
    }
    for (key, row) in &rows {
        let non_null = |r: &BTreeMap<String, Value>| -> Vec<(String, Value)> {
            r.iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        };
        let expected = row.visible().map(|r| format!("{:?}", non_null(&r)));
        let written = table.get(key).map(|r| format!("{:?}", non_null(r)));
        prop_assert_eq!(
            expected,
            written,
            "actions disagree with the state of key {}",
            key
        );
    }
    rows.retain(|_, r| *r != RowState::default());
    Ok(rows)
}

/// Asserts I5 for row merge under `policies`: random inserts, updates and deletes on two keys
/// from three origins, delivered in two random orders with duplicates, give the same final
/// row states as delivery in generation order; and the emitted actions rebuild the visible
/// rows. Panics with the failing case and the seed.
pub fn check_row_merge_order_independence(policies: &TablePolicies, cases: u32) {
    let what = format!(
        "check_row_merge_order_independence({})",
        policies.default.label
    );
    let mut runner = runner(&what, cases);
    let strategy = vec(keyed_change(), 1..9).prop_flat_map(|changes| {
        let n = changes.len();
        let order = Just((0..n).collect::<Vec<_>>()).prop_shuffle();
        let dups = vec((any::<Index>(), any::<Index>()), 0..4);
        (Just(changes), order.clone(), dups.clone(), order, dups)
    });
    let budget = Budget::new();
    let result = runner.run(&strategy, |(changes, o1, d1, o2, d2)| {
        if !budget.admit() {
            return Ok(());
        }
        let with_dups = |mut order: Vec<usize>, dups: Vec<(Index, Index)>| {
            for (at, which) in dups {
                let at = at.index(order.len() + 1);
                order.insert(at, which.index(changes.len()));
            }
            order
        };
        let base = deliver(&changes, &(0..changes.len()).collect::<Vec<_>>(), policies)?;
        prop_assert_eq!(&base, &deliver(&changes, &with_dups(o1, d1), policies)?);
        prop_assert_eq!(&base, &deliver(&changes, &with_dups(o2, d2), policies)?);
        Ok(())
    });
    budget.report(&what);
    if let Err(e) = result {
        panic!("{what} failed: {e}");
    }
}
