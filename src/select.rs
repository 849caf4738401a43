//! Which rows a dataset is made of: every indexed row that is not PII-excluded and passes the
//! structure checks ([`crate::structure`]; the rows held back are counted per family and check),
//! exact duplicates
//! collapsed by content hash and, unless asked otherwise, each near-duplicate group kept through
//! its longest row; with each row's split, phase and families. Export and the curriculum plan
//! read the same selection.

use std::collections::{BTreeMap, BTreeSet};

use crate::error::Result;
use crate::fingerprint::{Hash128, Hash128Map};
use crate::keep::{Keep, KeepPolicy, Resolver};
use crate::model::RecordKind;
use crate::neardup::{Policy, Split, UnionFind};
use crate::pii::PiiStatus;
use crate::store::ReadView;

/// A row that goes out, with what the layout and the curriculum need to know of it.
#[derive(Debug, Clone)]
pub struct SelectedRow {
    pub hash: Hash128,
    pub split: Split,
    pub primary_family: String,
    /// Every family tag of the row.
    pub families: Vec<String>,
    pub tokens: u64,
    pub kind: RecordKind,
    pub pii: PiiStatus,
    /// The primary place (key, line) chosen by `[objects]` when that policy is active; `None`:
    /// the first place in (source, key, line) order.
    pub primary_place: Option<(String, u64)>,
}

/// The exportable rows of a snapshot.
#[derive(Debug, Clone, Default)]
pub struct Selection {
    /// Sorted by content hash.
    pub rows: Vec<SelectedRow>,
    /// Representative → the near-duplicates it stands for (sorted).
    pub collapsed: BTreeMap<Hash128, Vec<Hash128>>,
    /// Rows left out because, by the imported global assignments, another shard exports them
    /// or the row standing for their near-duplicate group.
    pub elsewhere: u64,
    /// Unique rows left out because the PII policy excluded them.
    pub pii_excluded: u64,
    /// Unique rows (not PII-excluded) held back by the structure checks, by primary family and
    /// check (a row failing two checks counts under both).
    pub held_back: BTreeMap<String, BTreeMap<&'static str, u64>>,
    /// Unique rows held back by the structure checks.
    pub structure_held_back: u64,
    /// Unique rows withheld by the caller (decontamination), with the near-duplicates they
    /// would have stood for.
    pub withheld: Vec<Hash128>,
}

impl Selection {
    pub fn get(&self, h: Hash128) -> Option<&SelectedRow> {
        self.rows
            .binary_search_by_key(&h, |r| r.hash)
            .ok()
            .map(|i| &self.rows[i])
    }
}

/// What a row needs for choosing representatives.
pub(crate) struct Candidate {
    pub(crate) simhash: u64,
    pub(crate) words: u32,
    pub(crate) tokens: u64,
    pub(crate) excluded: bool,
    /// The training phase its kind feeds: near-duplicates collapse within a phase only.
    pub(crate) phase: &'static str,
    /// Its primary place's priority rank, key and line (for the keep policy; unset while the
    /// policy is inactive, which only compares tokens).
    pub(crate) rank: usize,
    pub(crate) place: (String, u64),
}

/// How to select.
#[derive(Debug, Clone, Copy)]
pub struct SelectOptions<'a> {
    /// One row per near-duplicate group.
    pub collapse: bool,
    /// Rows that never go out and never represent a group (contaminated ones).
    pub withheld: &'a BTreeSet<Hash128>,
    /// Redundant objects, source priority and the keep policy (`[objects]`).
    pub keep: &'a Keep,
}

/// The member of a near-duplicate group that stands for it under `policy`; every tie broken
/// by the smallest content hash, so the choice is a function of the group.
fn representative(
    group: &[Hash128],
    candidates: &Hash128Map<Candidate>,
    policy: KeepPolicy,
) -> Hash128 {
    let key = |h: &Hash128| {
        let c = &candidates[h];
        match policy {
            KeepPolicy::Longest => (0, String::new(), 0, std::cmp::Reverse(c.tokens), *h),
            KeepPolicy::SourcePriority => {
                (c.rank, String::new(), 0, std::cmp::Reverse(c.tokens), *h)
            }
            KeepPolicy::EarliestKey => (0, c.place.0.clone(), c.place.1, std::cmp::Reverse(0), *h),
        }
    };
    *group
        .iter()
        .min_by_key(|h| key(h))
        .expect("groups are not empty")
}

