//! The command-line contract: `--json` documents with the documented fields, human output,
//! exit codes, and errors on stderr.

use std::process::Output;

use super::common::{chat, json_of as json, run_idx, Fixture};

fn idx(f: &Fixture, args: &[&str]) -> Output {
    run_idx(&f.index_dir, args)
}

#[test]
fn ingest_status_and_queries_speak_json() {
    let f = Fixture::new();
    f.write(
        "datasets/sarcasm/s.jsonl",
        format!(
            "{}\n{}\n{{oops\n",
            chat("Oh joy, rain again", "Rain can feel heavy."),
            chat("oh JOY, rain   again", "Rain can feel heavy.")
        ),
    );
    let data = f.data.to_str().unwrap();

    let report = json(&idx(&f, &["--json", "ingest", data]));
    assert_eq!(report["objects_new"], 1);
    assert_eq!(report["rows_added"], 2);
    assert_eq!(report["rejected_rows"], 1);
    assert_eq!(report["rejections"][0]["line"], 3);
    assert_eq!(report["rejections"][0]["key"], "datasets/sarcasm/s.jsonl");

    let status = json(&idx(&f, &["status", "--json"]));
    for field in [
        "objects",
        "rows",
        "unique_rows",
        "rejected_rows",
        "families",
    ] {
        assert!(status.get(field).is_some(), "status lacks {field}");
    }
    assert_eq!(status["rows"], 2);
    assert_eq!(status["unique_rows"], 1);
    assert_eq!(status["families"]["sarcasm"]["unique_rows"], 1);
    assert!(status["families"]["sarcasm"]["tokens"].as_u64().unwrap() > 0);

    let source = json(&idx(
        &f,
        &["query", "source", "datasets/sarcasm/s.jsonl", "--json"],
    ));
    let hash = source[0]["rows"][0]["content_hash"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(source[0]["rows"][1]["content_hash"], hash.as_str());

    let row = json(&idx(&f, &["query", "hash", &hash, "--json"]));
    assert_eq!(row["content_hash"], hash.as_str());
    assert_eq!(row["family"], "sarcasm");
    assert_eq!(row["messages"][0]["role"], "user");
    assert_eq!(row["sources"].as_array().unwrap().len(), 2);
    assert_eq!(row["sources"][1]["line"], 2);

    let hits = json(&idx(
        &f,
        &["query", "text", "rain", "--family", "sarcasm", "--json"],
    ));
    let hit = &hits[0];
    assert_eq!(hit["content_hash"], hash.as_str());
    for field in ["family", "key", "line", "snippet"] {
        assert!(hit.get(field).is_some(), "hit lacks {field}");
    }

    let human = idx(&f, &["status"]);
    let text = String::from_utf8_lossy(&human.stdout);
    assert!(text.contains("rows: 2 (1 unique), 1 rejected"), "{text}");
}

/// `idx status --storage`: what the index costs, table by table, against the input.
#[test]
fn status_storage_shows_each_tables_cost() {
    let f = Fixture::new();
    let rows: String = (0..40)
        .map(|i| {
            chat(
                &format!("night {i}: I could not sleep at all"),
                "That sounds hard.",
            ) + "\n"
        })
        .collect();
    f.write("datasets/consolidated/a.jsonl", &rows);
    let data = f.data.to_str().unwrap();
    json(&idx(&f, &["--json", "ingest", data]));

    let status = json(&idx(&f, &["status", "--json", "--storage"]));
    let storage = &status["storage"];
    assert_eq!(storage["input_bytes"], rows.len() as u64);
    assert_eq!(storage["unique_rows"], 40);
    let redb = storage["redb_bytes"].as_u64().unwrap();
    assert!(storage["fulltext_bytes"].as_u64().unwrap() > 0);
    let tables = storage["tables"].as_array().unwrap();
    let table = |name: &str| tables.iter().find(|t| t["table"] == name).unwrap();
    assert_eq!(table("rows")["entries"], 40);
    assert_eq!(table("object_places")["entries"], 40);
    let pages: u64 = tables
        .iter()
        .map(|t| t["page_bytes"].as_u64().unwrap())
        .sum();
    assert!(
        pages > 0 && pages <= redb,
        "{pages} bytes of pages in a {redb}-byte file"
    );
    // Largest first.
    let sizes: Vec<u64> = tables
        .iter()
        .map(|t| t["page_bytes"].as_u64().unwrap())
        .collect();
    assert!(sizes.windows(2).all(|w| w[0] >= w[1]));

    // Without --storage there is no storage section; with it, the text form has the table.
    let plain = json(&idx(&f, &["status", "--json"]));
    assert!(plain.get("storage").is_none());
    let text = idx(&f, &["status", "--storage"]);
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(
        text.contains("bytes per unique row") && text.contains("object_places"),
        "{text}"
    );
}

#[test]
fn errors_go_to_stderr_with_distinct_exit_codes() {
    let f = Fixture::new();
    let none = idx(&f, &["status"]);
    assert_eq!(none.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&none.stderr).contains("no index"));

    f.write("a.jsonl", chat("a", "b"));
    assert!(idx(&f, &["ingest", f.data.to_str().unwrap()])
        .status
        .success());
    let missing = idx(&f, &["query", "hash", &"0".repeat(32)]);
    assert_eq!(missing.status.code(), Some(3));
    let bad = idx(&f, &["query", "hash", "zz"]);
    assert_eq!(bad.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("not a content hash"));
    let nowhere = idx(&f, &["ingest", "/definitely/not/here"]);
    assert_eq!(nowhere.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&nowhere.stderr).contains("/definitely/not/here"));
    let usage = idx(&f, &["ingest"]);
    assert_eq!(usage.status.code(), Some(2));
}

