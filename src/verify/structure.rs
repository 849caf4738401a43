//! The structure gate (conversations a trainer cannot use, per family) and the holdout warnings.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use super::EXAMPLES;
use crate::error::Result;
use crate::fingerprint::Hash128;
use crate::neardup::Policy;
use crate::pii::PiiStatus;
use crate::store::{ObjectStatus, ReadView};

/// The structure gate: per primary family, the unique conversation rows (PII-excluded rows and
/// plain text left out) that fail a structure check ([`crate::structure`]).
#[derive(Debug, Clone, Serialize)]
pub struct StructureGate {
    pub passed: bool,
    /// `[structure] max_flawed_fraction` in idx.toml.
    pub max_flawed_fraction: f64,
    /// Families with conversation rows, by name.
    pub families: Vec<FamilyStructure>,
}

#[derive(Debug, Clone, Serialize)]
pub struct FamilyStructure {
    pub family: String,
    pub passed: bool,
    /// Unique conversation rows.
    pub rows: u64,
    /// Of them, failing a check (held back from the export).
    pub flawed: u64,
    /// Rows per failed check.
    pub checks: BTreeMap<&'static str, u64>,
    /// Content hashes of the first flawed rows (`idx query row HASH`).
    pub examples: Vec<String>,
}

pub(super) fn structure(view: &ReadView, max_flawed_fraction: f64) -> Result<StructureGate> {
    let mut by_family: BTreeMap<String, FamilyStructure> = BTreeMap::new();
    view.for_each_row(|hash, row| {
        if row.pii.status == PiiStatus::Excluded || row.kind == crate::model::RecordKind::Text {
            return Ok(());
        }
        let f = by_family
            .entry(row.primary_family.clone())
            .or_insert_with(|| FamilyStructure {
                family: row.primary_family.clone(),
                passed: true,
                rows: 0,
                flawed: 0,
                checks: BTreeMap::new(),
                examples: Vec::new(),
            });
        f.rows += 1;
        if !row.flaws.is_empty() {
            f.flawed += 1;
            for check in row.flaws.names() {
                *f.checks.entry(check).or_default() += 1;
            }
            if f.examples.len() < EXAMPLES {
                f.examples.push(hash.to_hex());
            }
        }
        Ok(())
    })?;
    let mut families: Vec<FamilyStructure> = by_family.into_values().collect();
    for f in &mut families {
        f.passed = f.flawed as f64 <= max_flawed_fraction * f.rows as f64;
    }
    Ok(StructureGate {
        passed: families.iter().all(|f| f.passed),
        max_flawed_fraction,
        families,
    })
}

/// Holdout families whose rows are all one holdout group: every row of such a family goes to
/// one split (typically a single file of many sessions with no `session` declared).
pub fn holdout_warnings(view: &ReadView, policy: &Policy) -> Result<Vec<String>> {
    // Per holdout family: (declared sessions, distinct undivided groups, first key).
    let mut groups: BTreeMap<&String, (u64, BTreeSet<Hash128>, String)> = BTreeMap::new();
    let objects = view.objects()?;
    for o in &objects {
        if o.status != ObjectStatus::Indexed || o.rows == 0 {
            continue;
        }
        for f in o
            .families
            .iter()
            .filter(|f| policy.holdout_families.contains(*f))
        {
            let entry = groups
                .entry(f)
                .or_insert_with(|| (0, BTreeSet::new(), o.key.clone()));
            if o.sessions > 0 {
                entry.0 += o.sessions;
            } else if let Some(g) = policy.group_of(&o.source, &o.key, &o.families, None) {
                entry.1.insert(g);
            }
        }
    }
    Ok(groups
        .into_iter()
        .filter(|(_, (sessions, undivided, _))| sessions + undivided.len() as u64 == 1)
        .map(|(family, (_, _, key))| {
            format!(
                "holdout family `{family}` is a single holdout group ({key}): all its rows go to one split. \
                 If that object holds many sessions, declare a `session` field (or session = \"$record\") \
                 in a sources.toml mapping for it"
            )
        })
        .collect())
}
