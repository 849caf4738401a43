//! Incremental near-duplicate clusters and splits, inside the batch's write transaction.
//!
//! A *cluster* is a connected component of the graph whose nodes are rows (content hashes) and
//! whose edges are near-duplicate pairs (SimHash within `hamming` bits, found through the
//! permuted `simhash_buckets`, and confirmed by the Jaccard similarity of their word 3-shingle
//! sets) plus, for rows of holdout families, shared holdout groups, and for derived rows, a
//! *link group* holding the derived row and the rows it was made from (so it shares their split).
//! Both kinds of group live in `row_groups`/`group_rows`; a link membership's count carries
//! [`LINK`], and only holdout groups make a cluster split by the holdout fractions. Its id is its smallest
//! content hash and its split is `Policy::split_of` that id, so both are functions of the set of
//! rows, never of the order they came in.
//!
//! Pair edges are not stored: a dense family of templated rows would need a quadratic number of
//! them. What is stored is each row's cluster; connectivity is recomputed where a batch can change
//! it, with a union-find that skips the text check for pairs already known to be connected:
//! 1. the clusters removed rows were in are *broken*: their remaining members are re-linked
//!    from scratch (this is what splits a cluster);
//! 2. holdout group changes are applied; a row leaving a group breaks its cluster too;
//! 3. removed rows leave the SimHash tables and created rows join them (each touched bucket
//!    rewritten once); created rows are linked to their confirmed candidates, pulling in the
//!    intact clusters those belong to, and to the members of their holdout groups;
//! 4. every resulting set is written back: entries rewritten only where they changed, and every
//!    existing row whose split changed logged in `split_moves`.
//!
//! Singleton rows (the vast majority) store nothing: no entry means "a cluster of one, id = own
//! hash".

mod link;

use std::collections::{BTreeMap, BTreeSet};
use std::rc::Rc;

use redb::ReadableTable;

use super::{buckets, codec, keys, WriteBatch};
use crate::error::{Error, Result};
use crate::fingerprint::{Hash128, Hash128Map, Hash128Set, Shingles};
use crate::model::RecordMeta;
use crate::neardup::{Policy, Split, UnionFind};
use crate::source::derived::DERIVED_SOURCE;

pub(super) use link::shingles_of;

/// Cluster work gathered during a batch.
#[derive(Default)]
pub(super) struct ClusterWork {
    /// Fingerprintable rows created by this batch: (hash, simhash).
    pub created: Vec<(Hash128, u64)>,
    /// Fingerprintable rows removed by this batch: (hash, simhash).
    pub removed: Vec<(Hash128, u64)>,
    /// Every row removed by this batch (short ones too: they may sit in holdout clusters).
    pub removed_all: Vec<Hash128>,
    /// Place count changes per (row, group), and whether the group is a link group.
    pub group_deltas: BTreeMap<(Hash128, Hash128), (i64, bool)>,
    /// The split each row had before this batch, when it cannot be read from the tables any
    /// more by the time it is compared (a full recompute clears them first).
    pub old_splits: Hash128Map<Split>,
    /// Rows that did not exist before this batch (their split is not a move).
    pub new_rows: Hash128Set,
    /// The shingles of fingerprintable rows new to the index, made by the caller (ingest's
    /// workers): linking them reads and shingles no stored text. At most
    /// [`HELD_SHINGLES_BYTES`] of them (`held_bytes`); the rows past that are linked from their
    /// stored text.
    pub held: Hash128Map<Rc<Shingles>>,
    pub held_bytes: usize,
}

/// What a batch may hold of its new rows' shingle sets. A set takes about 1.5 times its text
/// (8 bytes a shingle, one shingle a word): the 31.5 MB templated bench corpus holds 47 MB of
/// them, and a 64 MB batch of the 1.37M-row scale corpus ~140 MB, which took a first ingest's
/// peak RSS from 0.89 to 1.03 GiB. This cap keeps all of a 32 MB batch and a third of a 64 MB
/// one, and the peak under 1 GiB.
const HELD_SHINGLES_BYTES: usize = 48 << 20;

/// The flag on a `row_groups` count marking a link group (a derived row and its inputs), as
/// opposed to a holdout group.
pub(super) const LINK: u64 = 1 << 63;

/// Whether a `row_groups` value is a holdout group membership.
pub(super) fn is_holdout_membership(value: u64) -> bool {
    value & LINK == 0
}

/// The link group of a derived row: it and every row its places name as inputs.
fn link_group(row: Hash128) -> Hash128 {
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    h.update(b"idx derived link\0");
    h.update(&row.to_bytes());
    Hash128(h.digest128())
}

