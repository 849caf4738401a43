//! `idx init` on a folder of unknown layout, then ingest, verify and export — and the README's
//! "Your own data" commands run exactly as the README writes them.

use std::path::Path;
use std::process::Command;

use super::common::*;

/// A drop folder in nobody's layout: conversations in one folder, notes in another, a table
/// with columns no detection knows, a README, a file at the top.
fn own_folder(root: &Path) {
    let write = |rel: &str, text: String| {
        let p = root.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    };
    // Thirty conversations far apart in wording (no near-duplicates among them).
    const WORDS: [&str; 16] = [
        "sleep", "work", "mother", "exam", "panic", "friend", "money", "grief", "anger", "move",
        "school", "body", "trust", "night", "phone", "future",
    ];
    let mut state = 7u64;
    let mut words = |n: usize| -> String {
        (0..n)
            .map(|_| {
                state = state
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                WORDS[(state >> 60) as usize]
            })
            .collect::<Vec<_>>()
            .join(" ")
    };
    let chats: Vec<String> = (0..30)
        .map(|i| chat(&format!("{i} {}", words(12)), &format!("{} {i}", words(12))))
        .collect();
    write("sessions 2024/chats.jsonl", chats.join("\n"));
    write(
        "notes/grounding.jsonl",
        r#"{"text": "Grounding brings attention back to the present: name five things you can see."}"#
            .to_string(),
    );
    write(
        "tables/pairs.tsv",
        "ask\treply\nHow do I start therapy?\tA first call to a clinic is enough.\n".to_string(),
    );
    write("README.md", "# my data\n".to_string());
    write(
        "loose.jsonl",
        chat(
            "Is it normal to cry at work?",
            "Yes, it happens; what set it off?",
        ),
    );
}

fn idx_in(dir: &Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_idx"))
        .args(args)
        .current_dir(dir)
        .env_remove("IDX_DATA_DIR")
        .env_remove("IDX_FAMILIES")
        .env_remove("IDX_CONFIG")
        .env_remove("IDX_SOURCES")
        .env_remove("IDX_CURRICULUM")
        .env_remove("RUST_LOG")
        .output()
        .expect("run idx")
}

fn ok(out: &std::process::Output) -> String {
    assert!(
        out.status.success(),
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn init_on_an_unknown_layout_then_ingest_verify_and_export_succeed() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    own_folder(&dir.join("drop"));
    let out = ok(&idx_in(dir, &["init", "drop"]));
    assert!(out.contains("cannot read tables/pairs.tsv"), "{out}");
    let families = std::fs::read_to_string(dir.join("configs/families.toml")).unwrap();
    for family in ["sessions_2024", "notes", "tables", "data"] {
        assert!(
            families.contains(&format!("name = \"{family}\"")),
            "{family}: {families}"
        );
    }
    let curriculum = std::fs::read_to_string(dir.join("configs/curriculum.toml")).unwrap();
    assert!(curriculum.contains("phase = \"pretraining\"") && curriculum.contains("notes = 1.0"));
    assert!(!curriculum.contains("tables"), "nothing readable is routed");
    let sources = std::fs::read_to_string(dir.join("configs/sources.toml")).unwrap();
    assert!(
        sources.contains("# keys = [\"tables/pairs.tsv\"]") && sources.contains("keys: ask, reply"),
        "{sources}"
    );
    // A second init does not overwrite what the user may have edited.
    let again = idx_in(dir, &["init", "drop"]);
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("--force"));

    ok(&idx_in(dir, &["ingest", "drop"]));
    let verify = ok(&idx_in(dir, &["verify"]));
    assert!(verify.contains("verify: passed"), "{verify}");
    let export = ok(&idx_in(dir, &["export", "--out", "dataset", "--json"]));
    let summary: serde_json::Value = serde_json::from_str(&export).unwrap();
    assert_eq!(summary["rows"], 32, "{summary}");
    assert!(summary["curriculum"]["warnings"]
        .as_array()
        .unwrap()
        .is_empty());

    // The user declares the table's mapping as the comment suggests, makes the family
    // required, and the next ingest reads it.
    let sources = sources.replace(
        "# [[mapping]]\n# name = \"tables-1\"\n# keys = [\"tables/pairs.tsv\"]\n# columns = { prompt = \"FIELD\", response = \"FIELD\" }",
        "[[mapping]]\nname = \"tables-1\"\nkeys = [\"tables/pairs.tsv\"]\ncolumns = { prompt = \"ask\", response = \"reply\" }",
    );
    std::fs::write(dir.join("configs/sources.toml"), sources).unwrap();
    let report = ok(&idx_in(dir, &["ingest", "drop", "--json"]));
    let report: serde_json::Value = serde_json::from_str(&report).unwrap();
    assert_eq!(report["rejected_rows"], 0, "{report}");
    let source = ok(&idx_in(
        dir,
        &["query", "source", "tables/pairs.tsv", "--json"],
    ));
    let source: serde_json::Value = serde_json::from_str(&source).unwrap();
    assert_eq!(source[0]["mapping"], "tables-1");
    assert_eq!(source[0]["rows"].as_array().unwrap().len(), 1);
}

/// The README's "Your own data" block, line by line, with `idx` this build's binary.
#[test]
fn the_readme_own_data_commands_work_as_written() {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    let start = readme
        .find("<!-- own-data:")
        .expect("the README marks its own-data commands");
    let block = &readme[start..];
    let body = &block[block.find("```sh\n").unwrap() + 6..];
    let body = &body[..body.find("```").unwrap()];
    let commands: Vec<Vec<&str>> = body
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(commands.len(), 3, "three commands: {body}");
    let tmp = tempfile::tempdir().unwrap();
    own_folder(&tmp.path().join("my-data"));
    for words in &commands {
        assert_eq!(words[0], "idx", "{words:?}");
        ok(&idx_in(tmp.path(), &words[1..]));
    }
    let manifest = tmp.path().join("dataset/manifest.json");
    let verify = idx_in(
        tmp.path(),
        &["export", "verify", manifest.to_str().unwrap()],
    );
    ok(&verify);
}
