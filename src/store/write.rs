//! The write side: one `WriteBatch` per redb write transaction, which adds and removes the
//! places of objects and keeps rows, variants, counters, clusters and splits consistent with
//! them before it commits.

use std::collections::{BTreeMap, HashMap};

use redb::{ReadableTable, Table, WriteTransaction};

use super::records::{FamilyStats, ObjectRecord, ObjectStatus, RowRecord, Totals};
use super::tables::*;
use super::{clusters, codec, keys};
use crate::error::{Error, Result};
use crate::fingerprint::{Fingerprints, Hash128};
use crate::model::{ClassMask, Conversation, RecordKind, RecordMeta};
use crate::neardup::{BlockTables, Policy, Split};
use crate::pii::{PiiRecord, PiiStatus};

/// Row-level changes gathered during a batch, applied in `finish`.
#[derive(Default)]
pub(super) struct RowDelta {
    pub(super) places: i64,
    pub(super) families: BTreeMap<String, i64>,
    pub(super) simhash: u64,
    pub(super) words: u32,
    pub(super) pii: Option<PiiRecord>,
    pub(super) flaws: crate::structure::Flaws,
    /// Of the places this batch added: the least variant (hash, tokens, kind) and the least
    /// `row_places` key. For a row new to the index these are its tables' first entries, so
    /// the batch's finish need not look them up.
    pub(super) least_variant: Option<(Hash128, u64, RecordKind)>,
    pub(super) least_place: Option<Vec<u8>>,
}

/// What `WriteBatch::add_place` needs of a row: its fingerprints, canonical (redacted)
/// conversation and PII record.
#[derive(Clone, Copy)]
pub struct NewPlace<'a> {
    pub fp: &'a Fingerprints,
    pub conversation: &'a Conversation,
    pub pii: &'a PiiRecord,
    pub meta: &'a RecordMeta,
    /// The `variants` value of this spelling (`codec::encode_variant` of the token count and
    /// the conversation) when the caller made it already: ingest compresses on its worker
    /// threads, not in the writer. `None`: made here when the spelling is new.
    pub stored: Option<&'a [u8]>,
}

/// What one committed batch changed, for the full-text index to follow.
#[derive(Debug, Clone, Default)]
pub struct BatchOutcome {
    /// The commit sequence number this batch will have once committed.
    pub seq: u64,
    /// Content hashes whose row was created, changed or removed.
    pub touched: Vec<Hash128>,
    /// Existing rows whose split changed.
    pub moved: u64,
}

/// The tables of one write transaction, open for the duration of a batch.
pub struct WriteBatch<'t> {
    pub(super) meta: Table<'t, &'static str, &'static [u8]>,
    pub(super) objects: Table<'t, &'static str, &'static [u8]>,
    pub(super) object_places: Table<'t, &'static [u8], &'static [u8]>,
    pub(super) object_classes: Table<'t, &'static str, u8>,
    pub(super) row_places: Table<'t, &'static [u8], ()>,
    pub(super) variants: Table<'t, &'static [u8], &'static [u8]>,
    pub(super) variant_refs: Table<'t, &'static [u8], u64>,
    pub(super) rows: Table<'t, &'static [u8], &'static [u8]>,
    pub(super) family_stats: Table<'t, &'static str, &'static [u8]>,
    pub(super) fts_log: Table<'t, u64, &'static [u8]>,
    pub(super) simhash_buckets: Table<'t, &'static [u8], &'static [u8]>,
    pub(super) cluster_entries: Table<'t, &'static [u8], &'static [u8]>,
    pub(super) cluster_members: Table<'t, &'static [u8], ()>,
    pub(super) row_groups: Table<'t, &'static [u8], u64>,
    pub(super) group_rows: Table<'t, &'static [u8], ()>,
    pub(super) split_moves: Table<'t, &'static [u8], &'static [u8]>,
    pub(super) totals: Totals,
    pub(super) deltas: BTreeMap<Hash128, RowDelta>,
    /// The content classes of the places of objects this batch touched, written at its finish
    /// (0: none left).
    pub(super) classes: BTreeMap<String, ClassMask>,
    pub(super) primary_cache: HashMap<String, String>,
    pub(super) policy: Policy,
    pub(super) tables: BlockTables,
    pub(super) clusters: clusters::ClusterWork,
}

