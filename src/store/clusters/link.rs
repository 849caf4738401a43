//! Finding and confirming a batch's near-duplicate pairs: the SimHash candidates of a row (its
//! probes' buckets in `simhash_buckets`, as `query near` finds them), the shingle sets
//! that confirm them (decompressed from `variants`), and the two ways a batch links its rows
//! into the union-find: a lookup per row for a small batch, one join over every fingerprint in
//! memory for a batch large against the index. What the resulting sets mean and how they are
//! written back is the parent module's.

use std::collections::BTreeSet;
use std::rc::Rc;

use redb::{ReadableTable, ReadableTableMetadata};

use crate::error::{Error, Result};
use crate::fingerprint::{fingerprint_text, Hash128, Hash128Map, Hash128Set, Shingles};
use crate::neardup::{self, IndexSets, UnionFind};
use crate::store::{buckets, codec, VariantRecord, WriteBatch};

/// Rows whose stored texts a large batch reads (and shingles on every core) at a time.
const SHINGLE_PART: usize = 8192;

/// How `link` looks for a row's neighbours.
#[derive(Clone, Copy)]
struct Link<'a> {
    /// Only candidates in this set (re-linking a broken cluster).
    within: Option<&'a Hash128Set>,
    /// Also link the members of the row's holdout groups.
    groups: bool,
}

/// Batches linking at least this many rows, and at least one row per `MEMORY_LOOKUP_SHARE` of
/// those indexed, load the SimHash tables into memory and find their candidates there, by one
/// join (`neardup::pairs_with`) instead of a lookup each: 68 redb range scans
/// per lookup cost ~100 µs, loading ~0.6 µs per indexed row (measured with the incremental
/// bench on format 4's key-per-row tables: one changed file of 100, ~1,400 rows linked against
/// 70k indexed, took 0.45 s loading and 0.54 s without), so loading pays from about one linked
/// row per 150 indexed. Packed buckets made both cheaper and left that bench where it was. A
/// small change to a very large index does not pay for the whole index.
const MEMORY_LOOKUP_ROWS: u64 = 256;
const MEMORY_LOOKUP_SHARE: u64 = 128;

/// The shingle set of a row's representative text (every spelling gives the same set).
pub(in crate::store) fn shingles_of(
    variants: &impl ReadableTable<&'static [u8], &'static [u8]>,
    row: Hash128,
) -> Result<Shingles> {
    shingles_of_stored(stored_text(variants, row)?.value())
}

/// A row's representative `variants` value; an error when the row has no stored text.
fn stored_text<'a>(
    variants: &'a impl ReadableTable<&'static [u8], &'static [u8]>,
    row: Hash128,
) -> Result<redb::AccessGuard<'a, &'static [u8]>> {
    crate::store::first_variant(variants, row)?.ok_or_else(|| Error::Codec {
        table: "variants",
        message: format!("row {row} has no stored text"),
    })
}

/// The shingle set of a stored `variants` value.
fn shingles_of_stored(value: &[u8]) -> Result<Shingles> {
    let variant: VariantRecord = codec::decode_variant(value)?;
    Ok(Shingles::of_text(&fingerprint_text(&variant.conversation)))
}

