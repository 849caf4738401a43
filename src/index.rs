//! The index as one thing: a data directory holding the redb database (`index.redb`, the truth)
//! and the tantivy directory (`text/`, derived). Opening it for writing brings the full-text index
//! up to date with redb before anything else happens; a full-text index that cannot be opened
//! (damaged files) is rebuilt from redb then, since it is derived data.

use std::path::{Path, PathBuf};

use crate::error::{Error, ErrorKind, Result};
use crate::search::{Catchup, SearchIndex};
use crate::store::Store;

pub const DB_FILE: &str = "index.redb";
pub const TEXT_DIR: &str = "text";

pub struct Index {
    pub data_dir: PathBuf,
    pub store: Store,
    pub search: SearchIndex,
    /// What opening had to do to the full-text index.
    pub catchup: Catchup,
}

impl Index {
    /// Open or create the index for writing (takes the write locks of both stores).
    pub fn open_write(data_dir: &Path) -> Result<Index> {
        let store = Store::open_write(&data_dir.join(DB_FILE))?;
        let text_dir = data_dir.join(TEXT_DIR);
        let mut search = match SearchIndex::open(&text_dir, true) {
            Ok(search) => search,
            // Another writer, or a folder idx may not touch: not ours to rebuild.
            Err(e) if matches!(e.kind(), ErrorKind::Busy | ErrorKind::Denied) => return Err(e),
            // Derived data: a damaged full-text index is rebuilt from redb, never a blocker.
            Err(e) => {
                tracing::warn!(error = %e, "the full-text index cannot be opened: rebuilding it from redb");
                std::fs::remove_dir_all(&text_dir).map_err(|source| Error::Io {
                    path: text_dir.clone(),
                    source,
                })?;
                SearchIndex::open(&text_dir, true)?
            }
        };
        let catchup = search.catch_up(&store)?;
        if catchup != Catchup::UpToDate {
            tracing::info!(?catchup, "full-text index brought up to date from redb");
        }
        Ok(Index {
            data_dir: data_dir.to_path_buf(),
            store,
            search,
            catchup,
        })
    }

    /// Open the database for reading only (another process may be writing).
    pub fn open_store_read(data_dir: &Path) -> Result<Store> {
        Store::open_read(&data_dir.join(DB_FILE))
    }

    /// Open both stores for reading, never for writing: a full-text index that lags redb is
    /// searched as it is (its hits are checked against redb) and caught up by the next writer.
    /// Returns how many redb commits the full-text index is behind.
    pub fn open_read(data_dir: &Path) -> Result<(Store, SearchIndex, u64)> {
        let store = Self::open_store_read(data_dir)?;
        let search = SearchIndex::open(&data_dir.join(TEXT_DIR), false)?;
        let lag = store.read()?.seq()?.saturating_sub(search.committed_seq()?);
        Ok((store, search, lag))
    }
}

/// What an index costs on disk against what it was built from.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Storage {
    /// Bytes of every indexed object as read (their recorded sizes).
    pub input_bytes: u64,
    /// The redb file.
    pub redb_bytes: u64,
    /// The full-text index's folder.
    pub fulltext_bytes: u64,
    /// Unique rows, for the per-row figures.
    pub unique_rows: u64,
    /// Per redb table, largest first.
    pub tables: Vec<crate::store::TableFootprint>,
}

impl Storage {
    /// Read the sizes of the index in `data_dir` through `view` (a read of the same index).
    pub fn measure(data_dir: &Path, view: &crate::store::ReadView) -> Result<Storage> {
        let file_len = |path: PathBuf| {
            std::fs::metadata(&path)
                .map(|m| m.len())
                .map_err(|source| Error::Io { path, source })
        };
        let mut fulltext_bytes = 0;
        let text_dir = data_dir.join(TEXT_DIR);
        if text_dir.is_dir() {
            let entries = std::fs::read_dir(&text_dir).map_err(|source| Error::Io {
                path: text_dir.clone(),
                source,
            })?;
            for entry in entries.flatten() {
                if entry.file_type().is_ok_and(|t| t.is_file()) {
                    fulltext_bytes += file_len(entry.path())?;
                }
            }
        }
        Ok(Storage {
            input_bytes: view.objects()?.iter().map(|o| o.version.size).sum(),
            redb_bytes: file_len(data_dir.join(DB_FILE))?,
            fulltext_bytes,
            unique_rows: view.totals()?.unique_rows,
            tables: view.table_footprints()?,
        })
    }
}
