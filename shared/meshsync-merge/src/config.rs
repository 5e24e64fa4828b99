//! Which policy decides which column: parsed from config strings, with a registry for custom
//! policies.

use std::{collections::BTreeMap, fmt, str::FromStr, sync::Arc};

use meshsync_core::{PeerId, TableName};

use crate::{
    builtin::{Counter, Lww, Max, Min, OriginPriority, SetUnion},
    policy::MergePolicy,
};

/// The config names of the built-in policies (`origin-priority` takes `:a,b,c`).
pub const BUILTIN_NAMES: [&str; 7] = [
    "lww",
    "lww-column",
    "max",
    "min",
    "counter",
    "set-union",
    "origin-priority",
];

/// A policy name or spec that cannot be used; the message names it and the fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    /// Neither built-in nor registered.
    #[error(
        "unknown merge policy {name:?}: use one of lww, lww-column, max, min, counter, set-union, \
         origin-priority:<peer>,<peer>,... or a registered custom policy ({custom})"
    )]
    Unknown {
        /// The name as written.
        name: String,
        /// Registered custom names, comma-separated, or "none registered".
        custom: String,
    },
    /// `origin-priority` without a valid, non-empty peer list.
    #[error(
        "merge policy {spec:?} needs a peer list: write origin-priority:<peer>,<peer>,... with \
         valid peer ids, highest priority first"
    )]
    BadOriginPriority {
        /// The spec as written.
        spec: String,
    },
    /// A custom policy may not take a built-in's name, or an empty one.
    #[error(
        "custom merge policy name {0:?} is empty or taken by a built-in policy: choose another"
    )]
    ReservedName(String),
}

/// A built-in policy, as config names it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PolicyKind {
    /// `lww`: row-level LWW; the newest insert/update wins with all its cells, `Kept` included.
    Lww,
    /// `lww-column`: LWW per column, among the cells a change wrote.
    LwwColumn,
    /// `max`.
    Max,
    /// `min`.
    Min,
    /// `counter`: PN-counter.
    Counter,
    /// `set-union`: grow-only union of JSON arrays.
    SetUnion,
    /// `origin-priority:a,b,c`: the first listed origin ranks highest.
    OriginPriority(Vec<PeerId>),
}

impl PolicyKind {
    /// The policy object.
    pub fn policy(&self) -> Arc<dyn MergePolicy> {
        match self {
            PolicyKind::Lww | PolicyKind::LwwColumn => Arc::new(Lww),
            PolicyKind::Max => Arc::new(Max),
            PolicyKind::Min => Arc::new(Min),
            PolicyKind::Counter => Arc::new(Counter),
            PolicyKind::SetUnion => Arc::new(SetUnion),
            PolicyKind::OriginPriority(peers) => Arc::new(OriginPriority(peers.clone())),
        }
    }

    /// Whether `Kept` cells compete like written ones (row-level LWW only).
    pub fn is_row_level(&self) -> bool {
        matches!(self, PolicyKind::Lww)
    }
}

impl FromStr for PolicyKind {
    type Err = PolicyError;

    fn from_str(spec: &str) -> Result<Self, PolicyError> {
        let spec = spec.trim();
        let (name, args) = match spec.split_once(':') {
            Some((n, a)) => (n.trim(), Some(a)),
            None => (spec, None),
        };
        let kind = match (name, args) {
            ("lww", None) => PolicyKind::Lww,
            ("lww-column", None) => PolicyKind::LwwColumn,
            ("max", None) => PolicyKind::Max,
            ("min", None) => PolicyKind::Min,
            ("counter", None) => PolicyKind::Counter,
            ("set-union", None) => PolicyKind::SetUnion,
            ("origin-priority", args) => {
                let bad = || PolicyError::BadOriginPriority {
                    spec: spec.to_owned(),
                };
                let peers = args
                    .ok_or_else(bad)?
                    .split(',')
                    .map(|p| PeerId::new(p.trim()).map_err(|_| bad()))
                    .collect::<Result<Vec<_>, _>>()?;
                PolicyKind::OriginPriority(peers)
            }
            _ => {
                return Err(PolicyError::Unknown {
                    name: spec.to_owned(),
                    custom: "none registered".into(),
                });
            }
        };
        Ok(kind)
    }
}

impl fmt::Display for PolicyKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PolicyKind::Lww => f.write_str("lww"),
            PolicyKind::LwwColumn => f.write_str("lww-column"),
            PolicyKind::Max => f.write_str("max"),
            PolicyKind::Min => f.write_str("min"),
            PolicyKind::Counter => f.write_str("counter"),
            PolicyKind::SetUnion => f.write_str("set-union"),
            PolicyKind::OriginPriority(p) => {
                let names: Vec<&str> = p.iter().map(PeerId::as_str).collect();
                write!(f, "origin-priority:{}", names.join(","))
            }
        }
    }
}

/// A resolved policy for a table or column.
#[derive(Clone, Debug)]
pub struct Resolved {
    /// The policy.
    pub policy: Arc<dyn MergePolicy>,
    /// The spec it was chosen by (conflict records and metrics use it).
    pub label: String,
    /// Whether `Kept` cells compete like written ones (row-level `lww`).
    pub row_level: bool,
}

impl From<PolicyKind> for Resolved {
    fn from(kind: PolicyKind) -> Self {
        Resolved {
            policy: kind.policy(),
            label: kind.to_string(),
            row_level: kind.is_row_level(),
        }
    }
}

