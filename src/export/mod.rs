//! `idx export`: one committed index state, compiled into the dataset a trainer reads and an
//! auditor checks. This module owns the *selection* (which rows go out: one per content hash,
//! near-duplicate clusters once through a deterministic representative, PII-excluded rows
//! never), the ChatML line and its metadata, the sharded layout (per split and family, bounded
//! in bytes, named deterministically) with the compiled `final.chatml.jsonl` and
//! `provenance.jsonl`, the curriculum files (`trainer`), and the manifest, written last
//! (`manifest`, which also verifies an export). Everything is read from one `ReadView` — one
//! redb read transaction — so an export taken while the daemon writes is exactly one committed
//! state, and nothing hashed depends on time or arrival order: the same state gives
//! byte-identical files. Files are written under a temporary name and renamed.

pub mod manifest;
mod trainer;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::config::Settings;
use crate::curriculum::{self, Curriculum, Plan};
use crate::error::{Error, Result};
use crate::fingerprint::Hash128;
use crate::model::{Conversation, RecordKind, Role};
use crate::neardup::{Policy, Split, UnionFind};
use crate::pii::PiiStatus;
use crate::store::ReadView;
use crate::verify;

pub use manifest::{verify_export, ExportCheck, Manifest};

/// The manifest's own format version.
pub const EXPORT_FORMAT_VERSION: u32 = 1;

/// A row that goes out, with what the layout and the curriculum need to know of it.
#[derive(Debug, Clone)]
pub struct SelectedRow {
    pub hash: Hash128,
    pub split: Split,
    pub primary_family: String,
    /// Every family tag of the row.
    pub families: Vec<String>,
    pub tokens: u64,
    pub kind: RecordKind,
    pub pii: PiiStatus,
}

/// The exportable rows of a snapshot.
#[derive(Debug, Clone, Default)]
pub struct Selection {
    /// Sorted by content hash.
    pub rows: Vec<SelectedRow>,
    /// Representative → the near-duplicates it stands for (sorted).
    pub collapsed: BTreeMap<Hash128, Vec<Hash128>>,
    /// Unique rows left out because the PII policy excluded them.
    pub pii_excluded: u64,
}

impl Selection {
    pub fn get(&self, h: Hash128) -> Option<&SelectedRow> {
        self.rows
            .binary_search_by_key(&h, |r| r.hash)
            .ok()
            .map(|i| &self.rows[i])
    }
}

/// What a row needs for choosing representatives.
struct Candidate {
    simhash: u64,
    words: u32,
    tokens: u64,
    excluded: bool,
}

