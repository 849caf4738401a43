//! The curriculum next to the data: per stage a train file (the rows its mix draws) and a val
//! file (the val-split rows of its families) in the shapes trainers read (`shapes`), plus
//! `curriculum.json` (stages, weights, files, tokens and token-length statistics, the
//! preference algorithm and why), a LLaMA-Factory `dataset_info.json` and one axolotl config
//! per stage (`configs`). A file that would be empty is not written and not named:
//! `curriculum.json` says the stage (or its val set) has no rows, and the trainer configs leave
//! it out.

mod configs;
mod shapes;

use std::collections::BTreeMap;
use std::path::Path;

use serde::Serialize;
use serde_json::json;

use super::out::{FileEntry, OutFile};
use crate::curriculum::{Plan, StagePlan};
use crate::error::{Error, Result};
use crate::fingerprint::Hash128;
use crate::select::Selection;
use crate::store::ReadView;
use shapes::{Format, Reader, Shape};

/// A stage's train and val file for one reader (each `null` when it would be empty).
#[derive(Debug, Clone, Default, Serialize)]
struct FilePair {
    train_file: Option<FileEntry>,
    val_file: Option<FileEntry>,
}

#[derive(Serialize)]
struct StageFiles<'a> {
    #[serde(flatten)]
    plan: &'a StagePlan,
    format: Format,
    weights: BTreeMap<&'a str, f64>,
    /// `null` when the stage draws no row (then no file is written).
    train_file: Option<FileEntry>,
    val_file: Option<FileEntry>,
    /// The same rows in the shape a trainer documents where it differs from the main files'
    /// (`llamafactory`, `axolotl`); empty for text and SFT stages.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    trainer_files: BTreeMap<Reader, FilePair>,
    /// Tokens per trainer line of the train file (for `sequence_len` and packing).
    train_lengths: Option<Lengths>,
    /// Drawn rows that have no line in the stage's format (a preference row whose answers do
    /// not follow a user turn, say): counted, never silently lost.
    rows_without_shape: u64,
    /// Why a file is missing, if one is.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    notes: Vec<String>,
    /// The axolotl config written for the stage (none without train rows).
    axolotl_config: Option<String>,
}

impl StageFiles<'_> {
    /// The files a reader trains on: its own when it has them, else the main ones.
    fn files_for(&self, reader: Reader) -> (Option<&FileEntry>, Option<&FileEntry>) {
        match self.trainer_files.get(&reader) {
            Some(p) => (p.train_file.as_ref(), p.val_file.as_ref()),
            None => (self.train_file.as_ref(), self.val_file.as_ref()),
        }
    }
}

/// Token counts of the rows of one file.
#[derive(Debug, Clone, Serialize)]
struct Lengths {
    rows: u64,
    min: u64,
    mean: u64,
    p50: u64,
    p95: u64,
    p99: u64,
    max: u64,
}

impl Lengths {
    fn of(mut tokens: Vec<u64>) -> Option<Lengths> {
        if tokens.is_empty() {
            return None;
        }
        tokens.sort_unstable();
        let n = tokens.len();
        let at = |q: f64| tokens[((n as f64 * q).ceil() as usize).clamp(1, n) - 1];
        Some(Lengths {
            rows: n as u64,
            min: tokens[0],
            mean: tokens.iter().sum::<u64>() / n as u64,
            p50: at(0.5),
            p95: at(0.95),
            p99: at(0.99),
            max: tokens[n - 1],
        })
    }
}

