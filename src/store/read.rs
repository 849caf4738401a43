//! The read side: a `ReadView` is one committed snapshot of the index, and every question a
//! reader asks of redb (rows, objects, places, counters, clusters) is answered from it.

use std::collections::BTreeMap;

use redb::{ReadTransaction, ReadableTable, ReadableTableMetadata, TableDefinition};

use super::records::{FamilyStats, ObjectRecord, RowRecord, Totals, VariantRecord};
use super::tables::*;
use super::write::{Assignment, SplitMove};
use super::{buckets, clusters, codec, keys};
use crate::error::{Error, Result};
use crate::fingerprint::{Hash128, ShingleSummary, Shingles};
use crate::model::{ClassMask, RecordMeta, Role};
use crate::neardup::{Policy, Split};

/// A read transaction with typed accessors. Every answer comes from one committed state.
pub struct ReadView {
    pub(super) txn: ReadTransaction,
}

impl ReadView {
    pub(super) fn meta<T: serde::de::DeserializeOwned>(&self, name: &str) -> Result<Option<T>> {
        let t = self.txn.open_table(META)?;
        match t.get(name)? {
            Some(v) => Ok(Some(codec::decode("meta", v.value())?)),
            None => Ok(None),
        }
    }

    /// The number of commits made to this index.
    pub fn seq(&self) -> Result<u64> {
        Ok(self.meta(META_SEQ)?.unwrap_or(0))
    }

    /// The highest seq whose full-text log entries were pruned.
    pub fn fts_pruned_through(&self) -> Result<u64> {
        Ok(self.meta(META_FTS_PRUNED)?.unwrap_or(0))
    }

    pub fn totals(&self) -> Result<Totals> {
        Ok(self.meta(META_TOTALS)?.unwrap_or_default())
    }

    pub fn family_stats(&self) -> Result<Vec<(String, FamilyStats)>> {
        let t = self.txn.open_table(FAMILY_STATS)?;
        let mut out = Vec::new();
        for entry in t.iter()? {
            let (k, v) = entry?;
            out.push((
                k.value().to_string(),
                codec::decode("family_stats", v.value())?,
            ));
        }
        Ok(out)
    }

    pub fn row(&self, hash: Hash128) -> Result<Option<RowRecord>> {
        let t = self.txn.open_table(ROWS)?;
        match t.get(hash.to_bytes().as_slice())? {
            Some(v) => Ok(Some(codec::decode("rows", v.value())?)),
            None => Ok(None),
        }
    }

    /// Visit every row in hash order.
    pub fn for_each_row(&self, mut f: impl FnMut(Hash128, RowRecord) -> Result<()>) -> Result<()> {
        let t = self.txn.open_table(ROWS)?;
        for entry in t.iter()? {
            let (k, v) = entry?;
            let hash = Hash128::from_bytes(k.value()).ok_or_else(|| Error::Codec {
                table: "rows",
                message: "key is not a 16-byte hash".into(),
            })?;
            f(hash, codec::decode("rows", v.value())?)?;
        }
        Ok(())
    }

    /// The representative spelling of a row (smallest variant hash).
    pub fn representative(&self, hash: Hash128) -> Result<Option<VariantRecord>> {
        let t = self.txn.open_table(VARIANTS)?;
        let first = super::first_variant(&t, hash)?;
        first
            .map(|value| codec::decode_variant(value.value()))
            .transpose()
    }

    /// How many messages the representative spelling of a row has, and the first one's role,
    /// read from the head of the stored value (the text is not decoded).
    pub fn message_count(&self, hash: Hash128) -> Result<Option<(u64, Option<Role>)>> {
        let t = self.txn.open_table(VARIANTS)?;
        let Some(value) = super::first_variant(&t, hash)? else {
            return Ok(None);
        };
        let head = codec::decode_variant_head(value.value())?;
        Ok(Some((head.messages, head.first_role)))
    }

    /// Every place of a row as (object id, line, record), in (source, key, line) order.
    pub fn places(&self, hash: Hash128) -> Result<Vec<(String, u64, u32)>> {
        let t = self.txn.open_table(ROW_PLACES)?;
        let start = hash.to_bytes();
        let end = keys::prefix_end(&start);
        let mut out = Vec::new();
        for entry in t.range::<&[u8]>(start.as_slice()..end.as_slice())? {
            out.push(keys::split_row_place(entry?.0.value()));
        }
        Ok(out)
    }

