//! The curriculum next to the data: per stage a train file (the rows its mix draws) and a val
//! file (the val-split rows of its families) in the shapes trainers read (`shapes`), plus
//! `curriculum.json` (stages, weights, files, tokens and token-length statistics, the
//! preference algorithm and why), a LLaMA-Factory `dataset_info.json` and one axolotl config
//! per stage (`configs`). A file that would be empty is not written and not named:
//! `curriculum.json` says the stage (or its val set) has no rows, and the trainer configs leave
//! it out.

mod configs;
mod pieces;
mod shapes;

use std::collections::BTreeMap;
use std::path::Path;

use serde::Serialize;
use serde_json::json;

use super::out::{FileEntry, OutFile};
use crate::curriculum::{Plan, StagePlan};
use crate::error::{Error, Result};
use crate::fingerprint::Hash128;
use crate::model::Conversation;
use crate::select::Selection;
use crate::store::ReadView;
use crate::verify::Lengths;
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
    /// Sessions longer than the stage's context, cut into pieces (absent without a context
    /// length).
    #[serde(skip_serializing_if = "Option::is_none")]
    long_sessions: Option<LongSessions>,
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

/// What a stage with a context length did with sessions longer than it (train and val files).
#[derive(Debug, Clone, Default, Serialize)]
struct LongSessions {
    context_length: u64,
    overlap_turns: u32,
    /// Tokens a chat template adds per message, counted in every piece.
    template_tokens_per_message: u64,
    /// Sessions cut into pieces, and the pieces they gave.
    sessions_split: u64,
    pieces: u64,
    /// Pieces still longer than the context (an exchange or a message that cannot be cut):
    /// written whole; the trainer truncates them.
    oversized_pieces: u64,
    /// Rows longer than the context that cannot be cut at a turn (plain text, preference
    /// examples): written whole.
    over_context_uncut: u64,
    /// Per file, the pieces of each cut session: `{content_hash, part, of, line, tokens,
    /// oversized}`, one line per piece (the trainer files themselves keep the trainers' shapes).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    parts_files: Vec<String>,
}

impl LongSessions {
    fn add(&mut self, other: &LongSessions) {
        self.sessions_split += other.sessions_split;
        self.pieces += other.pieces;
        self.oversized_pieces += other.oversized_pieces;
        self.over_context_uncut += other.over_context_uncut;
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
        let cut = stage
            .context_length
            .map(|context| (u64::from(context), stage.overlap_turns as usize));
        let mut long_sessions = cut.map(|(context, overlap)| LongSessions {
            context_length: context,
            overlap_turns: overlap as u32,
            template_tokens_per_message: pieces::TEMPLATE_TOKENS_PER_MESSAGE,
            ..LongSessions::default()
        });
        for (reader, shape) in readers {
            let dir = match reader.folder() {
                Some(folder) => format!("curriculum/{folder}/{name}"),
                None => format!("curriculum/{name}"),
            };
            let file = |part: &str, rows| StageFile {
                rel: format!("{dir}.{part}.jsonl"),
                rows,
                format,
                shape,
                cut,
            };
            let train = write_rows(out, view, selection, &file("train", &stage.train))?;
            let val = write_rows(out, view, selection, &file("val", &stage.val))?;
            if reader == Reader::All {
                lengths = train.lengths.clone();
                rows_without_shape = train.without_shape + val.without_shape;
                if let Some(l) = &mut long_sessions {
                    for w in [&train, &val] {
                        l.add(&w.long_sessions);
                        if let Some(parts) = &w.parts {
                            l.parts_files.push(parts.path.clone());
                        }
                    }
                }
            }
            for w in [&train, &val] {
                entries.extend(w.file.iter().cloned());
                entries.extend(w.parts.iter().cloned());
            }
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
            long_sessions,
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

/// One stage file to write: its path, rows, shape, and the context its sessions are cut to.
struct StageFile<'a> {
    rel: String,
    rows: &'a [Hash128],
    format: Format,
    shape: Shape,
    /// (context length, overlap turns) when the stage has a context length.
    cut: Option<(u64, usize)>,
}

/// One stage file as written.
struct Written {
    /// `None` (and no file) when no line would be in it.
    file: Option<FileEntry>,
    /// The tokens of each line written.
    lengths: Vec<u64>,
    /// Rows that gave no line.
    without_shape: u64,
    /// What was cut (counts only; `parts_files` stays empty here).
    long_sessions: LongSessions,
    /// The parts file, when a session was cut.
    parts: Option<FileEntry>,
}

/// Write a stage file in one shape; sessions longer than the context become pieces, listed in
/// a `.parts.jsonl` file beside it.
fn write_rows(
    out: &Path,
    view: &ReadView,
    selection: &Selection,
    spec: &StageFile<'_>,
) -> Result<Written> {
    let mut f: Option<OutFile> = None;
    let mut parts: Option<OutFile> = None;
    let mut lengths = Vec::new();
    let mut without_shape = 0;
    let mut long = LongSessions::default();
    for &h in spec.rows {
        let Some(row) = selection.get(h) else {
            continue;
        };
        let c = view
            .representative(h)?
            .ok_or_else(|| Error::Export(format!("row {} has no stored text", h.to_hex())))?
            .conversation;
        let cut = match spec.cut {
            Some((context, overlap)) if matches!(spec.format, Format::Text | Format::Messages) => {
                pieces::split(&c, context, overlap)
            }
            _ => None,
        };
        if cut.is_none()
            && spec
                .cut
                .is_some_and(|(context, _)| pieces::templated_tokens(&c) > context)
        {
            long.over_context_uncut += 1;
        }
        let pieces: Vec<(Conversation, u64, bool)> = match cut {
            Some(ps) => {
                long.sessions_split += 1;
                long.pieces += ps.len() as u64;
                ps.into_iter()
                    .map(|p| {
                        long.oversized_pieces += u64::from(p.oversized);
                        (p.conversation, p.tokens, p.oversized)
                    })
                    .collect()
            }
            None => vec![(c, row.tokens, false)],
        };
        let of = pieces.len();
        let mut wrote = false;
        for (i, (c, tokens, oversized)) in pieces.iter().enumerate() {
            for line in shapes::render(c, spec.format, spec.shape) {
                let text =
                    serde_json::to_string(&line).map_err(|e| Error::Export(e.to_string()))?;
                let file = match &mut f {
                    Some(file) => file,
                    None => f.insert(OutFile::create(out, &spec.rel)?),
                };
                file.line(&text, *tokens)?;
                lengths.push(*tokens);
                wrote = true;
                if of > 1 {
                    let part = json!({
                        "content_hash": h.to_hex(),
                        "part": i + 1,
                        "of": of,
                        "line": file.rows,
                        "tokens": tokens,
                        "oversized": oversized,
                    });
                    let parts = match &mut parts {
                        Some(p) => p,
                        None => parts.insert(OutFile::create(
                            out,
                            &spec.rel.replace(".jsonl", ".parts.jsonl"),
                        )?),
                    };
                    parts.line(&part.to_string(), 0)?;
                }
            }
        }
        if !wrote {
            without_shape += 1;
        }
    }
    Ok(Written {
        file: f.map(OutFile::finish).transpose()?,
        lengths,
        without_shape,
        long_sessions: long,
        parts: parts.map(OutFile::finish).transpose()?,
    })
}
