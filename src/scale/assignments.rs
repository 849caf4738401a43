//! `idx import assignments`: the global job's assignment table (`schema/signatures.md`) made the
//! authority for this shard's rows in clusters that span shards. The table is a Parquet file or
//! a folder of them (as Spark writes it) with `_idx.json` beside the parts naming every shard's
//! state digest. Its *digest* is computed from its content (rows sorted), so it does not depend
//! on how Spark cut it into parts; export manifests and `idx export merge` name it.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::io_error;
use crate::error::{Error, Result};
use crate::export::hex;
use crate::fingerprint::Hash128;
use crate::store::{GlobalAssignment, GlobalInfo, Store};

/// One row of the assignment table.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct AssignmentRow {
    pub shard: String,
    pub row: Hash128,
    pub cluster: Hash128,
    pub holdout: bool,
    pub owner: bool,
    pub representative: Hash128,
}

/// `_idx.json`, written by the job beside the table's parts.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JobInfo {
    pub format: String,
    /// Every shard's state digest, as its signatures gave it.
    pub shards: BTreeMap<String, String>,
}

/// An assignment table read whole.
#[derive(Debug, Clone)]
pub struct AssignmentTable {
    pub rows: Vec<AssignmentRow>,
    pub info: JobInfo,
    /// sha256 of the sorted rows (see [`table_digest`]).
    pub digest: String,
}

/// What an import did.
#[derive(Debug, Clone, Serialize)]
pub struct ImportSummary {
    pub shard: String,
    pub digest: String,
    /// Rows of the table (every shard).
    pub table_rows: u64,
    /// Rows imported for this shard.
    pub imported: u64,
    /// Rows of this shard whose split the table changed.
    pub moved: u64,
    /// Rows the table names for this shard that the index no longer holds.
    pub missing: u64,
}

/// Read an assignment table: one Parquet file, or a folder of `*.parquet` parts with
/// `_idx.json`.
pub fn read_table(path: &Path) -> Result<AssignmentTable> {
    let (files, info_path): (Vec<PathBuf>, PathBuf) = if path.is_dir() {
        let mut files = Vec::new();
        for entry in std::fs::read_dir(path).map_err(|e| io_error(path, e))? {
            let p = entry.map_err(|e| io_error(path, e))?.path();
            if p.extension().is_some_and(|x| x == "parquet") {
                files.push(p);
            }
        }
        files.sort();
        (files, path.join("_idx.json"))
    } else {
        let info = path.with_file_name("_idx.json");
        (vec![path.to_path_buf()], info)
    };
    if files.is_empty() {
        return Err(Error::Scale(format!(
            "{} holds no .parquet file: is it the assignments folder the job wrote?",
            path.display()
        )));
    }
    let info: JobInfo = match std::fs::read(&info_path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map_err(|e| Error::Scale(format!("{}: {e}", info_path.display())))?,
        Err(e) => return Err(io_error(&info_path, e)),
    };
    let mut rows = Vec::new();
    for f in &files {
        read_parts(f, &mut rows)?;
    }
    rows.sort();
    if let Some(w) = rows
        .windows(2)
        .find(|w| w[0].shard == w[1].shard && w[0].row == w[1].row)
    {
        return Err(Error::Scale(format!(
            "{}: row {} of shard {} appears twice",
            path.display(),
            w[0].row,
            w[0].shard
        )));
    }
    let digest = table_digest(&rows);
    Ok(AssignmentTable { rows, info, digest })
}

/// The content digest of an assignment table: sha256 over its rows in sorted order, each field
/// in a fixed layout.
pub fn table_digest(rows: &[AssignmentRow]) -> String {
    let mut sha = Sha256::new();
    for r in rows {
        sha.update((r.shard.len() as u64).to_le_bytes());
        sha.update(r.shard.as_bytes());
        sha.update(r.row.to_bytes());
        sha.update(r.cluster.to_bytes());
        sha.update([u8::from(r.holdout), u8::from(r.owner)]);
        sha.update(r.representative.to_bytes());
    }
    hex(&sha.finalize())
}