    /// The metadata of one place (default when the place has none or does not exist).
    pub fn place_meta(&self, id: &str, line: u64, record: u32) -> Result<RecordMeta> {
        let t = self.txn.open_table(OBJECT_PLACES)?;
        match t.get(keys::object_place(id, line, record).as_slice())? {
            Some(v) => Ok(codec::decode_place(v.value())?.2),
            None => Ok(RecordMeta::default()),
        }
    }

    pub fn object(&self, id: &str) -> Result<Option<ObjectRecord>> {
        let t = self.txn.open_table(OBJECTS)?;
        match t.get(id)? {
            Some(v) => Ok(Some(codec::decode("objects", v.value())?)),
            None => Ok(None),
        }
    }

    /// The distinct source roots of all objects, sorted.
    pub fn sources(&self) -> Result<Vec<String>> {
        let t = self.txn.open_table(OBJECTS)?;
        let mut out: Vec<String> = Vec::new();
        for entry in t.iter()? {
            let (k, _) = entry?;
            let (source, _) = keys::split_object_id(k.value());
            if out.last().map(String::as_str) != Some(source) {
                out.push(source.to_string());
            }
        }
        Ok(out)
    }

    /// Every object, in (source, key) order.
    pub fn objects(&self) -> Result<Vec<ObjectRecord>> {
        self.objects_in(None)
    }

    /// The objects under one source root, in key order.
    pub fn objects_under(&self, source: &str) -> Result<Vec<ObjectRecord>> {
        self.objects_in(Some(source))
    }

    pub(super) fn objects_in(&self, source: Option<&str>) -> Result<Vec<ObjectRecord>> {
        let t = self.txn.open_table(OBJECTS)?;
        let mut out = Vec::new();
        let iter = match source {
            None => t.iter()?,
            Some(s) => {
                let start = keys::source_prefix(s);
                let end = format!("{s}\u{1}");
                t.range::<&str>(start.as_str()..end.as_str())?
            }
        };
        for entry in iter {
            out.push(codec::decode("objects", entry?.1.value())?);
        }
        Ok(out)
    }

    /// The objects whose (source, key) `matches`, in key order; only the matching records are
    /// decoded (a walk over the ids otherwise).
    pub fn objects_where(&self, matches: impl Fn(&str, &str) -> bool) -> Result<Vec<ObjectRecord>> {
        let t = self.txn.open_table(OBJECTS)?;
        let mut out = Vec::new();
        for entry in t.iter()? {
            let (k, v) = entry?;
            let (source, key) = keys::split_object_id(k.value());
            if matches(source, key) {
                out.push(codec::decode("objects", v.value())?);
            }
        }
        Ok(out)
    }

    /// The content classes of an object's places as stored (0: none, or no such object).
    pub fn object_classes(&self, id: &str) -> Result<ClassMask> {
        let t = self.txn.open_table(OBJECT_CLASSES)?;
        Ok(t.get(id)?.map_or(0, |v| v.value()))
    }

    /// The content classes of an object's places recounted from the places (`idx check`).
    pub fn object_classes_recount(&self, id: &str) -> Result<ClassMask> {
        let places = self.txn.open_table(OBJECT_PLACES)?;
        let variants = self.txn.open_table(VARIANTS)?;
        super::classes::recount(&places, &variants, id)
    }

    /// The rows of one object as (line, record, content hash, place metadata), in line order.
    pub fn object_places(&self, id: &str) -> Result<Vec<(u64, u32, Hash128, RecordMeta)>> {
        let t = self.txn.open_table(OBJECT_PLACES)?;
        let prefix = keys::object_places_prefix(id);
        let end = keys::prefix_end(&prefix);
        let mut out = Vec::new();
        for entry in t.range::<&[u8]>(prefix.as_slice()..end.as_slice())? {
            let (k, v) = entry?;
            let (line, record) = keys::place_tail(k.value());
            let (hash, _, meta) = codec::decode_place(v.value())?;
            out.push((line, record, hash, meta));
        }
        Ok(out)
    }

