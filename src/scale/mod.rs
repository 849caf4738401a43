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
use crate::export::hex;
use crate::source::s3::{S3Client, S3Url};

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

/// Record `shard` as this index's shard id, or check it is the one recorded: a shard keeps
/// its id (its signatures and imported tables are keyed by it).
pub fn claim_shard(store: &crate::store::Store, shard: &str) -> Result<()> {
    valid_shard_id(shard)?;
    match store.read()?.shard()? {
        Some(r) if r != shard => Err(Error::Scale(format!(
            "this index exported signatures as shard {r:?}; a shard keeps its id (use another \
             data directory for another shard)"
        ))),
        Some(_) => Ok(()),
        None => store.set_shard(shard),
    }
}

/// A file's length and sha256 (hex).
fn file_sha256(path: &Path) -> Result<(u64, String)> {
    let mut file = std::fs::File::open(path).map_err(|e| io_error(path, e))?;
    let mut sha = Sha256::new();
    let bytes = std::io::copy(&mut file, &mut sha).map_err(|e| io_error(path, e))?;
    Ok((bytes, hex(&sha.finalize())))
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

/// Copy every object under `url` whose key (relative to the prefix) `wanted` accepts into
/// `dir`, keeping the relative layout; returns how many were copied.
fn mirror(
    client: &S3Client,
    url: &S3Url,
    dir: &Path,
    wanted: impl Fn(&str) -> bool,
) -> Result<usize> {
    let prefix = if url.prefix.is_empty() {
        String::new()
    } else {
        format!("{}/", url.prefix)
    };
    let mut n = 0;
    for o in client.list(url)? {
        let Some(rel) = o.key.strip_prefix(&prefix) else {
            continue;
        };
        // Only plain relative names: a key cannot climb out of the staging folder.
        if rel.is_empty()
            || !wanted(rel)
            || rel
                .split('/')
                .any(|p| p.is_empty() || p == "." || p == "..")
        {
            continue;
        }
        let dest = dir.join(rel);
        if let Some(parent) = dest.parent() {
            std::fs::create_dir_all(parent).map_err(|e| io_error(parent, e))?;
        }
        client
            .download(&url.bucket, &o.key, &dest)
            .map_err(Error::S3)?;
        n += 1;
    }
    Ok(n)
}

/// A fresh, empty staging folder.
fn fresh_dir(dir: &Path) -> Result<()> {
    if dir.exists() {
        std::fs::remove_dir_all(dir).map_err(|e| io_error(dir, e))?;
    }
    std::fs::create_dir_all(dir).map_err(|e| io_error(dir, e))
}

/// [`signatures::export_signatures`] to `s3://…`: the shard's `shard.json` (and, incremental,
/// its generations) are fetched into `staging`, the new generation is written there, then
/// uploaded before the `shard.json` that lists it.
pub fn export_signatures_to_s3(
    view: &crate::store::ReadView,
    settings: &crate::config::Settings,
    options: &SignatureOptions,
    client: &S3Client,
    url: &S3Url,
    staging: &Path,
    progress: &mut dyn FnMut(&str),
) -> Result<SignatureSummary> {
    valid_shard_id(&options.shard)?;
    fresh_dir(staging)?;
    let shard_url = S3Url {
        bucket: url.bucket.clone(),
        prefix: url.key(&options.shard),
    };
    progress(&format!("fetching {}", shard_url.source()));
    mirror(client, &shard_url, &staging.join(&options.shard), |rel| {
        rel == "shard.json" || (options.incremental && rel.ends_with(".parquet"))
    })?;
    let local = SignatureOptions {
        out: staging.to_path_buf(),
        ..options.clone()
    };
    let mut summary = export_signatures(view, settings, &local, progress)?;
    let name = format!("gen-{:06}.parquet", summary.generation);
    let folder = staging.join(&options.shard);
    progress(&format!("uploading {name}"));
    client.upload(&folder.join(&name), &url.bucket, &shard_url.key(&name))?;
    client.upload(
        &folder.join("shard.json"),
        &url.bucket,
        &shard_url.key("shard.json"),
    )?;
    std::fs::remove_dir_all(staging).map_err(|e| io_error(staging, e))?;
    summary.folder = shard_url.source();
    summary.file = format!("{}/{name}", shard_url.source());
    Ok(summary)
}

/// [`assignments::import_assignments`] from `s3://…` (the job's `assignments/` prefix):
/// fetched into `staging` first.
pub fn import_assignments_from_s3(
    store: &crate::store::Store,
    client: &S3Client,
    url: &S3Url,
    staging: &Path,
    shard: Option<&str>,
    allow_stale: bool,
) -> Result<ImportSummary> {
    fresh_dir(staging)?;
    let n = mirror(client, url, staging, |rel| {
        !rel.contains('/') && (rel.ends_with(".parquet") || rel == "_idx.json")
    })?;
    if n == 0 {
        return Err(Error::Scale(format!(
            "{} holds no assignment table",
            url.source()
        )));
    }
    let summary = import_assignments(store, staging, shard, allow_stale);
    std::fs::remove_dir_all(staging).map_err(|e| io_error(staging, e))?;
    summary
}
