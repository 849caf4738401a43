//! The curriculum: importing the original plan, validation errors and warnings, the choice of
//! preference algorithm, and trainer files that parse back with the fields trainers read.

use std::collections::BTreeMap;
use std::path::Path;

use super::common::{chat, Fixture};
use super::export::{options, populate, sentence};
use idx::curriculum::{import::import, plan, Algorithm, Curriculum, Phase};
use idx::export::{select, Manifest};
use idx::families::Classifier;
use idx::index::Index;
use idx::neardup::Split;
use idx::rng::Rng;

const ORIGINAL: &str = include_str!("../../testdata/curriculum/training_curriculum_2025.json");

#[test]
fn the_original_plan_imports_into_the_shipped_default() {
    let classifier = Classifier::load(None).unwrap();
    let imported = import(ORIGINAL, "training_curriculum_2025.json", &classifier).unwrap();
    let c = &imported.curriculum;
    let ids: Vec<&str> = c.stages.iter().map(|s| s.id.as_str()).collect();
    assert_eq!(
        ids,
        [
            "phase_a_pretraining",
            "stage1_foundation",
            "stage2_therapeutic_expertise",
            "stage3_edge_stress_test",
            "stage4_voice_persona",
            "stage5_long_running_therapy",
            "stage6_specialized_domains",
            "stage7_roleplay_simulator",
            "phase_c_preference_alignment"
        ]
    );
    assert_eq!(c.stages[0].phase, Phase::Pretraining);
    assert!(c.stages[1..8].iter().all(|s| s.phase == Phase::Sft));
    let stage3 = &c.stages[3].weights;
    assert_eq!(stage3["edge_case_generator"], 0.3);
    assert_eq!(stage3["safety_guardrails_annihilator"], 0.2);
    assert_eq!(c.stages[3].learning_rate, Some(2e-4));
    let c_stage = &c.stages[8];
    assert_eq!(c_stage.phase, Phase::Preference);
    assert_eq!(c_stage.algorithm, Some(Algorithm::Orpo));
    assert_eq!(c_stage.algorithm_options.len(), 4);
    assert_eq!(
        c_stage.algorithm_options[&Algorithm::Dpo].learning_rate,
        Some(1e-5)
    );
    // Names of the original that are not families here are mapped by the family rules.
    assert_eq!(c.stages[1].weights["mental_health_datasets"], 0.6);
    assert_eq!(c.stages[1].weights["long_running_therapy"], 0.4);
    assert!(
        imported.notes.iter().any(|n| n.contains("line 118")),
        "{:?}",
        imported.notes
    );
    assert!(c.static_errors().is_empty(), "{:?}", c.static_errors());
    assert_eq!(
        c.holdout_families,
        [
            "long_running_therapy",
            "edge_case_generator",
            "sarcasm",
            "voice_persona"
        ]
    );
    // The TOML it writes reads back to the same plan, and is what configs/ ships.
    let back = Curriculum::from_toml(&imported.to_toml(), "imported").unwrap();
    assert_eq!(&back, c);
    let mut shipped = Curriculum::load(None).unwrap();
    shipped.origin = c.origin.clone();
    assert_eq!(&shipped, c);
}

#[test]
fn a_broken_json_file_is_an_error_naming_its_line() {
    let classifier = Classifier::load(None).unwrap();
    let err = import("{\"phases\": [}\n", "plan.json", &classifier).unwrap_err();
    assert!(err.to_string().contains("plan.json"), "{err}");
    let err = import("{\"a\": 1}\n\n\"x\" ] [", "plan.json", &classifier).unwrap_err();
    assert!(err.to_string().contains("line 3"), "{err}");
}

const STAGES: &str = r#"
version = 1
name = "test"
holdout_families = ["sarcasm", "cptsd"]

[[stage]]
id = "pretrain"
phase = "pretraining"
weights = { video_transcripts = 0.5, mental_health_datasets = 0.5 }

[[stage]]
id = "sft"
phase = "sft"
weights = { long_running_therapy = 0.5, mental_health_datasets = 0.3, cptsd = 0.2 }

