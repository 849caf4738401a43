//! Long sessions in a stage with a context length: cut at turn boundaries into pieces that fit,
//! the system prompt repeated, turns of overlap, a parts file naming `part i/n`, figures in
//! curriculum.json, a message longer than the context reported — and byte-identical whatever
//! the ingest order.

use idx::config::{IdxConfig, Settings};
use idx::curriculum::Curriculum;
use idx::export::ExportOptions;
use idx::families::Classifier;
use idx::index::Index;
use serde_json::Value;

use super::common::Fixture;
use super::export::files;

const FAMILIES: &str = r#"
version = 1
[[family]]
name = "therapy"
required = true
[[rule]]
family = "therapy"
prefixes = ["therapy/"]
"#;

const CURRICULUM: &str = r#"
version = 1
name = "long"
[[stage]]
id = "sft"
phase = "sft"
context_length = 300
overlap_turns = 2
[stage.weights]
therapy = 1.0
"#;

fn settings() -> Settings {
    Settings {
        classifier: Classifier::from_toml(FAMILIES, "families.toml").unwrap(),
        idx: IdxConfig::from_toml(
            "version = 1\n[splits]\ntrain = 1.0\nval = 0.0\ntest = 0.0\n",
            "idx.toml",
        )
        .unwrap(),
        mappings: idx::parse::Mappings::builtin(),
        recipes: idx::derive::Recipes::builtin(),
    }
}

fn words(seed: usize, n: usize) -> String {
    (0..n)
        .map(|i| format!("w{}", (seed * 7919 + i * 104_729) % 5003))
        .collect::<Vec<_>>()
        .join(" ")
}

/// A session of `exchanges` user/assistant exchanges after a system prompt, as one JSONL line.
fn session(seed: usize, exchanges: usize, long_message_at: Option<usize>) -> String {
    let mut messages =
        vec![serde_json::json!({"role": "system", "content": "You are a calm counsellor."})];
    for i in 0..exchanges {
        let n = if long_message_at == Some(i) { 400 } else { 20 };
        messages.push(serde_json::json!({"role": "user", "content": words(seed * 100 + i, 20)}));
        messages.push(
            serde_json::json!({"role": "assistant", "content": words(seed * 100 + i + 50, n)}),
        );
    }
    serde_json::json!({ "messages": messages }).to_string() + "\n"
}

fn export(f: &Fixture, index_dir: &std::path::Path, out: &std::path::Path) {
    let store = Index::open_store_read(index_dir).unwrap();
    let curriculum: Curriculum = toml::from_str(CURRICULUM).unwrap();
    let options = ExportOptions {
        shard_bytes: 1 << 20,
        collapse_near_duplicates: true,
        previous: None,
        allow_failing_gates: true,
    };
    idx::export::export(
        &store.read().unwrap(),
        &f.settings,
        &curriculum,
        out,
        &options,
        &mut |_| {},
    )
    .unwrap();
}