#[test]
fn export_curriculum_and_export_verify_from_the_command_line() {
    let f = Fixture::new();
    super::export::populate(&f);
    let data = f.data.to_str().unwrap();
    json(&idx(&f, &["ingest", data, "--json"]));
    let out = f.index_dir.with_file_name("exported");
    let out_s = out.to_str().unwrap();
    // The fixture lacks required families: the coverage gate fails, and so does the export.
    let refused = idx(&f, &["export", "--out", out_s]);
    assert_eq!(refused.status.code(), Some(4));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("coverage gate failed"));
    assert!(!out.join("manifest.json").exists());
    let s = json(&idx(
        &f,
        &[
            "export",
            "--out",
            out_s,
            "--allow-failing-gates",
            "--shard-bytes",
            "8192",
            "--json",
        ],
    ));
    assert!(s["rows"].as_u64().unwrap() > 40);
    assert_eq!(s["gates_passed"], false);
    let manifest = out.join("manifest.json");
    let m = manifest.to_str().unwrap();
    let check = json(&idx(&f, &["export", "verify", m, "--json"]));
    assert_eq!(check["passed"], true);
    let manifest_doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&manifest).unwrap()).unwrap();
    assert_eq!(manifest_doc["gates"]["coverage"], false);
    let shard = manifest_doc["shards"][0]["path"]
        .as_str()
        .unwrap()
        .to_string();
    std::fs::write(out.join(&shard), "{}\n").unwrap();
    let failed = idx(&f, &["export", "verify", m]);
    assert_eq!(failed.status.code(), Some(4));
    assert!(String::from_utf8_lossy(&failed.stdout).contains(&shard));
    // Usage errors and the curriculum plan.
    assert_eq!(idx(&f, &["export"]).status.code(), Some(2));
    let plan = json(&idx(&f, &["curriculum", "--json"]));
    assert_eq!(plan["passed"], true);
    assert_eq!(plan["stages"].as_array().unwrap().len(), 9);
    let text = idx(&f, &["curriculum"]);
    assert!(String::from_utf8_lossy(&text.stdout).contains("stage1_foundation (sft)"));
}
