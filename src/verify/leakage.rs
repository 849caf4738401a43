//! The leakage gate: near-duplicates and holdout groups recomputed from scratch, in memory,
//! compared with the stored clusters and splits.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use super::EXAMPLES;
use crate::error::Result;
use crate::fingerprint::Hash128;
use crate::neardup::{candidate_pairs, Policy, Split, UnionFind};
use crate::store::{Assignment, ObjectStatus, ReadView};

#[derive(Debug, Clone, Serialize)]
pub struct LeakageGate {
    pub passed: bool,
    /// Near-duplicate pairs whose rows sit in different splits.
    pub cross_split_pairs: u64,
    pub cross_split_examples: Vec<CrossSplitPair>,
    /// Rows whose stored cluster or split differs from the recomputation.
    pub disagreements: u64,
    pub disagreement_examples: Vec<Disagreement>,
    /// Whether the index was built with the current settings.
    pub settings_current: bool,
    /// Recomputed figures.
    pub near_duplicate_pairs: u64,
    pub clusters: u64,
    pub rows_in_clusters: u64,
    pub holdout_groups: u64,
    pub candidate_pairs: u64,
    /// Clusters of 2+ rows by size (size → clusters).
    pub cluster_sizes: BTreeMap<u64, u64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct CrossSplitPair {
    pub a: String,
    pub b: String,
    pub split_a: Split,
    pub split_b: Split,
    pub hamming: u32,
    pub similarity: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Disagreement {
    pub content_hash: String,
    pub stored_cluster: String,
    pub stored_split: Split,
    pub expected_cluster: String,
    pub expected_split: Split,
}

pub(super) fn leakage(
    view: &ReadView,
    policy: &Policy,
    stored: &BTreeMap<Hash128, Assignment>,
) -> Result<LeakageGate> {
    let mut sets = UnionFind::default();
    // Holdout groups, from the objects and their places.
    let mut groups: BTreeMap<Hash128, BTreeSet<Hash128>> = BTreeMap::new();
    for o in view.objects()? {
        if o.status != ObjectStatus::Indexed {
            continue;
        }
        let id = crate::store::keys::object_id(&o.source, &o.key);
        let derived = o.source == crate::source::derived::DERIVED_SOURCE;
        if !policy.holds_out(&o.families) && !derived {
            continue;
        }
        for (_, _, h, meta) in view.object_places(&id)? {
            if let Some(g) = policy.group_of(&o.source, &o.key, &o.families, meta.session) {
                groups.entry(g).or_default().insert(h);
            }
            // A derived row is linked to the rows it was made from (not a holdout group).
            for input in crate::parse::derived::inputs_of(&meta) {
                if stored.contains_key(&input) {
                    sets.union(h, input);
                }
            }
        }
    }
    let mut grouped: BTreeSet<Hash128> = BTreeSet::new();
    for members in groups.values() {
        let mut it = members.iter();
        if let Some(&first) = it.next() {
            grouped.insert(first);
            for &m in it {
                grouped.insert(m);
                sets.union(first, m);
            }
        }
    }
    // Candidate pairs: rows sharing a permuted prefix, within the Hamming distance.
    let pairs = candidate_pairs(&view.fingerprints(policy)?, policy);
    let mut shingles: crate::fingerprint::Hash128Map<std::rc::Rc<Vec<u64>>> = Default::default();
    let mut load = |h: Hash128| -> Result<std::rc::Rc<Vec<u64>>> {
        if let Some(s) = shingles.get(&h) {
            return Ok(s.clone());
        }
        let s = std::rc::Rc::new(view.shingles(h)?);
        shingles.insert(h, s.clone());
        Ok(s)
    };
    let mut near_duplicate_pairs = 0u64;
    let mut cross_split_pairs = 0u64;
    let mut cross_split_examples = Vec::new();
    for (&(a, b), &d) in &pairs {
        let split_a = stored.get(&a).map(|x| x.split);
        let split_b = stored.get(&b).map(|x| x.split);
        // A pair needs its texts checked only when the answer can matter.
        if sets.find(a) == sets.find(b) && split_a == split_b {
            continue;
        }
        let Some(sim) = policy.judge(d, &load(a)?, &load(b)?) else {
            continue;
        };
        near_duplicate_pairs += 1;
        sets.union(a, b);
        if let (Some(sa), Some(sb)) = (split_a, split_b) {
            if sa != sb {
                cross_split_pairs += 1;
                if cross_split_examples.len() < EXAMPLES {
                    cross_split_examples.push(CrossSplitPair {
                        a: a.to_hex(),
                        b: b.to_hex(),
                        split_a: sa,
                        split_b: sb,
                        hamming: d,
                        similarity: sim,
                    });
                }
            }
        }
    }
    // Compare every row with the recomputation.
    let mut components: BTreeMap<Hash128, (u64, bool)> = BTreeMap::new();
    let rows: Vec<Hash128> = stored.keys().copied().collect();
    for &h in &rows {
        let root = sets.find(h);
        let c = components.entry(root).or_default();
        c.0 += 1;
        c.1 |= grouped.contains(&h);
    }
    let mut disagreements = 0u64;
    let mut disagreement_examples = Vec::new();
    for &h in &rows {
        let root = sets.find(h);
        let (_, holdout) = components[&root];
        let expected = policy.split_of(root, holdout);
        let s = stored[&h];
        if s.cluster != root || s.split != expected {
            disagreements += 1;
            if disagreement_examples.len() < EXAMPLES {
                disagreement_examples.push(Disagreement {
                    content_hash: h.to_hex(),
                    stored_cluster: s.cluster.to_hex(),
                    stored_split: s.split,
                    expected_cluster: root.to_hex(),
                    expected_split: expected,
                });
            }
        }
    }
    let multi: Vec<&(u64, bool)> = components.values().filter(|c| c.0 > 1).collect();
    let mut cluster_sizes: BTreeMap<u64, u64> = BTreeMap::new();
    for c in &multi {
        *cluster_sizes.entry(c.0).or_default() += 1;
    }
    Ok(LeakageGate {
        passed: false,
        cross_split_pairs,
        cross_split_examples,
        disagreements,
        disagreement_examples,
        settings_current: true,
        near_duplicate_pairs,
        clusters: multi.len() as u64,
        rows_in_clusters: multi.iter().map(|c| c.0).sum(),
        holdout_groups: groups.len() as u64,
        candidate_pairs: pairs.len() as u64,
        cluster_sizes,
    })
}
