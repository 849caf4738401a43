//! The export manifest (`manifest.json`, `schema/manifest.schema.json`): what state and configs
//! an export came from, every shard and file with its sha256, bytes, rows and tokens, totals by
//! family, split and phase, per-source provenance counts, and what moved split since a previous
//! export. It is written last, under a temporary name and renamed, so a reader never sees it
//! point at missing files. `verify_export` re-reads an export against its manifest.

use std::collections::BTreeMap;
use std::io::BufRead;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::lines::{ExportLine, ProvenanceLine};
use super::out::{hex, FileEntry, OutFile};
use crate::error::{Error, Result};
use crate::neardup::Split;
use crate::select::{SelectedRow, Selection};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Always `idx-export`.
    pub format: String,
    pub format_version: u32,
    pub index: IndexState,
    pub config: ConfigDigests,
    pub options: OptionsRecord,
    pub gates: GatesRecord,
    pub totals: Totals,
    pub pii: PiiRecordCounts,
    /// Rows the structure checks held back.
    pub structure: StructureCounts,
    pub near_duplicates_collapsed: u64,
    /// Per source root: exported rows with a place there, and those places.
    pub sources: BTreeMap<String, SourceCount>,
    pub shards: Vec<Shard>,
    /// `final.chatml.jsonl`, `provenance.jsonl` and the curriculum files.
    pub files: Vec<FileEntry>,
    /// Changes since the export given with `--previous`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous: Option<Changes>,
    /// The benchmark set rows were checked against (absent when none is loaded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decontamination: Option<DecontaminationRecord>,
    /// In a shard of a sharded deployment: the imported assignment table the export followed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub global: Option<GlobalRecord>,
}

