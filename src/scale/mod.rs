//! Past one machine (`docs/SCALE.md`): a shard is an ordinary index owning a partition of the
//! sources. It writes its rows' *signatures* — content hash, SimHash, a MinHash sketch of the
//! word 3-shingles, family, holdout groups, its own cluster and near-duplicate group — to
//! Parquet (`signatures`, the contract in `schema/signatures.md`); a Spark job
//! (`scale/idx_global.py`) joins every shard's signatures into one *assignment table* (content
//! hash → global cluster, owner shard, representative); each shard imports it (`assignments`),
//! which makes it the authority for rows in clusters that span shards, and `merge` joins the
//! shards' export manifests into one dataset. `sketch` is the estimate the job's pair test uses
//! where two texts are not on one machine. A single-machine user never meets any of it.

pub mod assignments;
pub mod merge;
pub mod signatures;
pub mod sketch;

use std::io::Write;
use std::path::Path;

use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

pub use assignments::{import_assignments, ImportSummary};
pub use merge::{merge_manifests, MergeSummary};
pub use signatures::{export_signatures, SignatureOptions, SignatureSummary};

fn io_error(path: &Path, source: std::io::Error) -> Error {
    Error::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// A shard id names a folder and a column value: letters, digits, `.`, `_` and `-`, not
/// starting with a dot.
pub fn valid_shard_id(id: &str) -> Result<()> {
    let ok = !id.is_empty()
        && id.len() <= 64
        && !id.starts_with('.')
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if ok {
        Ok(())
    } else {
        Err(Error::Scale(format!(
            "shard id {id:?}: use 1-64 letters, digits, '.', '_' or '-' (not starting with '.')"
        )))
    }
}

/// A file's length and sha256 (hex).
fn file_sha256(path: &Path) -> Result<(u64, String)> {
    let mut file = std::fs::File::open(path).map_err(|e| io_error(path, e))?;
    let mut sha = Sha256::new();
    let bytes = std::io::copy(&mut file, &mut sha).map_err(|e| io_error(path, e))?;
    Ok((bytes, hex(&sha.finalize())))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Write `value` as pretty JSON to `path` through a temporary file and a rename.
fn write_json_atomically<T: serde::Serialize>(path: &Path, value: &T) -> Result<()> {
    let tmp = path.with_extension("json.tmp");
    let mut text = serde_json::to_vec_pretty(value)
        .map_err(|e| Error::Invariant(format!("serialising {}: {e}", path.display())))?;
    text.push(b'\n');
    let mut f = std::fs::File::create(&tmp).map_err(|e| io_error(&tmp, e))?;
    f.write_all(&text)
        .and_then(|_| f.sync_all())
        .map_err(|e| io_error(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| io_error(path, e))
}