    /// Hashes touched by commits after `after`, or `None` when the log no longer reaches back
    /// that far (then the full-text index must be rebuilt).
    pub fn fts_log_since(&self, after: u64) -> Result<Option<Vec<Hash128>>> {
        if after < self.fts_pruned_through()? {
            return Ok(None);
        }
        let t = self.txn.open_table(FTS_LOG)?;
        let mut out = Vec::new();
        for entry in t.range((after + 1)..)? {
            let (_, v) = entry?;
            out.extend(v.value().chunks_exact(16).filter_map(Hash128::from_bytes));
        }
        out.sort_unstable();
        out.dedup();
        Ok(Some(out))
    }

    /// The near-duplicate policy the clusters were last built with.
    pub fn policy(&self) -> Result<Option<Policy>> {
        self.meta(META_POLICY)
    }

    /// A row's cluster, split and holdout flag, as stored (a row in no stored cluster is a
    /// cluster of one, split by `policy`).
    /// An imported global assignment (a sharded deployment, `crate::scale`) overrides both:
    /// the row's cluster is the global one and its split that cluster's.
    pub fn assignment(&self, row: Hash128, policy: &Policy) -> Result<Assignment> {
        if let Some(g) = self.global_assignment(row)? {
            return Ok(global_override(&g, policy));
        }
        self.local_assignment(row, policy)
    }

    /// A row's cluster, split and holdout flag as this index alone decides them.
    pub fn local_assignment(&self, row: Hash128, policy: &Policy) -> Result<Assignment> {
        let t = self.txn.open_table(CLUSTERS)?;
        if let Some(v) = t.get(row.to_bytes().as_slice())? {
            let (cluster, split, holdout) = clusters::decode_entry(v.value())?;
            return Ok(Assignment {
                cluster,
                split,
                holdout,
            });
        }
        let holdout = self.in_holdout_group(row)?;
        Ok(Assignment {
            cluster: row,
            split: policy.split_of(row, holdout),
            holdout,
        })
    }

    /// Every stored cluster entry (rows in clusters of two or more), in hash order.
    pub fn cluster_entries(&self) -> Result<BTreeMap<Hash128, Assignment>> {
        let t = self.txn.open_table(CLUSTERS)?;
        let mut out = BTreeMap::new();
        for entry in t.iter()? {
            let (k, v) = entry?;
            let row = Hash128::from_bytes(k.value()).ok_or_else(|| Error::Codec {
                table: "clusters",
                message: "key is not a hash".into(),
            })?;
            let (cluster, split, holdout) = clusters::decode_entry(v.value())?;
            out.insert(
                row,
                Assignment {
                    cluster,
                    split,
                    holdout,
                },
            );
        }
        Ok(out)
    }

    /// Every row's cluster and split under `policy` (the stored entries, and for rows without
    /// one, a cluster of one; an imported global assignment overrides both), keyed by content
    /// hash.
    pub fn assignments(&self, policy: &Policy) -> Result<BTreeMap<Hash128, Assignment>> {
        let mut out = self.local_assignments(policy)?;
        for (row, g) in self.global_assignments()? {
            if let Some(a) = out.get_mut(&row) {
                *a = global_override(&g, policy);
            }
        }
        Ok(out)
    }

    /// [`ReadView::assignments`] as this index alone decides them.
    pub fn local_assignments(&self, policy: &Policy) -> Result<BTreeMap<Hash128, Assignment>> {
        let entries = self.cluster_entries()?;
        let grouped = self.grouped_rows()?;
        let mut out = BTreeMap::new();
        self.for_each_row(|h, _| {
            let a = match entries.get(&h) {
                Some(a) => *a,
                None => {
                    let holdout = grouped.contains(&h);
                    Assignment {
                        cluster: h,
                        split: policy.split_of(h, holdout),
                        holdout,
                    }
                }
            };
            out.insert(h, a);
            Ok(())
        })?;
        Ok(out)
    }

    /// Rows that belong to at least one holdout group (link groups of derived rows aside).
    pub fn grouped_rows(&self) -> Result<std::collections::BTreeSet<Hash128>> {
        let t = self.txn.open_table(ROW_GROUPS)?;
        let mut out = std::collections::BTreeSet::new();
        for entry in t.iter()? {
            let (k, v) = entry?;
            if !clusters::is_holdout_membership(v.value()) {
                continue;
            }
            if let Some(h) = k.value().get(..16).and_then(Hash128::from_bytes) {
                out.insert(h);
            }
        }
        Ok(out)
    }