[[stage]]
id = "greedy"
phase = "sft"
tokens = 100000000
weights = { mental_health_datasets = 1.0 }

[[stage]]
id = "align"
phase = "preference"
weights = { dpo_preference = 1.0 }
"#;

#[test]
fn static_errors_name_the_file_and_the_stage() {
    let bad = STAGES.replace(
        "mental_health_datasets = 0.3",
        "mental_health_datasets = 0.2",
    );
    let err = Curriculum::from_toml(&bad, "my.toml")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("my.toml") && err.contains("`sft`") && err.contains("add up to 0.9"),
        "{err}"
    );
    let bad = STAGES.replace(
        "id = \"greedy\"\nphase = \"sft\"",
        "id = \"greedy\"\nphase = \"sft\"\nalgorithm = \"dpo\"",
    );
    let err = Curriculum::from_toml(&bad, "my.toml")
        .unwrap_err()
        .to_string();
    assert!(err.contains("names a preference algorithm"), "{err}");
    let bad = STAGES.replace("id = \"align\"", "id = \"sft\"");
    let err = Curriculum::from_toml(&bad, "my.toml")
        .unwrap_err()
        .to_string();
    assert!(err.contains("used twice"), "{err}");
}

fn selection_of(f: &Fixture) -> idx::export::Selection {
    let store = Index::open_store_read(&f.index_dir).unwrap();
    let view = store.read().unwrap();
    let keep = f.settings.keep();
    let options = idx::select::SelectOptions {
        collapse: true,
        withheld: &Default::default(),
        keep: &keep,
    };
    select(&view, &f.settings.policy(), &options).unwrap()
}

#[test]
fn the_plan_checks_families_holdouts_and_token_budgets() {
    let f = Fixture::new();
    populate(&f);
    f.ingest();
    let sel = selection_of(&f);
    let c = Curriculum::from_toml(STAGES, "t.toml").unwrap();
    let p = plan(&c, &f.settings.classifier, &sel);
    assert!(p.passed, "{:?}", p.errors);
    // cptsd is not a holdout family in the shipped families.toml.
    assert!(
        p.warnings
            .iter()
            .any(|w| w.contains("`cptsd`") && w.contains("not `holdout = true`")),
        "{:?}",
        p.warnings
    );
    // A curriculum written for other families (the shipped plan on a user's own folder) still
    // plans: what the families config lacks is a warning naming the stage and the family.
    let own = idx::families::Classifier::from_toml(
        "version = 1\n[exclude]\nglobs = []\n[[family]]\nname = \"mine\"\ndescription = \"mine\"\nrequired = true\nmin_rows = 1\nholdout = false\n[[rule]]\nfamily = \"mine\"\nglobs = [\"**\"]\n",
        "families.toml",
    )
    .unwrap();
    let q = plan(&c, &own, &sel);
    assert!(q.passed, "{:?}", q.errors);
    assert!(
        q.warnings.iter().any(|w| w.starts_with("stage `")
            && w.contains("which is not a family in the families config: it draws nothing")),
        "{:?}",
        q.warnings
    );
    // The greedy stage wants more tokens than sarcasm has.
    assert!(
        p.warnings
            .iter()
            .any(|w| w.contains("`greedy` asks for 100000000 tokens")
                && w.contains("`mental_health_datasets` limits it")),
        "{:?}",
        p.warnings
    );
    // Only train-split rows are drawn; val rows go to the val file; weights are honoured as
    // far as whole rows allow, and no row is drawn twice in a stage.
    for s in &p.stages {
        for h in &s.train {
            assert_eq!(sel.get(*h).unwrap().split, Split::Train, "stage {}", s.id);
        }
        for h in &s.val {
            assert_eq!(sel.get(*h).unwrap().split, Split::Val, "stage {}", s.id);
        }
        let mut unique = s.train.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), s.train.len());
        assert_eq!(s.tokens, s.families.iter().map(|d| d.tokens).sum::<u64>());
        assert!(s.tokens <= s.max_tokens + s.families.iter().map(|d| d.tokens).max().unwrap_or(0));
    }
    let sft = &p.stages[1];
    let lrt = sft
        .families
        .iter()
        .find(|d| d.family == "long_running_therapy")
        .unwrap();
    assert!((lrt.effective_weight - 0.5).abs() < 0.2, "{lrt:?}");
    // An unknown family is a warning naming the stage and the family (it draws nothing).
    let unknown = STAGES.replace("cptsd = 0.2", "trauma = 0.2");
    let p = plan(
        &Curriculum::from_toml(&unknown, "t.toml").unwrap(),
        &f.settings.classifier,
        &sel,
    );
    assert!(p.passed, "{:?}", p.errors);
    assert!(
        p.warnings
            .iter()
            .any(|w| w.contains("routes `trauma`") && w.contains("draws nothing")),
        "{:?}",
        p.warnings
    );
}