/// Write every curriculum file under `curriculum/`; returns their entries for the manifest.
pub(super) fn write(
    out: &Path,
    view: &ReadView,
    plan: &Plan,
    selection: &Selection,
) -> Result<Vec<FileEntry>> {
    let mut entries = Vec::new();
    let mut stages = Vec::new();
    for stage in &plan.stages {
        let format = Format::of(stage);
        let algorithm = stage.algorithm.as_ref().map(|a| a.algorithm);
        let name = format!("{:02}_{}", stage.order, stage.id);
        let mut readers = vec![(Reader::All, shapes::main_shape(format))];
        readers.extend(shapes::own_files(format, algorithm));
        let mut pairs = BTreeMap::new();
        let mut lengths = Vec::new();
        let mut rows_without_shape = 0;
        for (reader, shape) in readers {
            let dir = match reader.folder() {
                Some(folder) => format!("curriculum/{folder}/{name}"),
                None => format!("curriculum/{name}"),
            };
            let train = write_rows(
                out,
                &format!("{dir}.train.jsonl"),
                view,
                &stage.train,
                format,
                shape,
                selection,
            )?;
            let val = write_rows(
                out,
                &format!("{dir}.val.jsonl"),
                view,
                &stage.val,
                format,
                shape,
                selection,
            )?;
            if reader == Reader::All {
                lengths = train.lengths;
                rows_without_shape = train.without_shape + val.without_shape;
            }
            entries.extend(train.file.iter().cloned());
            entries.extend(val.file.iter().cloned());
            pairs.insert(
                reader,
                FilePair {
                    train_file: train.file,
                    val_file: val.file,
                },
            );
        }
        let main = pairs.remove(&Reader::All).unwrap_or_default();
        let mut notes = Vec::new();
        if main.train_file.is_none() {
            notes.push(
                "no train rows: no file is written and the stage is left out of the trainer configs"
                    .to_string(),
            );
        }
        if main.val_file.is_none() {
            notes.push("no val rows: no val file".to_string());
        }
        if rows_without_shape > 0 {
            notes.push(format!(
                "{rows_without_shape} drawn rows have no {} line (no answer after a user turn, or no rejected answer or label) and are left out",
                serde_json::to_value(format).ok().and_then(|v| v.as_str().map(String::from)).unwrap_or_default()
            ));
        }
        stages.push(StageFiles {
            plan: stage,
            format,
            weights: stage
                .families
                .iter()
                .map(|f| (f.family.as_str(), f.weight))
                .collect(),
            axolotl_config: main
                .train_file
                .is_some()
                .then(|| format!("curriculum/axolotl/{name}.yaml")),
            train_file: main.train_file,
            val_file: main.val_file,
            trainer_files: pairs,
            train_lengths: Lengths::of(lengths),
            rows_without_shape,
            notes,
        });
    }
    let curriculum = json!({
        "name": plan.name,
        "warnings": plan.warnings,
        "stages": stages,
    });
    entries.push(write_text(
        out,
        "curriculum/curriculum.json",
        &pretty(&curriculum)?,
    )?);
    entries.push(write_text(
        out,
        "curriculum/dataset_info.json",
        &pretty(&configs::dataset_info(&stages))?,
    )?);
    for s in &stages {
        if let Some(path) = &s.axolotl_config {
            entries.push(write_text(out, path, &configs::axolotl(plan, s))?);
        }
    }
    Ok(entries)
}

fn pretty(v: &serde_json::Value) -> Result<String> {
    serde_json::to_string_pretty(v)
        .map(|s| s + "\n")
        .map_err(|e| Error::Export(e.to_string()))
}

fn write_text(out: &Path, rel: &str, text: &str) -> Result<FileEntry> {
    let mut f = OutFile::create(out, rel)?;
    f.write(text.as_bytes())?;
    f.finish()
}

/// One stage file as written.
struct Written {
    /// `None` (and no file) when no line would be in it.
    file: Option<FileEntry>,
    /// The tokens of each line written.
    lengths: Vec<u64>,
    /// Rows that gave no line.
    without_shape: u64,
}

/// Write a stage file in one shape.
fn write_rows(
    out: &Path,
    rel: &str,
    view: &ReadView,
    rows: &[Hash128],
    format: Format,
    shape: Shape,
    selection: &Selection,
) -> Result<Written> {
    let mut f: Option<OutFile> = None;
    let mut lengths = Vec::new();
    let mut without_shape = 0;
    for &h in rows {
        let Some(row) = selection.get(h) else {
            continue;
        };
        let c = view
            .representative(h)?
            .ok_or_else(|| Error::Export(format!("row {} has no stored text", h.to_hex())))?
            .conversation;
        let lines = shapes::render(&c, format, shape);
        if lines.is_empty() {
            without_shape += 1;
        }
        for line in lines {
            let text = serde_json::to_string(&line).map_err(|e| Error::Export(e.to_string()))?;
            let file = match &mut f {
                Some(file) => file,
                None => f.insert(OutFile::create(out, rel)?),
            };
            file.line(&text, row.tokens)?;
            lengths.push(row.tokens);
        }
    }
    Ok(Written {
        file: f.map(OutFile::finish).transpose()?,
        lengths,
        without_shape,
    })
}
