//! Typed library errors. Each names what it is about (a path, a key, a table) so the CLI can print
//! a useful cause chain; `anyhow` is used only in the binary. Every error has a [`ErrorKind`]
//! saying what happened — denied, not found, transient, corrupt, an invariant broken, … — decided
//! where the cause is known (an S3 status, an I/O error kind, a redb or tantivy error), so a
//! caller can tell what to retry and what to report.

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

    #[error(
        "index at {path} is format version {found}, this idx reads version {expected}: move it \
         away and run `idx ingest` on your sources again to rebuild it (it holds nothing the \
         sources and configs do not, except the history of split moves)"
    )]
    Version {
        path: PathBuf,
        found: u32,
        expected: u32,
    },

    #[error(
        "index at {path} is format version {found}, which the next writer upgrades in place: \
         run `idx recover` (or any `idx ingest`, or start `idx serve`) once; commands that only \
         read never write to the index"
    )]
    NeedsUpgrade { path: PathBuf, found: u32 },

    #[error("no index at {0} (run `idx ingest PATH` first)")]
    NoIndex(PathBuf),

    #[error("{0} was not closed cleanly (a crash or kill -9) and no writer is running to recover it: run `idx recover` (or any `idx ingest`, or start `idx serve`); commands that only read never write to the index")]
    NeedsRecovery(PathBuf),

    /// A bad S3 URL or setting.
    #[error("S3: {0}")]
    S3(String),

    /// An S3 request that failed, with what its status or transport error means.
    #[error("S3: {message}")]
    S3Request { kind: ErrorKind, message: String },

    #[error("export: {0}")]
    Export(String),

    /// Scale-out: signatures, assignment tables, merged manifests.
    #[error("scale-out: {0}")]
    Scale(String),

    #[error("the {0} gate failed: see `idx verify` (or export with --allow-failing-gates)")]
    GatesFailed(String),

    /// Something idx guarantees did not hold (a stage died, a bug was caught as a panic).
    #[error("internal error: {0}")]
    Invariant(String),
}

/// What kind of failure an [`Error`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// Bad input, configuration or query: fix it and run again.
    Invalid,
    /// Something named does not exist (an index, a bucket, an object, a file).
    NotFound,
    /// Credentials or permissions refused the operation.
    Denied,
    /// May succeed if tried again (5xx, timeouts, dropped connections, interrupted I/O).
    Transient,
    /// Another process holds a lock the operation needs.
    Busy,
    /// Stored data could not be decoded or checked; the index needs `idx recover` or a rebuild.
    Corrupt,
    /// The index was not closed cleanly and no writer is running: `idx recover`.
    NeedsRecovery,
    /// Any other I/O failure (a full disk, a broken device).
    Io,
    /// A gate failed.
    Gate,
    /// Something idx guarantees did not hold: a bug.
    Invariant,
}

impl Error {
    /// What kind of failure this is.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Config { .. } | Error::Query(_) | Error::Version { .. } | Error::S3(_) => {
                ErrorKind::Invalid
            }
            Error::Export(_) | Error::Scale(_) => ErrorKind::Invalid,
            Error::Io { source, .. } => io_kind(source),
            Error::Database { source, .. } | Error::Store(source) => redb_kind(source),
            Error::Codec { .. } => ErrorKind::Corrupt,
            Error::Search { source, .. } => match source {
                tantivy::TantivyError::LockFailure(..) => ErrorKind::Busy,
                tantivy::TantivyError::DataCorruption(_) => ErrorKind::Corrupt,
                tantivy::TantivyError::IoError(e) => io_kind(e),
                _ => ErrorKind::Io,
            },
            Error::NoIndex(_) => ErrorKind::NotFound,
            Error::NeedsRecovery(_) | Error::NeedsUpgrade { .. } => ErrorKind::NeedsRecovery,
            Error::S3Request { kind, .. } => *kind,
            Error::GatesFailed(_) => ErrorKind::Gate,
            Error::Invariant(_) => ErrorKind::Invariant,
        }
    }

    /// Whether trying the same operation again may succeed (I/O hiccups, a busy lock, a 5xx).
    pub fn is_retryable(&self) -> bool {
        matches!(self.kind(), ErrorKind::Transient | ErrorKind::Busy)
    }
}

fn io_kind(e: &std::io::Error) -> ErrorKind {
    use std::io::ErrorKind as K;
    match e.kind() {
        K::NotFound => ErrorKind::NotFound,
        K::PermissionDenied => ErrorKind::Denied,
        K::Interrupted | K::TimedOut | K::WouldBlock | K::ConnectionReset | K::BrokenPipe => {
            ErrorKind::Transient
        }
        K::InvalidData | K::UnexpectedEof => ErrorKind::Corrupt,
        _ => ErrorKind::Io,
    }
}

fn redb_kind(e: &redb::Error) -> ErrorKind {
    match e {
        redb::Error::DatabaseAlreadyOpen => ErrorKind::Busy,
        redb::Error::Corrupted(_) => ErrorKind::Corrupt,
        redb::Error::RepairAborted => ErrorKind::NeedsRecovery,
        redb::Error::Io(io) => io_kind(io),
        redb::Error::UpgradeRequired(_) => ErrorKind::Invalid,
        _ => ErrorKind::Invariant,
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

/// The text of a caught panic's payload (its message when it has one), for the places that turn
/// a panic into an error or a rejection.
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_follow_the_cause() {
        let io = |kind| Error::Io {
            path: PathBuf::from("x"),
            source: std::io::Error::new(kind, "x"),
        };
        assert_eq!(io(std::io::ErrorKind::NotFound).kind(), ErrorKind::NotFound);
        assert_eq!(
            io(std::io::ErrorKind::PermissionDenied).kind(),
            ErrorKind::Denied
        );
        assert!(io(std::io::ErrorKind::TimedOut).is_retryable());
        assert!(!io(std::io::ErrorKind::StorageFull).is_retryable());
        let codec = Error::Codec {
            table: "rows",
            message: "short".into(),
        };
        assert_eq!(codec.kind(), ErrorKind::Corrupt);
        assert_eq!(
            Error::from(redb::DatabaseError::DatabaseAlreadyOpen).kind(),
            ErrorKind::Busy
        );
        assert_eq!(
            Error::NeedsRecovery(PathBuf::from("i")).kind(),
            ErrorKind::NeedsRecovery
        );
        let s3 = Error::S3Request {
            kind: ErrorKind::Transient,
            message: "HTTP 503".into(),
        };
        assert!(s3.is_retryable());
    }
}
