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

mod lines;
pub mod manifest;
mod out;
mod s3;
mod target;
mod trainer;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::config::Settings;
use crate::curriculum::{self, Curriculum, Plan};
use crate::error::{Error, Result};
use crate::neardup::Split;
use crate::pii::PiiStatus;
use crate::store::ReadView;
use crate::verify;
use lines::{line_of, public_refs};
use out::{file_safe, OutFile};
use target::Target;

pub use lines::{ExportLine, LineMessage, LineMetadata, ProvenanceLine, ProvenancePlace};
pub use manifest::{verify_export, ExportCheck, Manifest};
pub(crate) use out::hex;

/// One occurrence of a row in an object (the same shape `idx query hash` prints).
pub use crate::query::SourceRef as Place;
pub use crate::select::{select, SelectedRow, Selection};
pub use s3::{export_to_s3, S3Target};

/// The manifest's own format version.
pub const EXPORT_FORMAT_VERSION: u32 = 1;

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
    /// Rows the structure checks held back, per family and check.
    pub structure: manifest::StructureCounts,
    pub gates_passed: bool,
    pub moved_since_previous: Option<u64>,
    pub curriculum: Plan,
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
    progress("running the gates and selecting rows");
    let (verification, selected) = verify::verify_selecting(
        view,
        settings,
        Some(curriculum),
        options.collapse_near_duplicates,
    )?;
    if !verification.passed && !options.allow_failing_gates {
        return Err(Error::GatesFailed(
            verification.gates.failed().join(" and "),
        ));
    }
    let verify::Selected {
        verdicts,
        selection,
        plan,
    } = selected
        .ok_or_else(|| Error::Invariant("verify selected no rows for the export".into()))?;
    if verdicts.unchecked > 0 {
        return Err(Error::Export(format!(
            "{} rows have not been checked against the current benchmark set; run `idx \
             decontaminate` (`idx ingest` and the daemon do it after each ingest), then export",
            verdicts.unchecked
        )));
    }
    if !plan.passed {
        return Err(Error::Export(format!(
            "the curriculum does not fit the index:\n  {}",
            plan.errors.join("\n  ")
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
        verdicts,
        state_digest: view.state_digest()?,
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

/// What was decided before anything is written: the gates' verdict, the rows, the curriculum
/// plan, and the previous export to compare with.
struct Decided {
    verification: verify::Verification,
    selection: Selection,
    plan: curriculum::Plan,
    previous: Option<manifest::PreviousExport>,
    verdicts: crate::decontaminate::Verdicts,
    /// The index's state digest (`ReadView::state_digest`) for the manifest.
    state_digest: String,
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
        verdicts,
        state_digest,
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
    // The lines are made a part at a time on every core (decoding, place lookups and JSON are
    // most of an export) by a maker thread, one part ahead of this thread, which writes them
    // in order: making and writing overlap.
    std::thread::scope(|scope| -> Result<()> {
        let (send, made_parts) = std::sync::mpsc::sync_channel::<Result<Vec<MadeRow>>>(1);
        let groups = &groups;
        let (redactor, licenses) = (&redactor, &licenses);
        scope.spawn(move || {
            for rows in groups.values() {
                for part in rows.chunks(EXPORT_PART) {
                    let made = crate::parallel::map_items(part, 64, |r| {
                        format_row(view, r, selection, redactor, licenses)
                    });
                    let failed = made.is_err();
                    // The writer gone (it failed) or this part failed: nothing more to make.
                    if send.send(made).is_err() || failed {
                        return;
                    }
                }
            }
        });
        for ((split, family), rows) in groups {
            let mut index = 0u32;
            let mut shard: Option<OutFile> = None;
            for part in rows.chunks(EXPORT_PART) {
                let made = made_parts.recv().map_err(|_| {
                    Error::Invariant("the export's line maker stopped early".into())
                })??;
                for (r, made) in part.iter().zip(made) {
                    let needed = made.line.len() as u64 + 1;
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
                        .line(&made.line, r.tokens)?;
                    finals.line(&made.line, r.tokens)?;
                    let mut counted: BTreeSet<&str> = BTreeSet::new();
                    for source in &made.sources {
                        let c = sources.entry(source.clone()).or_default();
                        c.places += 1;
                        if counted.insert(source.as_str()) {
                            c.rows += 1;
                        }
                    }
                    provenance.line(&made.provenance, 0)?;
                    totals.add(r);
                    done += 1;
                    if done.is_multiple_of(10_000) {
                        progress(&format!("{done}/{total} rows written"));
                    }
                }
            }
            if let Some(s) = shard {
                shards.push(manifest::Shard::new(s.finish()?, *split, family));
            }
        }
        Ok(())
    })?;
    let mut files = vec![finals.finish()?, provenance.finish()?];
    files.push(dataset_card(out, &shards, totals.rows)?);
    progress("writing the curriculum");
    files.extend(trainer::write(out, view, &plan, selection)?);
    let decontamination =
        decontamination_record(out, view, settings, &verdicts, selection, &licenses)?;
    if let Some(f) = decontamination
        .as_ref()
        .and_then(|d| d.quarantine_file.as_ref())
    {
        files.push(f.1.clone());
    }
    let decontamination = decontamination.map(|d| d.record);
    let moves = previous.map(|p| p.changes(selection));
    // The report a person signs off, beside the manifest that lists it.
    let mut report = OutFile::create(out, "report.html")?;
    report.write(
        verify::html(
            &verification,
            "idx dataset report",
            moves.as_ref().map(|m| m.moved),
        )
        .as_bytes(),
    )?;
    files.push(report.finish()?);
    let collapsed: u64 = selection.collapsed.values().map(|v| v.len() as u64).sum();
    let manifest = Manifest {
        format: "idx-export".to_string(),
        format_version: EXPORT_FORMAT_VERSION,
        index: manifest::IndexState {
            format_version: crate::store::FORMAT_VERSION,
            state_digest,
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
            structure: verification.gates.structure.passed,
            distribution: verification.gates.distribution.passed,
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
        structure: structure_counts(selection),
        near_duplicates_collapsed: collapsed,
        sources,
        shards,
        files,
        previous: moves,
        decontamination,
        global: view.global_info()?.map(|g| manifest::GlobalRecord {
            shard: g.shard,
            assignments: g.digest,
            elsewhere: selection.elsewhere,
        }),
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
        structure: manifest.structure.clone(),
        gates_passed: verification.passed,
        moved_since_previous: manifest.previous.as_ref().map(|p| p.moved),
        curriculum: plan,
    })
}

/// Rows whose lines are made together (on every core) before they are written.
const EXPORT_PART: usize = 4096;

/// One exported row, made ready to write: its ChatML line, its provenance line and the source
/// of each place it lists (for the manifest's per-source counts).
struct MadeRow {
    line: String,
    provenance: String,
    sources: Vec<String>,
}

fn format_row(
    view: &ReadView,
    r: &SelectedRow,
    selection: &crate::select::Selection,
    redactor: &crate::pii::Redactor,
    licenses: &BTreeMap<&str, &str>,
) -> Result<MadeRow> {
    let conversation = view
        .representative(r.hash)?
        .ok_or_else(|| Error::Codec {
            table: "variants",
            message: format!("row {} has no stored text", r.hash.to_hex()),
        })?
        .conversation;
    let mut places = public_refs(view, r.hash, redactor)?;
    // The primary place the keep policy chose leads (the line's `source_key`).
    if let Some((key, line)) = &r.primary_place {
        if let Some(i) = places.iter().position(|p| &p.key == key && p.line == *line) {
            let p = places.remove(i);
            places.insert(0, p);
        }
    }
    let near = selection
        .collapsed
        .get(&r.hash)
        .map(Vec::as_slice)
        .unwrap_or(&[]);
    let license = licenses
        .get(r.primary_family.as_str())
        .copied()
        .unwrap_or("unspecified");
    let line = line_of(r, &conversation, places.first(), license, near);
    let line = serde_json::to_string(&line).map_err(|e| Error::Export(e.to_string()))?;
    // Provenance: every place of the row and of the near-duplicates it stands for.
    let mut all_places: Vec<ProvenancePlace> = places
        .into_iter()
        .map(|p| ProvenancePlace::of(r.hash, p))
        .collect();
    for &n in near {
        for p in public_refs(view, n, redactor)? {
            all_places.push(ProvenancePlace::of(n, p));
        }
    }
    let sources = all_places.iter().map(|p| p.source.clone()).collect();
    let prov = ProvenanceLine {
        content_hash: r.hash.to_hex(),
        split: r.split,
        family: r.primary_family.clone(),
        sources: all_places,
    };
    let provenance = serde_json::to_string(&prov).map_err(|e| Error::Export(e.to_string()))?;
    Ok(MadeRow {
        line,
        provenance,
        sources,
    })
}

/// `README.md`: a dataset card whose `configs:` name the splits and their shards and whose
/// `dataset_info.features` type every column, so `datasets.load_dataset(EXPORT_DIR)` loads the
/// export as train/validation/test whatever row kinds each file holds.
fn dataset_card(out: &Path, shards: &[manifest::Shard], rows: u64) -> Result<out::FileEntry> {
    let splits: BTreeSet<Split> = shards.iter().map(|s| s.split).collect();
    let mut card = String::from("---\nconfigs:\n- config_name: default\n  data_files:\n");
    for split in &splits {
        let name = match split {
            Split::Train => "train",
            Split::Val => "validation",
            Split::Test => "test",
        };
        card.push_str(&format!(
            "  - split: {name}\n    path: \"data/{}/*.chatml.jsonl\"\n",
            split.as_str()
        ));
    }
    card.push_str(&lines::card_features());
    card.push_str(&format!(
        "---\n\n# idx export\n\n{rows} conversations in ChatML JSON Lines, one file set per split \
         (`data/SPLIT/FAMILY-NNNNN.chatml.jsonl`), every line with the same keys \
         (`schema/chatml-line.schema.json` in idx). `final.chatml.jsonl` holds every split; \
         `provenance.jsonl` traces every row to the objects and lines it came from; \
         `curriculum/` holds the trainer files of each training stage; `manifest.json` the \
         sha256 of every file.\n"
    ));
    let mut f = OutFile::create(out, "README.md")?;
    f.write(card.as_bytes())?;
    f.finish()
}

/// The manifest's decontamination record, with the quarantine file written when the action
/// asks for it.
struct Decontaminated {
    record: manifest::DecontaminationRecord,
    quarantine_file: Option<(String, out::FileEntry)>,
}

fn decontamination_record(
    out: &Path,
    view: &ReadView,
    settings: &Settings,
    verdicts: &crate::decontaminate::Verdicts,
    selection: &Selection,
    licenses: &BTreeMap<&str, &str>,
) -> Result<Option<Decontaminated>> {
    let Some(action) = verdicts.action else {
        return Ok(None);
    };
    let config = &settings.idx.decontamination;
    let removed: BTreeSet<crate::fingerprint::Hash128> =
        selection.withheld.iter().copied().collect();
    let mut benchmarks = Vec::new();
    for b in view.benchmarks()? {
        let matching = verdicts
            .rows
            .iter()
            .filter(|(_, names)| names.contains(&b.name));
        let (mut matched, mut gone) = (0, 0);
        for (h, _) in matching {
            matched += 1;
            gone += u64::from(removed.contains(h));
        }
        benchmarks.push(manifest::BenchmarkCount {
            name: b.name,
            origin: b.origin,
            digest: b.digest,
            items: b.items,
            rows_matched: matched,
            rows_removed: gone,
        });
    }
    let mut quarantine_file = None;
    if action == crate::config::ContaminationAction::Quarantine && !selection.withheld.is_empty() {
        let policy = settings.policy();
        let redactor = settings.redactor();
        let rel = "quarantine/contaminated.chatml.jsonl";
        let mut f = OutFile::create(out, rel)?;
        for &h in &selection.withheld {
            let (Some(row), Some(v)) = (view.row(h)?, view.representative(h)?) else {
                continue;
            };
            let selected = SelectedRow {
                hash: h,
                split: view.assignment(h, &policy)?.split,
                primary_family: row.primary_family,
                families: row.families.into_iter().map(|(f, _)| f).collect(),
                tokens: row.tokens,
                kind: row.kind,
                pii: row.pii.status,
                primary_place: None,
            };
            let places = public_refs(view, h, &redactor)?;
            let license = licenses
                .get(selected.primary_family.as_str())
                .copied()
                .unwrap_or("unspecified");
            let line = line_of(&selected, &v.conversation, places.first(), license, &[]);
            let text = serde_json::to_string(&line).map_err(|e| Error::Export(e.to_string()))?;
            f.line(&text, selected.tokens)?;
        }
        quarantine_file = Some((rel.to_string(), f.finish()?));
    }
    Ok(Some(Decontaminated {
        record: manifest::DecontaminationRecord {
            set: verdicts.set.clone(),
            action: action.as_str().to_string(),
            ngram: config.ngram,
            benchmarks,
            rows_matched: verdicts.rows.len() as u64,
            rows_removed: selection.withheld.len() as u64,
            quarantine_file: quarantine_file.as_ref().map(|(p, _)| p.clone()),
        },
        quarantine_file,
    }))
}

fn structure_counts(selection: &crate::select::Selection) -> manifest::StructureCounts {
    manifest::StructureCounts {
        held_back_rows: selection.structure_held_back,
        by_family: selection
            .held_back
            .iter()
            .map(|(family, checks)| {
                let checks = checks.iter().map(|(c, n)| (c.to_string(), *n)).collect();
                (family.clone(), checks)
            })
            .collect(),
    }
}

/// UTC now as RFC 3339 (seconds), for `export_info.json` only — never in hashed content.
fn now_rfc3339() -> String {
    let now = time::OffsetDateTime::now_utc();
    now.replace_nanosecond(0)
        .unwrap_or(now)
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}
