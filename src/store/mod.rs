//! The index's source of truth: every redb table, the only code that opens one, and the write
//! batch that keeps them consistent. One [`WriteBatch`] is one redb write transaction: an object's
//! rows and its checkpoint (its [`ObjectRecord`] with version) commit together, so a crash leaves
//! the previous or the next state, never a mix. Derived counters (rows per family, totals) are
//! updated by deltas in the same transaction, and every commit appends the content hashes it
//! touched to `fts_log`, from which the full-text index catches up (see `search`).
//!
//! Tables (keys in `keys`, values in `records`, encoded by `codec`):
//!
//! | table          | key                               | value                          |
//! |----------------|-----------------------------------|--------------------------------|
//! | meta           | name                              | format version, seq, totals…   |
//! | objects        | source \0 key                     | ObjectRecord                   |
//! | object_places  | object id \0 line record          | content hash ‖ variant hash    |
//! | row_places     | hash ‖ object id \0 line record   | ()                             |
//! | variants       | hash ‖ variant hash               | VariantRecord (text, tokens)   |
//! | variant_refs   | hash ‖ variant hash               | u64 occurrences                |
//! | rows           | hash                              | RowRecord                      |
//! | family_stats   | family                            | FamilyStats                    |
//! | fts_log        | seq                               | hashes touched by that commit  |
//! | simhash_tables | table ‖ permuted simhash ‖ hash   | simhash                        |
//! | clusters       | hash (rows in clusters of 2+)     | cluster id, split, holdout     |
//! | cluster_members| cluster id ‖ hash                 | ()                             |
//! | row_groups     | hash ‖ holdout group              | places of the row in the group |
//! | group_rows     | holdout group ‖ hash              | ()                             |
//! | split_moves    | seq ‖ hash                        | from split, to split           |
//!
//! The near-duplicate tables are maintained by `clusters` under the [`Policy`] stored in `meta`.

mod clusters;
mod codec;
pub mod keys;
mod records;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use redb::{
    Builder, ConcurrencyMode, Database, ReadOnlyDatabase, ReadTransaction, ReadableDatabase,
    ReadableTable, Table, TableDefinition, WriteTransaction,
};
use serde::Serialize;

pub use records::{
    FamilyStats, ObjectRecord, ObjectStatus, RowRecord, Totals, VariantRecord, KEPT_REJECTIONS,
};

use crate::error::{Error, Result};
use crate::fingerprint::{Fingerprints, Hash128};
use crate::model::{Conversation, RecordKind};
use crate::neardup::{BlockTables, Policy, Split};
use crate::pii::{PiiRecord, PiiStatus};

/// Version of the on-disk layout; bumped on any incompatible change to tables or records.
/// 2: near-duplicate tables, word SimHash, `RowRecord::words`.
pub const FORMAT_VERSION: u32 = 2;

const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
const OBJECTS: TableDefinition<&str, &[u8]> = TableDefinition::new("objects");
const OBJECT_PLACES: TableDefinition<&[u8], &[u8]> = TableDefinition::new("object_places");
const ROW_PLACES: TableDefinition<&[u8], ()> = TableDefinition::new("row_places");
const VARIANTS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("variants");
const VARIANT_REFS: TableDefinition<&[u8], u64> = TableDefinition::new("variant_refs");
const ROWS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("rows");
const FAMILY_STATS: TableDefinition<&str, &[u8]> = TableDefinition::new("family_stats");
const FTS_LOG: TableDefinition<u64, &[u8]> = TableDefinition::new("fts_log");
const SIMHASH_TABLES: TableDefinition<&[u8], u64> = TableDefinition::new("simhash_tables");
const CLUSTERS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("clusters");
const CLUSTER_MEMBERS: TableDefinition<&[u8], ()> = TableDefinition::new("cluster_members");
const ROW_GROUPS: TableDefinition<&[u8], u64> = TableDefinition::new("row_groups");
const GROUP_ROWS: TableDefinition<&[u8], ()> = TableDefinition::new("group_rows");
const SPLIT_MOVES: TableDefinition<&[u8], &[u8]> = TableDefinition::new("split_moves");

