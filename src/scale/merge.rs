//! `idx export merge`: the exports of every shard, made after importing one assignment table,
//! joined into one dataset by a manifest that lists every shard's files (paths relative to the
//! merged manifest), the table's digest and every shard's state, with the totals summed. Each
//! shard export is re-verified first (bytes, sha256, line schema), every shard must have
//! followed the same table, and no content hash may go out from two shards.

use std::collections::{BTreeMap, BTreeSet};
use std::io::BufRead;
use std::path::{Component, Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::io_error;
use crate::error::{Error, Result};
use crate::export::manifest::{Count, Manifest};
use crate::export::verify_export;
use crate::neardup::Split;

/// The merged manifest's format version.
pub const MERGED_FORMAT_VERSION: u32 = 1;

/// `manifest.json` of a merged dataset.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MergedManifest {
    /// Always `idx-merged-export`.
    pub format: String,
    pub format_version: u32,
    /// The assignment table every shard followed (content digest).
    pub assignments: String,
    pub totals: MergedTotals,
    pub shards: Vec<MergedShard>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MergedTotals {
    pub rows: u64,
    pub tokens: u64,
    pub by_split: BTreeMap<Split, Count>,
    pub by_family: BTreeMap<String, Count>,
    pub near_duplicates_collapsed: u64,
    /// Rows one shard left to another (the sum of the shards' `global.elsewhere`).
    pub left_to_other_shards: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MergedShard {
    pub shard: String,
    /// The shard export's manifest, relative to the merged manifest.
    pub manifest: String,
    pub manifest_sha256: String,
    pub state_digest: String,
    pub rows: u64,
    pub tokens: u64,
    /// Every file of the shard export, relative to the merged manifest.
    pub files: Vec<MergedFile>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MergedFile {
    pub path: String,
    pub sha256: String,
    pub bytes: u64,
    pub rows: u64,
}

/// What a merge wrote.
#[derive(Debug, Clone, Serialize)]
pub struct MergeSummary {
    pub manifest: String,
    pub manifest_sha256: String,
    pub assignments: String,
    pub shards: usize,
    pub rows: u64,
    pub tokens: u64,
}

/// Merge the shard exports whose manifests are `manifests` into `out/manifest.json`. `out`
/// must be a folder that holds every shard export (at any depth), so the merged dataset moves
/// as one tree; with `assignments`, the shards must have followed that table.
pub fn merge_manifests(
    manifests: &[PathBuf],
    out: &Path,
    assignments: Option<&Path>,
) -> Result<MergeSummary> {
    if manifests.is_empty() {
        return Err(Error::Scale(
            "name at least one shard export's manifest.json".into(),
        ));
    }
    let root = std::fs::canonicalize(out).map_err(|e| io_error(out, e))?;
    let expected_digest = match assignments {
        Some(p) => Some(super::assignments::read_table(p)?.digest),
        None => None,
    };
    let mut shards = Vec::new();
    let mut totals = MergedTotals::default();
    let mut digest: Option<String> = None;
    let mut seen_shards = BTreeSet::new();
    let mut hashes: BTreeMap<String, String> = BTreeMap::new();
    for path in manifests {
        let check = verify_export(path, None)?;
        if !check.passed {
            return Err(Error::Scale(format!(
                "{} does not verify:\n  {}",
                path.display(),
                check.problems.join("\n  ")
            )));
        }
        let m = Manifest::read(path)?;
        let Some(global) = &m.global else {
            return Err(Error::Scale(format!(
                "{} is not a shard export: its index imported no assignment table (`idx import \
                 assignments`)",
                path.display()
            )));
        };
        if !seen_shards.insert(global.shard.clone()) {
            return Err(Error::Scale(format!(
                "shard {:?} is named twice ({})",
                global.shard,
                path.display()
            )));
        }
        match (&digest, &expected_digest) {
            (_, Some(e)) if *e != global.assignments => {
                return Err(Error::Scale(format!(
                    "{} followed assignment table {}, not the one given ({e})",
                    path.display(),
                    global.assignments
                )))
            }
            (Some(d), _) if *d != global.assignments => {
                return Err(Error::Scale(format!(
                    "{} followed assignment table {}, the shards before it {d}: import one \
                     table into every shard, then export each again",
                    path.display(),
                    global.assignments
                )))
            }
            _ => digest = Some(global.assignments.clone()),
        }
        let manifest_abs = std::fs::canonicalize(path).map_err(|e| io_error(path, e))?;
        let dir = manifest_abs.parent().unwrap_or(&root).to_path_buf();
        let rel_dir = relative(&root, &dir).ok_or_else(|| {
            Error::Scale(format!(
                "{} is not inside {}: put the shard exports under the merged folder",
                path.display(),
                out.display()
            ))
        })?;
        // No row goes out from two shards.
        let final_path = dir.join("final.chatml.jsonl");
        for_each_hash(&final_path, |h| {
            match hashes.insert(h.clone(), global.shard.clone()) {
                Some(other) => Err(Error::Scale(format!(
                "row {h} is exported by shard {other:?} and shard {:?}: were both exported after \
                 importing the same table?",
                global.shard
            ))),
                None => Ok(()),
            }
        })?;
        let (_, manifest_sha256) = super::file_sha256(&manifest_abs)?;
        let join = |p: &str| {
            if rel_dir.is_empty() {
                p.to_string()
            } else {
                format!("{rel_dir}/{p}")
            }
        };
        let files = m
            .shards
            .iter()
            .map(|s| &s.file)
            .chain(m.files.iter())
            .map(|f| MergedFile {
                path: join(&f.path),
                sha256: f.sha256.clone(),
                bytes: f.bytes,
                rows: f.rows,
            })
            .collect();
        totals.rows += m.totals.rows;
        totals.tokens += m.totals.tokens;
        for (split, c) in &m.totals.by_split {
            add(totals.by_split.entry(*split).or_default(), c);
        }
        for (family, c) in &m.totals.by_family {
            add(totals.by_family.entry(family.clone()).or_default(), c);
        }
        totals.near_duplicates_collapsed += m.near_duplicates_collapsed;
        totals.left_to_other_shards += global.elsewhere;
        shards.push(MergedShard {
            shard: global.shard.clone(),
            manifest: join("manifest.json"),
            manifest_sha256,
            state_digest: m.index.state_digest.clone(),
            rows: m.totals.rows,
            tokens: m.totals.tokens,
            files,
        });
    }
    shards.sort_by(|a, b| a.shard.cmp(&b.shard));
    let merged = MergedManifest {
        format: "idx-merged-export".into(),
        format_version: MERGED_FORMAT_VERSION,
        assignments: digest.unwrap_or_default(),
        totals,
        shards,
    };
    let path = out.join("manifest.json");
    super::write_json_atomically(&path, &merged)?;
    let (_, sha) = super::file_sha256(&path)?;
    Ok(MergeSummary {
        manifest: path.display().to_string(),
        manifest_sha256: sha,
        assignments: merged.assignments.clone(),
        shards: merged.shards.len(),
        rows: merged.totals.rows,
        tokens: merged.totals.tokens,
    })
}

fn add(total: &mut Count, c: &Count) {
    total.rows += c.rows;
    total.tokens += c.tokens;
}

/// `dir` relative to `root`, `/`-separated, when it lies inside it.
fn relative(root: &Path, dir: &Path) -> Option<String> {
    let rest = dir.strip_prefix(root).ok()?;
    let parts: Option<Vec<&str>> = rest
        .components()
        .map(|c| match c {
            Component::Normal(s) => s.to_str(),
            _ => None,
        })
        .collect();
    Some(parts?.join("/"))
}

/// Call `f` with the content hash of every line of a compiled export file.
fn for_each_hash(path: &Path, mut f: impl FnMut(String) -> Result<()>) -> Result<()> {
    #[derive(Deserialize)]
    struct Line {
        metadata: Meta,
    }
    #[derive(Deserialize)]
    struct Meta {
        content_hash: String,
    }
    let file = std::fs::File::open(path).map_err(|e| io_error(path, e))?;
    for (n, line) in std::io::BufReader::new(file).lines().enumerate() {
        let line = line.map_err(|e| io_error(path, e))?;
        let parsed: Line = serde_json::from_str(&line)
            .map_err(|e| Error::Scale(format!("{}:{}: {e}", path.display(), n + 1)))?;
        f(parsed.metadata.content_hash)?;
    }
    Ok(())
}
