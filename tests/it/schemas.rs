//! Every `--json` output, the export's manifest and the lines of its files are validated
//! against their JSON Schemas in `schema/`, so the schemas cannot drift from the code. The
//! input is the bundled example folder (several families, a rejected line, skipped objects,
//! a duplicate) plus a failed object and a PII row, so optional fields appear too.

use std::path::{Path, PathBuf};

use super::common::{copy_dir, json_of, run_idx, Fixture};

fn schema(name: &str) -> jsonschema::Validator {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("schema")
        .join(format!("{name}.schema.json"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let value: serde_json::Value = serde_json::from_str(&text).unwrap();
    jsonschema::validator_for(&value).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn check(name: &str, what: &str, value: &serde_json::Value) {
    let validator = schema(name);
    let errors: Vec<String> = validator
        .iter_errors(value)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    assert!(
        errors.is_empty(),
        "{what} breaks schema/{name}.schema.json:\n{}",
        errors.join("\n")
    );
}

fn json(f: &Fixture, args: &[&str]) -> serde_json::Value {
    json_of(&run_idx(&f.index_dir, args))
}

#[test]
fn every_json_output_matches_its_schema() {
    let f = Fixture::new();
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/data");
    let data = f.data.join("examples");
    copy_dir(&examples, &data);
    // A row with PII, and an object that cannot be read (a directory named like a file would be
    // skipped; a file without read permission fails on open unless running as root, so use a
    // gzip file that is not gzip: its rows are rejected with a read error).
    std::fs::write(
        data.join("datasets/gdrive/processed/safety/pii.jsonl"),
        super::common::chat("I'm Sarah, call me on 415-555-0132", "Hi Sarah, thanks.") + "\n",
    )
    .unwrap();
    std::fs::write(
        data.join("datasets/gdrive/processed/safety/broken.jsonl.gz"),
        b"not gzip",
    )
    .unwrap();
    let data_arg = data.to_str().unwrap();

    let report = json(&f, &["ingest", data_arg, "--json"]);
    check("ingest-report", "idx ingest --json", &report);

    let status = json(&f, &["status", "--json"]);
    check("status", "idx status --json", &status);
    // The validator is live: a wrong type is caught.
    let mut broken = status.clone();
    broken["rows"] = serde_json::json!("many");
    assert!(!schema("status").is_valid(&broken));

    let source = json(
        &f,
        &[
            "query",
            "source",
            "datasets/gdrive/processed/safety/pii.jsonl",
            "--json",
        ],
    );
    check("source", "idx query source --json", &source);
    let hash = source[0]["rows"][0]["content_hash"]
        .as_str()
        .unwrap()
        .to_string();

    check(
        "row",
        "idx query hash --json",
        &json(&f, &["query", "hash", &hash, "--json"]),
    );
    check(
        "near",
        "idx query near --json",
        &json(&f, &["query", "near", &hash, "--json"]),
    );
    check(
        "moves",
        "idx query moves --json",
        &json(&f, &["query", "moves", "--since", "0", "--json"]),
    );
    check(
        "text-hits",
        "idx query text --json",
        &json(&f, &["query", "text", "feel", "--limit", "5", "--json"]),
    );

    let verify = run_idx(&f.index_dir, &["verify", "--json"]);
    assert!(matches!(verify.status.code(), Some(0 | 4)));
    let verify: serde_json::Value = serde_json::from_slice(&verify.stdout).unwrap();
    check("verify", "idx verify --json", &verify);

    let checked = run_idx(&f.index_dir, &["check", "--json"]);
    let checked: serde_json::Value = serde_json::from_slice(&checked.stdout).unwrap();
    check("check", "idx check --json", &checked);

    let plan = run_idx(&f.index_dir, &["curriculum", "--json"]);
    assert!(matches!(plan.status.code(), Some(0 | 4)));
    let plan: serde_json::Value = serde_json::from_slice(&plan.stdout).unwrap();
    check("curriculum-plan", "idx curriculum --json", &plan);

    // A benchmark sharing a 13-word run with an example row: the checks, the query and the
    // manifest's decontamination record.
    let bench = f.data.with_file_name("bench.jsonl");
    let planted = "I feel like my chest is tight and I can't breathe when I think about work tomorrow morning";
    std::fs::write(
        &bench,
        serde_json::json!({"question": planted, "answer": "a"}).to_string() + "\n",
    )
    .unwrap();
    std::fs::write(
        data.join("datasets/gdrive/processed/safety/planted.jsonl"),
        super::common::chat(planted, "Let's slow down together.") + "\n",
    )
    .unwrap();
    let report = json(&f, &["ingest", data_arg, "--json"]);
    check("ingest-report", "idx ingest --json (no benchmark)", &report);
    let loaded = json(
        &f,
        &[
            "decontaminate",
            "--against",
            bench.to_str().unwrap(),
            "--splits",
            "--json",
        ],
    );
    check("decontaminate", "idx decontaminate --json", &loaded);
    assert_eq!(loaded["summary"]["rows"], 1);
    check(
        "overlap",
        "idx query overlap --json",
        &json(&f, &["query", "overlap", "--json"]),
    );
    check(
        "contamination",
        "idx query contamination --json",
        &json(&f, &["query", "contamination", "--json"]),
    );
    std::fs::write(
        data.join("datasets/gdrive/processed/safety/planted2.jsonl"),
        super::common::chat("hello", planted) + "\n",
    )
    .unwrap();
    let report = json(&f, &["ingest", data_arg, "--json"]);
    check(
        "ingest-report",
        "idx ingest --json (a benchmark loaded)",
        &report,
    );
    assert_eq!(report["decontamination"]["matched"], 1);

    let out: PathBuf = f.data.with_file_name("export");
    let export = run_idx(
        &f.index_dir,
        &[
            "export",
            "--out",
            out.to_str().unwrap(),
            "--allow-failing-gates",
            "--json",
        ],
    );
    assert!(
        export.status.success(),
        "{}",
        String::from_utf8_lossy(&export.stderr)
    );
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("manifest.json")).unwrap()).unwrap();
    check("manifest", "manifest.json", &manifest);
    // The example export as trainers get it: no empty file, one key set per file.
    super::curriculum::assert_trainer_ready(&out);
    let lines = |file: &str| -> Vec<serde_json::Value> {
        std::fs::read_to_string(out.join(file))
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    };
    let read_json = |rel: &str| -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(out.join(rel)).unwrap()).unwrap()
    };
    check(
        "export-info",
        "export_info.json",
        &read_json("export_info.json"),
    );
    check(
        "dataset-info",
        "curriculum/dataset_info.json",
        &read_json("curriculum/dataset_info.json"),
    );
    let cur = read_json("curriculum/curriculum.json");
    check("curriculum-files", "curriculum/curriculum.json", &cur);
    let mut own_files = 0;
    for stage in cur["stages"].as_array().unwrap() {
        let mut sets = vec![stage];
        if let Some(own) = stage.get("trainer_files").and_then(|t| t.as_object()) {
            own_files += own.len();
            sets.extend(own.values());
        }
        for (set, key) in sets
            .into_iter()
            .flat_map(|set| [(set, "train_file"), (set, "val_file")])
        {
            let Some(path) = set[key]["path"].as_str() else {
                continue;
            };
            for (i, line) in lines(path).iter().enumerate() {
                check("trainer-line", &format!("{path} line {}", i + 1), line);
            }
        }
    }
    assert!(
        own_files > 0,
        "the example's preference stage has trainers' own files"
    );
    let exported = lines("final.chatml.jsonl");
    assert!(!exported.is_empty());
    for (i, line) in exported.iter().enumerate() {
        check(
            "chatml-line",
            &format!("final.chatml.jsonl line {}", i + 1),
            line,
        );
    }
    for (i, line) in lines("provenance.jsonl").iter().enumerate() {
        check(
            "provenance",
            &format!("provenance.jsonl line {}", i + 1),
            line,
        );
    }

    // The shared inventory sample's shape, as bundled in the tests' S3 fixtures, is checked in
    // s3.rs; here a minimal plain inventory must validate too.
    let inventory = serde_json::json!({"bucket": "b", "objects": [
        {"key": "a.jsonl", "size": 1, "last_modified": "2025-12-01T00:00:00+00:00", "etag": "x"}
    ]});
    check("s3-inventory", "a plain inventory", &inventory);
}
