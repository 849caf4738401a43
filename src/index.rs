//! The index as one thing: a data directory holding the redb database (`index.redb`, the truth)
//! and the tantivy directory (`text/`, derived). Opening it for writing brings the full-text index
//! up to date with redb before anything else happens.

use std::path::{Path, PathBuf};

use crate::error::Result;
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
        let mut search = SearchIndex::open(&data_dir.join(TEXT_DIR), true)?;
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

    /// Open both stores for reading. A full-text index that lags redb is caught up first when no
    /// writer holds it; otherwise it is searched as it is (its writer keeps it current).
    pub fn open_read(data_dir: &Path) -> Result<(Store, SearchIndex)> {
        let store = Self::open_store_read(data_dir)?;
        let text_dir = data_dir.join(TEXT_DIR);
        let current = match SearchIndex::open(&text_dir, false) {
            Ok(search) => {
                if search.committed_seq()? == store.read()?.seq()? {
                    return Ok((store, search));
                }
                Some(search)
            }
            Err(_) => None,
        };
        match SearchIndex::open(&text_dir, true) {
            Ok(mut search) => {
                search.catch_up(&store)?;
                Ok((store, search))
            }
            Err(e) => match current {
                Some(search) => Ok((store, search)),
                None => Err(e),
            },
        }
    }
}
