//! Sources: where objects come from. Each kind of source (a local folder or file, an S3 prefix
//! with an optional inventory) turns a location into a [`Scan`]: the objects present now, with
//! what identifies their version, so the ingest can tell new, changed, unchanged and deleted
//! objects apart. Sources never parse content.

pub mod inventory;
pub mod local;
pub mod s3;

use std::path::PathBuf;

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