/// The policies of one table: a default and per-column overrides.
#[derive(Clone, Debug)]
pub struct TablePolicies {
    /// For columns without an override.
    pub default: Resolved,
    /// Per-column overrides.
    pub columns: BTreeMap<String, Resolved>,
}

impl TablePolicies {
    /// Every column under `default`.
    pub fn new(default: impl Into<Resolved>) -> Self {
        TablePolicies {
            default: default.into(),
            columns: BTreeMap::new(),
        }
    }

    /// Adds a column override.
    pub fn with_column(mut self, column: impl Into<String>, policy: impl Into<Resolved>) -> Self {
        self.columns.insert(column.into(), policy.into());
        self
    }

    /// The policy deciding `column`.
    pub fn for_column(&self, column: &str) -> &Resolved {
        self.columns.get(column).unwrap_or(&self.default)
    }
}

/// All policies of a peer: a mesh default, per-table defaults, per-column overrides and the
/// registry of custom policies. Register custom policies before naming them.
#[derive(Clone, Debug)]
pub struct PolicySet {
    /// For tables without their own default.
    default: Resolved,
    /// Per-table configuration.
    tables: BTreeMap<TableName, TablePolicies>,
    /// Custom policies by name.
    custom: BTreeMap<String, Arc<dyn MergePolicy>>,
}

impl Default for PolicySet {
    /// Column-level LWW everywhere (design: "per column where the engine gives deltas").
    fn default() -> Self {
        PolicySet {
            default: PolicyKind::LwwColumn.into(),
            tables: BTreeMap::new(),
            custom: BTreeMap::new(),
        }
    }
}

impl PolicySet {
    /// A set whose mesh-wide default is `default` (a built-in or registered name).
    pub fn new(default: &str) -> Result<Self, PolicyError> {
        let mut set = PolicySet::default();
        set.default = set.resolve(default)?;
        Ok(set)
    }

    /// Sets the mesh-wide default (after registering any custom policy it names).
    pub fn set_default(&mut self, spec: &str) -> Result<(), PolicyError> {
        self.default = self.resolve(spec)?;
        Ok(())
    }

    /// Registers a custom policy under `name`, usable in every later spec.
    pub fn register_custom(
        &mut self,
        name: impl Into<String>,
        policy: Arc<dyn MergePolicy>,
    ) -> Result<(), PolicyError> {
        let name = name.into();
        if name.trim().is_empty() || BUILTIN_NAMES.contains(&name.as_str()) {
            return Err(PolicyError::ReservedName(name));
        }
        self.custom.insert(name, policy);
        Ok(())
    }

    /// Resolves a spec: a built-in, else a registered custom policy.
    pub fn resolve(&self, spec: &str) -> Result<Resolved, PolicyError> {
        match spec.parse::<PolicyKind>() {
            Ok(kind) => Ok(kind.into()),
            Err(PolicyError::Unknown { .. }) => match self.custom.get(spec.trim()) {
                Some(p) => Ok(Resolved {
                    policy: Arc::clone(p),
                    label: spec.trim().to_owned(),
                    row_level: false,
                }),
                None => Err(PolicyError::Unknown {
                    name: spec.trim().to_owned(),
                    custom: if self.custom.is_empty() {
                        "none registered".into()
                    } else {
                        self.custom.keys().cloned().collect::<Vec<_>>().join(", ")
                    },
                }),
            },
            Err(e) => Err(e),
        }
    }

    /// Sets a table's default policy; its column overrides stay.
    pub fn set_table(&mut self, table: &TableName, spec: &str) -> Result<(), PolicyError> {
        let resolved = self.resolve(spec)?;
        self.tables
            .entry(table.clone())
            .and_modify(|t| t.default = resolved.clone())
            .or_insert_with(|| TablePolicies::new(resolved));
        Ok(())
    }

    /// Sets one column's policy.
    pub fn set_column(
        &mut self,
        table: &TableName,
        column: &str,
        spec: &str,
    ) -> Result<(), PolicyError> {
        let resolved = self.resolve(spec)?;
        let default = self.default.clone();
        self.tables
            .entry(table.clone())
            .or_insert_with(|| TablePolicies::new(default))
            .columns
            .insert(column.to_owned(), resolved);
        Ok(())
    }

    /// Every choice of the set as one line: the default, then per table its default and
    /// column overrides (names in order), e.g.
    /// `default=lww-column; public.items=lww-column {n=counter}`.
    pub fn describe(&self) -> String {
        let mut out = format!("default={}", self.default.label);
        for (table, t) in &self.tables {
            out.push_str(&format!("; {table}={}", t.default.label));
            if !t.columns.is_empty() {
                let columns: Vec<String> = t
                    .columns
                    .iter()
                    .map(|(c, r)| format!("{c}={}", r.label))
                    .collect();
                out.push_str(&format!(" {{{}}}", columns.join(", ")));
            }
        }
        out
    }

    /// A short stable digest of [`PolicySet::describe`] (16 hex digits, FNV-1a): peers whose
    /// policies differ merge the same changes differently and never converge, so capture
    /// stamps it on every batch and apply compares.
    pub fn fingerprint(&self) -> String {
        fingerprint_of(&self.describe())
    }

    /// The policies of a table (the mesh default if it has none of its own).
    pub fn table(&self, table: &TableName) -> TablePolicies {
        self.tables
            .get(table)
            .cloned()
            .unwrap_or_else(|| TablePolicies::new(self.default.clone()))
    }
}

/// The fingerprint of a description of merge settings: FNV-1a, 16 hex digits.
pub fn fingerprint_of(describe: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in describe.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}")
}