const META_VERSION: &str = "format_version";
const META_SEQ: &str = "seq";
const META_TOTALS: &str = "totals";
const META_FTS_PRUNED: &str = "fts_pruned_through";
const META_POLICY: &str = "policy";

enum Db {
    Write(Database),
    Read(ReadOnlyDatabase),
}

/// An open index database.
pub struct Store {
    db: Db,
    path: PathBuf,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("path", &self.path).finish()
    }
}

fn builder() -> Builder {
    let mut b = Builder::new();
    b.set_concurrency_mode(ConcurrencyMode::SingleWriter);
    b
}

impl Store {
    /// Open (creating if needed) for writing. Other processes may open it read-only meanwhile.
    pub fn open_write(path: &Path) -> Result<Store> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|source| Error::Io {
                path: dir.to_path_buf(),
                source,
            })?;
        }
        let db = builder().create(path).map_err(|e| Error::Database {
            path: path.to_path_buf(),
            source: Box::new(e.into()),
        })?;
        let store = Store {
            db: Db::Write(db),
            path: path.to_path_buf(),
        };
        store.init()?;
        Ok(store)
    }

    /// Open an existing index for reading; works while another process writes to it. Never
    /// opens for writing (so a writer starting meanwhile never meets a lock): a file that needs
    /// recovery after a crash is reported, and the next writer (`idx ingest`, `idx serve`)
    /// recovers it.
    pub fn open_read(path: &Path) -> Result<Store> {
        if !path.exists() {
            return Err(Error::NoIndex(path.to_path_buf()));
        }
        let db = builder().open_read_only(path).map_err(|e| match e {
            redb::DatabaseError::RepairAborted => Error::NeedsRecovery(path.to_path_buf()),
            e => Error::Database {
                path: path.to_path_buf(),
                source: Box::new(e.into()),
            },
        })?;
        let store = Store {
            db: Db::Read(db),
            path: path.to_path_buf(),
        };
        store.check_version()?;
        Ok(store)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// redb's own integrity check (page checksums and tree structure) of a store opened for
    /// writing; `Ok(false)` when redb had to repair something.
    pub fn check_integrity(&mut self) -> Result<bool> {
        match &mut self.db {
            Db::Write(db) => db.check_integrity().map_err(|e| Error::Database {
                path: self.path.clone(),
                source: Box::new(e.into()),
            }),
            Db::Read(_) => Err(Error::Invariant(
                "redb's integrity check needs the index opened for writing".to_string(),
            )),
        }
    }

    fn init(&self) -> Result<()> {
        let Db::Write(db) = &self.db else {
            return Ok(());
        };
        // An initialised index is only checked: opening it must write nothing.
        let initialised = {
            let txn = db.begin_read()?;
            match txn.open_table(META) {
                Ok(meta) => meta.get(META_VERSION)?.is_some(),
                Err(redb::TableError::TableDoesNotExist(_)) => false,
                Err(e) => return Err(e.into()),
            }
        };
        if initialised {
            return self.check_version();
        }
        let txn = db.begin_write()?;
        {
            let mut meta = txn.open_table(META)?;
            meta.insert(META_VERSION, codec::encode(&FORMAT_VERSION).as_slice())?;
            // Create every table so readers never meet a missing one.
            txn.open_table(OBJECTS)?;
            txn.open_table(OBJECT_PLACES)?;
            txn.open_table(ROW_PLACES)?;
            txn.open_table(VARIANTS)?;
            txn.open_table(VARIANT_REFS)?;
            txn.open_table(ROWS)?;
            txn.open_table(FAMILY_STATS)?;
            txn.open_table(FTS_LOG)?;
            txn.open_table(SIMHASH_TABLES)?;
            txn.open_table(CLUSTERS)?;
            txn.open_table(CLUSTER_MEMBERS)?;
            txn.open_table(ROW_GROUPS)?;
            txn.open_table(GROUP_ROWS)?;
            txn.open_table(SPLIT_MOVES)?;
        }
        txn.commit()?;
        Ok(())
    }

    /// Add bare fingerprints to the SimHash tables in one commit, without rows: a hook for
    /// benchmarking the table layout at scale. Such entries never join a cluster (clusters start
    /// from rows), `verify` ignores them, and the next policy change drops them; do not use it on
    /// an index you care about.
    pub fn index_fingerprints(&self, policy: &Policy, items: &[(Hash128, u64)]) -> Result<()> {
        let txn = self.begin_write()?;
        {
            let mut table = txn.open_table(SIMHASH_TABLES)?;
            let tables = policy.tables();
            for &(row, simhash) in items {
                for t in 0..tables.len() {
                    table.insert(
                        clusters::simhash_key(t, tables.permute(t, simhash), row).as_slice(),
                        simhash,
                    )?;
                }
            }
        }
        txn.commit()?;
        Ok(())
    }

    /// Make the stored near-duplicate state follow `policy`: when it differs from the policy the
    /// clusters were built with, recompute them all in one commit and report how many rows
    /// moved split. A fresh index just records the policy.
    pub fn ensure_policy(&self, policy: &Policy) -> Result<Option<u64>> {
        let stored: Option<Policy> = self.read()?.meta(META_POLICY)?;
        if stored.as_ref() == Some(policy) {
            return Ok(None);
        }
        let txn = self.begin_write()?;
        let moved = {
            let mut batch = WriteBatch::open(&txn, policy)?;
            let empty = batch.rows.first()?.is_none();
            if !empty {
                batch.rebuild_clusters(stored.as_ref())?;
            }
            let outcome = batch.finish(0)?;
            outcome.moved
        };
        txn.commit()?;
        Ok(Some(moved))
    }

    fn check_version(&self) -> Result<()> {
        let view = self.read()?;
        match view.meta::<u32>(META_VERSION)? {
            Some(v) if v == FORMAT_VERSION => Ok(()),
            Some(found) => Err(Error::Version {
                path: self.path.clone(),
                found,
                expected: FORMAT_VERSION,
            }),
            None => Err(Error::NoIndex(self.path.clone())),
        }
    }

    /// A consistent snapshot of the committed state.
    pub fn read(&self) -> Result<ReadView> {
        let txn = match &self.db {
            Db::Write(db) => db.begin_read()?,
            Db::Read(db) => db.begin_read()?,
        };
        Ok(ReadView { txn })
    }

    /// Start a write transaction; `None` when this store was opened read-only.
    pub fn begin_write(&self) -> Result<WriteTransaction> {
        match &self.db {
            Db::Write(db) => Ok(db.begin_write()?),
            Db::Read(_) => Err(Error::Query(format!(
                "{} is open read-only",
                self.path.display()
            ))),
        }
    }
}