/// Choose the rows of a snapshot: every unique, non-excluded row, and with `collapse`, one per
/// group of near-duplicates (connected by confirmed near-duplicate pairs within a stored
/// cluster): the one with the most tokens, ties to the smallest hash.
pub fn select(view: &ReadView, policy: &Policy, collapse: bool) -> Result<Selection> {
    let assignments = view.assignments(policy)?;
    let mut rows = Vec::new();
    let mut candidates: HashMap<Hash128, Candidate> = HashMap::new();
    let mut pii_excluded = 0;
    view.for_each_row(|h, row| {
        let excluded = row.pii.status == PiiStatus::Excluded;
        candidates.insert(
            h,
            Candidate {
                simhash: row.simhash,
                words: row.words,
                tokens: row.tokens,
                excluded,
            },
        );
        if excluded {
            pii_excluded += 1;
            return Ok(());
        }
        rows.push(SelectedRow {
            hash: h,
            split: assignments.get(&h).map_or(Split::Train, |a| a.split),
            primary_family: row.primary_family,
            families: row.families.into_iter().map(|(f, _)| f).collect(),
            tokens: row.tokens,
            kind: row.kind,
            pii: row.pii.status,
        });
        Ok(())
    })?;
    let mut collapsed: BTreeMap<Hash128, Vec<Hash128>> = BTreeMap::new();
    if collapse {
        let mut clusters: BTreeMap<Hash128, Vec<Hash128>> = BTreeMap::new();
        for (h, a) in view.cluster_entries()? {
            clusters.entry(a.cluster).or_default().push(h);
        }
        let mut shingles: HashMap<Hash128, Vec<u64>> = HashMap::new();
        for members in clusters.values() {
            let usable: Vec<Hash128> = members
                .iter()
                .copied()
                .filter(|h| {
                    candidates
                        .get(h)
                        .is_some_and(|c| !c.excluded && policy.fingerprintable(c.words))
                })
                .collect();
            let mut sets = UnionFind::default();
            for (i, &a) in usable.iter().enumerate() {
                for &b in &usable[i + 1..] {
                    let d = (candidates[&a].simhash ^ candidates[&b].simhash).count_ones();
                    if d > policy.hamming || sets.find(a) == sets.find(b) {
                        continue;
                    }
                    for h in [a, b] {
                        if let std::collections::hash_map::Entry::Vacant(e) = shingles.entry(h) {
                            e.insert(view.shingles(h)?);
                        }
                    }
                    if policy.judge(d, &shingles[&a], &shingles[&b]).is_some() {
                        sets.union(a, b);
                    }
                }
            }
            let mut groups: BTreeMap<Hash128, Vec<Hash128>> = BTreeMap::new();
            for h in sets.members() {
                groups.entry(sets.find(h)).or_default().push(h);
            }
            for group in groups.into_values().filter(|g| g.len() > 1) {
                let rep = *group
                    .iter()
                    .max_by(|a, b| {
                        candidates[a]
                            .tokens
                            .cmp(&candidates[b].tokens)
                            .then(b.cmp(a))
                    })
                    .expect("groups are not empty");
                let mut others: Vec<Hash128> = group.into_iter().filter(|h| *h != rep).collect();
                others.sort();
                collapsed.insert(rep, others);
            }
        }
        let dropped: BTreeSet<Hash128> = collapsed.values().flatten().copied().collect();
        rows.retain(|r| !dropped.contains(&r.hash));
    }
    Ok(Selection {
        rows,
        collapsed,
        pii_excluded,
    })
}

/// How to export.
#[derive(Debug, Clone)]
pub struct ExportOptions {
    /// A shard is closed before it would exceed this many bytes (a single larger row gets a
    /// shard of its own).
    pub shard_bytes: u64,
    /// Export each near-duplicate group once (its representative) instead of every member.
    pub collapse_near_duplicates: bool,
    /// A previous export's manifest: the new manifest says which rows moved split since.
    pub previous: Option<PathBuf>,
    /// Export even when a gate fails (the manifest records the failure).
    pub allow_failing_gates: bool,
}

/// One line of the export (`schema/chatml-line.schema.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportLine {
    pub messages: Vec<LineMessage>,
    /// Preference pairs: the rejected answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rejected: Option<Vec<LineMessage>>,
    /// KTO rows: whether the completion is desirable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<bool>,
    pub metadata: LineMetadata,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LineMessage {
    pub role: Role,
    pub content: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LineMetadata {
    pub source_family: String,
    /// The key of the row's first place, in (source, key, line) order.
    pub source_key: String,
    pub content_hash: String,
    pub pii_status: PiiStatus,
    pub license_tag: String,
    pub split: Split,
    pub phase: String,
    pub kind: RecordKind,
    pub families: Vec<String>,
    pub tokens: u64,
    /// Near-duplicates this row stands for (their provenance is in provenance.jsonl).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub near_duplicates: Vec<String>,
}

/// One line of `provenance.jsonl`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProvenanceLine {
    pub content_hash: String,
    pub split: Split,
    pub family: String,
    pub sources: Vec<Place>,
    /// Collapsed near-duplicates and their places.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub near_duplicates: Vec<NearDuplicateProvenance>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NearDuplicateProvenance {
    pub content_hash: String,
    pub sources: Vec<Place>,
}

/// One occurrence of a row in an object (the same shape `idx query hash` prints).
pub use crate::query::SourceRef as Place;

/// What an export wrote.
#[derive(Debug, Clone, Serialize)]
pub struct ExportSummary {
    pub out: String,
    pub manifest: String,
    pub manifest_sha256: String,
    pub rows: u64,
    pub tokens: u64,
    pub shards: usize,
    pub bytes: u64,
    pub near_duplicates_collapsed: u64,
    pub pii_excluded: u64,
    pub gates_passed: bool,
    pub moved_since_previous: Option<u64>,
    pub curriculum: Plan,
}

