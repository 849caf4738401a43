//! The index's source of truth: every redb table, the only code that opens one, and the write
//! batch that keeps them consistent. One [`WriteBatch`] is one redb write transaction: an object's
//! rows and its checkpoint (its [`ObjectRecord`] with version) commit together, so a crash leaves
//! the previous or the next state, never a mix. Derived counters (rows per family, totals) are
//! updated by deltas in the same transaction, and every commit appends the content hashes it
//! touched to `fts_log`, from which the full-text index catches up (see `search`).
//!
//! Files: `tables` (the table definitions), `write` (the write batch), `read` (the read view),
//! `clusters` (near-duplicate clusters and splits), `buckets` (the packed SimHash tables),
//! `footprint` (what each table costs on
//! disk), `keys`, `records` and `codec`.
//!
//! Tables (keys in `keys`, values in `records`, encoded by `codec`):
//!
//! | table          | key                               | value                          |
//! |----------------|-----------------------------------|--------------------------------|
//! | meta           | name                              | format version, seq, totals…   |
//! | objects        | source \0 key                     | ObjectRecord                   |
//! | object_places  | object id \0 line record          | content hash ‖ variant hash    |
//! | object_classes | source \0 key                     | content classes of its places  |
//! | row_places     | hash ‖ object id \0 line record   | ()                             |
//! | variants       | hash ‖ variant hash               | head, zstd text (codec)        |
//! | variant_refs   | hash ‖ variant hash               | u64 occurrences                |
//! | rows           | hash                              | RowRecord                      |
//! | family_stats   | family                            | FamilyStats                    |
//! | fts_log        | seq                               | hashes touched by that commit  |
//! | simhash_buckets| table ‖ bucket (block prefix)     | packed (permuted simhash, hash)|
//! | clusters       | hash (rows in clusters of 2+)     | cluster id, split, holdout     |
//! | cluster_members| cluster id ‖ hash                 | ()                             |
//! | row_groups     | hash ‖ holdout group              | places of the row in the group |
//! | group_rows     | holdout group ‖ hash              | ()                             |
//! | split_moves    | seq ‖ hash                        | from split, to split           |
//! | benchmarks     | benchmark name                    | BenchmarkRecord                |
//! | benchmark_items| name \0 item number               | BenchmarkItem (place, n-grams) |
//! | contamination  | hash                              | Contamination (set, hits)      |
//! | global         | hash (rows of cross-shard clusters)| global cluster, holdout, exported, representative |
//!
//! The near-duplicate tables are maintained by `clusters` under the [`Policy`] stored in `meta`.

mod buckets;
mod classes;
mod clusters;
mod codec;
mod contamination;
mod footprint;
mod global;
pub mod keys;
mod read;
mod records;
mod tables;
mod write;

use crate::error::{Error, Result};
use crate::fingerprint::Hash128;
use crate::neardup::Policy;
pub use codec::encode_variant;
pub use contamination::ContaminationUpdate;
pub use footprint::TableFootprint;
pub use global::{GlobalAssignment, GlobalInfo};
pub use read::ReadView;
pub use records::{
    BenchmarkItem, BenchmarkRecord, Contamination, ContaminationHit, FamilyStats, ObjectRecord,
    ObjectStatus, RowRecord, Totals, VariantRecord, KEPT_REJECTIONS,
};
use redb::{
    Builder, ConcurrencyMode, Database, ReadOnlyDatabase, ReadableDatabase, ReadableTable,
    WriteTransaction,
};
use std::path::{Path, PathBuf};
pub use tables::FORMAT_VERSION;
use tables::*;
pub use write::*;

enum Db {
    Write(Database),
    Read(ReadOnlyDatabase),
}

/// The redb file's length and its unused part (see [`Store::free_space`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FreeSpace {
    pub file_bytes: u64,
    pub free_bytes: u64,
}

/// What one compaction of the redb file did.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Compaction {
    pub bytes_before: u64,
    pub bytes_after: u64,
    pub seconds: f64,
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

