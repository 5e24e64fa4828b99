//! The merge policies of this peer, from `[merge]` in its config.
//!
//! A custom policy is a type implementing `meshsync_merge::MergePolicy`, registered in
//! [`register_custom`] and then named in the config like a built-in (see
//! `docs/merge.md` for a complete example).

use anyhow::{Context, Result};
use meshsync_config::{DEFAULT_TOMBSTONE_RETENTION_S, MergeConfig};
use meshsync_core::TableName;
use meshsync_merge::PolicySet;

/// Registers the custom policies compiled into this binary. Add yours here, e.g.
/// `set.register_custom("longest-text", Arc::new(LongestText))?;`
pub fn register_custom(set: &mut PolicySet) -> Result<()> {
    let _ = set;
    Ok(())
}

/// The policy set `[merge]` describes; an unknown policy name fails naming its field.
pub fn from_config(merge: &MergeConfig) -> Result<PolicySet> {
    let mut set = PolicySet::default();
    register_custom(&mut set)?;
    set.set_default(&merge.default).context("merge.default")?;
    for (table, t) in &merge.tables {
        let name = TableName::parse(table).with_context(|| format!("merge.tables.{table}"))?;
        if let Some(policy) = &t.policy {
            set.set_table(&name, policy)
                .with_context(|| format!("merge.tables.\"{table}\".policy"))?;
        }
        for (column, policy) in &t.columns {
            set.set_column(&name, column, policy)
                .with_context(|| format!("merge.tables.\"{table}\".columns.{column}"))?;
        }
    }
    Ok(set)
}

/// The columns of `table` merged as counters: capture sends their deltas.
pub fn counter_columns(set: &PolicySet, table: &TableName, columns: &[String]) -> Vec<String> {
    let policies = set.table(table);
    columns
        .iter()
        .filter(|c| policies.for_column(c).label == "counter")
        .cloned()
        .collect()
}

/// Compares the merge policies stamped on incoming batches with this peer's: peers whose
/// policies differ merge the same changes differently and never converge. A mismatch is
/// counted for every batch and logged once per origin and fingerprint (a rolling change of
/// `[merge]` across the mesh passes through it briefly, so changes are still applied).
pub struct PolicyCheck {
    own: String,
    describe: String,
    warned: std::sync::Mutex<std::collections::HashSet<(String, String)>>,
}

impl PolicyCheck {
    /// The check against `policies` and the tombstone retention `retention_s`, this peer's.
    /// The retention counts too: a peer that keeps tombstones for less parks old changes that
    /// the others apply. At the default it is left out of the fingerprint, which then equals
    /// that of earlier meshsync versions (no false alarm during a rolling upgrade).
    pub fn new(policies: &PolicySet, retention_s: u64) -> Self {
        let mut describe = policies.describe();
        if retention_s != DEFAULT_TOMBSTONE_RETENTION_S {
            describe.push_str(&format!("; tombstone_retention_s = {retention_s}"));
        }
        PolicyCheck {
            own: meshsync_merge::fingerprint_of(&describe),
            describe,
            warned: Default::default(),
        }
    }

    /// This peer's fingerprint, stamped on what it publishes.
    pub fn fingerprint(&self) -> &str {
        &self.own
    }

    /// This peer's policies (and retention, unless the default) in words.
    pub fn describe(&self) -> &str {
        &self.describe
    }

    /// Whether a batch from `origin` stamped `theirs` was merged under other policies (an
    /// unstamped batch, from an older meshsync, is not judged). Logs the first of each kind.
    pub fn differs(&self, origin: &str, theirs: Option<&str>) -> bool {
        let Some(theirs) = theirs.filter(|t| *t != self.own) else {
            return false;
        };
        let first = self
            .warned
            .lock()
            .map(|mut w| w.insert((origin.to_owned(), theirs.to_owned())))
            .unwrap_or(false);
        if first {
            tracing::warn!(
                origin,
                theirs,
                ours = %self.own,
                policies = %self.describe,
                "peer {origin} merges with other policies or tombstone retention than this \
                 peer: the peers will not converge; make [merge] the same in every peer's \
                 config (this peer's policies are shown; run `meshsync verify` once they match)"
            );
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use meshsync_config::TableMerge;

    use super::*;

    #[test]
    fn config_policies_reach_their_columns_and_unknown_names_fail_by_field() {
        let mut merge = MergeConfig::default();
        merge.tables.insert(
            "public.items".into(),
            TableMerge {
                policy: Some("lww".into()),
                columns: [("stock".to_owned(), "counter".to_owned())].into(),
            },
        );
        let set = from_config(&merge).unwrap();
        let items = TableName::parse("public.items").unwrap();
        assert_eq!(set.table(&items).for_column("v").label, "lww");
        let cols = ["v".to_owned(), "stock".to_owned()];
        assert_eq!(
            counter_columns(&set, &items, &cols),
            vec!["stock".to_owned()]
        );
        let other = TableName::parse("public.other").unwrap();
        assert_eq!(set.table(&other).for_column("v").label, "lww-column");

        // The retention is part of the fingerprint, except at its default.
        let plain = PolicyCheck::new(&set, DEFAULT_TOMBSTONE_RETENTION_S);
        assert_eq!(plain.fingerprint(), set.fingerprint());
        let short = PolicyCheck::new(&set, 3600);
        assert_ne!(short.fingerprint(), plain.fingerprint());
        assert!(short.differs("b", Some(plain.fingerprint())));
        assert!(!short.differs("b", Some(PolicyCheck::new(&set, 3600).fingerprint())));

        merge.default = "newest-please".into();
        let err = format!("{:#}", from_config(&merge).unwrap_err());
        assert!(err.starts_with("merge.default"), "{err}");
    }
}
