//! The leakage gate: near-duplicates and holdout groups recomputed from scratch, in memory,
//! compared with the stored clusters and splits.

use std::collections::{BTreeMap, BTreeSet};
use std::rc::Rc;

use serde::Serialize;

use super::EXAMPLES;
use crate::error::Result;
use crate::fingerprint::{Hash128, Hash128Map, Shingles};
use crate::neardup::{all_pairs, rows_in_pairs, Policy, Split, UnionFind};
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
    /// In a shard of a sharded deployment: the imported assignment table checked against the
    /// recomputation (absent when none was imported).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub global: Option<GlobalCheck>,
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

/// The imported global assignments against this shard's own clusters: every cluster the
/// shard recomputes must lie in one global cluster (or wholly outside the table).
#[derive(Debug, Clone, Serialize)]
pub struct GlobalCheck {
    pub shard: String,
    /// The table's content digest.
    pub assignments: String,
    /// Rows of this shard the table assigns.
    pub rows: u64,
    /// This shard's clusters that the table splits (over two global clusters, or partly
    /// outside it): a table made from other signatures than this state.
    pub conflicts: u64,
    pub conflict_examples: Vec<String>,
    /// Whether the shard changed since the signatures the table was made from (new rows are
    /// then decided by the shard alone until the job runs again).
    pub stale: bool,
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
    // Candidate pairs: rows sharing a permuted prefix, within the Hamming distance, in the
    // order of their hashes.
    let fingerprints = view.fingerprints(policy)?;
    let pairs = all_pairs(&fingerprints, policy);
    // The bound's summary of every row in a pair, made on every core (decompressing and
    // shingling the texts is most of this gate); full shingle sets are made only for the pairs
    // the bound lets through, so memory holds 68 bytes per row, not every row's set.
    let (needed, slot) = rows_in_pairs(fingerprints.len(), &pairs);
    let needed: Vec<Hash128> = needed.iter().map(|&i| fingerprints[i as usize].0).collect();
    let summaries = view.shingle_summaries(&needed)?;
    drop(needed);
    let mut shingles: Hash128Map<Rc<Shingles>> = Hash128Map::default();
    let mut load = |h: Hash128| -> Result<Rc<Shingles>> {
        if let Some(s) = shingles.get(&h) {
            return Ok(s.clone());
        }
        let s = Rc::new(view.shingles(h)?);
        shingles.insert(h, s.clone());
        Ok(s)
    };
    let mut near_duplicate_pairs = 0u64;
    let mut cross_split_pairs = 0u64;
    let mut cross_split_examples = Vec::new();
    for &(ia, ib, d) in &pairs {
        // The summaries' bound first: it rules out nearly every pair from two array reads.
        let (sa, sb) = (
            &summaries[slot[ia as usize] as usize],
            &summaries[slot[ib as usize] as usize],
        );
        if !policy.may_judge(d, sa, sb) {
            continue;
        }
        let (a, b) = (fingerprints[ia as usize].0, fingerprints[ib as usize].0);
        let split_a = stored.get(&a).map(|x| x.split);
        let split_b = stored.get(&b).map(|x| x.split);
        // A pair needs its texts checked only when the answer can matter.
        if sets.find(a) == sets.find(b) && split_a == split_b {
            continue;
        }
        let (shingles_a, shingles_b) = (load(a)?, load(b)?);
        let Some(sim) = policy.judge(d, &shingles_a, &shingles_b) else {
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
    let globals = view.global_assignments()?;
    let global = match view.global_info()? {
        Some(info) => Some(global_check(view, &info, &globals, &rows, &mut sets)?),
        None => None,
    };
    let mut disagreements = 0u64;
    let mut disagreement_examples = Vec::new();
    for &h in &rows {
        let root = sets.find(h);
        let (_, holdout) = components[&root];
        // An imported global assignment decides the row's cluster and split.
        let (root, expected) = match globals.get(&h) {
            Some(g) => (g.cluster, policy.split_of(g.cluster, g.holdout)),
            None => (root, policy.split_of(root, holdout)),
        };
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
        global,
        near_duplicate_pairs,
        clusters: multi.len() as u64,
        rows_in_clusters: multi.iter().map(|c| c.0).sum(),
        holdout_groups: groups.len() as u64,
        candidate_pairs: pairs.len() as u64,
        cluster_sizes,
    })
}

/// Check the imported table against the recomputed clusters (`sets`).
fn global_check(
    view: &ReadView,
    info: &crate::store::GlobalInfo,
    globals: &BTreeMap<Hash128, crate::store::GlobalAssignment>,
    rows: &[Hash128],
    sets: &mut UnionFind,
) -> Result<GlobalCheck> {
    // Per recomputed cluster, the global clusters of its rows (None: not in the table).
    let mut seen: BTreeMap<Hash128, BTreeSet<Option<Hash128>>> = BTreeMap::new();
    for &h in rows {
        seen.entry(sets.find(h))
            .or_default()
            .insert(globals.get(&h).map(|g| g.cluster));
    }
    let conflicted: Vec<Hash128> = seen
        .iter()
        .filter(|(_, g)| g.len() > 1)
        .map(|(root, _)| *root)
        .collect();
    let stale = info.shards.get(&info.shard) != Some(&view.local_state_digest()?);
    Ok(GlobalCheck {
        shard: info.shard.clone(),
        assignments: info.digest.clone(),
        rows: rows.iter().filter(|h| globals.contains_key(h)).count() as u64,
        conflicts: conflicted.len() as u64,
        conflict_examples: conflicted
            .iter()
            .take(EXAMPLES)
            .map(|c| {
                format!(
                    "the cluster of {c} spans {} global clusters (or rows outside the table)",
                    seen[c].len()
                )
            })
            .collect(),
        stale,
    })
}
