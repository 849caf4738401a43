//! The curriculum next to the data: per stage a train file (the rows its mix draws) and a val
//! file (the val-split rows of its families) in the format its trainer reads — pretraining as
//! `{"text"}`, SFT as `{"messages"}`, DPO/ORPO/SimPO as `{"prompt","chosen","rejected"}`, KTO
//! as `{"prompt","completion","label"}` (the field names TRL, axolotl and LLaMA-Factory read) —
//! plus `curriculum.json` (stages, weights, files, tokens, the preference algorithm and why), a
//! LLaMA-Factory `dataset_info.json` and an axolotl `datasets:` snippet per stage.

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
    train_file: FileEntry,
    val_file: FileEntry,
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
        let train = write_rows(
            out,
            &format!("{base}.train.jsonl"),
            view,
            &stage.train,
            format,
            selection,
        )?;
        let val = write_rows(
            out,
            &format!("{base}.val.jsonl"),
            view,
            &stage.val,
            format,
            selection,
        )?;
        entries.push(train.clone());
        entries.push(val.clone());
        stages.push(StageFiles {
            plan: stage,
            format,
            weights: stage
                .families
                .iter()
                .map(|f| (f.family.as_str(), f.weight))
                .collect(),
            train_file: train,
            val_file: val,
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
    entries.push(write_text(
        out,
        "curriculum/axolotl.yaml",
        &axolotl(plan, &stages),
    )?);
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

fn write_rows(
    out: &Path,
    rel: &str,
    view: &ReadView,
    rows: &[Hash128],
    format: Format,
    selection: &Selection,
) -> Result<FileEntry> {
    let mut f = OutFile::create(out, rel)?;
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
            f.line(&text, row.tokens)?;
        }
    }
    f.finish()
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

/// LLaMA-Factory's `dataset_info.json`: one dataset per stage file, named `<stage>_train` and
/// `<stage>_val`, paths relative to the `curriculum/` folder (use it as `dataset_dir`).
fn dataset_info(stages: &[StageFiles<'_>]) -> serde_json::Value {
    let mut info = serde_json::Map::new();
    for s in stages {
        for (suffix, file) in [("train", &s.train_file), ("val", &s.val_file)] {
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

/// One axolotl config fragment per stage (YAML documents, in training order).
fn axolotl(plan: &Plan, stages: &[StageFiles<'_>]) -> String {
    let mut out = format!(
        "# axolotl `datasets:` for the idx curriculum `{}`: one YAML document per stage, in\n\
         # training order. Each train file is already drawn to its mixing weights (listed per\n\
         # stage), so the datasets carry no further sampling. Paths are relative to the export.\n",
        plan.name
    );
    for s in stages {
        out.push_str("---\n");
        out.push_str(&format!(
            "# stage {} `{}` ({}): {} rows, {} tokens\n",
            s.plan.order,
            s.plan.id,
            s.plan.phase.as_str(),
            s.plan.rows,
            s.plan.tokens
        ));
        let weights: Vec<String> = s.weights.iter().map(|(f, w)| format!("{f}: {w}")).collect();
        out.push_str(&format!("# weights: {{{}}}\n", weights.join(", ")));
        if let Some(a) = &s.plan.algorithm {
            out.push_str(&format!("rl: {}\n", a.algorithm.as_str()));
        }
        for (key, file) in [("datasets", &s.train_file), ("test_datasets", &s.val_file)] {
            out.push_str(&format!(
                "{key}:\n  - path: {}\n    ds_type: json\n",
                file.path
            ));
            if key == "test_datasets" {
                out.push_str("    split: train\n");
            }
            match s.format {
                Format::Text => out.push_str("    type: completion\n    field: text\n"),
                Format::Messages => {
                    out.push_str("    type: chat_template\n    field_messages: messages\n")
                }
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
    }
    out
}