/// Choose the rows of a snapshot: every unique, non-excluded row, and with `collapse`, one per
/// group of near-duplicates (connected by confirmed near-duplicate pairs of one training phase
/// within a stored cluster): the one the keep policy names (by default the one with the most
/// tokens, ties to the smallest hash). Rows in `withheld` (contaminated ones) never go out and
/// never represent a group. Each row's primary family and tags follow its placement
/// ([`crate::keep`]).
///
/// In a shard of a sharded deployment, an imported global assignment table (`crate::scale`)
/// decides for the rows it holds: their split is their global cluster's, and a row goes out
/// only when the table says this shard's copy stands for its group.
pub fn select(view: &ReadView, policy: &Policy, options: &SelectOptions<'_>) -> Result<Selection> {
    select_with(view, policy, options, true)
}

/// [`select`] as this index alone decides, whatever global table was imported: what a shard's
/// signatures describe.
pub fn select_local(
    view: &ReadView,
    policy: &Policy,
    options: &SelectOptions<'_>,
) -> Result<Selection> {
    select_with(view, policy, options, false)
}

fn select_with(
    view: &ReadView,
    policy: &Policy,
    options: &SelectOptions<'_>,
    global: bool,
) -> Result<Selection> {
    let SelectOptions {
        collapse,
        withheld,
        keep,
    } = *options;
    let mut resolver = Resolver::new(view, keep);
    let assignments = view.local_assignments(policy)?;
    let mut rows = Vec::new();
    let mut candidates: Hash128Map<Candidate> = Hash128Map::default();
    let mut pii_excluded = 0;
    let mut held_back: BTreeMap<String, BTreeMap<&'static str, u64>> = BTreeMap::new();
    let mut structure_held_back = 0;
    let mut withheld_rows = Vec::new();
    view.for_each_row(|h, row| {
        let pii_out = row.pii.status == PiiStatus::Excluded;
        let contaminated = withheld.contains(&h);
        // A held-back row never represents its near-duplicates.
        let excluded = pii_out || !row.flaws.is_empty() || contaminated;
        let placement = resolver.placement(h, &row)?;
        candidates.insert(
            h,
            Candidate {
                simhash: row.simhash,
                words: row.words,
                tokens: row.tokens,
                excluded,
                phase: row.kind.phase(),
                rank: placement.rank,
                place: placement.place.clone().unwrap_or_default(),
            },
        );
        if pii_out {
            pii_excluded += 1;
            return Ok(());
        }
        if contaminated {
            withheld_rows.push(h);
            return Ok(());
        }
        if excluded {
            structure_held_back += 1;
            let family = held_back
                .entry(placement.primary_family.clone())
                .or_default();
            for check in row.flaws.names() {
                *family.entry(check).or_default() += 1;
            }
            return Ok(());
        }
        rows.push(SelectedRow {
            hash: h,
            split: assignments.get(&h).map_or(Split::Train, |a| a.split),
            primary_place: placement.place,
            primary_family: placement.primary_family,
            families: placement.families,
            tokens: row.tokens,
            kind: row.kind,
            pii: row.pii.status,
        });
        Ok(())
    })?;
    let mut collapsed: BTreeMap<Hash128, Vec<Hash128>> = BTreeMap::new();
    if collapse {
        let mut clusters: BTreeMap<Hash128, Vec<Hash128>> = BTreeMap::new();
        for (h, a) in view.cluster_entries()? {
            clusters.entry(a.cluster).or_default().push(h);
        }
        let mut shingles: Hash128Map<crate::fingerprint::Shingles> = Hash128Map::default();
        for members in clusters.values() {
            let usable: Vec<Hash128> = members
                .iter()
                .copied()
                .filter(|h| {
                    candidates
                        .get(h)
                        .is_some_and(|c| !c.excluded && policy.fingerprintable(c.words))
                })
                .collect();
            let mut sets = UnionFind::default();
            for (i, &a) in usable.iter().enumerate() {
                for &b in &usable[i + 1..] {
                    let d = (candidates[&a].simhash ^ candidates[&b].simhash).count_ones();
                    // A preference pair and the conversation it was made from (or the same chat
                    // in a DPO and an SFT file) train different phases: neither stands for the
                    // other. Their cluster still gives them one split.
                    if d > policy.hamming
                        || candidates[&a].phase != candidates[&b].phase
                        || sets.find(a) == sets.find(b)
                    {
                        continue;
                    }
                    for h in [a, b] {
                        if let std::collections::hash_map::Entry::Vacant(e) = shingles.entry(h) {
                            e.insert(view.shingles(h)?);
                        }
                    }
                    if policy.judge(d, &shingles[&a], &shingles[&b]).is_some() {
                        sets.union(a, b);
                    }
                }
            }
            let mut groups: BTreeMap<Hash128, Vec<Hash128>> = BTreeMap::new();
            for h in sets.members() {
                groups.entry(sets.find(h)).or_default().push(h);
            }
            for group in groups.into_values().filter(|g| g.len() > 1) {
                let rep = representative(&group, &candidates, keep.policy);
                let mut others: Vec<Hash128> = group.into_iter().filter(|h| *h != rep).collect();
                others.sort();
                collapsed.insert(rep, others);
            }
        }
    }
    let mut dropped: BTreeSet<Hash128> = collapsed.values().flatten().copied().collect();
    let mut elsewhere = 0;
    if global {
        elsewhere = apply_global(
            view,
            policy,
            collapse,
            &mut rows,
            &mut collapsed,
            &mut dropped,
        )?;
    }
    rows.retain(|r| !dropped.contains(&r.hash));
    Ok(Selection {
        rows,
        elsewhere,
        collapsed,
        pii_excluded,
        held_back,
        structure_held_back,
        withheld: withheld_rows,
    })
}