/// A stored cluster entry: (cluster id, split, holdout).
pub(super) fn encode_entry(cluster: Hash128, split: Split, holdout: bool) -> [u8; 18] {
    let mut v = [0u8; 18];
    v[..16].copy_from_slice(&cluster.to_bytes());
    v[16] = split.to_byte();
    v[17] = u8::from(holdout);
    v
}

pub(super) fn decode_entry(v: &[u8]) -> Result<(Hash128, Split, bool)> {
    let bad = || Error::Codec {
        table: "clusters",
        message: "entry is not (hash, split, holdout)".into(),
    };
    if v.len() != 18 {
        return Err(bad());
    }
    let cluster = Hash128::from_bytes(&v[..16]).ok_or_else(bad)?;
    let split = Split::from_byte(v[16]).ok_or_else(bad)?;
    Ok((cluster, split, v[17] != 0))
}

pub(super) fn pair_key(a: Hash128, b: Hash128) -> [u8; 32] {
    let mut k = [0u8; 32];
    k[..16].copy_from_slice(&a.to_bytes());
    k[16..].copy_from_slice(&b.to_bytes());
    k
}

/// The second hash of a `hash ‖ hash` key.
pub(super) fn second_hash(key: &[u8]) -> Result<Hash128> {
    key.get(16..32)
        .and_then(Hash128::from_bytes)
        .ok_or_else(|| Error::Codec {
            table: "clusters",
            message: "pair key is not two hashes".into(),
        })
}

impl<'t> WriteBatch<'t> {
    /// Count one place of `row` in `object_id` (tagged `families`, with its metadata: the
    /// session a mapping declared, a derived place's inputs) into or out of its holdout group
    /// and, for a derived place, its link group.
    pub(super) fn group_place(
        &mut self,
        object_id: &str,
        families: &[String],
        meta: &RecordMeta,
        row: Hash128,
        sign: i64,
    ) {
        let (source, key) = keys::split_object_id(object_id);
        if let Some(group) = self.policy.group_of(source, key, families, meta.session) {
            self.clusters
                .group_deltas
                .entry((row, group))
                .or_default()
                .0 += sign;
        }
        if source == DERIVED_SOURCE {
            let inputs = crate::parse::derived::inputs_of(meta);
            if !inputs.is_empty() {
                let group = link_group(row);
                for member in std::iter::once(row).chain(inputs) {
                    let d = self
                        .clusters
                        .group_deltas
                        .entry((member, group))
                        .or_default();
                    d.0 += sign;
                    d.1 = true;
                }
            }
        }
    }