/// Count one object record into (`sign` 1) or out of (-1) the totals.
fn object_counts(t: &mut Totals, record: &ObjectRecord, sign: i64) {
    let field = match record.status {
        ObjectStatus::Indexed => &mut t.objects_indexed,
        ObjectStatus::Skipped { .. } => &mut t.objects_skipped,
        ObjectStatus::Failed { .. } => &mut t.objects_failed,
    };
    *field = field.saturating_add_signed(sign);
    t.objects = t.objects.saturating_add_signed(sign);
    t.rejected_rows = t
        .rejected_rows
        .saturating_add_signed(sign * record.rejected as i64);
    t.merged_turns = t
        .merged_turns
        .saturating_add_signed(sign * record.merged_turns as i64);
}

impl<'t> WriteBatch<'t> {
    /// Open every table of `txn`; near-duplicate work follows `policy`.
    pub fn open(txn: &'t WriteTransaction, policy: &Policy) -> Result<Self> {
        let meta = txn.open_table(META)?;
        let totals = match meta.get(META_TOTALS)? {
            Some(v) => codec::decode("meta", v.value())?,
            None => Totals::default(),
        };
        Ok(WriteBatch {
            meta,
            objects: txn.open_table(OBJECTS)?,
            object_places: txn.open_table(OBJECT_PLACES)?,
            object_classes: txn.open_table(OBJECT_CLASSES)?,
            row_places: txn.open_table(ROW_PLACES)?,
            variants: txn.open_table(VARIANTS)?,
            variant_refs: txn.open_table(VARIANT_REFS)?,
            rows: txn.open_table(ROWS)?,
            family_stats: txn.open_table(FAMILY_STATS)?,
            fts_log: txn.open_table(FTS_LOG)?,
            simhash_buckets: txn.open_table(SIMHASH_BUCKETS)?,
            cluster_entries: txn.open_table(CLUSTERS)?,
            cluster_members: txn.open_table(CLUSTER_MEMBERS)?,
            row_groups: txn.open_table(ROW_GROUPS)?,
            group_rows: txn.open_table(GROUP_ROWS)?,
            split_moves: txn.open_table(SPLIT_MOVES)?,
            totals,
            deltas: BTreeMap::new(),
            classes: BTreeMap::new(),
            primary_cache: HashMap::new(),
            policy: policy.clone(),
            tables: policy.tables(),
            clusters: clusters::ClusterWork::default(),
        })
    }

    pub fn object(&self, id: &str) -> Result<Option<ObjectRecord>> {
        match self.objects.get(id)? {
            Some(v) => Ok(Some(codec::decode("objects", v.value())?)),
            None => Ok(None),
        }
    }

    /// Write an object's record (its checkpoint), keeping the totals in step.
    pub fn put_object(&mut self, record: &ObjectRecord) -> Result<()> {
        let id = keys::object_id(&record.source, &record.key);
        if let Some(old) = self.object(&id)? {
            object_counts(&mut self.totals, &old, -1);
        }
        object_counts(&mut self.totals, record, 1);
        self.primary_cache.remove(&id);
        self.objects
            .insert(id.as_str(), codec::encode(record).as_slice())?;
        Ok(())
    }

    /// Remove an object: its rows, then its record.
    pub fn delete_object(&mut self, id: &str) -> Result<Option<ObjectRecord>> {
        let Some(old) = self.object(id)? else {
            return Ok(None);
        };
        self.remove_places(id, &old.families)?;
        object_counts(&mut self.totals, &old, -1);
        self.objects.remove(id)?;
        self.primary_cache.remove(id);
        Ok(Some(old))
    }

