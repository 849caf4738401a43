//! The trainer configs beside the stage files: LLaMA-Factory's `dataset_info.json` and one
//! axolotl config per stage, each naming the files in the shape that trainer reads
//! (`shapes::Reader`) with the settings its loader needs.

use serde_json::json;

use super::shapes::{Format, Reader};
use super::StageFiles;
use crate::curriculum::{Algorithm, Plan};

/// The role and content keys of every message file, as LLaMA-Factory's sharegpt reader names them.
fn sharegpt_tags() -> serde_json::Value {
    json!({
        "role_tag": "role", "content_tag": "content", "user_tag": "user",
        "assistant_tag": "assistant", "system_tag": "system"
    })
}

/// LLaMA-Factory's `dataset_info.json`: one dataset per stage file written, named
/// `<stage>_train` and `<stage>_val`, paths relative to the `curriculum/` folder (use it as
/// `dataset_dir`). Preference stages name their `llamafactory/` files: sharegpt ranking
/// (train with `stage: dpo` and the stage's `pref_loss`) or sharegpt with a `kto_tag`.
pub(super) fn dataset_info(stages: &[StageFiles<'_>]) -> serde_json::Value {
    let mut info = serde_json::Map::new();
    for s in stages {
        if s.train_file.is_none() {
            continue;
        }
        let (train, val) = s.files_for(Reader::LlamaFactory);
        for (suffix, file) in [("train", train), ("val", val)] {
            let Some(file) = file else { continue };
            let name = file.path.trim_start_matches("curriculum/");
            let entry = match s.format {
                Format::Text => json!({ "file_name": name, "columns": { "prompt": "text" } }),
                Format::Messages => json!({
                    "file_name": name,
                    "formatting": "sharegpt",
                    "columns": { "messages": "messages" },
                    "tags": sharegpt_tags(),
                }),
                Format::PromptChosenRejected => json!({
                    "file_name": name,
                    "formatting": "sharegpt",
                    "ranking": true,
                    "columns": { "messages": "messages", "chosen": "chosen", "rejected": "rejected" },
                    "tags": sharegpt_tags(),
                }),
                Format::PromptCompletionLabel => json!({
                    "file_name": name,
                    "formatting": "sharegpt",
                    "columns": { "messages": "messages", "kto_tag": "label" },
                    "tags": sharegpt_tags(),
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

/// How axolotl reads a stage's dataset entry (the keys after `path`, `ds_type` and `split`).
fn axolotl_dataset_keys(format: Format, algorithm: Option<Algorithm>) -> &'static str {
    match (format, algorithm) {
        (Format::Text, _) => "    type: completion\n    field: text\n",
        (Format::Messages, _) => {
            "    type: chat_template\n    field_messages: messages\n    \
             message_property_mappings:\n      role: role\n      content: content\n"
        }
        // The `axolotl/` file: whole conversations per answer, the system turn apart.
        (Format::PromptChosenRejected, Some(Algorithm::Orpo)) => {
            "    type: chat_template.argilla\n"
        }
        // The main file: a prompt message list, one-message answer lists.
        (Format::PromptChosenRejected, _) => {
            "    type: chat_template.default\n    field_messages: prompt\n    \
             field_chosen: chosen\n    field_rejected: rejected\n"
        }
        // The `axolotl/` file: the prompt as ChatML text, the completion closed by its end tag.
        (Format::PromptCompletionLabel, _) => {
            "    type:\n      field_prompt: prompt\n      field_completion: completion\n      \
             field_label: label\n      prompt_format: \"{prompt}\"\n      \
             completion_format: \"{completion}\"\n"
        }
    }
}

/// One axolotl config for one stage: a single YAML document with the training keys axolotl
/// validates (`base_model` a placeholder to replace), the stage's files in the shape axolotl
/// reads (paths relative to the export folder), and, for preference stages, `rl` and what the
/// trainer needs.
pub(super) fn axolotl(plan: &Plan, s: &StageFiles<'_>) -> String {
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
    // The picked preference algorithm's own settings come before the stage's.
    let options = s.plan.algorithm.as_ref().and_then(|a| a.options.as_ref());
    let learning_rate = options
        .and_then(|o| o.learning_rate)
        .or(s.plan.learning_rate)
        .unwrap_or(0.0002);
    out.push_str(&format!("learning_rate: {learning_rate}\n"));
    out.push_str(&format!("num_epochs: {}\n", s.plan.epochs.unwrap_or(1)));
    out.push_str(
        "micro_batch_size: 1\ngradient_accumulation_steps: 1\noptimizer: adamw_torch\n\
         lr_scheduler: cosine\n",
    );
    out.push_str(&format!(
        "output_dir: {}\n",
        yaml_str(&format!("./outputs/{:02}_{}", s.plan.order, s.plan.id))
    ));
    let algorithm = s.plan.algorithm.as_ref().map(|a| a.algorithm);
    if let Some(a) = algorithm {
        out.push_str(&format!("rl: {}\n", a.as_str()));
        if let Some(beta) = options.and_then(|o| o.beta) {
            out.push_str(&format!("rl_beta: {beta}\n"));
        }
        match a {
            // Pure SimPO (no behaviour-cloning term), as TRL's `loss_type: simpo` sets it.
            Algorithm::Simpo => out.push_str(&format!(
                "simpo_gamma: {}\ncpo_alpha: 0.0\n",
                options.and_then(|o| o.gamma).unwrap_or(0.5)
            )),
            Algorithm::Kto => out.push_str("remove_unused_columns: false\n"),
            Algorithm::Dpo | Algorithm::Orpo => {}
        }
    }
    if s.format != Format::Text {
        out.push_str("chat_template: chatml\n");
    }
    let (train, val) = s.files_for(Reader::Axolotl);
    for (key, file) in [("datasets", train), ("test_datasets", val)] {
        let Some(file) = file else { continue };
        out.push_str(&format!(
            "{key}:\n  - path: {}\n    ds_type: json\n    split: train\n",
            yaml_str(&file.path)
        ));
        out.push_str(axolotl_dataset_keys(s.format, algorithm));
    }
    if val.is_none() {
        out.push_str("val_set_size: 0\n");
    }
    out
}