    fn firsts<V: redb::Value + 'static>(
        table: &impl ReadableTable<&'static [u8], V>,
        first: Hash128,
    ) -> Result<Vec<Hash128>> {
        let start = first.to_bytes();
        let end = keys::prefix_end(&start);
        let mut out = Vec::new();
        for entry in table.range::<&[u8]>(start.as_slice()..end.as_slice())? {
            out.push(second_hash(entry?.0.value())?);
        }
        Ok(out)
    }

    /// Whether the row is in a holdout group (link groups do not count).
    fn has_groups(&self, row: Hash128) -> Result<bool> {
        let start = row.to_bytes();
        let end = keys::prefix_end(&start);
        for entry in self
            .row_groups
            .range::<&[u8]>(start.as_slice()..end.as_slice())?
        {
            if is_holdout_membership(entry?.1.value()) {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Keep the shingles of a row new to the index (`is_new_row` when its first place was
    /// added) for linking it at the end of the batch; a row too short to be fingerprinted
    /// needs none.
    pub fn hold_shingles(&mut self, row: Hash128, words: u32, shingles: Shingles) {
        // The set, the counts and the map's entry.
        let bytes = shingles.set().len() * 8 + std::mem::size_of::<Shingles>() + 48;
        if self.policy.fingerprintable(words)
            && self.clusters.held_bytes + bytes <= HELD_SHINGLES_BYTES
        {
            self.clusters.held_bytes += bytes;
            self.clusters.held.insert(row, Rc::new(shingles));
        }
    }

    /// Whether a row exists, committed or created by this batch.
    fn exists(&self, row: Hash128) -> Result<bool> {
        Ok(self.clusters.new_rows.contains(&row)
            || self.rows.get(row.to_bytes().as_slice())?.is_some())
    }

    fn entry(&self, row: Hash128) -> Result<Option<(Hash128, Split, bool)>> {
        match self.cluster_entries.get(row.to_bytes().as_slice())? {
            Some(v) => Ok(Some(decode_entry(v.value())?)),
            None => Ok(None),
        }
    }

    /// The split a row has according to the tables right now.
    fn split_now(&self, row: Hash128) -> Result<Split> {
        Ok(match self.entry(row)? {
            Some((_, split, _)) => split,
            None => self.policy.split_of(row, self.has_groups(row)?),
        })
    }

    /// Bring `row` into the union-find; an existing row not in a broken cluster brings its whole
    /// (still connected) stored cluster with it.
    fn admit(&mut self, sets: &mut UnionFind, row: Hash128) -> Result<()> {
        if sets.contains(row) {
            return Ok(());
        }
        sets.find(row);
        if self.clusters.new_rows.contains(&row) {
            // Created by this batch: no stored cluster yet.
            return Ok(());
        }
        if let Some((cluster, _, _)) = self.entry(row)? {
            for m in Self::firsts(&self.cluster_members, cluster)? {
                sets.union(row, m);
            }
        }
        Ok(())
    }

    /// Apply the batch's cluster work (see the module doc). `seq` labels the split moves, whose
    /// number is returned.
    pub(super) fn maintain_clusters(&mut self, seq: u64) -> Result<u64> {
        let mut work = std::mem::take(&mut self.clusters);
        // Kept on `self`: `admit` and the linking need them while `work` is borrowed.
        self.clusters.new_rows = std::mem::take(&mut work.new_rows);
        self.clusters.held = std::mem::take(&mut work.held);
        // Existing rows whose cluster must be re-linked from scratch.
        let mut broken: BTreeSet<Hash128> = BTreeSet::new();

        // (1) Removed rows break their cluster.
        for &row in &work.removed_all {
            if let Some((cluster, _, _)) = self.entry(row)? {
                broken.extend(Self::firsts(&self.cluster_members, cluster)?);
                self.cluster_members
                    .remove(pair_key(cluster, row).as_slice())?;
                self.cluster_entries.remove(row.to_bytes().as_slice())?;
            }
        }

        // (2) Holdout groups. The old split of a row whose groups change is read first.
        let deltas = std::mem::take(&mut work.group_deltas);
        for &(row, _) in deltas.keys() {
            if !self.clusters.new_rows.contains(&row) && !work.old_splits.contains_key(&row) {
                let split = self.split_now(row)?;
                work.old_splits.insert(row, split);
            }
        }
        let mut joined: BTreeSet<Hash128> = BTreeSet::new();
        for ((row, group), (d, link)) in deltas {
            if d == 0 {
                continue;
            }
            let rk = pair_key(row, group);
            let before = self
                .row_groups
                .get(rk.as_slice())?
                .map_or(0, |v| v.value() & !LINK);
            let after = (before as i64 + d).max(0) as u64;
            if after == 0 {
                self.row_groups.remove(rk.as_slice())?;
                self.group_rows.remove(pair_key(group, row).as_slice())?;
                // Leaving a group may disconnect the row's cluster.
                match self.entry(row)? {
                    Some((cluster, _, _)) => {
                        broken.extend(Self::firsts(&self.cluster_members, cluster)?)
                    }
                    None => {
                        broken.insert(row);
                    }
                }
            } else {
                let flag = if link { LINK } else { 0 };
                self.row_groups.insert(rk.as_slice(), after | flag)?;
                if before == 0 {
                    self.group_rows
                        .insert(pair_key(group, row).as_slice(), ())?;
                    joined.insert(row);
                }
            }
        }

        // (3) Removed rows leave the SimHash tables and created rows join them, each touched
        // bucket rewritten once.
        buckets::apply(
            &mut self.simhash_buckets,
            &self.tables,
            &work.removed,
            &work.created,
        )?;

        // Re-link broken clusters among their remaining members, then link what joined.
        let mut sets = UnionFind::default();
        broken.retain(|r| !work.removed_all.contains(r));
        self.link_batch(&mut sets, &work.created, &broken)?;
        for &row in &joined {
            if self.rows.get(row.to_bytes().as_slice())?.is_some() {
                self.link_groups(&mut sets, row)?;
            }
        }

        // (4) Write every resulting set back.
        let mut groups: BTreeMap<Hash128, Vec<Hash128>> = BTreeMap::new();
        for m in sets.members() {
            let root = sets.find(m);
            groups.entry(root).or_default().push(m);
        }
        let mut moved = 0u64;
        for (cluster, mut members) in groups {
            if members.len() == 1 && self.clusters.new_rows.contains(&cluster) {
                // A new row alone: no entry to write, no move to record.
                continue;
            }
            members.sort_unstable();
            let mut holdout = false;
            for &m in &members {
                if self.has_groups(m)? {
                    holdout = true;
                    break;
                }
            }
            let split = self.policy.split_of(cluster, holdout);
            let single = members.len() == 1;
            for &m in &members {
                let stored = self.entry(m)?;
                let before = match work.old_splits.get(&m) {
                    Some(s) => Some(*s),
                    None if self.clusters.new_rows.contains(&m) => None,
                    None => Some(match stored {
                        Some((_, s, _)) => s,
                        None => self.policy.split_of(m, self.has_groups(m)?),
                    }),
                };
                if let Some((old_cluster, _, _)) = stored {
                    if single || old_cluster != cluster {
                        self.cluster_members
                            .remove(pair_key(old_cluster, m).as_slice())?;
                    }
                }
                let mk = m.to_bytes();
                if single {
                    if stored.is_some() {
                        self.cluster_entries.remove(mk.as_slice())?;
                    }
                } else if stored != Some((cluster, split, holdout)) {
                    self.cluster_entries.insert(
                        mk.as_slice(),
                        encode_entry(cluster, split, holdout).as_slice(),
                    )?;
                    self.cluster_members
                        .insert(pair_key(cluster, m).as_slice(), ())?;
                }
                if before.is_some_and(|b| b != split) {
                    moved += 1;
                    let mut k = [0u8; 24];
                    k[..8].copy_from_slice(&seq.to_be_bytes());
                    k[8..].copy_from_slice(&mk);
                    let from = before.map_or(0, Split::to_byte);
                    self.split_moves
                        .insert(k.as_slice(), [from, split.to_byte()].as_slice())?;
                }
            }
        }
        self.clusters.new_rows.clear();
        self.clusters.held.clear();
        Ok(moved)
    }

    /// Recompute every cluster under this batch's policy (after a policy change): clear the
    /// derived tables and replay every row and holdout place as if new, recording moves against
    /// the splits under the previous policy (`old`, when known).
    pub(super) fn rebuild_clusters(&mut self, old: Option<&Policy>) -> Result<()> {
        let mut rows: Vec<Hash128> = Vec::new();
        let mut fingerprinted: Vec<(Hash128, u64)> = Vec::new();
        for entry in self.rows.iter()? {
            let (k, v) = entry?;
            let hash = Hash128::from_bytes(k.value()).ok_or_else(|| Error::Codec {
                table: "rows",
                message: "key is not a 16-byte hash".into(),
            })?;
            let (simhash, words): (u64, u32) = codec::decode_prefix("rows", v.value())?;
            rows.push(hash);
            if self.policy.fingerprintable(words) {
                fingerprinted.push((hash, simhash));
            }
        }
        let mut old_splits = Hash128Map::with_capacity_and_hasher(rows.len(), Default::default());
        if let Some(old) = old {
            for &row in &rows {
                let split = match self.entry(row)? {
                    Some((_, s, _)) => s,
                    None => old.split_of(row, self.has_groups(row)?),
                };
                old_splits.insert(row, split);
            }
        }
        self.simhash_buckets.retain(|_, _| false)?;
        self.cluster_entries.retain(|_, _| false)?;
        self.cluster_members.retain(|_, _| false)?;
        self.row_groups.retain(|_, _| false)?;
        self.group_rows.retain(|_, _| false)?;
        let mut objects: Vec<(String, Vec<String>)> = Vec::new();
        for entry in self.objects.iter()? {
            let (k, v) = entry?;
            let record: super::ObjectRecord = codec::decode("objects", v.value())?;
            objects.push((k.value().to_string(), record.families));
        }
        for (id, families) in objects {
            let derived = keys::split_object_id(&id).0 == DERIVED_SOURCE;
            if !self.policy.holds_out(&families) && !derived {
                continue;
            }
            let prefix = keys::object_places_prefix(&id);
            let end = keys::prefix_end(&prefix);
            let mut places = Vec::new();
            for entry in self
                .object_places
                .range::<&[u8]>(prefix.as_slice()..end.as_slice())?
            {
                let (h, _, meta) = codec::decode_place(entry?.1.value())?;
                places.push((h, meta));
            }
            for (h, meta) in places {
                self.group_place(&id, &families, &meta, h, 1);
            }
        }
        self.clusters.created = fingerprinted;
        if old.is_some() {
            self.clusters.old_splits = old_splits;
        } else {
            self.clusters.new_rows = rows.into_iter().collect();
        }
        Ok(())
    }
}