#[test]
fn the_preference_algorithm_follows_the_shape_of_the_data() {
    let f = Fixture::new();
    let mut rng = Rng(0x5151_5151_5151_5151);
    let mut kto = String::new();
    for i in 0..6 {
        kto.push_str(&serde_json::json!({"prompt": sentence(&mut rng, 8), "completion": sentence(&mut rng, 16), "label": i % 2 == 0}).to_string());
        kto.push('\n');
    }
    f.write("datasets/huggingface/dpo_kto_labels.jsonl", kto);
    f.ingest();
    let c = Curriculum::from_toml(STAGES, "t.toml").unwrap();
    let p = plan(&c, &f.settings.classifier, &selection_of(&f));
    let a = p.stages[3].algorithm.as_ref().unwrap();
    assert_eq!(a.algorithm, Algorithm::Kto, "only unpaired labels: KTO");
    assert!(a.reason.contains("no preference pairs"), "{}", a.reason);
    assert_eq!(a.pairs, 0);
    // Pairs arrive: the configured pair algorithm (ORPO by default) takes over.
    let mut pairs = String::new();
    for _ in 0..4 {
        pairs.push_str(&serde_json::json!({"prompt": sentence(&mut rng, 8), "chosen": sentence(&mut rng, 16), "rejected": sentence(&mut rng, 6)}).to_string());
        pairs.push('\n');
    }
    f.write("datasets/huggingface/dpo_pairs.jsonl", pairs);
    f.ingest();
    let p = plan(&c, &f.settings.classifier, &selection_of(&f));
    let a = p.stages[3].algorithm.as_ref().unwrap();
    assert_eq!(a.algorithm, Algorithm::Orpo);
    assert!(a.pairs >= 1 && a.unpaired >= 1, "{a:?}");
    assert!(p
        .warnings
        .iter()
        .any(|w| w.contains("unpaired (KTO) rows are not used by orpo")));
}