fn read_parts(path: &Path, out: &mut Vec<AssignmentRow>) -> Result<()> {
    use arrow_array::cast::AsArray;
    use arrow_array::Array;
    let bad = |m: String| Error::Scale(format!("{}: {m}", path.display()));
    let file = File::open(path).map_err(|e| io_error(path, e))?;
    let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
        .and_then(|b| b.build())
        .map_err(|e| bad(e.to_string()))?;
    for batch in reader {
        let batch = batch.map_err(|e| bad(e.to_string()))?;
        let string = |name: &str| {
            batch
                .column_by_name(name)
                .and_then(|c| c.as_string_opt::<i32>().cloned())
                .ok_or_else(|| bad(format!("no string column {name}")))
        };
        let boolean = |name: &str| {
            batch
                .column_by_name(name)
                .and_then(|c| c.as_boolean_opt().cloned())
                .ok_or_else(|| bad(format!("no boolean column {name}")))
        };
        let (shard, row, cluster, rep) = (
            string("shard")?,
            string("content_hash")?,
            string("cluster")?,
            string("representative")?,
        );
        let (holdout, owner) = (boolean("holdout")?, boolean("owner")?);
        for i in 0..batch.num_rows() {
            let hash = |a: &arrow_array::StringArray, name: &str| {
                if a.is_null(i) {
                    return Err(bad(format!("{name} is null")));
                }
                Hash128::from_hex(a.value(i))
                    .ok_or_else(|| bad(format!("{name} {:?} is not 32 hex digits", a.value(i))))
            };
            if shard.is_null(i) || holdout.is_null(i) || owner.is_null(i) {
                return Err(bad("shard, holdout and owner must not be null".into()));
            }
            out.push(AssignmentRow {
                shard: shard.value(i).to_string(),
                row: hash(&row, "content_hash")?,
                cluster: hash(&cluster, "cluster")?,
                holdout: holdout.value(i),
                owner: owner.value(i),
                representative: hash(&rep, "representative")?,
            });
        }
    }
    Ok(())
}

/// Import the table at `path` into the index behind `store` as shard `shard` (default: the
/// shard id its signatures were exported as). Refuses a table made from other signatures than
/// the index's current state unless `allow_stale`.
pub fn import_assignments(
    store: &Store,
    path: &Path,
    shard: Option<&str>,
    allow_stale: bool,
) -> Result<ImportSummary> {
    let view = store.read()?;
    let shard = match (shard, view.shard()?) {
        (Some(s), _) => s.to_string(),
        (None, Some(s)) => s,
        (None, None) => {
            return Err(Error::Scale(
                "this index has not exported signatures: name its shard with --shard".into(),
            ))
        }
    };
    super::valid_shard_id(&shard)?;
    let table = read_table(path)?;
    let Some(expected) = table.info.shards.get(&shard) else {
        return Err(Error::Scale(format!(
            "the table at {} was computed without shard {shard:?} (it has {})",
            path.display(),
            table
                .info
                .shards
                .keys()
                .cloned()
                .collect::<Vec<_>>()
                .join(", ")
        )));
    };
    let digest = view.local_state_digest()?;
    if *expected != digest && !allow_stale {
        return Err(Error::Scale(format!(
            "the table was computed from signatures of state {expected}, but shard {shard:?} is \
             now at {digest}: export its signatures again (--incremental) and rerun the job, or \
             import anyway with --allow-stale"
        )));
    }
    let policy = crate::neardup::Policy::clone(
        &view
            .policy()?
            .ok_or_else(|| Error::Scale("the index holds no rows yet".into()))?,
    );
    let mut rows = BTreeMap::new();
    let mut missing = 0;
    let mut moved = 0;
    for r in table.rows.iter().filter(|r| r.shard == shard) {
        if view.row(r.row)?.is_none() {
            missing += 1;
            continue;
        }
        let before = view.local_assignment(r.row, &policy)?.split;
        if policy.split_of(r.cluster, r.holdout) != before {
            moved += 1;
        }
        rows.insert(
            r.row,
            GlobalAssignment {
                cluster: r.cluster,
                holdout: r.holdout,
                owner: r.owner,
                representative: r.representative,
            },
        );
    }
    drop(view);
    let info = GlobalInfo {
        digest: table.digest.clone(),
        shard: shard.clone(),
        shards: table.info.shards.clone(),
        rows: rows.len() as u64,
    };
    store.import_global(&info, &rows)?;
    Ok(ImportSummary {
        shard,
        digest: table.digest,
        table_rows: table.rows.len() as u64,
        imported: rows.len() as u64,
        moved,
        missing,
    })
}