/// A file being written under a temporary name, hashed as it goes.
pub(crate) struct OutFile {
    tmp: PathBuf,
    path: PathBuf,
    rel: String,
    out: std::io::BufWriter<std::fs::File>,
    sha: Sha256,
    pub bytes: u64,
    pub rows: u64,
    pub tokens: u64,
}

/// A finished file, as the manifest lists it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileEntry {
    /// Relative to the export root, `/`-separated.
    pub path: String,
    pub sha256: String,
    pub bytes: u64,
    pub rows: u64,
    pub tokens: u64,
}

impl OutFile {
    pub(crate) fn create(root: &Path, rel: &str) -> Result<OutFile> {
        let path = root.join(rel);
        let dir = path.parent().unwrap_or(root).to_path_buf();
        std::fs::create_dir_all(&dir).map_err(|source| Error::Io {
            path: dir.clone(),
            source,
        })?;
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let tmp = dir.join(format!(".{name}.tmp"));
        let file = std::fs::File::create(&tmp).map_err(|source| Error::Io {
            path: tmp.clone(),
            source,
        })?;
        Ok(OutFile {
            tmp,
            path,
            rel: rel.to_string(),
            out: std::io::BufWriter::with_capacity(1 << 20, file),
            sha: Sha256::new(),
            bytes: 0,
            rows: 0,
            tokens: 0,
        })
    }

    /// Append one line (the newline is added).
    pub(crate) fn line(&mut self, text: &str, tokens: u64) -> Result<()> {
        self.write(text.as_bytes())?;
        self.write(b"\n")?;
        self.rows += 1;
        self.tokens += tokens;
        Ok(())
    }

    pub(crate) fn write(&mut self, bytes: &[u8]) -> Result<()> {
        self.out.write_all(bytes).map_err(|source| Error::Io {
            path: self.tmp.clone(),
            source,
        })?;
        self.sha.update(bytes);
        self.bytes += bytes.len() as u64;
        Ok(())
    }

    /// Flush, sync and rename into place.
    pub(crate) fn finish(self) -> Result<FileEntry> {
        let io = |source| Error::Io {
            path: self.tmp.clone(),
            source,
        };
        let file = self.out.into_inner().map_err(|e| io(e.into_error()))?;
        file.sync_all().map_err(io)?;
        drop(file);
        std::fs::rename(&self.tmp, &self.path).map_err(|source| Error::Io {
            path: self.path.clone(),
            source,
        })?;
        Ok(FileEntry {
            path: self.rel,
            sha256: hex(&self.sha.finalize()),
            bytes: self.bytes,
            rows: self.rows,
            tokens: self.tokens,
        })
    }
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Family names become file names: anything but `[a-z0-9_-]` is replaced.
fn file_safe(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect()
}

/// The line of one row.
pub(crate) fn line_of(
    row: &SelectedRow,
    conversation: &Conversation,
    source_key: String,
    license: &str,
    near_duplicates: &[Hash128],
) -> ExportLine {
    let msgs = |m: &[crate::model::Message]| -> Vec<LineMessage> {
        m.iter()
            .map(|m| LineMessage {
                role: m.role,
                content: m.content.clone(),
            })
            .collect()
    };
    ExportLine {
        messages: msgs(&conversation.messages),
        rejected: conversation.rejected.as_deref().map(msgs),
        label: conversation.label,
        metadata: LineMetadata {
            source_family: row.primary_family.clone(),
            source_key,
            content_hash: row.hash.to_hex(),
            pii_status: row.pii,
            license_tag: license.to_string(),
            split: row.split,
            phase: row.kind.phase().to_string(),
            kind: row.kind,
            families: row.families.clone(),
            tokens: row.tokens,
            near_duplicates: near_duplicates.iter().map(|h| h.to_hex()).collect(),
        },
    }
}

/// Where an export is built and how it replaces the folder it goes to. The export is written
/// into a fresh sibling folder (`.NAME.idx-staging`), and only once its manifest is written is
/// it swapped in: the folder it replaces stays a complete, usable export until then, and an
/// export interrupted at any point (`kill -9`, a full disk) can simply be run again. Nothing is
/// ever written through a symbolic link, and nothing outside `out` and its two siblings is
/// touched.
struct Target {
    out: PathBuf,
    staging: PathBuf,
    /// Where the replaced export is moved during the swap.
    aside: PathBuf,
}

impl Target {
    /// Check `out` (absent, empty, or an idx export holding nothing but what its manifest
    /// lists), clean up what an interrupted export left, and create an empty staging folder.
    fn prepare(out: &Path) -> Result<Target> {
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| Error::Io { path, source }
        };
        let name = out
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .filter(|n| n != "." && n != "..")
            .ok_or_else(|| {
                Error::Export(format!(
                    "{}: give the export a folder of its own (it is replaced as a whole)",
                    out.display()
                ))
            })?;
        let parent = match out.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        std::fs::create_dir_all(&parent).map_err(io(&parent))?;
        let target = Target {
            out: out.to_path_buf(),
            staging: parent.join(format!(".{name}.idx-staging")),
            aside: parent.join(format!(".{name}.idx-replaced")),
        };
        // A swap cut short: the old export was moved aside and the new one not yet in place.
        if target.aside.exists() {
            if std::fs::symlink_metadata(out).is_err() {
                std::fs::rename(&target.aside, out).map_err(io(out))?;
            } else {
                std::fs::remove_dir_all(&target.aside).map_err(io(&target.aside))?;
            }
        }
        match std::fs::symlink_metadata(out) {
            Err(_) => {}
            Ok(meta) if meta.file_type().is_symlink() => {
                return Err(Error::Export(format!(
                    "{} is a symbolic link: give the folder it points to (idx never writes through a link)",
                    out.display()
                )))
            }
            Ok(meta) if !meta.is_dir() => {
                return Err(Error::Export(format!("{} is a file, not a folder", out.display())))
            }
            Ok(_) => check_replaceable(out)?,
        }
        // An export interrupted before its swap left its staging folder: start afresh.
        if std::fs::symlink_metadata(&target.staging).is_ok() {
            remove_any(&target.staging)?;
        }
        std::fs::create_dir(&target.staging).map_err(io(&target.staging))?;
        Ok(target)
    }