fn read_lines(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn trainer_files_parse_back_with_the_fields_trainers_read() {
    let f = Fixture::new();
    populate(&f);
    let mut rng = Rng(0x7777_1111_2222_3333);
    let mut kto = String::new();
    for i in 0..40 {
        kto.push_str(&serde_json::json!({"prompt": sentence(&mut rng, 8), "completion": sentence(&mut rng, 16), "label": i % 3 != 0}).to_string());
        kto.push('\n');
    }
    f.write("datasets/huggingface/kto_only/dpo_labels.jsonl", kto);
    f.write(
        "datasets/sarcasm/more.jsonl",
        (0..40)
            .map(|_| chat(&sentence(&mut rng, 8), &sentence(&mut rng, 26)) + "\n")
            .collect::<String>(),
    );
    f.ingest();
    let dir = f.index_dir.with_file_name("curriculum-test");
    std::fs::create_dir_all(&dir).unwrap();
    let toml = dir.join("curriculum.toml");
    let kto_stage = "\n[[stage]]\nid = \"align_kto\"\nphase = \"preference\"\nalgorithm = \"kto\"\nweights = { dpo_preference = 1.0 }\n[stage.algorithm_options.kto]\nbeta = 0.2\nlearning_rate = 0.00005\n";
    std::fs::write(&toml, format!("{STAGES}{kto_stage}")).unwrap();
    let c = Curriculum::load(Some(&toml)).unwrap();
    let out = dir.join("out");
    let store = Index::open_store_read(&f.index_dir).unwrap();
    let view = store.read().unwrap();
    let summary =
        idx::export::export(&view, &f.settings, &c, &out, &options(), &mut |_| {}).unwrap();
    let m = Manifest::read(&out.join("manifest.json")).unwrap();
    assert!(
        idx::export::verify_export(&out.join("manifest.json"), None)
            .unwrap()
            .passed
    );
    // The exported rows' splits, by their messages, to check what the stage files hold.
    let mut split_of: BTreeMap<String, String> = BTreeMap::new();
    for l in read_lines(&out.join("final.chatml.jsonl")) {
        split_of.insert(
            l["messages"].to_string(),
            l["metadata"]["split"].as_str().unwrap().to_string(),
        );
    }
    let cur: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(out.join("curriculum/curriculum.json")).unwrap(),
    )
    .unwrap();
    let stages = cur["stages"].as_array().unwrap();
    assert_eq!(stages.len(), 5);
    for (stage, plan) in stages.iter().zip(&summary.curriculum.stages) {
        let train = stage["train_file"]["path"].as_str().unwrap();
        let listed = m
            .files
            .iter()
            .find(|f| f.path == train)
            .expect("in the manifest");
        assert_eq!(stage["train_file"]["sha256"], listed.sha256.as_str());
        let lines = read_lines(&out.join(train));
        match stage["format"].as_str().unwrap() {
            "text" => {
                assert_eq!(lines.len() as u64, plan.rows);
                assert!(lines.iter().all(|l| l["text"].is_string()));
            }
            "messages" => {
                assert_eq!(lines.len() as u64, plan.rows);
                for l in &lines {
                    let msgs = l["messages"].as_array().unwrap();
                    assert!(msgs
                        .iter()
                        .all(|m| m["role"].is_string() && m["content"].is_string()));
                    assert_eq!(
                        split_of[&l["messages"].to_string()],
                        "train",
                        "only train rows are routed"
                    );
                }
                if let Some(val) = stage["val_file"]["path"].as_str() {
                    for l in &read_lines(&out.join(val)) {
                        assert_eq!(split_of[&l["messages"].to_string()], "val");
                    }
                }
            }
            "prompt_chosen_rejected" => {
                assert!(!lines.is_empty());
                for l in &lines {
                    // TRL's conversational form: the prompt as messages, one-message answers.
                    assert_eq!(
                        l["prompt"].as_array().unwrap().last().unwrap()["role"],
                        "user"
                    );
                    for k in ["chosen", "rejected"] {
                        let answer = l[k].as_array().unwrap();
                        assert_eq!(answer.len(), 1, "{l}");
                        assert_eq!(answer[0]["role"], "assistant");
                        assert!(answer[0]["content"].as_str().is_some_and(|s| !s.is_empty()));
                    }
                }
                // LLaMA-Factory's ranking file: the same pairs, answers as message objects.
                let lf = &stage["trainer_files"]["llamafactory"]["train_file"];
                let lf_lines = read_lines(&out.join(lf["path"].as_str().unwrap()));
                assert_eq!(lf_lines.len(), lines.len());
                for (l, t) in lf_lines.iter().zip(&lines) {
                    assert_eq!(l["messages"], t["prompt"]);
                    assert_eq!(l["chosen"], t["chosen"][0]);
                    assert_eq!(l["rejected"], t["rejected"][0]);
                }
                // axolotl's ORPO reader: whole conversations, the system turn apart.
                let axo = &stage["trainer_files"]["axolotl"]["train_file"];
                let axo_lines = read_lines(&out.join(axo["path"].as_str().unwrap()));
                assert_eq!(axo_lines.len(), lines.len());
                for (l, t) in axo_lines.iter().zip(&lines) {
                    let chosen = l["chosen"].as_array().unwrap();
                    assert_eq!(chosen.last().unwrap(), &t["chosen"][0]);
                    assert!(l.get("system").is_some());
                    assert_eq!(chosen[0]["role"], "user");
                }
            }
            "prompt_completion_label" => {
                assert!(!lines.is_empty());
                assert!(
                    lines.iter().any(|l| l["label"] == true)
                        && lines.iter().any(|l| l["label"] == false)
                );
                for l in &lines {
                    assert!(
                        l["prompt"].is_array()
                            && l["completion"].as_array().is_some_and(|c| c.len() == 1)
                            && l["label"].is_boolean()
                    );
                }
                let lf = &stage["trainer_files"]["llamafactory"]["train_file"];
                for (l, t) in read_lines(&out.join(lf["path"].as_str().unwrap()))
                    .iter()
                    .zip(&lines)
                {
                    assert_eq!(
                        l["messages"].as_array().unwrap().last(),
                        Some(&t["completion"][0])
                    );
                    assert_eq!(l["label"], t["label"]);
                }
                let axo = &stage["trainer_files"]["axolotl"]["train_file"];
                for (l, t) in read_lines(&out.join(axo["path"].as_str().unwrap()))
                    .iter()
                    .zip(&lines)
                {
                    let prompt = l["prompt"].as_str().unwrap();
                    assert!(prompt.starts_with("<|im_start|>"), "{prompt}");
                    assert!(prompt.ends_with("<|im_start|>assistant\n"), "{prompt}");
                    let answer = t["completion"][0]["content"].as_str().unwrap();
                    assert_eq!(l["completion"], format!("{answer}<|im_end|>"));
                    assert_eq!(l["label"], t["label"]);
                }
            }
            other => panic!("unknown format {other}"),
        }
    }
    assert_eq!(stages[3]["algorithm"]["algorithm"], "orpo");
    assert_eq!(stages[4]["algorithm"]["algorithm"], "kto");
    // LLaMA-Factory's dataset_info.json names files that exist next to it.
    let info: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(out.join("curriculum/dataset_info.json")).unwrap(),
    )
    .unwrap();
    let info = info.as_object().unwrap();
    let written = stages
        .iter()
        .flat_map(|s| [&s["train_file"], &s["val_file"]])
        .filter(|f| !f.is_null())
        .count();
    assert_eq!(info.len(), written);
    for (name, entry) in info {
        let file = entry["file_name"].as_str().unwrap();
        assert!(out.join("curriculum").join(file).exists(), "{name}: {file}");
    }
    assert_eq!(info["align_train"]["ranking"], true);
    assert_eq!(info["align_kto_train"]["columns"]["kto_tag"], "label");
    assert_eq!(info["sft_train"]["formatting"], "sharegpt");
    // One axolotl config per stage: a single YAML document with the training keys, the stage's
    // files and its weights.
    for st in stages {
        let path = st["axolotl_config"]
            .as_str()
            .expect("every stage here has train rows");
        let yaml = std::fs::read_to_string(out.join(path)).unwrap();
        assert!(!yaml.lines().any(|l| l == "---"), "one document: {yaml}");
        for key in [
            "base_model:",
            "sequence_len:",
            "learning_rate:",
            "num_epochs:",
            "datasets:",
        ] {
            assert!(yaml.contains(key), "{key} in {path}");
        }
        // axolotl reads its own files where the stage has them.
        let files = match st["trainer_files"].get("axolotl") {
            Some(own) => own,
            None => st,
        };
        assert!(yaml.contains(files["train_file"]["path"].as_str().unwrap()));
        match files["val_file"]["path"].as_str() {
            Some(val) => assert!(yaml.contains("test_datasets:") && yaml.contains(val)),
            None => assert!(yaml.contains("val_set_size: 0")),
        }
        let lengths = &st["train_lengths"];
        assert!(lengths["p95"].as_u64().unwrap() <= lengths["max"].as_u64().unwrap());
    }
    let sft =
        std::fs::read_to_string(out.join(stages[1]["axolotl_config"].as_str().unwrap())).unwrap();
    assert!(
        sft.contains("({cptsd: 0.2, long_running_therapy: 0.5, mental_health_datasets: 0.3})"),
        "{sft}"
    );
    let kto =
        std::fs::read_to_string(out.join(stages[4]["axolotl_config"].as_str().unwrap())).unwrap();
    assert!(kto.contains("rl: kto") && kto.contains("remove_unused_columns: false"));
    // The picked algorithm's own settings.
    assert!(
        kto.contains("rl_beta: 0.2\n") && kto.contains("learning_rate: 0.00005\n"),
        "{kto}"
    );
    assert_trainer_ready(&out);
}