fn jsonl(path: &std::path::Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn a_long_session_is_cut_into_pieces_that_fit_and_the_cut_is_reported() {
    let mut f = Fixture::new();
    f.settings = settings();
    f.write("therapy/long.jsonl", session(1, 24, None));
    f.write("therapy/huge_answer.jsonl", session(2, 4, Some(2)));
    f.write("therapy/short.jsonl", session(3, 2, None));
    f.ingest();
    let out = f.index_dir.with_file_name("out");
    export(&f, &f.index_dir, &out);

    let train = jsonl(&out.join("curriculum/01_sft.train.jsonl"));
    let parts = jsonl(&out.join("curriculum/01_sft.train.parts.jsonl"));
    let curriculum: Value = serde_json::from_str(
        &std::fs::read_to_string(out.join("curriculum/curriculum.json")).unwrap(),
    )
    .unwrap();
    let long = &curriculum["stages"][0]["long_sessions"];
    assert_eq!(long["context_length"], 300);
    assert_eq!(long["sessions_split"], 2, "{long}");
    assert_eq!(long["oversized_pieces"], 1, "{long}");
    let pieces = long["pieces"].as_u64().unwrap();
    assert_eq!(parts.len() as u64, pieces);
    // Every line is a piece or the short session: pieces + 1 lines.
    assert_eq!(train.len() as u64, pieces + 1);
    assert_eq!(
        long["parts_files"][0],
        "curriculum/01_sft.train.parts.jsonl"
    );

    for p in &parts {
        let line = &train[p["line"].as_u64().unwrap() as usize - 1];
        let messages = line["messages"].as_array().unwrap();
        // The system prompt is repeated; a piece starts on the user and ends on the assistant.
        assert_eq!(messages[0]["role"], "system");
        assert_eq!(messages[1]["role"], "user");
        assert_eq!(messages.last().unwrap()["role"], "assistant");
        let oversized = p["oversized"].as_bool().unwrap();
        assert_eq!(oversized, p["tokens"].as_u64().unwrap() > 300, "{p}");
        if oversized {
            // The answer longer than the context is whole, not cut.
            assert!(messages
                .iter()
                .any(|m| m["content"].as_str().unwrap().split(' ').count() == 400));
        }
    }
    // The pieces of the long session: 1/n .. n/n, consecutive lines, each sharing its first
    // exchange with the end of the one before (two turns of overlap).
    let of = parts[0]["of"].as_u64().unwrap() as usize;
    assert!(of >= 5, "{of}");
    let first: Vec<&Value> = parts.iter().take(of).collect();
    for (i, p) in first.iter().enumerate() {
        assert_eq!(p["part"], i + 1);
        assert_eq!(p["content_hash"], first[0]["content_hash"]);
    }
    for w in first.windows(2) {
        let a = train[w[0]["line"].as_u64().unwrap() as usize - 1]["messages"]
            .as_array()
            .unwrap()
            .clone();
        let b = train[w[1]["line"].as_u64().unwrap() as usize - 1]["messages"]
            .as_array()
            .unwrap()
            .clone();
        assert_eq!(a[a.len() - 2..], b[1..3]);
    }
    // Every turn of the session is in some piece.
    let all: std::collections::BTreeSet<String> = first
        .iter()
        .flat_map(|p| {
            train[p["line"].as_u64().unwrap() as usize - 1]["messages"]
                .as_array()
                .unwrap()
                .clone()
        })
        .map(|m| m["content"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(all.len(), 1 + 24 * 2);
    // The manifest lists the parts file with its sha256.
    let manifest: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("manifest.json")).unwrap()).unwrap();
    assert!(manifest.to_string().contains("01_sft.train.parts.jsonl"));
}

#[test]
fn the_pieces_are_byte_identical_whatever_the_ingest_order() {
    let mut f = Fixture::new();
    f.settings = settings();
    f.write("therapy/a.jsonl", session(1, 24, None));
    f.write("therapy/b.jsonl", session(2, 12, Some(3)));
    // Index A: a, then b. Index B: b, then a.
    let a_index = f.with_index("index-a");
    let b_index = f.with_index("index-b");
    let park = f.data.join(".parked");
    std::fs::create_dir_all(&park).unwrap();
    for (index, first, second) in [(&a_index, "a", "b"), (&b_index, "b", "a")] {
        std::fs::rename(
            f.data.join(format!("therapy/{second}.jsonl")),
            park.join("x"),
        )
        .unwrap();
        f.ingest_into(index, [&f.data]);
        std::fs::rename(
            park.join("x"),
            f.data.join(format!("therapy/{second}.jsonl")),
        )
        .unwrap();
        f.ingest_into(index, [&f.data]);
        let _ = first;
    }
    let (oa, ob) = (f.with_index("out-a"), f.with_index("out-b"));
    export(&f, &a_index, &oa);
    export(&f, &b_index, &ob);
    let (fa, fb) = (files(&oa), files(&ob));
    assert!(fa.contains_key("curriculum/01_sft.train.parts.jsonl"));
    assert_eq!(fa, fb);
}