    /// Put the finished export in place of `out`.
    fn commit(self) -> Result<()> {
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| Error::Io { path, source }
        };
        if std::fs::symlink_metadata(&self.out).is_ok() {
            std::fs::rename(&self.out, &self.aside).map_err(io(&self.out))?;
            std::fs::rename(&self.staging, &self.out).map_err(io(&self.out))?;
            std::fs::remove_dir_all(&self.aside).map_err(io(&self.aside))?;
        } else {
            std::fs::rename(&self.staging, &self.out).map_err(io(&self.out))?;
        }
        if let Some(parent) = self.out.parent() {
            if let Ok(dir) = std::fs::File::open(if parent.as_os_str().is_empty() {
                Path::new(".")
            } else {
                parent
            }) {
                let _ = dir.sync_all();
            }
        }
        Ok(())
    }
}

/// Remove a file, a link (not what it points to) or a folder.
fn remove_any(path: &Path) -> Result<()> {
    let io = |source| Error::Io {
        path: path.to_path_buf(),
        source,
    };
    let meta = std::fs::symlink_metadata(path).map_err(io)?;
    if meta.is_dir() {
        std::fs::remove_dir_all(path).map_err(io)
    } else {
        std::fs::remove_file(path).map_err(io)
    }
}

/// A non-empty `out` may be replaced only when it is an idx export holding nothing but what its
/// manifest lists: anything else there (a user's file, a link) would be lost with it.
fn check_replaceable(out: &Path) -> Result<()> {
    let mut entries = std::fs::read_dir(out).map_err(|source| Error::Io {
        path: out.to_path_buf(),
        source,
    })?;
    if entries.next().is_none() {
        return Ok(());
    }
    let manifest_path = out.join("manifest.json");
    let Ok(old) = Manifest::read(&manifest_path) else {
        return Err(Error::Export(format!(
            "{} is not empty and holds no idx export (manifest.json); choose an empty folder",
            out.display()
        )));
    };
    if let Some(f) = old.entries().find(|f| !manifest::is_inside(&f.path)) {
        return Err(Error::Export(format!(
            "{}: lists `{}`, which is not a path inside the export; not touching it",
            manifest_path.display(),
            f.path
        )));
    }
    let unlisted = manifest::unlisted(out, &old)?;
    if !unlisted.is_empty() {
        return Err(Error::Export(format!(
            "{} holds what its manifest does not list ({}); it would be lost with the export it replaces: move it away or choose another folder",
            out.display(),
            unlisted
                .iter()
                .take(5)
                .map(String::as_str)
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    Ok(())
}

/// Export the snapshot `view` into the folder `out`.
pub fn export(
    view: &ReadView,
    settings: &Settings,
    curriculum: &Curriculum,
    out: &Path,
    options: &ExportOptions,
    progress: &mut dyn FnMut(&str),
) -> Result<ExportSummary> {
    let policy = settings.policy();
    if let Some(stored) = view.policy()? {
        if stored != policy {
            return Err(Error::Export(
                "the index was built with other near-duplicate, split or holdout settings than \
                 the current config; run `idx ingest` to apply them, then export"
                    .to_string(),
            ));
        }
    }
    progress("running the gates");
    let verification = verify::verify(view, settings)?;
    if !verification.passed && !options.allow_failing_gates {
        let mut failed = Vec::new();
        if !verification.gates.coverage.passed {
            failed.push("coverage");
        }
        if !verification.gates.leakage.passed {
            failed.push("leakage");
        }
        return Err(Error::GatesFailed(failed.join(" and ")));
    }
    progress("selecting rows");
    let selection = select(view, &policy, options.collapse_near_duplicates)?;
    let plan = curriculum::plan(curriculum, &settings.classifier, &selection);
    if !plan.passed {
        return Err(Error::Export(format!(
            "the curriculum does not fit the index: {}",
            plan.errors.join("; ")
        )));
    }
    let previous = match &options.previous {
        Some(p) => Some(manifest::PreviousExport::read(p)?),
        None => None,
    };
    let target = Target::prepare(out)?;
    let decided = Decided {
        verification,
        selection,
        plan,
        previous,
    };
    let mut summary = write_export(
        view,
        settings,
        curriculum,
        &target.staging,
        options,
        progress,
        decided,
    )?;
    target.commit()?;
    summary.out = out.display().to_string();
    summary.manifest = out.join("manifest.json").display().to_string();
    Ok(summary)
}

/// A row's places as they may leave idx: sources and keys with PII redacted (see
/// [`crate::pii::Redactor::redact_key`]); `idx query source` accepts either spelling.
fn public_refs(
    view: &ReadView,
    hash: Hash128,
    redactor: &crate::pii::Redactor,
) -> Result<Vec<crate::query::SourceRef>> {
    let mut refs = crate::query::source_refs(view, hash)?;
    for r in &mut refs {
        r.source = redactor.redact_key(&r.source);
        r.key = redactor.redact_key(&r.key);
    }
    Ok(refs)
}

/// What was decided before anything is written: the gates' verdict, the rows, the curriculum
/// plan, and the previous export to compare with.
struct Decided {
    verification: verify::Verification,
    selection: Selection,
    plan: curriculum::Plan,
    previous: Option<manifest::PreviousExport>,
}

/// Write every file of the export into `out` (the staging folder), the manifest last.
fn write_export(
    view: &ReadView,
    settings: &Settings,
    curriculum: &Curriculum,
    out: &Path,
    options: &ExportOptions,
    progress: &mut dyn FnMut(&str),
    decided: Decided,
) -> Result<ExportSummary> {
    let Decided {
        verification,
        selection,
        plan,
        previous,
    } = decided;
    let selection = &selection;
    let redactor = settings.redactor();
    let licenses: BTreeMap<&str, &str> = settings
        .classifier
        .config()
        .families
        .iter()
        .map(|f| {
            (
                f.name.as_str(),
                f.license.as_deref().unwrap_or("unspecified"),
            )
        })
        .collect();

    // Rows grouped by (split, family), each group in hash order.
    let mut groups: BTreeMap<(Split, &str), Vec<&SelectedRow>> = BTreeMap::new();
    for r in &selection.rows {
        groups
            .entry((r.split, r.primary_family.as_str()))
            .or_default()
            .push(r);
    }
    let mut finals = OutFile::create(out, "final.chatml.jsonl")?;
    let mut provenance = OutFile::create(out, "provenance.jsonl")?;
    let mut shards = Vec::new();
    let mut sources: BTreeMap<String, manifest::SourceCount> = BTreeMap::new();
    let mut totals = manifest::Totals::default();
    let total = selection.rows.len();
    let mut done = 0usize;
    for ((split, family), rows) in &groups {
        let mut index = 0u32;
        let mut shard: Option<OutFile> = None;
        for r in rows {
            let conversation = view
                .representative(r.hash)?
                .ok_or_else(|| Error::Codec {
                    table: "variants",
                    message: format!("row {} has no stored text", r.hash.to_hex()),
                })?
                .conversation;
            let places = public_refs(view, r.hash, &redactor)?;
            let source_key = places.first().map(|p| p.key.clone()).unwrap_or_default();
            let near = selection
                .collapsed
                .get(&r.hash)
                .map(Vec::as_slice)
                .unwrap_or(&[]);
            let license = licenses
                .get(r.primary_family.as_str())
                .copied()
                .unwrap_or("unspecified");
            let line = line_of(r, &conversation, source_key, license, near);
            let text = serde_json::to_string(&line).map_err(|e| Error::Export(e.to_string()))?;
            let needed = text.len() as u64 + 1;
            if shard
                .as_ref()
                .is_some_and(|s| s.rows > 0 && s.bytes + needed > options.shard_bytes)
            {
                let s = shard.take().expect("checked above");
                shards.push(manifest::Shard::new(s.finish()?, *split, family));
                index += 1;
            }
            if shard.is_none() {
                let rel = format!(
                    "data/{}/{}-{index:05}.chatml.jsonl",
                    split.as_str(),
                    file_safe(family)
                );
                shard = Some(OutFile::create(out, &rel)?);
            }
            shard
                .as_mut()
                .expect("opened above")
                .line(&text, r.tokens)?;
            finals.line(&text, r.tokens)?;
            // Provenance: every place of the row and of the near-duplicates it stands for.
            let mut near_prov = Vec::new();
            for &n in near {
                near_prov.push(NearDuplicateProvenance {
                    content_hash: n.to_hex(),
                    sources: public_refs(view, n, &redactor)?,
                });
            }
            let mut counted: BTreeSet<&str> = BTreeSet::new();
            for p in places
                .iter()
                .chain(near_prov.iter().flat_map(|n| n.sources.iter()))
            {
                let c = sources.entry(p.source.clone()).or_default();
                c.places += 1;
                if counted.insert(p.source.as_str()) {
                    c.rows += 1;
                }
            }
            let prov = ProvenanceLine {
                content_hash: r.hash.to_hex(),
                split: r.split,
                family: r.primary_family.clone(),
                sources: places,
                near_duplicates: near_prov,
            };
            let text = serde_json::to_string(&prov).map_err(|e| Error::Export(e.to_string()))?;
            provenance.line(&text, 0)?;
            totals.add(r);
            done += 1;
            if done.is_multiple_of(10_000) {
                progress(&format!("{done}/{total} rows written"));
            }
        }
        if let Some(s) = shard {
            shards.push(manifest::Shard::new(s.finish()?, *split, family));
        }
    }
    let mut files = vec![finals.finish()?, provenance.finish()?];
    progress("writing the curriculum");
    files.extend(trainer::write(out, view, &plan, selection)?);
    let moves = previous.map(|p| p.changes(selection));
    let collapsed: u64 = selection.collapsed.values().map(|v| v.len() as u64).sum();
    let manifest = Manifest {
        format: "idx-export".to_string(),
        format_version: EXPORT_FORMAT_VERSION,
        index: manifest::IndexState {
            format_version: crate::store::FORMAT_VERSION,
            state_digest: view.state_digest()?,
        },
        config: manifest::ConfigDigests {
            families: settings.classifier.digest().to_string(),
            idx: settings.idx_digest(),
            curriculum: curriculum.digest(),
        },
        options: manifest::OptionsRecord {
            shard_bytes: options.shard_bytes,
            collapse_near_duplicates: options.collapse_near_duplicates,
        },
        gates: manifest::GatesRecord {
            passed: verification.passed,
            coverage: verification.gates.coverage.passed,
            leakage: verification.gates.leakage.passed,
        },
        totals,
        pii: manifest::PiiRecordCounts {
            redacted_rows: selection
                .rows
                .iter()
                .filter(|r| r.pii == PiiStatus::Redacted)
                .count() as u64,
            excluded_rows: selection.pii_excluded,
        },
        near_duplicates_collapsed: collapsed,
        sources,
        shards,
        files,
        previous: moves,
    };
    progress("writing the manifest");
    let manifest_entry = manifest.write(out)?;
    let info = serde_json::json!({
        "created_at": now_rfc3339(),
        "index_seq": view.seq()?,
        "idx_version": env!("CARGO_PKG_VERSION"),
        "manifest_sha256": manifest_entry.sha256,
    });
    let mut f = OutFile::create(out, "export_info.json")?;
    f.write(
        serde_json::to_string_pretty(&info)
            .unwrap_or_default()
            .as_bytes(),
    )?;
    f.write(b"\n")?;
    f.finish()?;
    Ok(ExportSummary {
        out: out.display().to_string(),
        manifest: out.join("manifest.json").display().to_string(),
        manifest_sha256: manifest_entry.sha256,
        rows: manifest.totals.rows,
        tokens: manifest.totals.tokens,
        shards: manifest.shards.len(),
        bytes: manifest.shards.iter().map(|s| s.file.bytes).sum(),
        near_duplicates_collapsed: collapsed,
        pii_excluded: selection.pii_excluded,
        gates_passed: verification.passed,
        moved_since_previous: manifest.previous.as_ref().map(|p| p.moved),
        curriculum: plan,
    })
}

/// Where an S3 export goes, and how.
#[derive(Debug, Clone, Copy)]
pub struct S3Target<'a> {
    pub url: &'a crate::source::s3::S3Url,
    pub client: &'a crate::source::s3::S3Client,
    /// A local folder to build the export in before uploading it.
    pub staging: &'a Path,
}

/// Export to `s3://bucket/prefix`: the export is built in a local staging folder (`staging`,
/// emptied first and removed after), then uploaded — an existing manifest at the prefix deleted
/// first, every shard and file next (multipart above the configured size), `manifest.json` last —
/// so a reader of the prefix never sees a manifest pointing at missing objects.
pub fn export_to_s3(
    view: &ReadView,
    settings: &Settings,
    curriculum: &Curriculum,
    target: &S3Target<'_>,
    options: &ExportOptions,
    progress: &mut dyn FnMut(&str),
) -> Result<ExportSummary> {
    let S3Target {
        url,
        client,
        staging,
    } = *target;
    if staging.exists() {
        std::fs::remove_dir_all(staging).map_err(|source| Error::Io {
            path: staging.to_path_buf(),
            source,
        })?;
    }
    let mut summary = export(view, settings, curriculum, staging, options, progress)?;
    let manifest = Manifest::read(&staging.join("manifest.json"))?;
    client.delete(&url.bucket, &url.key("manifest.json"))?;
    let files: Vec<&FileEntry> = manifest
        .shards
        .iter()
        .map(|s| &s.file)
        .chain(manifest.files.iter())
        .collect();
    for (i, f) in files.iter().enumerate() {
        progress(&format!("uploading {} ({}/{})", f.path, i + 1, files.len()));
        client.upload(&staging.join(&f.path), &url.bucket, &url.key(&f.path))?;
    }
    client.upload(
        &staging.join("export_info.json"),
        &url.bucket,
        &url.key("export_info.json"),
    )?;
    client.upload(
        &staging.join("manifest.json"),
        &url.bucket,
        &url.key("manifest.json"),
    )?;
    std::fs::remove_dir_all(staging).map_err(|source| Error::Io {
        path: staging.to_path_buf(),
        source,
    })?;
    summary.out = url.source();
    summary.manifest = format!("{}/manifest.json", url.source());
    Ok(summary)
}

/// UTC now as RFC 3339 (seconds), for `export_info.json` only — never in hashed content.
fn now_rfc3339() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3_600,
        rem % 3_600 / 60,
        rem % 60
    )
}