    /// Remove every place of an object (tagged with `families`); returns how many.
    pub fn remove_places(&mut self, object_id: &str, families: &[String]) -> Result<u64> {
        let prefix = keys::object_places_prefix(object_id);
        let end = keys::prefix_end(&prefix);
        let mut doomed: Vec<(Vec<u8>, Hash128, Hash128, RecordMeta)> = Vec::new();
        for entry in self
            .object_places
            .range::<&[u8]>(prefix.as_slice()..end.as_slice())?
        {
            let (k, v) = entry?;
            let (hash, variant, meta) = codec::decode_place(v.value())?;
            doomed.push((k.value().to_vec(), hash, variant, meta));
        }
        for (k, hash, variant, meta) in &doomed {
            let (line, record) = keys::place_tail(k);
            self.row_places
                .remove(keys::row_place(*hash, object_id, line, record).as_slice())?;
            let vk = keys::variant(*hash, *variant);
            let refs = self
                .variant_refs
                .get(vk.as_slice())?
                .map_or(0, |v| v.value());
            if refs <= 1 {
                self.variant_refs.remove(vk.as_slice())?;
                self.variants.remove(vk.as_slice())?;
            } else {
                self.variant_refs.insert(vk.as_slice(), refs - 1)?;
            }
            self.object_places.remove(k.as_slice())?;
            let delta = self.deltas.entry(*hash).or_default();
            delta.places -= 1;
            for f in families {
                *delta.families.entry(f.clone()).or_default() -= 1;
            }
            self.group_place(object_id, families, meta, *hash, -1);
        }
        let n = doomed.len() as u64;
        self.totals.rows = self.totals.rows.saturating_sub(n);
        self.classes.insert(object_id.to_string(), 0);
        Ok(n)
    }

    /// Whether a content hash has no row yet, committed or in this batch.
    pub fn is_new_row(&self, hash: Hash128) -> Result<bool> {
        Ok(
            !self.deltas.contains_key(&hash)
                && self.rows.get(hash.to_bytes().as_slice())?.is_none(),
        )
    }

    /// Record one occurrence of a row.
    pub fn add_place(
        &mut self,
        object_id: &str,
        families: &[String],
        line: u64,
        record: u32,
        row: NewPlace<'_>,
    ) -> Result<()> {
        let NewPlace {
            fp,
            conversation,
            pii,
            meta,
            stored,
        } = row;
        let pk = keys::object_place(object_id, line, record);
        let value = codec::encode_place(fp.content_hash, fp.variant_hash, meta);
        if self
            .object_places
            .insert(pk.as_slice(), value.as_slice())?
            .is_some()
        {
            return Err(Error::Query(format!(
                "place {object_id}:{line}#{record} added twice in one batch"
            )));
        }
        let place_key = keys::row_place(fp.content_hash, object_id, line, record);
        self.row_places.insert(place_key.as_slice(), ())?;
        let vk = keys::variant(fp.content_hash, fp.variant_hash);
        let refs = self
            .variant_refs
            .get(vk.as_slice())?
            .map_or(0, |v| v.value());
        if refs == 0 {
            match stored {
                Some(value) => self.variants.insert(vk.as_slice(), value)?,
                None => {
                    let value = codec::encode_variant(fp.tokens, conversation);
                    self.variants.insert(vk.as_slice(), value.as_slice())?
                }
            };
        }
        self.variant_refs.insert(vk.as_slice(), refs + 1)?;
        let delta = self.deltas.entry(fp.content_hash).or_default();
        delta.places += 1;
        if delta.least_place.as_ref().is_none_or(|p| place_key < *p) {
            delta.least_place = Some(place_key);
        }
        if delta
            .least_variant
            .is_none_or(|(v, _, _)| fp.variant_hash < v)
        {
            delta.least_variant = Some((fp.variant_hash, fp.tokens, conversation.kind));
        }
        delta.simhash = fp.simhash;
        delta.words = fp.words;
        delta.pii = Some(pii.clone());
        delta.flaws = crate::structure::flaws(conversation);
        for f in families {
            *delta.families.entry(f.clone()).or_default() += 1;
        }
        self.group_place(object_id, families, meta, fp.content_hash, 1);
        self.totals.rows += 1;
        let classes = match self.classes.get_mut(object_id) {
            Some(c) => c,
            None => {
                // An object whose places this batch did not remove: what it held before.
                let stored = self.object_classes.get(object_id)?.map_or(0, |v| v.value());
                self.classes.entry(object_id.to_string()).or_insert(stored)
            }
        };
        *classes |= conversation.kind.class_bit();
        Ok(())
    }