/// Row-level changes gathered during a batch, applied in `finish`.
#[derive(Default)]
struct RowDelta {
    places: i64,
    families: BTreeMap<String, i64>,
    simhash: u64,
    words: u32,
    pii: Option<PiiRecord>,
}

/// What `WriteBatch::add_place` needs of a row: its fingerprints, canonical (redacted)
/// conversation and PII record.
#[derive(Clone, Copy)]
pub struct NewPlace<'a> {
    pub fp: &'a Fingerprints,
    pub conversation: &'a Conversation,
    pub pii: &'a PiiRecord,
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
    meta: Table<'t, &'static str, &'static [u8]>,
    objects: Table<'t, &'static str, &'static [u8]>,
    object_places: Table<'t, &'static [u8], &'static [u8]>,
    row_places: Table<'t, &'static [u8], ()>,
    variants: Table<'t, &'static [u8], &'static [u8]>,
    variant_refs: Table<'t, &'static [u8], u64>,
    rows: Table<'t, &'static [u8], &'static [u8]>,
    family_stats: Table<'t, &'static str, &'static [u8]>,
    fts_log: Table<'t, u64, &'static [u8]>,
    simhash_tables: Table<'t, &'static [u8], u64>,
    cluster_entries: Table<'t, &'static [u8], &'static [u8]>,
    cluster_members: Table<'t, &'static [u8], ()>,
    row_groups: Table<'t, &'static [u8], u64>,
    group_rows: Table<'t, &'static [u8], ()>,
    split_moves: Table<'t, &'static [u8], &'static [u8]>,
    totals: Totals,
    deltas: BTreeMap<Hash128, RowDelta>,
    primary_cache: HashMap<String, String>,
    policy: Policy,
    tables: BlockTables,
    clusters: clusters::ClusterWork,
}