    /// Whether a row is in a holdout group.
    pub fn in_holdout_group(&self, row: Hash128) -> Result<bool> {
        let t = self.txn.open_table(ROW_GROUPS)?;
        let start = row.to_bytes();
        let end = keys::prefix_end(&start);
        for entry in t.range::<&[u8]>(start.as_slice()..end.as_slice())? {
            if clusters::is_holdout_membership(entry?.1.value()) {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// The members of a stored cluster (empty for a cluster of one).
    pub fn cluster_members(&self, cluster: Hash128) -> Result<Vec<Hash128>> {
        self.second_hashes(CLUSTER_MEMBERS, cluster)
    }

    pub(super) fn second_hashes<V: redb::Value + 'static>(
        &self,
        table: TableDefinition<&[u8], V>,
        first: Hash128,
    ) -> Result<Vec<Hash128>> {
        let t = self.txn.open_table(table)?;
        let start = first.to_bytes();
        let end = keys::prefix_end(&start);
        let mut out = Vec::new();
        for entry in t.range::<&[u8]>(start.as_slice()..end.as_slice())? {
            if let Some(h) = entry?.0.value().get(16..32).and_then(Hash128::from_bytes) {
                out.push(h);
            }
        }
        Ok(out)
    }

    /// A row's near-duplicates under `policy`, found now: (row, Hamming distance, Jaccard
    /// similarity), closest first. Empty for a row too short to fingerprint.
    pub fn near(&self, row: Hash128, policy: &Policy) -> Result<Vec<(Hash128, u32, f64)>> {
        let Some(record) = self.row(row)? else {
            return Ok(Vec::new());
        };
        if !policy.fingerprintable(record.words) {
            return Ok(Vec::new());
        }
        let simhash_buckets = self.txn.open_table(SIMHASH_BUCKETS)?;
        let variants = self.txn.open_table(VARIANTS)?;
        let found = buckets::candidates(
            &simhash_buckets,
            &policy.tables(),
            policy.hamming,
            row,
            record.simhash,
        )?;
        let mine = clusters::shingles_of(&variants, row)?;
        let mut out = Vec::new();
        for (other, distance) in found {
            let theirs = clusters::shingles_of(&variants, other)?;
            if let Some(sim) = policy.judge(distance, &mine, &theirs) {
                out.push((other, distance, sim));
            }
        }
        out.sort_by(|a, b| b.2.total_cmp(&a.2).then(a.1.cmp(&b.1)).then(a.0.cmp(&b.0)));
        Ok(out)
    }

    /// Every indexed fingerprint within `policy.hamming` bits of `simhash`: (row, distance).
    pub fn candidates(&self, simhash: u64, policy: &Policy) -> Result<Vec<(Hash128, u32)>> {
        let table = self.txn.open_table(SIMHASH_BUCKETS)?;
        let found = buckets::candidates(
            &table,
            &policy.tables(),
            policy.hamming,
            Hash128(0),
            simhash,
        )?;
        Ok(found.into_iter().collect())
    }

    /// Every fingerprintable row's SimHash, as (row, simhash), in hash order.
    pub fn fingerprints(&self, policy: &Policy) -> Result<Vec<(Hash128, u64)>> {
        let mut out = Vec::new();
        self.for_each_row(|h, r| {
            if policy.fingerprintable(r.words) {
                out.push((h, r.simhash));
            }
            Ok(())
        })?;
        Ok(out)
    }

    /// The shingle set of a row's representative text.
    pub fn shingles(&self, row: Hash128) -> Result<Shingles> {
        clusters::shingles_of(&self.txn.open_table(VARIANTS)?, row)
    }

    /// The shingle summaries of rows' representative texts, in their order, made on every core.
    pub fn shingle_summaries(&self, rows: &[Hash128]) -> Result<Vec<ShingleSummary>> {
        crate::parallel::map_parts(rows, 64, |part| {
            let variants = self.txn.open_table(VARIANTS)?;
            part.iter()
                .map(|&row| Ok(clusters::shingles_of(&variants, row)?.summary()))
                .collect()
        })
    }

    /// Split changes of existing rows recorded by commits after `after`, in commit order.
    pub fn split_moves(&self, after: u64) -> Result<Vec<SplitMove>> {
        let t = self.txn.open_table(SPLIT_MOVES)?;
        let start = (after + 1).to_be_bytes();
        let mut out = Vec::new();
        for entry in t.range::<&[u8]>(start.as_slice()..)? {
            let (k, v) = entry?;
            let (k, v) = (k.value(), v.value());
            let seq = k
                .get(..8)
                .and_then(|b| b.try_into().ok())
                .map_or(0, u64::from_be_bytes);
            let (Some(row), Some(from), Some(to)) = (
                k.get(8..).and_then(Hash128::from_bytes),
                v.first().copied().and_then(Split::from_byte),
                v.get(1).copied().and_then(Split::from_byte),
            ) else {
                return Err(Error::Codec {
                    table: "split_moves",
                    message: "entry is not (seq, hash) -> (from, to)".into(),
                });
            };
            out.push(SplitMove { seq, row, from, to });
        }
        Ok(out)
    }

    /// A canonical dump of every table except the commit counter and full-text log, for
    /// comparing two indexes built in different orders.
    pub fn state_digest(&self) -> Result<String> {
        self.digest(true)
    }

    /// The state digest of what was ingested, without an imported global assignment table:
    /// what a shard's signatures describe, so an import does not make them stale.
    pub fn local_state_digest(&self) -> Result<String> {
        self.digest(false)
    }

    fn digest(&self, with_global: bool) -> Result<String> {
        let mut h = xxhash_rust::xxh3::Xxh3::new();
        fn feed<K: redb::Key + 'static, V: redb::Value + 'static>(
            h: &mut xxhash_rust::xxh3::Xxh3,
            t: &impl ReadableTable<K, V>,
            name: &str,
        ) -> Result<()> {
            h.update(name.as_bytes());
            for entry in t.iter()? {
                let (k, v) = entry?;
                // Each key and value as its stored bytes, length first (formatting them had
                // been a fifth of an export's time).
                for bytes in [
                    K::as_bytes(&k.value()).as_ref(),
                    V::as_bytes(&v.value()).as_ref(),
                ] {
                    h.update(&(bytes.len() as u64).to_le_bytes());
                    h.update(bytes);
                }
            }
            Ok(())
        }
        feed(&mut h, &self.txn.open_table(OBJECTS)?, "objects")?;
        feed(
            &mut h,
            &self.txn.open_table(OBJECT_PLACES)?,
            "object_places",
        )?;
        feed(
            &mut h,
            &self.txn.open_table(OBJECT_CLASSES)?,
            "object_classes",
        )?;
        feed(&mut h, &self.txn.open_table(ROW_PLACES)?, "row_places")?;
        feed(&mut h, &self.txn.open_table(VARIANTS)?, "variants")?;
        feed(&mut h, &self.txn.open_table(VARIANT_REFS)?, "variant_refs")?;
        feed(&mut h, &self.txn.open_table(ROWS)?, "rows")?;
        feed(&mut h, &self.txn.open_table(FAMILY_STATS)?, "family_stats")?;
        // Split moves are history (they depend on the order things arrived in), not state.
        feed(
            &mut h,
            &self.txn.open_table(SIMHASH_BUCKETS)?,
            "simhash_buckets",
        )?;
        feed(&mut h, &self.txn.open_table(CLUSTERS)?, "clusters")?;
        feed(
            &mut h,
            &self.txn.open_table(CLUSTER_MEMBERS)?,
            "cluster_members",
        )?;
        feed(&mut h, &self.txn.open_table(ROW_GROUPS)?, "row_groups")?;
        feed(&mut h, &self.txn.open_table(GROUP_ROWS)?, "group_rows")?;
        h.update(format!("{:?}", self.totals()?).as_bytes());
        // An imported assignment table changes splits; an index without one digests as before.
        if with_global {
            if let Some(t) = self.global_table()? {
                if !t.is_empty()? {
                    feed(&mut h, &t, "global")?;
                }
            }
        }
        Ok(format!("{:032x}", h.digest128()))
    }
}

/// The assignment a global one gives: the global cluster, split by the same function.
fn global_override(g: &super::global::GlobalAssignment, policy: &Policy) -> Assignment {
    Assignment {
        cluster: g.cluster,
        split: policy.split_of(g.cluster, g.holdout),
        holdout: g.holdout,
    }
}