/// The global assignment table a shard's export followed (`idx import assignments`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GlobalRecord {
    pub shard: String,
    /// The table's content digest (sha256 of its sorted rows).
    pub assignments: String,
    /// Rows left out because another shard exports them or the row standing for their
    /// near-duplicate group.
    pub elsewhere: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IndexState {
    pub format_version: u32,
    /// Digest of every stored table except history: equal states, equal digests.
    pub state_digest: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigDigests {
    pub families: String,
    pub idx: String,
    pub curriculum: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OptionsRecord {
    pub shard_bytes: u64,
    pub collapse_near_duplicates: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatesRecord {
    pub passed: bool,
    pub coverage: bool,
    pub leakage: bool,
    #[serde(default = "passed")]
    pub structure: bool,
    #[serde(default = "passed")]
    pub distribution: bool,
}

/// Gates a manifest written before they existed did not check: passed then.
fn passed() -> bool {
    true
}

/// The benchmark set the export was checked against and what it did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DecontaminationRecord {
    /// Digest of the benchmark set and settings.
    pub set: String,
    /// `report`, `exclude` or `quarantine`.
    pub action: String,
    pub ngram: u32,
    pub benchmarks: Vec<BenchmarkCount>,
    /// Unique rows matching any benchmark, and those left out of the dataset.
    pub rows_matched: u64,
    pub rows_removed: u64,
    /// `quarantine/contaminated.chatml.jsonl` when the action is quarantine and a row matched.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quarantine_file: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BenchmarkCount {
    pub name: String,
    pub origin: String,
    pub digest: String,
    pub items: u64,
    /// Rows matching it (a row matching two benchmarks counts under both), and those removed.
    pub rows_matched: u64,
    pub rows_removed: u64,
}

/// The rows the structure checks ([`crate::structure`]) kept out of the export.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StructureCounts {
    pub held_back_rows: u64,
    /// By primary family, then check (a row failing two checks counts under both).
    pub by_family: BTreeMap<String, BTreeMap<String, u64>>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Count {
    pub rows: u64,
    pub tokens: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Totals {
    pub rows: u64,
    pub tokens: u64,
    pub by_family: BTreeMap<String, Count>,
    pub by_split: BTreeMap<Split, Count>,
    pub by_phase: BTreeMap<String, Count>,
}

impl Totals {
    pub(crate) fn add(&mut self, r: &SelectedRow) {
        let add = |c: &mut Count| {
            c.rows += 1;
            c.tokens += r.tokens;
        };
        self.rows += 1;
        self.tokens += r.tokens;
        add(self.by_family.entry(r.primary_family.clone()).or_default());
        add(self.by_split.entry(r.split).or_default());
        add(self.by_phase.entry(r.kind.phase().to_string()).or_default());
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PiiRecordCounts {
    /// Exported rows whose text carries PII placeholders.
    pub redacted_rows: u64,
    /// Rows the PII policy kept out of the export.
    pub excluded_rows: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceCount {
    pub rows: u64,
    pub places: u64,
}

/// A data shard: one split, one family.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Shard {
    pub split: Split,
    pub family: String,
    #[serde(flatten)]
    pub file: FileEntry,
}

impl Shard {
    pub(crate) fn new(file: FileEntry, split: Split, family: &str) -> Shard {
        Shard {
            split,
            family: family.to_string(),
            file,
        }
    }
}

/// What changed since a previous export.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Changes {
    pub previous_state_digest: String,
    pub rows_added: u64,
    pub rows_removed: u64,
    pub moved: u64,
    /// Rows exported both times in different splits, by content hash.
    pub moves: Vec<Move>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Move {
    pub content_hash: String,
    pub from: Split,
    pub to: Split,
}

/// A previous export's rows and splits, read from its provenance file.
pub(crate) struct PreviousExport {
    state_digest: String,
    splits: BTreeMap<String, Split>,
}

impl PreviousExport {
    pub(crate) fn read(manifest_path: &Path) -> Result<PreviousExport> {
        let m = Manifest::read(manifest_path)?;
        let root = manifest_path.parent().unwrap_or(Path::new("."));
        let prov = m
            .files
            .iter()
            .find(|f| f.path == "provenance.jsonl")
            .ok_or_else(|| {
                Error::Export(format!(
                    "{}: lists no provenance.jsonl",
                    manifest_path.display()
                ))
            })?;
        let path = root.join(&prov.path);
        let file = std::fs::File::open(&path).map_err(|source| Error::Io {
            path: path.clone(),
            source,
        })?;
        let mut splits = BTreeMap::new();
        for (i, line) in std::io::BufReader::new(file).lines().enumerate() {
            let line = line.map_err(|source| Error::Io {
                path: path.clone(),
                source,
            })?;
            let p: ProvenanceLine = serde_json::from_str(&line)
                .map_err(|e| Error::Export(format!("{}:{}: {e}", path.display(), i + 1)))?;
            splits.insert(p.content_hash, p.split);
        }
        Ok(PreviousExport {
            state_digest: m.index.state_digest,
            splits,
        })
    }

    pub(crate) fn changes(&self, now: &Selection) -> Changes {
        let mut moves = Vec::new();
        let mut added = 0;
        let mut seen = 0u64;
        for r in &now.rows {
            match self.splits.get(&r.hash.to_hex()) {
                None => added += 1,
                Some(&from) => {
                    seen += 1;
                    if from != r.split {
                        moves.push(Move {
                            content_hash: r.hash.to_hex(),
                            from,
                            to: r.split,
                        });
                    }
                }
            }
        }
        Changes {
            previous_state_digest: self.state_digest.clone(),
            rows_added: added,
            rows_removed: self.splits.len() as u64 - seen,
            moved: moves.len() as u64,
            moves,
        }
    }
}

impl Manifest {
    /// Every file the manifest lists: shards, then the other files.
    pub fn entries(&self) -> impl Iterator<Item = &FileEntry> {
        self.shards.iter().map(|s| &s.file).chain(self.files.iter())
    }

    pub fn read(path: &Path) -> Result<Manifest> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let m: Manifest = serde_json::from_str(&text)
            .map_err(|e| Error::Export(format!("{}: not an idx manifest: {e}", path.display())))?;
        if m.format != "idx-export" || m.format_version != super::EXPORT_FORMAT_VERSION {
            return Err(Error::Export(format!(
                "{}: format {} version {}, this idx reads idx-export version {}",
                path.display(),
                m.format,
                m.format_version,
                super::EXPORT_FORMAT_VERSION
            )));
        }
        Ok(m)
    }

    /// Write `manifest.json` into `root` (temporary name, then rename).
    pub(crate) fn write(&self, root: &Path) -> Result<FileEntry> {
        let mut f = OutFile::create(root, "manifest.json")?;
        let text = serde_json::to_string_pretty(self).map_err(|e| Error::Export(e.to_string()))?;
        f.write(text.as_bytes())?;
        f.write(b"\n")?;
        f.finish()
    }
}

/// The result of re-reading an export.
#[derive(Debug, Clone, Serialize)]
pub struct ExportCheck {
    pub manifest: String,
    pub passed: bool,
    pub files_checked: usize,
    pub rows_checked: u64,
    /// Every problem found, each naming its file (and line).
    pub problems: Vec<String>,
}

/// Re-read every file the manifest lists: presence, bytes, sha256, rows and tokens; every data
/// line must be a valid export line of its shard's split and family.
pub fn verify_export(manifest_path: &Path, pinned_sha256: Option<&str>) -> Result<ExportCheck> {
    let m = Manifest::read(manifest_path)?;
    let root: PathBuf = match manifest_path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let mut problems = Vec::new();
    if let Some(pin) = pinned_sha256 {
        let bytes = std::fs::read(manifest_path).map_err(|source| Error::Io {
            path: manifest_path.to_path_buf(),
            source,
        })?;
        let found = hex(&Sha256::digest(&bytes));
        if !found.eq_ignore_ascii_case(pin.trim()) {
            problems.push(format!(
                "manifest.json has sha256 {found}, not the pinned {}",
                pin.trim()
            ));
        }
    }
    // A trainer globbing the folder reads what is there, listed or not.
    for extra in unlisted(&root, &m)? {
        problems.push(format!(
            "{extra}: in the export folder but not in its manifest (a trainer globbing the folder would read it)"
        ));
    }
    let mut rows_checked = 0u64;
    let mut files_checked = 0usize;
    let mut shard_rows = 0u64;
    let entries = m
        .shards
        .iter()
        .map(|s| (&s.file, Some(s)))
        .chain(m.files.iter().map(|f| (f, None)));
    for (entry, shard) in entries {
        if !is_inside(&entry.path) {
            problems.push(format!(
                "{}: not a path inside the export; not read",
                entry.path
            ));
            continue;
        }
        let path = root.join(&entry.path);
        let found = match check_file(&path, entry, shard) {
            Ok(found) => found,
            Err(problem) => {
                problems.push(problem);
                continue;
            }
        };
        files_checked += 1;
        rows_checked += found.rows;
        problems.extend(found.problems);
        if shard.is_some() {
            shard_rows += found.rows;
        }
    }
    if shard_rows != m.totals.rows {
        problems.push(format!(
            "the shards hold {shard_rows} rows, the manifest's totals say {}",
            m.totals.rows
        ));
    }
    if let Some(f) = m.files.iter().find(|f| f.path == "final.chatml.jsonl") {
        if f.rows != m.totals.rows {
            problems.push(format!(
                "final.chatml.jsonl lists {} rows, the totals say {}",
                f.rows, m.totals.rows
            ));
        }
    }
    Ok(ExportCheck {
        manifest: manifest_path.display().to_string(),
        passed: problems.is_empty(),
        files_checked,
        rows_checked,
        problems,
    })
}

/// Whether a manifest path is a plain relative path below the export (no `..`, no root, no
/// drive).
pub(crate) fn is_inside(rel: &str) -> bool {
    !rel.is_empty()
        && Path::new(rel)
            .components()
            .all(|c| matches!(c, std::path::Component::Normal(_)))
}

/// Files, links and other entries under `root` that the manifest does not list (besides
/// `manifest.json` and `export_info.json`), `/`-separated and sorted. Links are reported, never
/// followed.
pub(crate) fn unlisted(root: &Path, m: &Manifest) -> Result<Vec<String>> {
    let listed: std::collections::BTreeSet<&str> = m
        .entries()
        .map(|f| f.path.as_str())
        .chain(["manifest.json", "export_info.json"])
        .collect();
    let mut out = Vec::new();
    let mut stack = vec![(root.to_path_buf(), String::new())];
    while let Some((dir, rel)) = stack.pop() {
        let entries = std::fs::read_dir(&dir).map_err(|source| Error::Io {
            path: dir.clone(),
            source,
        })?;
        for entry in entries {
            let entry = entry.map_err(|source| Error::Io {
                path: dir.clone(),
                source,
            })?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let path = if rel.is_empty() {
                name
            } else {
                format!("{rel}/{name}")
            };
            let kind = entry.file_type().map_err(|source| Error::Io {
                path: entry.path(),
                source,
            })?;
            if kind.is_dir() {
                stack.push((entry.path(), path));
            } else if kind.is_symlink() {
                out.push(format!("{path} (a symbolic link)"));
            } else if !listed.contains(path.as_str()) {
                out.push(path);
            }
        }
    }
    out.sort();
    Ok(out)
}

struct Found {
    rows: u64,
    problems: Vec<String>,
}

/// Check one file; `Err` when it cannot be read at all.
fn check_file(
    path: &Path,
    entry: &FileEntry,
    shard: Option<&Shard>,
) -> std::result::Result<Found, String> {
    let name = &entry.path;
    let file =
        std::fs::File::open(path).map_err(|e| format!("{name}: missing or unreadable ({e})"))?;
    let mut reader = std::io::BufReader::new(file);
    let mut sha = Sha256::new();
    let mut bytes = 0u64;
    let mut rows = 0u64;
    let mut tokens = 0u64;
    let mut problems = Vec::new();
    let mut line = Vec::new();
    let jsonl = name.ends_with(".jsonl");
    loop {
        line.clear();
        let n = reader
            .read_until(b'\n', &mut line)
            .map_err(|e| format!("{name}: read error: {e}"))?;
        if n == 0 {
            break;
        }
        sha.update(&line);
        bytes += n as u64;
        if !jsonl {
            continue;
        }
        rows += 1;
        if let Some(s) = shard {
            match serde_json::from_slice::<ExportLine>(&line) {
                Ok(l) => {
                    tokens += l.metadata.tokens;
                    if l.metadata.split != s.split || l.metadata.source_family != s.family {
                        problems.push(format!(
                            "{name}:{rows}: row {} is {}/{}, the shard is {}/{}",
                            l.metadata.content_hash,
                            l.metadata.split,
                            l.metadata.source_family,
                            s.split,
                            s.family
                        ));
                    }
                    if l.metadata.content_hash.len() != 32
                        || !l
                            .metadata
                            .content_hash
                            .bytes()
                            .all(|b| b.is_ascii_hexdigit())
                    {
                        problems.push(format!("{name}:{rows}: content_hash is not 32 hex digits"));
                    }
                    if l.messages.is_empty() {
                        problems.push(format!("{name}:{rows}: no messages"));
                    }
                }
                Err(e) => {
                    if problems.len() < 20 {
                        problems.push(format!("{name}:{rows}: not a valid export line: {e}"));
                    }
                }
            }
        }
    }
    let sha = hex(&sha.finalize());
    if bytes != entry.bytes {
        problems.push(format!(
            "{name}: {bytes} bytes, the manifest says {}",
            entry.bytes
        ));
    }
    if sha != entry.sha256 {
        problems.push(format!(
            "{name}: sha256 {sha}, the manifest says {} (the file was changed)",
            entry.sha256
        ));
    }
    if jsonl && rows != entry.rows {
        problems.push(format!(
            "{name}: {rows} rows, the manifest says {}",
            entry.rows
        ));
    }
    if shard.is_some() && tokens != entry.tokens {
        problems.push(format!(
            "{name}: {tokens} tokens, the manifest says {}",
            entry.tokens
        ));
    }
    Ok(Found { rows, problems })
}