    pub(super) fn primary_of(&mut self, object_id: &str) -> Result<String> {
        if let Some(p) = self.primary_cache.get(object_id) {
            return Ok(p.clone());
        }
        let primary = self
            .object(object_id)?
            .map(|o| o.primary_family)
            .unwrap_or_else(|| crate::families::UNASSIGNED.to_string());
        self.primary_cache
            .insert(object_id.to_string(), primary.clone());
        Ok(primary)
    }

    /// The leading (tokens, kind) of a row's representative (first) variant: decoding the
    /// prefix skips the text.
    fn representative_head(&self, hash: Hash128) -> Result<(u64, RecordKind)> {
        match super::first_variant(&self.variants, hash)? {
            Some(value) => {
                let head = codec::decode_variant_head(value.value())?;
                Ok((head.tokens, head.kind))
            }
            None => Err(Error::Codec {
                table: "variants",
                message: format!("row {hash} has places but no stored text"),
            }),
        }
    }

    /// The object of a row's first place ("" when it has none).
    fn first_place_object(&self, hash: Hash128) -> Result<String> {
        let hk = hash.to_bytes();
        let end = keys::prefix_end(&hk);
        Ok(
            match self
                .row_places
                .range::<&[u8]>(hk.as_slice()..end.as_slice())?
                .next()
            {
                Some(entry) => keys::split_row_place(entry?.0.value()).0,
                None => String::new(),
            },
        )
    }