impl WriteBatch<'_> {
    /// Link the batch's rows into `sets`: the remaining members of `broken` clusters among
    /// themselves (each seeded alone: its stored cluster is what is being recomputed), then the
    /// `created` rows among everything. A batch large against the index does it in memory by
    /// one join ([`Self::link_in_memory`]), a small one by a lookup per row.
    pub(super) fn link_batch(
        &mut self,
        sets: &mut UnionFind,
        created: &[(Hash128, u64)],
        broken: &BTreeSet<Hash128>,
    ) -> Result<()> {
        let ordered_broken: Vec<Hash128> = broken.iter().copied().collect();
        let broken: Hash128Set = broken.iter().copied().collect();
        for &row in &ordered_broken {
            sets.find(row);
        }
        let linking = (created.len() + ordered_broken.len()) as u64;
        // Rows, this batch's included (short ones too: counting fingerprints would read them).
        let indexed = self.rows.len()?;
        if linking >= MEMORY_LOOKUP_ROWS && linking * MEMORY_LOOKUP_SHARE >= indexed {
            return self.link_in_memory(sets, created, &ordered_broken, &broken);
        }
        // Broken members first, among themselves; then the created rows, among everything
        // (a broken member has not met a created row yet: each pass has its own `linked`).
        let mut texts: Hash128Map<Rc<Shingles>> = Hash128Map::default();
        let mut linked = Hash128Set::default();
        for &row in &ordered_broken {
            let simhash = self.simhash_of_row(row)?;
            let how = Link {
                within: Some(&broken),
                groups: true,
            };
            self.link(sets, &mut texts, &mut linked, row, simhash, how)?;
        }
        linked.clear();
        // Group links of created rows are made by the caller, once they all joined their groups.
        let how = Link {
            within: None,
            groups: false,
        };
        for &(row, simhash) in created {
            self.link(sets, &mut texts, &mut linked, row, Some(simhash), how)?;
        }
        Ok(())
    }

    /// Link `row` to its confirmed SimHash candidates (restricted to `within` when given) and to
    /// the members of its holdout groups. Candidates already in the same set are not checked,
    /// nor those in `linked`: the rows this pass linked before, which met `row` among their own
    /// candidates (the candidate relation is symmetric), so each pair is judged once. `row`
    /// joins `linked`.
    fn link(
        &mut self,
        sets: &mut UnionFind,
        texts: &mut Hash128Map<Rc<Shingles>>,
        linked: &mut Hash128Set,
        row: Hash128,
        simhash: Option<u64>,
        how: Link<'_>,
    ) -> Result<()> {
        let Link { within, groups } = how;
        self.admit(sets, row)?;
        if let Some(simhash) = simhash {
            let found = buckets::candidates(
                &self.simhash_buckets,
                &self.tables,
                self.policy.hamming,
                row,
                simhash,
            )?;
            let mut ordered: Vec<(u32, Hash128)> = found.into_iter().map(|(h, d)| (d, h)).collect();
            ordered.sort_unstable();
            for (distance, other) in ordered {
                if within.is_some_and(|w| !w.contains(&other)) || linked.contains(&other) {
                    continue;
                }
                self.admit(sets, other)?;
                if sets.find(row) == sets.find(other) {
                    continue;
                }
                let a = self.cached_shingles(texts, row)?;
                let b = self.cached_shingles(texts, other)?;
                if self.policy.judge(distance, &a, &b).is_some() {
                    sets.union(row, other);
                }
            }
            linked.insert(row);
        }
        if groups {
            self.link_groups(sets, row)?;
        }
        Ok(())
    }

    /// Link `row` to the members of its holdout and link groups.
    pub(super) fn link_groups(&mut self, sets: &mut UnionFind, row: Hash128) -> Result<()> {
        self.admit(sets, row)?;
        for group in Self::firsts(&self.row_groups, row)? {
            for m in Self::firsts(&self.group_rows, group)? {
                // A derived row's input may be gone until the next derive run drops the link.
                if m != row && !self.exists(m)? {
                    continue;
                }
                self.admit(sets, m)?;
                sets.union(row, m);
            }
        }
        Ok(())
    }

    fn cached_shingles(
        &self,
        cache: &mut Hash128Map<Rc<Shingles>>,
        row: Hash128,
    ) -> Result<Rc<Shingles>> {
        if let Some(s) = cache.get(&row).or_else(|| self.clusters.held.get(&row)) {
            return Ok(s.clone());
        }
        let s = Rc::new(shingles_of(&self.variants, row)?);
        cache.insert(row, s.clone());
        Ok(s)
    }

    fn simhash_of_row(&self, row: Hash128) -> Result<Option<u64>> {
        let Some(v) = self.rows.get(row.to_bytes().as_slice())? else {
            return Ok(None);
        };
        let (simhash, words): (u64, u32) = codec::decode_prefix("rows", v.value())?;
        Ok(self.policy.fingerprintable(words).then_some(simhash))
    }

    /// Link a large batch's rows (`created`, and the members of broken clusters) by one join
    /// over every fingerprint (`neardup::pairs_with`) instead of a lookup per row. A pair counts
    /// when one of its rows was created, or both are broken members (a broken member's other
    /// near-duplicates were in its cluster). The join drops, on its own threads, the pairs of
    /// two rows whose held shingles' bucket counts rule them out (most candidates of a crowded
    /// corpus); the stored texts of the other rows of the remaining pairs are read and shingled
    /// on every core; pairs are then judged closest first, each once, skipping those the
    /// union-find has joined already.
    fn link_in_memory(
        &mut self,
        sets: &mut UnionFind,
        created: &[(Hash128, u64)],
        broken_rows: &[Hash128],
        broken: &Hash128Set,
    ) -> Result<()> {
        // Every fingerprint, this batch's changes included.
        let all = buckets::all_fingerprints(&self.simhash_buckets)?;
        let created: Hash128Set = created.iter().map(|&(row, _)| row).collect();
        // By index into `all`, for the join's threads: whether a row was created, is a broken
        // member, and its held shingles.
        const CREATED: u8 = 1;
        const BROKEN: u8 = 2;
        let mut role = vec![0u8; all.len()];
        let mut held: Vec<Option<&Shingles>> = vec![None; all.len()];
        for (i, (h, _)) in all.iter().enumerate() {
            if created.contains(h) {
                role[i] |= CREATED;
            }
            if broken.contains(h) {
                role[i] |= BROKEN;
            }
            held[i] = self.clusters.held.get(h).map(|s| &**s);
        }
        let policy = &self.policy;
        let pairs = neardup::pairs_with(
            policy,
            &all,
            |i| role[i as usize] != 0,
            |a, b, distance| {
                let (ra, rb) = (role[a as usize], role[b as usize]);
                let counts = (ra | rb) & CREATED != 0 || ra & rb & BROKEN != 0;
                counts
                    && match (held[a as usize], held[b as usize]) {
                        (Some(sa), Some(sb)) => policy.may_judge_sets(distance, sa, sb),
                        _ => true,
                    }
            },
        );
        drop(held);
        for &row in broken_rows {
            // Their groups; their pairs are among `pairs`.
            self.link_groups(sets, row)?;
        }
        let (shingles, slot) = self.shingles_of_pair_rows(&all, &pairs)?;
        // Most pairs of a crowded corpus join rows this pass has joined already: the index
        // sets answer that from an array; each row is admitted once.
        let mut joined = IndexSets::new(all.len());
        let mut admitted = vec![false; all.len()];
        for (a, b, distance) in pairs {
            if joined.joined(a, b) {
                continue;
            }
            let (ra, rb) = (all[a as usize].0, all[b as usize].0);
            for (i, row) in [(a, ra), (b, rb)] {
                if !std::mem::replace(&mut admitted[i as usize], true) {
                    self.admit(sets, row)?;
                }
            }
            if sets.find(ra) == sets.find(rb) {
                continue;
            }
            let (sa, sb) = (
                &shingles[slot[a as usize] as usize],
                &shingles[slot[b as usize] as usize],
            );
            if self.policy.judge(distance, sa, sb).is_some() {
                sets.union(ra, rb);
                joined.union(a, b);
            }
        }
        Ok(())
    }

    /// The shingles of every row in `pairs` (indices into `all`), with each index's slot in
    /// them (`neardup::rows_in_pairs`): a row's held shingles when the batch has them, else
    /// those of its stored text, made on every core a part at a time, so the compressed texts
    /// are never all held at once.
    fn shingles_of_pair_rows(
        &self,
        all: &[(Hash128, u64)],
        pairs: &[(u32, u32, u32)],
    ) -> Result<(Vec<Rc<Shingles>>, Vec<u32>)> {
        let (needed, slot) = neardup::rows_in_pairs(all.len(), pairs);
        let mut out: Vec<Option<Rc<Shingles>>> = needed
            .iter()
            .map(|&i| self.clusters.held.get(&all[i as usize].0).cloned())
            .collect();
        let missing: Vec<usize> = (0..out.len()).filter(|&k| out[k].is_none()).collect();
        let mut stored = Vec::with_capacity(SHINGLE_PART.min(missing.len()));
        for part in missing.chunks(SHINGLE_PART) {
            stored.clear();
            for &k in part {
                let row = all[needed[k] as usize].0;
                stored.push(stored_text(&self.variants, row)?.value().to_vec());
            }
            let made = crate::parallel::map_items(&stored, 64, |v| shingles_of_stored(v))?;
            for (&k, s) in part.iter().zip(made) {
                out[k] = Some(Rc::new(s));
            }
        }
        let out = out
            .into_iter()
            .map(|s| s.ok_or_else(|| Error::Invariant("a pair row was not shingled".into())))
            .collect::<Result<Vec<_>>>()?;
        Ok((out, slot))
    }
}