/// redb's page cache, per open database: 256 MiB for a writer unless `IDX_CACHE_MB` says
/// otherwise (redb's own default, 1 GiB, made the ingest of a large index hold a gigabyte it
/// barely used; see docs/PERFORMANCE.md).
pub const DEFAULT_CACHE_MB: usize = 256;

/// The page cache of a read-only open (`verify`, `export`, CLI queries), which read most
/// tables through once: at 1.37M rows, 128 MiB instead of 256 took `idx export` from 1,077 to
/// 822 MiB without slowing it (docs/PERFORMANCE.md § Scale).
pub const DEFAULT_READ_CACHE_MB: usize = 128;

fn cache_bytes(default_mb: usize) -> usize {
    std::env::var("IDX_CACHE_MB")
        .ok()
        .and_then(|v| v.trim().parse::<usize>().ok())
        .unwrap_or(default_mb)
        .saturating_mul(1 << 20)
}

fn builder(default_cache_mb: usize) -> Builder {
    let mut b = Builder::new();
    b.set_concurrency_mode(ConcurrencyMode::SingleWriter);
    b.set_cache_size(cache_bytes(default_cache_mb));
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
        let db = builder(DEFAULT_CACHE_MB)
            .create(path)
            .map_err(|e| Error::Database {
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
        let db = builder(DEFAULT_READ_CACHE_MB)
            .open_read_only(path)
            .map_err(|e| match e {
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
            if let Some(found) = self.read()?.meta::<u32>(META_VERSION)? {
                if (OLDEST_UPGRADABLE..FORMAT_VERSION).contains(&found) {
                    self.upgrade(db, found)?;
                }
            }
            return self.check_version();
        }
        let txn = db.begin_write()?;
        {
            let mut meta = txn.open_table(META)?;
            meta.insert(META_VERSION, codec::encode(&FORMAT_VERSION).as_slice())?;
            // Create every table so readers never meet a missing one.
            txn.open_table(OBJECTS)?;
            txn.open_table(OBJECT_PLACES)?;
            txn.open_table(OBJECT_CLASSES)?;
            txn.open_table(ROW_PLACES)?;
            txn.open_table(VARIANTS)?;
            txn.open_table(VARIANT_REFS)?;
            txn.open_table(ROWS)?;
            txn.open_table(FAMILY_STATS)?;
            txn.open_table(FTS_LOG)?;
            txn.open_table(SIMHASH_BUCKETS)?;
            txn.open_table(CLUSTERS)?;
            txn.open_table(CLUSTER_MEMBERS)?;
            txn.open_table(ROW_GROUPS)?;
            txn.open_table(GROUP_ROWS)?;
            txn.open_table(SPLIT_MOVES)?;
            txn.open_table(BENCHMARKS)?;
            txn.open_table(BENCHMARK_ITEMS)?;
            txn.open_table(CONTAMINATION)?;
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
            let mut table = txn.open_table(SIMHASH_BUCKETS)?;
            buckets::apply(&mut table, &policy.tables(), &[], items)?;
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

    /// Bring an index of format `found` (`OLDEST_UPGRADABLE` or later) to this one, in one
    /// commit: from 4, its SimHash tables become buckets (without a stored policy there are no
    /// clusters to keep, so the old tables are just dropped and the next `ensure_policy` builds
    /// them); from 4 and 5, `object_classes` is filled from the places (137k rows: under half a
    /// second).
    fn upgrade(&self, db: &Database, found: u32) -> Result<()> {
        let policy: Option<Policy> = self.read()?.meta(META_POLICY)?;
        let txn = db.begin_write()?;
        if found == 4 {
            buckets::upgrade_from_format_4(&txn, policy.as_ref())?;
        }
        classes::fill(&txn)?;
        txn.open_table(META)?
            .insert(META_VERSION, codec::encode(&FORMAT_VERSION).as_slice())?;
        txn.commit()?;
        Ok(())
    }

    fn check_version(&self) -> Result<()> {
        let view = self.read()?;
        match view.meta::<u32>(META_VERSION)? {
            Some(v) if v == FORMAT_VERSION => Ok(()),
            Some(found) if (OLDEST_UPGRADABLE..FORMAT_VERSION).contains(&found) => {
                Err(Error::NeedsUpgrade {
                    path: self.path.clone(),
                    found,
                })
            }
            Some(found) => Err(Error::Version {
                path: self.path.clone(),
                found,
                expected: FORMAT_VERSION,
            }),
            None => Err(Error::NoIndex(self.path.clone())),
        }
    }

    /// The redb file's length and the bytes in it that no table uses (pages freed by earlier
    /// transactions: a large ingest rewrites most leaves of its tables, so right after one
    /// about half the file can be free).
    /// Reads every page of every table (redb's statistics walk the trees): as long as a full
    /// scan of the file, so callers ask only after a large write.
    pub fn free_space(&self) -> Result<FreeSpace> {
        let file_bytes = self.file_bytes()?;
        let txn = self.begin_write()?;
        let stats = txn.stats()?;
        txn.abort()?;
        // The pages the tables' trees hold now. redb's allocated pages also count those the
        // last commits freed but keep until the next transactions end (two-phase commit), which
        // compaction releases first: right after a two-batch ingest they are half the file.
        let used = (stats.leaf_pages() + stats.branch_pages()) * stats.page_size() as u64;
        Ok(FreeSpace {
            file_bytes,
            free_bytes: file_bytes.saturating_sub(used),
        })
    }

    /// The redb file's length now.
    pub fn file_bytes(&self) -> Result<u64> {
        Ok(std::fs::metadata(&self.path)
            .map_err(|source| Error::Io {
                path: self.path.clone(),
                source,
            })?
            .len())
    }

    /// Give the free pages back to the file system (redb's compaction: pages are moved down
    /// and the file truncated) when at least `min_free_bytes` and a quarter of the file are
    /// free. `Ok(None)` when there was too little to win, or when another process holds a
    /// read transaction (compaction must wait for none; the next ingest tries again).
    pub fn compact_if_sparse(&mut self, min_free_bytes: u64) -> Result<Option<Compaction>> {
        let before = self.free_space()?;
        if before.free_bytes < min_free_bytes.max(1) || before.free_bytes * 4 < before.file_bytes {
            return Ok(None);
        }
        let started = std::time::Instant::now();
        let Db::Write(db) = &mut self.db else {
            return Ok(None);
        };
        loop {
            match db.compact() {
                Ok(true) => continue,
                Ok(false) => break,
                Err(redb::CompactionError::TransactionInProgress) => {
                    tracing::info!("compaction skipped: a reader holds a transaction");
                    return Ok(None);
                }
                Err(e) => {
                    return Err(Error::Database {
                        path: self.path.clone(),
                        source: Box::new(e.into()),
                    })
                }
            }
        }
        let after = self.free_space()?;
        Ok(Some(Compaction {
            bytes_before: before.file_bytes,
            bytes_after: after.file_bytes,
            seconds: started.elapsed().as_secs_f64(),
        }))
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

/// The stored value of a row's representative spelling (its smallest variant hash), if the
/// row has any: the one lookup behind `ReadView::representative`, the shingles of a row and a
/// batch's counter updates.
fn first_variant<'a>(
    variants: &'a impl ReadableTable<&'static [u8], &'static [u8]>,
    row: Hash128,
) -> Result<Option<redb::AccessGuard<'a, &'static [u8]>>> {
    let start = keys::variant(row, Hash128(0));
    let end = keys::variant(row, Hash128(u128::MAX));
    match variants
        .range::<&[u8]>(start.as_slice()..=end.as_slice())?
        .next()
    {
        Some(entry) => Ok(Some(entry?.1)),
        None => Ok(None),
    }
}