    /// Apply the gathered row changes, derived counters and the full-text log; prune log entries
    /// the full-text index has already committed (`fts_committed`). Call once, before commit.
    pub fn finish(mut self, fts_committed: u64) -> Result<BatchOutcome> {
        let seq = match self.meta.get(META_SEQ)? {
            Some(v) => codec::decode::<u64>("meta", v.value())?,
            None => 0,
        } + 1;
        let mut stats: BTreeMap<String, [i64; 4]> = BTreeMap::new();
        let mut touched = Vec::new();
        let deltas = std::mem::take(&mut self.deltas);
        for (hash, delta) in deltas {
            let hk = hash.to_bytes();
            let old: Option<RowRecord> = match self.rows.get(hk.as_slice())? {
                Some(v) => Some(codec::decode("rows", v.value())?),
                None => None,
            };
            let places = old.as_ref().map_or(0, |o| o.places as i64) + delta.places;
            let new = if places <= 0 {
                None
            } else {
                let mut families: BTreeMap<String, i64> = old
                    .as_ref()
                    .map(|o| {
                        o.families
                            .iter()
                            .map(|(f, n)| (f.clone(), *n as i64))
                            .collect()
                    })
                    .unwrap_or_default();
                for (f, d) in &delta.families {
                    *families.entry(f.clone()).or_default() += d;
                }
                let ((rep_tokens, rep_kind), first_place) =
                    match (&old, delta.least_variant, &delta.least_place) {
                        // A new row's variants and places are all this batch's.
                        (None, Some((_, tokens, kind)), Some(place)) => {
                            ((tokens, kind), keys::split_row_place(place).0)
                        }
                        _ => (
                            self.representative_head(hash)?,
                            self.first_place_object(hash)?,
                        ),
                    };
                let primary_family = self.primary_of(&first_place)?;
                Some(RowRecord {
                    simhash: old.as_ref().map_or(delta.simhash, |o| o.simhash),
                    words: old.as_ref().map_or(delta.words, |o| o.words),
                    tokens: rep_tokens,
                    kind: rep_kind,
                    places: places as u64,
                    primary_family,
                    families: families
                        .into_iter()
                        .filter(|(_, n)| *n > 0)
                        .map(|(f, n)| (f, n as u64))
                        .collect(),
                    // The PII record is a function of the content and the PII settings: a fresh
                    // reading (settings may have changed) replaces the stored one.
                    pii: match (&delta.pii, &old) {
                        (Some(p), _) => p.clone(),
                        (None, Some(o)) => o.pii.clone(),
                        (None, None) => PiiRecord::clean(),
                    },
                    flaws: old.as_ref().map_or(delta.flaws, |o| o.flaws),
                })
            };
            if old == new {
                continue;
            }
            match (&old, &new) {
                (None, Some(row)) => {
                    if self.policy.fingerprintable(row.words) {
                        self.clusters.created.push((hash, row.simhash));
                    }
                    self.clusters.new_rows.insert(hash);
                }
                (Some(row), None) => {
                    if self.policy.fingerprintable(row.words) {
                        self.clusters.removed.push((hash, row.simhash));
                    }
                    self.clusters.removed_all.push(hash);
                }
                _ => {}
            }
            for (row, sign) in [(old.as_ref(), -1i64), (new.as_ref(), 1)] {
                let Some(row) = row else { continue };
                let flawed = i64::from(!row.flaws.is_empty());
                for (f, n) in &row.families {
                    let s = stats.entry(f.clone()).or_default();
                    s[0] += sign * *n as i64;
                    s[1] += sign;
                    s[2] += sign * row.tokens as i64;
                    s[3] += sign * flawed;
                }
                self.totals.flawed_rows =
                    self.totals.flawed_rows.saturating_add_signed(sign * flawed);
                self.totals.unique_rows = self.totals.unique_rows.saturating_add_signed(sign);
                let pii_counter = match row.pii.status {
                    PiiStatus::Clean => None,
                    PiiStatus::Redacted => Some(&mut self.totals.pii_redacted_rows),
                    PiiStatus::Excluded => Some(&mut self.totals.pii_excluded_rows),
                };
                if let Some(c) = pii_counter {
                    *c = c.saturating_add_signed(sign);
                }
                self.totals.tokens = self
                    .totals
                    .tokens
                    .saturating_add_signed(sign * row.tokens as i64);
            }
            match &new {
                Some(row) => {
                    self.rows
                        .insert(hk.as_slice(), codec::encode(row).as_slice())?;
                }
                None => {
                    self.rows.remove(hk.as_slice())?;
                }
            }
            touched.push(hash);
        }
        for (family, [rows, unique, tokens, flawed]) in stats {
            let mut s: FamilyStats = match self.family_stats.get(family.as_str())? {
                Some(v) => codec::decode("family_stats", v.value())?,
                None => FamilyStats::default(),
            };
            s.rows = s.rows.saturating_add_signed(rows);
            s.unique_rows = s.unique_rows.saturating_add_signed(unique);
            s.tokens = s.tokens.saturating_add_signed(tokens);
            s.flawed_rows = s.flawed_rows.saturating_add_signed(flawed);
            if s == FamilyStats::default() {
                self.family_stats.remove(family.as_str())?;
            } else {
                self.family_stats
                    .insert(family.as_str(), codec::encode(&s).as_slice())?;
            }
        }
        for (id, classes) in std::mem::take(&mut self.classes) {
            if classes == 0 {
                self.object_classes.remove(id.as_str())?;
            } else {
                self.object_classes.insert(id.as_str(), classes)?;
            }
        }
        let moved = self.maintain_clusters(seq)?;
        self.meta
            .insert(META_POLICY, codec::encode(&self.policy).as_slice())?;
        if !touched.is_empty() {
            let mut log = Vec::with_capacity(touched.len() * 16);
            for h in &touched {
                log.extend_from_slice(&h.to_bytes());
            }
            self.fts_log.insert(seq, log.as_slice())?;
        }
        let pruned: Option<u64> = match self.meta.get(META_FTS_PRUNED)? {
            Some(v) => Some(codec::decode("meta", v.value())?),
            None => None,
        };
        if fts_committed > pruned.unwrap_or(0) {
            self.fts_log.retain_in(..=fts_committed, |_, _| false)?;
            self.meta
                .insert(META_FTS_PRUNED, codec::encode(&fts_committed).as_slice())?;
        }
        self.meta.insert(META_SEQ, codec::encode(&seq).as_slice())?;
        self.meta
            .insert(META_TOTALS, codec::encode(&self.totals).as_slice())?;
        Ok(BatchOutcome {
            seq,
            touched,
            moved,
        })
    }
}

/// Where a row sits: its cluster (smallest content hash of its component), split and whether
/// the cluster holds a holdout group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Assignment {
    pub cluster: Hash128,
    pub split: Split,
    pub holdout: bool,
}

/// One recorded split change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SplitMove {
    pub seq: u64,
    pub row: Hash128,
    pub from: Split,
    pub to: Split,
}
