//! The curriculum next to the data: per stage a train file (the rows its mix draws) and a val
//! file (the val-split rows of its families) in the format its trainer reads — pretraining as
//! `{"text"}`, SFT as `{"messages"}`, DPO/ORPO/SimPO as `{"prompt","chosen","rejected"}`, KTO
//! as `{"prompt","completion","label"}` (the field names TRL, axolotl and LLaMA-Factory read) —
//! plus `curriculum.json` (stages, weights, files, tokens and token-length statistics, the
//! preference algorithm and why), a LLaMA-Factory `dataset_info.json` and one axolotl config
//! per stage (`axolotl/NN_stage.yaml`). A file that would be empty is not written and not named:
//! `curriculum.json` says the stage (or its val set) has no rows, and the trainer configs leave
//! it out.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Serialize;
use serde_json::json;

use super::out::{FileEntry, OutFile};
use crate::curriculum::{Algorithm, Phase, Plan, StagePlan};
use crate::error::{Error, Result};
use crate::fingerprint::Hash128;
use crate::model::{Conversation, Message, Role};
use crate::select::Selection;
use crate::store::ReadView;

/// The line format of a stage's files.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
enum Format {
    Text,
    Messages,
    PromptChosenRejected,
    PromptCompletionLabel,
}

fn format_of(stage: &StagePlan) -> Format {
    match stage.phase {
        Phase::Pretraining => Format::Text,
        Phase::Sft => Format::Messages,
        Phase::Preference => match stage.algorithm.as_ref().map(|a| a.algorithm) {
            Some(Algorithm::Kto) => Format::PromptCompletionLabel,
            _ => Format::PromptChosenRejected,
        },
    }
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
    /// Tokens per trainer line of the train file (for `sequence_len` and packing).
    train_lengths: Option<Lengths>,
    /// Why a file is missing, if one is.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    notes: Vec<String>,
    /// The axolotl config written for the stage (none without train rows).
    axolotl_config: Option<String>,
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
        let format = format_of(stage);
        let base = format!("curriculum/{:02}_{}", stage.order, stage.id);
        let (train, lengths) = write_rows(
            out,
            &format!("{base}.train.jsonl"),
            view,
            &stage.train,
            format,
            selection,
        )?;
        let (val, _) = write_rows(
            out,
            &format!("{base}.val.jsonl"),
            view,
            &stage.val,
            format,
            selection,
        )?;
        let mut notes = Vec::new();
        if train.is_none() {
            notes.push(
                "no train rows: no file is written and the stage is left out of the trainer configs"
                    .to_string(),
            );
        }
        if val.is_none() {
            notes.push("no val rows: no val file".to_string());
        }
        entries.extend(train.iter().cloned());
        entries.extend(val.iter().cloned());
        stages.push(StageFiles {
            plan: stage,
            format,
            weights: stage
                .families
                .iter()
                .map(|f| (f.family.as_str(), f.weight))
                .collect(),
            axolotl_config: train
                .is_some()
                .then(|| format!("curriculum/axolotl/{:02}_{}.yaml", stage.order, stage.id)),
            train_file: train,
            val_file: val,
            train_lengths: Lengths::of(lengths),
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
        &pretty(&dataset_info(&stages))?,
    )?);
    for s in &stages {
        if let Some(path) = &s.axolotl_config {
            entries.push(write_text(out, path, &axolotl(plan, s))?);
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

/// Write a stage file; `None` (and no file) when no line would be in it. Also returns the
/// tokens of each line written.
fn write_rows(
    out: &Path,
    rel: &str,
    view: &ReadView,
    rows: &[Hash128],
    format: Format,
    selection: &Selection,
) -> Result<(Option<FileEntry>, Vec<u64>)> {
    let mut f: Option<OutFile> = None;
    let mut lengths = Vec::new();
    for &h in rows {
        let Some(row) = selection.get(h) else {
            continue;
        };
        let c = view
            .representative(h)?
            .ok_or_else(|| Error::Export(format!("row {} has no stored text", h.to_hex())))?
            .conversation;
        for line in render(&c, format) {
            let text = serde_json::to_string(&line).map_err(|e| Error::Export(e.to_string()))?;
            let file = match &mut f {
                Some(file) => file,
                None => f.insert(OutFile::create(out, rel)?),
            };
            file.line(&text, row.tokens)?;
            lengths.push(row.tokens);
        }
    }
    Ok((f.map(OutFile::finish).transpose()?, lengths))
}

/// A conversation's prompt (every message before the final answer) and that answer.
fn split_answer(messages: &[Message]) -> (String, String) {
    match messages.split_last() {
        Some((last, before)) if last.role == Role::Assistant => {
            (join(before), last.content.clone())
        }
        _ => (join(messages), String::new()),
    }
}

fn join(messages: &[Message]) -> String {
    messages
        .iter()
        .map(|m| m.content.as_str())
        .collect::<Vec<_>>()
        .join("\n\n")
}

/// One trainer line, fields in the order trainers document them.
#[derive(Debug, Serialize)]
#[serde(untagged)]
enum TrainerLine<'a> {
    Text {
        text: String,
    },
    Messages {
        messages: &'a [Message],
    },
    Pair {
        prompt: String,
        chosen: String,
        rejected: String,
    },
    Labelled {
        prompt: String,
        completion: String,
        label: bool,
    },
}

/// The trainer lines of one row (two for a pair turned into KTO examples, none when the row
/// does not have the shape the format needs).
fn render(c: &Conversation, format: Format) -> Vec<TrainerLine<'_>> {
    match format {
        Format::Text => vec![TrainerLine::Text {
            text: join(&c.messages),
        }],
        Format::Messages => vec![TrainerLine::Messages {
            messages: &c.messages,
        }],
        Format::PromptChosenRejected => {
            let Some(rejected) = &c.rejected else {
                return Vec::new();
            };
            let (prompt, chosen) = split_answer(&c.messages);
            let (_, rejected) = split_answer(rejected);
            vec![TrainerLine::Pair {
                prompt,
                chosen,
                rejected,
            }]
        }
        Format::PromptCompletionLabel => {
            let (prompt, completion) = split_answer(&c.messages);
            match (&c.rejected, c.label) {
                (Some(rejected), _) => {
                    let (_, bad) = split_answer(rejected);
                    vec![
                        TrainerLine::Labelled {
                            prompt: prompt.clone(),
                            completion,
                            label: true,
                        },
                        TrainerLine::Labelled {
                            prompt,
                            completion: bad,
                            label: false,
                        },
                    ]
                }
                (None, Some(label)) => vec![TrainerLine::Labelled {
                    prompt,
                    completion,
                    label,
                }],
                (None, None) => Vec::new(),
            }
        }
    }
}

/// LLaMA-Factory's `dataset_info.json`: one dataset per stage file written, named
/// `<stage>_train` and `<stage>_val`, paths relative to the `curriculum/` folder (use it as
/// `dataset_dir`).
fn dataset_info(stages: &[StageFiles<'_>]) -> serde_json::Value {
    let mut info = serde_json::Map::new();
    for s in stages {
        if s.train_file.is_none() {
            continue;
        }
        for (suffix, file) in [("train", &s.train_file), ("val", &s.val_file)] {
            let Some(file) = file else { continue };
            let name = file.path.trim_start_matches("curriculum/");
            let entry = match s.format {
                Format::Text => json!({ "file_name": name, "columns": { "prompt": "text" } }),
                Format::Messages => json!({
                    "file_name": name,
                    "formatting": "sharegpt",
                    "columns": { "messages": "messages" },
                    "tags": {
                        "role_tag": "role", "content_tag": "content", "user_tag": "user",
                        "assistant_tag": "assistant", "system_tag": "system"
                    }
                }),
                Format::PromptChosenRejected => json!({
                    "file_name": name,
                    "ranking": true,
                    "columns": { "prompt": "prompt", "chosen": "chosen", "rejected": "rejected" }
                }),
                Format::PromptCompletionLabel => json!({
                    "file_name": name,
                    "columns": { "prompt": "prompt", "response": "completion", "kto_tag": "label" }
                }),
            };
            info.insert(format!("{}_{suffix}", s.plan.id), entry);
        }
    }
    serde_json::Value::Object(info)
}

/// YAML's double-quoted string.
fn yaml_str(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".to_string())
}

/// One axolotl config for one stage: a single YAML document with the training keys axolotl
/// validates (`base_model` a placeholder to replace), the stage's files (paths relative to the
/// export folder), and, for preference stages, `rl` and what the trainer needs.
fn axolotl(plan: &Plan, s: &StageFiles<'_>) -> String {
    let weights: Vec<String> = s.weights.iter().map(|(f, w)| format!("{f}: {w}")).collect();
    let mut out = format!(
        "# axolotl config for stage {} `{}` ({}) of the idx curriculum `{}`: {} rows, {} tokens.\n\
         # The train file is already drawn to the stage's mixing weights ({{{}}}), so the\n\
         # dataset carries no further sampling. Run from the export folder; replace base_model.\n",
        s.plan.order,
        s.plan.id,
        s.plan.phase.as_str(),
        plan.name,
        s.plan.rows,
        s.plan.tokens,
        weights.join(", ")
    );
    let base_model = plan
        .base_model
        .clone()
        .unwrap_or_else(|| "REPLACE/with-your-base-model".to_string());
    out.push_str(&format!("base_model: {}\n", yaml_str(&base_model)));
    let p95 = s.train_lengths.as_ref().map_or(0, |l| l.p95);
    let sequence_len = s
        .plan
        .context_length
        .map(u64::from)
        .unwrap_or_else(|| p95.next_power_of_two().clamp(512, 8192));
    out.push_str(&format!("sequence_len: {sequence_len}\n"));
    out.push_str(&format!(
        "learning_rate: {}\n",
        s.plan.learning_rate.unwrap_or(0.0002)
    ));
    out.push_str(&format!("num_epochs: {}\n", s.plan.epochs.unwrap_or(1)));
    out.push_str(
        "micro_batch_size: 1\ngradient_accumulation_steps: 1\noptimizer: adamw_torch\n\
         lr_scheduler: cosine\n",
    );
    out.push_str(&format!(
        "output_dir: {}\n",
        yaml_str(&format!("./outputs/{:02}_{}", s.plan.order, s.plan.id))
    ));
    if let Some(a) = &s.plan.algorithm {
        out.push_str(&format!("rl: {}\n", a.algorithm.as_str()));
        if a.algorithm == Algorithm::Kto {
            out.push_str("remove_unused_columns: false\n");
        }
    }
    if s.format == Format::Messages {
        out.push_str("chat_template: chatml\n");
    }
    for (key, file) in [("datasets", &s.train_file), ("test_datasets", &s.val_file)] {
        let Some(file) = file else { continue };
        out.push_str(&format!(
            "{key}:\n  - path: {}\n    ds_type: json\n    split: train\n",
            yaml_str(&file.path)
        ));
        match s.format {
            Format::Text => out.push_str("    type: completion\n    field: text\n"),
            Format::Messages => out.push_str(
                "    type: chat_template\n    field_messages: messages\n    \
                 message_property_mappings:\n      role: role\n      content: content\n",
            ),
            Format::PromptChosenRejected => out.push_str(
                "    type:\n      field_prompt: prompt\n      field_chosen: chosen\n      \
                 field_rejected: rejected\n      prompt_format: \"{prompt}\"\n      \
                 chosen_format: \"{chosen}\"\n      rejected_format: \"{rejected}\"\n",
            ),
            Format::PromptCompletionLabel => out.push_str(
                "    type:\n      field_prompt: prompt\n      field_completion: completion\n      \
                 field_label: label\n      prompt_format: \"{prompt}\"\n      \
                 completion_format: \"{completion}\"\n",
            ),
        }
    }
    if s.val_file.is_none() {
        out.push_str("val_set_size: 0\n");
    }
    out
}
