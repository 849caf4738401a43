//! Sources: where objects come from. Every kind of source (a local folder or file in `local`, an
//! S3 prefix with an optional inventory in `s3`) is a [`Source`]: it describes itself, scans —
//! the objects present now, with what identifies their version, so the ingest can tell new,
//! changed, unchanged and deleted objects apart — and opens one object it found. A user names a
//! source as a [`SourceArg`]. Adding a kind of source is one file here that implements the
//! trait, and one arm in `SourceArg`. Sources never parse content.

pub mod derived;
pub mod inventory;
pub mod local;
pub mod s3;

use std::fs::File;
use std::path::{Path, PathBuf};

use crate::error::Result;
use s3::S3Url;

/// What every kind of source offers the ingest.
pub trait Source: Send + Sync + std::fmt::Debug {
    /// The source as a person would name it (a folder, a file, `s3://bucket/prefix`).
    fn describe(&self) -> String;

    /// What is there now. An error means nothing could be looked at; a part that could not be
    /// read is a scan error (in [`Scan::errors`]) under which nothing counts as deleted.
    fn scan(&self) -> Result<Found>;

    /// One object this source's scan found, as a file to read from. A remote object is fetched
    /// whole to `spool` first, so a broken download is retried before any of its rows exist.
    fn open(&self, object: &FoundObject, spool: &Path) -> std::result::Result<File, String>;

    /// Whether the source is reached over the network: a scan that fails there is a scan error
    /// that changes nothing while the other sources go on; a local one fails the run.
    fn remote(&self) -> bool {
        false
    }
}

/// What a scan found.
#[derive(Debug, Clone)]
pub struct Found {
    pub scan: Scan,
    /// Keys an inventory lists and the source does not have.
    pub missing: Vec<String>,
    pub warnings: Vec<String>,
}

impl From<Scan> for Found {
    fn from(scan: Scan) -> Found {
        Found {
            scan,
            missing: Vec::new(),
            warnings: Vec::new(),
        }
    }
}

/// A source as a user names it: `s3://bucket/prefix` is an S3 prefix, anything else a local
/// folder or file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceArg {
    Local(PathBuf),
    S3(S3Url),
    /// `idx-derived:`, the rows idx's recipes wrote (`derived`).
    Derived,
}

impl SourceArg {
    pub fn parse(arg: &Path) -> Result<SourceArg> {
        if arg.to_str() == Some(derived::DERIVED_SOURCE) {
            return Ok(SourceArg::Derived);
        }
        match arg.to_str().filter(|s| s.starts_with("s3://")) {
            Some(url) => Ok(SourceArg::S3(S3Url::parse(url)?)),
            None => Ok(SourceArg::Local(arg.to_path_buf())),
        }
    }

    /// Whether the source is reached over the network (an inventory concerns these only).
    pub fn is_remote(&self) -> bool {
        matches!(self, SourceArg::S3(_))
    }
}

/// The source a user named: a local folder or file (`skip` is a folder never to descend
/// into, the index's own), or an S3 prefix reached with `s3`.
pub fn open(
    arg: SourceArg,
    s3: &crate::config::S3Config,
    skip: Option<PathBuf>,
) -> Result<std::sync::Arc<dyn Source>> {
    Ok(match arg {
        SourceArg::Derived => {
            return Err(crate::error::Error::Config {
                path: derived::DERIVED_SOURCE.to_string(),
                message: "the derived rows are idx's own: `idx derive` and `idx ingest` keep them"
                    .to_string(),
            })
        }
        SourceArg::Local(path) => std::sync::Arc::new(local::LocalSource { path, skip }),
        SourceArg::S3(url) => std::sync::Arc::new(s3::S3Source {
            client: std::sync::Arc::new(s3::S3Client::connect(s3)?),
            url,
            inventory: None,
        }),
    })
}

/// One object found by a scan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FoundObject {
    /// The object key relative to the source root, `/`-separated.
    pub key: String,
    /// Where to read it.
    pub location: Location,
    pub size: u64,
    pub mtime_ns: i128,
    /// The ETag, for S3 objects: with the size, what identifies their version.
    pub etag: Option<String>,
}

/// Where an object's bytes are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    File(PathBuf),
    S3 { bucket: String, key: String },
}

/// Everything a scan of one source root saw.
#[derive(Debug, Clone)]
pub struct Scan {
    /// The source root as a URI (`file:///abs/dir`).
    pub source: String,
    /// Objects present, sorted by key.
    pub objects: Vec<FoundObject>,
    /// Which stored objects the scan can vouch for: a stored object in this scope that the scan
    /// did not see has been deleted. `None` means the whole source; a file path scans only itself.
    pub scope: ScanScope,
    /// Folders or files that could not be read: (path, error). Nothing under them counts as deleted.
    pub errors: Vec<(String, String)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScanScope {
    /// The whole source root was walked.
    All,
    /// Only these keys were looked at.
    Keys(Vec<String>),
}

impl Scan {
    /// Whether a stored object with this key, absent from the scan, may be treated as deleted.
    pub fn vouches_for(&self, key: &str) -> bool {
        let in_scope = match &self.scope {
            ScanScope::All => true,
            ScanScope::Keys(keys) => keys.iter().any(|k| k == key),
        };
        in_scope
            && !self.errors.iter().any(|(prefix, _)| {
                prefix.is_empty() || key == prefix || key.starts_with(&format!("{prefix}/"))
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_source_argument_is_an_s3_prefix_or_a_path() {
        let s3 = SourceArg::parse(Path::new("s3://bucket/some/prefix")).unwrap();
        assert!(s3.is_remote());
        assert_eq!(
            s3,
            SourceArg::S3(S3Url {
                bucket: "bucket".into(),
                prefix: "some/prefix".into()
            })
        );
        let local = SourceArg::parse(Path::new("data/s3:/x")).unwrap();
        assert_eq!(local, SourceArg::Local(PathBuf::from("data/s3:/x")));
        assert!(!local.is_remote());
        assert!(SourceArg::parse(Path::new("s3://")).is_err());
    }
}
