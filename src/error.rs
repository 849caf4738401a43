//! Typed library errors. Each names what it is about (a path, a key, a table) so the CLI can print
//! a useful cause chain; `anyhow` is used only in the binary.

use std::path::PathBuf;

/// Errors from opening, reading or writing the index.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error("config {path}: {message}")]
    Config { path: String, message: String },

    #[error("cannot read {path}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("index database {path}")]
    Database {
        path: PathBuf,
        #[source]
        source: Box<redb::Error>,
    },

    #[error("index database: {0}")]
    Store(#[from] Box<redb::Error>),

    #[error("stored value in table `{table}` could not be decoded: {message}")]
    Codec {
        table: &'static str,
        message: String,
    },

    #[error("full-text index {path}")]
    Search {
        path: PathBuf,
        #[source]
        source: tantivy::TantivyError,
    },

    #[error("invalid query: {0}")]
    Query(String),

    #[error("index at {path} is format version {found}, this idx reads version {expected}")]
    Version {
        path: PathBuf,
        found: u32,
        expected: u32,
    },

    #[error("no index at {0} (run `idx ingest PATH` first)")]
    NoIndex(PathBuf),

    #[error("{0} was not closed cleanly (a crash or kill -9) and no writer is running to recover it: run `idx recover` (or any `idx ingest`, or start `idx serve`); commands that only read never write to the index")]
    NeedsRecovery(PathBuf),

    #[error("S3: {0}")]
    S3(String),

    #[error("export: {0}")]
    Export(String),

    #[error("the {0} gate failed: see `idx verify` (or export with --allow-failing-gates)")]
    GatesFailed(String),

    /// Something idx guarantees did not hold (a stage died, a bug was caught as a panic).
    #[error("internal error: {0}")]
    Invariant(String),
}

impl Error {
    /// Whether trying the same operation again may succeed (I/O hiccups, a busy database).
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            Error::Io { .. } | Error::Database { .. } | Error::Store(_)
        )
    }
}

macro_rules! from_redb {
    ($($t:ty),*) => {$(
        impl From<$t> for Error {
            fn from(e: $t) -> Self {
                Error::Store(Box::new(e.into()))
            }
        }
    )*};
}
from_redb!(
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError,
    redb::DatabaseError
);

pub type Result<T, E = Error> = std::result::Result<T, E>;