#[derive(Serialize)]
struct VariantRef<'a> {
    tokens: u64,
    conversation: &'a Conversation,
}

fn status_counts(t: &mut Totals, status: &ObjectStatus, sign: i64) {
    let field = match status {
        ObjectStatus::Indexed => &mut t.objects_indexed,
        ObjectStatus::Skipped { .. } => &mut t.objects_skipped,
        ObjectStatus::Failed { .. } => &mut t.objects_failed,
    };
    *field = field.saturating_add_signed(sign);
    t.objects = t.objects.saturating_add_signed(sign);
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
            row_places: txn.open_table(ROW_PLACES)?,
            variants: txn.open_table(VARIANTS)?,
            variant_refs: txn.open_table(VARIANT_REFS)?,
            rows: txn.open_table(ROWS)?,
            family_stats: txn.open_table(FAMILY_STATS)?,
            fts_log: txn.open_table(FTS_LOG)?,
            simhash_tables: txn.open_table(SIMHASH_TABLES)?,
            cluster_entries: txn.open_table(CLUSTERS)?,
            cluster_members: txn.open_table(CLUSTER_MEMBERS)?,
            row_groups: txn.open_table(ROW_GROUPS)?,
            group_rows: txn.open_table(GROUP_ROWS)?,
            split_moves: txn.open_table(SPLIT_MOVES)?,
            totals,
            deltas: BTreeMap::new(),
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
            status_counts(&mut self.totals, &old.status, -1);
            self.totals.rejected_rows = self.totals.rejected_rows.saturating_sub(old.rejected);
        }
        status_counts(&mut self.totals, &record.status, 1);
        self.totals.rejected_rows += record.rejected;
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
        status_counts(&mut self.totals, &old.status, -1);
        self.totals.rejected_rows = self.totals.rejected_rows.saturating_sub(old.rejected);
        self.objects.remove(id)?;
        self.primary_cache.remove(id);
        Ok(Some(old))
    }

    /// Remove every place of an object (tagged with `families`); returns how many.
    pub fn remove_places(&mut self, object_id: &str, families: &[String]) -> Result<u64> {
        let prefix = keys::object_places_prefix(object_id);
        let end = keys::prefix_end(&prefix);
        let mut doomed: Vec<(Vec<u8>, Hash128, Hash128)> = Vec::new();
        for entry in self
            .object_places
            .range::<&[u8]>(prefix.as_slice()..end.as_slice())?
        {
            let (k, v) = entry?;
            let v = v.value();
            let (Some(hash), Some(variant)) = (
                v.get(..16).and_then(Hash128::from_bytes),
                v.get(16..).and_then(Hash128::from_bytes),
            ) else {
                return Err(Error::Codec {
                    table: "object_places",
                    message: "value is not two 16-byte hashes".into(),
                });
            };
            doomed.push((k.value().to_vec(), hash, variant));
        }
        for (k, hash, variant) in &doomed {
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
            self.group_place(object_id, families, *hash, -1);
        }
        let n = doomed.len() as u64;
        self.totals.rows = self.totals.rows.saturating_sub(n);
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
        } = row;
        let pk = keys::object_place(object_id, line, record);
        let mut value = [0u8; 32];
        value[..16].copy_from_slice(&fp.content_hash.to_bytes());
        value[16..].copy_from_slice(&fp.variant_hash.to_bytes());
        if self
            .object_places
            .insert(pk.as_slice(), value.as_slice())?
            .is_some()
        {
            return Err(Error::Query(format!(
                "place {object_id}:{line}#{record} added twice in one batch"
            )));
        }
        self.row_places.insert(
            keys::row_place(fp.content_hash, object_id, line, record).as_slice(),
            (),
        )?;
        let vk = keys::variant(fp.content_hash, fp.variant_hash);
        let refs = self
            .variant_refs
            .get(vk.as_slice())?
            .map_or(0, |v| v.value());
        if refs == 0 {
            let encoded = codec::encode(&VariantRef {
                tokens: fp.tokens,
                conversation,
            });
            self.variants.insert(vk.as_slice(), encoded.as_slice())?;
        }
        self.variant_refs.insert(vk.as_slice(), refs + 1)?;
        let delta = self.deltas.entry(fp.content_hash).or_default();
        delta.places += 1;
        delta.simhash = fp.simhash;
        delta.words = fp.words;
        delta.pii = Some(pii.clone());
        for f in families {
            *delta.families.entry(f.clone()).or_default() += 1;
        }
        self.group_place(object_id, families, fp.content_hash, 1);
        self.totals.rows += 1;
        Ok(())
    }

    fn primary_of(&mut self, object_id: &str) -> Result<String> {
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

    /// Apply the gathered row changes, derived counters and the full-text log; prune log entries
    /// the full-text index has already committed (`fts_committed`). Call once, before commit.
    pub fn finish(mut self, fts_committed: u64) -> Result<BatchOutcome> {
        let seq = match self.meta.get(META_SEQ)? {
            Some(v) => codec::decode::<u64>("meta", v.value())?,
            None => 0,
        } + 1;
        let mut stats: BTreeMap<String, [i64; 3]> = BTreeMap::new();
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
                let vstart = keys::variant(hash, Hash128(0));
                let vend = keys::variant(hash, Hash128(u128::MAX));
                // Only the leading (tokens, kind) of the representative is needed: decoding the
                // prefix skips the text.
                let (rep_tokens, rep_kind): (u64, RecordKind) = match self
                    .variants
                    .range::<&[u8]>(vstart.as_slice()..=vend.as_slice())?
                    .next()
                {
                    Some(entry) => codec::decode_prefix("variants", entry?.1.value())?,
                    None => {
                        return Err(Error::Codec {
                            table: "variants",
                            message: format!("row {hash} has places but no stored text"),
                        })
                    }
                };
                let pstart = hk.to_vec();
                let pend = keys::prefix_end(&hk);
                let first_place = match self
                    .row_places
                    .range::<&[u8]>(pstart.as_slice()..pend.as_slice())?
                    .next()
                {
                    Some(entry) => keys::split_row_place(entry?.0.value()).0,
                    None => String::new(),
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
                for (f, n) in &row.families {
                    let s = stats.entry(f.clone()).or_default();
                    s[0] += sign * *n as i64;
                    s[1] += sign;
                    s[2] += sign * row.tokens as i64;
                }
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
        for (family, [rows, unique, tokens]) in stats {
            let mut s: FamilyStats = match self.family_stats.get(family.as_str())? {
                Some(v) => codec::decode("family_stats", v.value())?,
                None => FamilyStats::default(),
            };
            s.rows = s.rows.saturating_add_signed(rows);
            s.unique_rows = s.unique_rows.saturating_add_signed(unique);
            s.tokens = s.tokens.saturating_add_signed(tokens);
            if s == FamilyStats::default() {
                self.family_stats.remove(family.as_str())?;
            } else {
                self.family_stats
                    .insert(family.as_str(), codec::encode(&s).as_slice())?;
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

/// A read transaction with typed accessors. Every answer comes from one committed state.
pub struct ReadView {
    txn: ReadTransaction,
}

impl ReadView {
    fn meta<T: serde::de::DeserializeOwned>(&self, name: &str) -> Result<Option<T>> {
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
        let start = keys::variant(hash, Hash128(0));
        let end = keys::variant(hash, Hash128(u128::MAX));
        match t.range::<&[u8]>(start.as_slice()..=end.as_slice())?.next() {
            Some(entry) => Ok(Some(codec::decode("variants", entry?.1.value())?)),
            None => Ok(None),
        }
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

    fn objects_in(&self, source: Option<&str>) -> Result<Vec<ObjectRecord>> {
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

    /// The rows of one object as (line, record, content hash), in line order.
    pub fn object_places(&self, id: &str) -> Result<Vec<(u64, u32, Hash128)>> {
        let t = self.txn.open_table(OBJECT_PLACES)?;
        let prefix = keys::object_places_prefix(id);
        let end = keys::prefix_end(&prefix);
        let mut out = Vec::new();
        for entry in t.range::<&[u8]>(prefix.as_slice()..end.as_slice())? {
            let (k, v) = entry?;
            let (line, record) = keys::place_tail(k.value());
            let hash = Hash128::from_bytes(v.value()).ok_or_else(|| Error::Codec {
                table: "object_places",
                message: "value is not a hash".into(),
            })?;
            out.push((line, record, hash));
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
    pub fn assignment(&self, row: Hash128, policy: &Policy) -> Result<Assignment> {
        let t = self.txn.open_table(CLUSTERS)?;
        if let Some(v) = t.get(row.to_bytes().as_slice())? {
            let (cluster, split, holdout) = clusters::decode_entry(v.value())?;
            return Ok(Assignment {
                cluster,
                split,
                holdout,
            });
        }
        let holdout = !self.row_groups(row)?.is_empty();
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
    /// one, a cluster of one), keyed by content hash.
    pub fn assignments(&self, policy: &Policy) -> Result<BTreeMap<Hash128, Assignment>> {
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

    /// Rows that belong to at least one holdout group.
    pub fn grouped_rows(&self) -> Result<std::collections::BTreeSet<Hash128>> {
        let t = self.txn.open_table(ROW_GROUPS)?;
        let mut out = std::collections::BTreeSet::new();
        for entry in t.iter()? {
            if let Some(h) = Hash128::from_bytes(entry?.0.value()) {
                out.insert(h);
            }
        }
        Ok(out)
    }

    /// The holdout groups of a row.
    pub fn row_groups(&self, row: Hash128) -> Result<Vec<Hash128>> {
        self.second_hashes(ROW_GROUPS, row)
    }

    /// The members of a stored cluster (empty for a cluster of one).
    pub fn cluster_members(&self, cluster: Hash128) -> Result<Vec<Hash128>> {
        self.second_hashes(CLUSTER_MEMBERS, cluster)
    }

    fn second_hashes<V: redb::Value + 'static>(
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
        let simhash_tables = self.txn.open_table(SIMHASH_TABLES)?;
        let variants = self.txn.open_table(VARIANTS)?;
        let found = clusters::candidates(
            &simhash_tables,
            &policy.tables(),
            policy,
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
        let table = self.txn.open_table(SIMHASH_TABLES)?;
        let found = clusters::candidates(&table, &policy.tables(), policy, Hash128(0), simhash)?;
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
    pub fn shingles(&self, row: Hash128) -> Result<Vec<u64>> {
        clusters::shingles_of(&self.txn.open_table(VARIANTS)?, row)
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
        let mut h = xxhash_rust::xxh3::Xxh3::new();
        fn feed<K: redb::Key + 'static, V: redb::Value + 'static>(
            h: &mut xxhash_rust::xxh3::Xxh3,
            t: &impl ReadableTable<K, V>,
            name: &str,
        ) -> Result<()>
        where
            for<'a> K::SelfType<'a>: std::fmt::Debug,
            for<'a> V::SelfType<'a>: std::fmt::Debug,
        {
            h.update(name.as_bytes());
            for entry in t.iter()? {
                let (k, v) = entry?;
                h.update(format!("{:?}={:?};", k.value(), v.value()).as_bytes());
            }
            Ok(())
        }
        feed(&mut h, &self.txn.open_table(OBJECTS)?, "objects")?;
        feed(
            &mut h,
            &self.txn.open_table(OBJECT_PLACES)?,
            "object_places",
        )?;
        feed(&mut h, &self.txn.open_table(ROW_PLACES)?, "row_places")?;
        feed(&mut h, &self.txn.open_table(VARIANTS)?, "variants")?;
        feed(&mut h, &self.txn.open_table(VARIANT_REFS)?, "variant_refs")?;
        feed(&mut h, &self.txn.open_table(ROWS)?, "rows")?;
        feed(&mut h, &self.txn.open_table(FAMILY_STATS)?, "family_stats")?;
        // Split moves are history (they depend on the order things arrived in), not state.
        feed(
            &mut h,
            &self.txn.open_table(SIMHASH_TABLES)?,
            "simhash_tables",
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
        Ok(format!("{:032x}", h.digest128()))
    }
}