/// Let the imported global assignments decide for the rows they hold: the split of their
/// global cluster, and whether they go out (their group's representative, this shard's copy).
/// Returns how many rows another shard stands for.
fn apply_global(
    view: &ReadView,
    policy: &Policy,
    collapse: bool,
    rows: &mut [SelectedRow],
    collapsed: &mut BTreeMap<Hash128, Vec<Hash128>>,
    dropped: &mut BTreeSet<Hash128>,
) -> Result<u64> {
    let globals = view.global_assignments()?;
    if globals.is_empty() {
        return Ok(0);
    }
    // Local groups lie within one cluster, so a group is either wholly in the table or not.
    collapsed.retain(|rep, _| !globals.contains_key(rep));
    let mut elsewhere = 0;
    // A copy goes out when this shard owns it and, collapsing, it stands for its group.
    let exported = |h: Hash128, g: &crate::store::GlobalAssignment| {
        g.owner && (!collapse || g.representative == h)
    };
    let exported_here: BTreeSet<Hash128> = rows
        .iter()
        .filter(|r| globals.get(&r.hash).is_some_and(|g| exported(r.hash, g)))
        .map(|r| r.hash)
        .collect();
    for r in rows.iter_mut() {
        let Some(g) = globals.get(&r.hash) else {
            continue;
        };
        r.split = policy.split_of(g.cluster, g.holdout);
        if exported(r.hash, g) {
            dropped.remove(&r.hash);
            continue;
        }
        dropped.insert(r.hash);
        if collapse && g.representative != r.hash && exported_here.contains(&g.representative) {
            collapsed.entry(g.representative).or_default().push(r.hash);
        } else {
            elsewhere += 1;
        }
    }
    for others in collapsed.values_mut() {
        others.sort();
    }
    Ok(elsewhere)
}