/// What every export must be for trainers to read it as shipped: no empty file anywhere, one
/// key set per JSONL file, and no undesirable answer presented as a training target.
/// Optional system, then user/assistant alternating from the user, ending on `last`.
fn assert_turns(msgs: &[serde_json::Value], last: &str, what: &str) {
    let roles: Vec<&str> = msgs.iter().map(|m| m["role"].as_str().unwrap()).collect();
    let body = roles.strip_prefix(&["system"]).unwrap_or(&roles);
    assert!(!body.is_empty(), "{what}: {roles:?}");
    for (i, r) in body.iter().enumerate() {
        let want = if i % 2 == 0 { "user" } else { "assistant" };
        assert_eq!(*r, want, "{what}: {roles:?}");
    }
    assert_eq!(body.last(), Some(&last), "{what}: {roles:?}");
}

pub(crate) fn assert_trainer_ready(out: &std::path::Path) {
    fn walk(dir: &std::path::Path, files: &mut Vec<std::path::PathBuf>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(&p, files);
            } else {
                files.push(p);
            }
        }
    }
    let mut files = Vec::new();
    walk(out, &mut files);
    for f in &files {
        let bytes = std::fs::read(f).unwrap();
        assert!(!bytes.is_empty(), "empty file {}", f.display());
        if f.extension().is_some_and(|e| e == "jsonl") {
            let mut keys: Option<Vec<String>> = None;
            for line in bytes.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
                let v: serde_json::Value = serde_json::from_slice(line).unwrap();
                let mut these: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
                if let Some(m) = v.get("metadata").and_then(|m| m.as_object()) {
                    these.extend(m.keys().map(|k| format!("metadata.{k}")));
                }
                these.sort();
                match &keys {
                    None => keys = Some(these),
                    Some(k) => assert_eq!(k, &these, "one key set per file: {}", f.display()),
                }
                // Trainer conversations: optional system, then user/assistant alternating,
                // ending on the assistant; a prompt (TRL's `prompt` list, LLaMA-Factory's
                // ranking `messages`) ends on the user; axolotl's ORPO answers are whole
                // conversations without the system turn.
                if v.get("metadata").is_none() {
                    let ranking = v.get("chosen").is_some_and(|c| c.is_object());
                    for (key, last) in [
                        ("messages", if ranking { "user" } else { "assistant" }),
                        ("prompt", "user"),
                        ("chosen", "assistant"),
                        ("rejected", "assistant"),
                    ] {
                        let Some(msgs) = v.get(key).and_then(|m| m.as_array()) else {
                            continue;
                        };
                        if key != "prompt" && key != "messages" && v.get("prompt").is_some() {
                            continue; // TRL's one-message answers
                        }
                        assert_turns(msgs, last, &format!("{} `{key}`", f.display()));
                    }
                }
                // A KTO row's completion is not the last turn of its messages.
                if v.get("label").is_some_and(|l| !l.is_null()) && v.get("metadata").is_some() {
                    let last = v["messages"].as_array().unwrap().last().unwrap();
                    assert_ne!(last["role"], "assistant", "{}: {v}", f.display());
                    assert!(v["completion"].is_array());
                }
            }
        }
    }
    // Every file a trainer config names exists.
    let info: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(out.join("curriculum/dataset_info.json")).unwrap(),
    )
    .unwrap();
    for entry in info.as_object().unwrap().values() {
        assert!(out
            .join("curriculum")
            .join(entry["file_name"].as_str().unwrap())
            .exists());
    }
    let card = std::fs::read_to_string(out.join("README.md")).unwrap();
    assert!(card.starts_with("---\nconfigs:\n"), "{card}");
}
