//! `idx verify`: each gate passes on good data and fails when it should (a missing family, a
//! failed object, a leak injected into the stored splits), with the JSON and Markdown outputs.

use std::process::Command;

use idx::config::{IdxConfig, Settings};
use idx::families::Classifier;
use idx::verify::CoverageStatus;
use redb::ReadableTable;

use super::clusters::{base, edited, Text};
use super::common::Fixture;

/// Two required families (one with a minimum of 3 rows), one optional.
const FAMILIES: &str = r#"
version = 1

[[family]]
name = "therapy"
required = true
min_rows = 3

[[family]]
name = "crisis"
required = true
holdout = true

[[family]]
name = "extra"

[[rule]]
family = "therapy"
prefixes = ["therapy/"]

[[rule]]
family = "crisis"
prefixes = ["crisis/"]

[[rule]]
family = "extra"
prefixes = ["extra/"]
"#;

fn settings(families: &str) -> Settings {
    Settings {
        classifier: Classifier::from_toml(families, "families.toml").unwrap(),
        idx: IdxConfig::load(None).unwrap(),
        mappings: idx::parse::Mappings::builtin(),
        recipes: idx::derive::Recipes::builtin(),
    }
}

fn lines(ts: &[Text]) -> String {
    ts.iter().map(|t| t.line() + "\n").collect()
}

fn verify(f: &Fixture) -> idx::verify::Verification {
    let store = idx::index::Index::open_store_read(&f.index_dir).unwrap();
    idx::verify::verify(&store.read().unwrap(), &f.settings, None).unwrap()
}

fn family<'a>(v: &'a idx::verify::Verification, name: &str) -> &'a idx::verify::FamilyCoverage {
    v.gates
        .coverage
        .families
        .iter()
        .find(|f| f.family == name)
        .unwrap()
}

#[test]
fn coverage_counts_indexed_rows_not_object_names() {
    let mut f = Fixture::new();
    f.settings = settings(FAMILIES);
    f.write("therapy/a.jsonl", lines(&[base(1), base(2)]));
    // A README under a family's prefix is not evidence.
    f.write("crisis/README.md", "# crisis data\n");
    f.ingest();
    let v = verify(&f);
    assert!(!v.passed);
    assert!(!v.gates.coverage.passed);
    let therapy = family(&v, "therapy");
    assert_eq!(therapy.status, CoverageStatus::Partial);
    assert_eq!(therapy.rows, 2);
    assert!(
        therapy.next_action.contains("1 more row"),
        "{}",
        therapy.next_action
    );
    assert_eq!(therapy.evidence, vec!["therapy/a.jsonl".to_string()]);
    let crisis = family(&v, "crisis");
    assert_eq!(crisis.status, CoverageStatus::Missing);
    assert!(crisis.evidence.is_empty());
    assert_eq!(family(&v, "extra").status, CoverageStatus::Missing);

    // Enough rows, and the missing family waived: the gate passes; the optional one never gates.
    f.write("therapy/b.jsonl", lines(&[base(3)]));
    let waived = FAMILIES.replace(
        "holdout = true\n",
        "holdout = true\nwaiver = \"crisis data arrives next quarter\"\n",
    );
    f.settings = settings(&waived);
    f.ingest();
    let v = verify(&f);
    assert_eq!(family(&v, "therapy").status, CoverageStatus::Present);
    assert_eq!(family(&v, "crisis").status, CoverageStatus::Waived);
    assert!(family(&v, "crisis").next_action.contains("next quarter"));
    assert!(v.gates.coverage.passed);
    assert!(v.passed, "{:?}", v.gates.leakage);
}

#[test]
fn a_family_whose_object_failed_is_partial() {
    let mut f = Fixture::new();
    f.settings = settings(FAMILIES);
    f.write("therapy/a.jsonl", lines(&[base(1), base(2), base(3)]));
    f.write("crisis/a.jsonl", lines(&[base(4)]));
    f.write("crisis/b.jsonl.gz", b"not gzip at all");
    f.ingest();
    let v = verify(&f);
    let crisis = family(&v, "crisis");
    assert_eq!(crisis.status, CoverageStatus::Partial);
    assert_eq!(crisis.failed_objects, vec!["crisis/b.jsonl.gz".to_string()]);
    assert!(crisis.next_action.contains("crisis/b.jsonl.gz"));
    assert!(!v.passed);
    f.remove("crisis/b.jsonl.gz");
    f.ingest();
    assert!(verify(&f).passed);
}

/// Rewrite one row's stored split, as a bug in the incremental code would.
fn corrupt_split(index_dir: &std::path::Path, row: idx::fingerprint::Hash128) {
    let db = redb::Builder::new()
        .set_concurrency_mode(redb::ConcurrencyMode::SingleWriter)
        .open(index_dir.join("index.redb"))
        .unwrap();
    let txn = db.begin_write().unwrap();
    {
        let mut t = txn
            .open_table(redb::TableDefinition::<&[u8], &[u8]>::new("clusters"))
            .unwrap();
        let key = row.to_bytes();
        let mut entry = t.get(key.as_slice()).unwrap().unwrap().value().to_vec();
        entry[16] = (entry[16] + 1) % 3;
        t.insert(key.as_slice(), entry.as_slice()).unwrap();
    }
    txn.commit().unwrap();
}

#[test]
fn an_injected_leak_fails_the_leakage_gate() {
    let mut f = Fixture::new();
    f.settings = settings(FAMILIES);
    let a = base(10);
    let b = edited(&a, 1, 3, 2);
    f.write("therapy/a.jsonl", lines(&[a, base(11), base(12)]));
    f.write("therapy/b.jsonl", b.line());
    f.write("crisis/a.jsonl", lines(&[base(13)]));
    f.ingest();
    let v = verify(&f);
    assert!(v.passed, "{:?}", v.gates);
    assert_eq!(v.gates.leakage.near_duplicate_pairs, 1);
    assert_eq!(v.gates.leakage.clusters, 1);

    corrupt_split(&f.index_dir, b.hash());
    let v = verify(&f);
    assert!(!v.passed);
    let l = &v.gates.leakage;
    assert!(!l.passed);
    assert_eq!(l.cross_split_pairs, 1);
    assert_eq!(l.disagreements, 1);
    assert_eq!(l.disagreement_examples[0].content_hash, b.hash().to_hex());
    let pair = &l.cross_split_examples[0];
    assert_ne!(pair.split_a, pair.split_b);
    assert!(pair.similarity >= 0.8);
}

#[test]
fn verify_cli_exit_codes_json_and_markdown() {
    let f = Fixture::new();
    let families = f.data.with_file_name("families.toml");
    std::fs::write(&families, FAMILIES).unwrap();
    let idx = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_idx"))
            .arg("--data-dir")
            .arg(&f.index_dir)
            .arg("--families")
            .arg(&families)
            .args(args)
            .output()
            .unwrap()
    };
    let data = f.data.to_str().unwrap().to_string();
    f.write("therapy/a.jsonl", lines(&[base(1), base(2), base(3)]));
    assert!(idx(&["ingest", &data]).status.success());

    // `crisis` is missing: exit code 4, JSON with the documented shape.
    let out = idx(&["verify", "--json"]);
    assert_eq!(
        out.status.code(),
        Some(4),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["passed"], false);
    assert_eq!(v["gates"]["coverage"]["passed"], false);
    assert_eq!(v["gates"]["leakage"]["passed"], true);
    assert_eq!(v["gates"]["leakage"]["cross_split_pairs"], 0);
    let crisis = v["gates"]["coverage"]["families"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["family"] == "crisis")
        .unwrap();
    assert_eq!(crisis["status"], "missing");
    assert_eq!(v["report"]["total"]["rows"], 3);
    let by_split = v["report"]["by_split"].as_object().unwrap();
    let split_rows: u64 = by_split.values().map(|c| c["rows"].as_u64().unwrap()).sum();
    assert_eq!(split_rows, 3);
    assert_eq!(v["report"]["by_phase"]["sft"]["rows"], 3);

    // Data for `crisis` arrives: exit 0, and the Markdown report is written.
    f.write("crisis/a.jsonl", lines(&[base(4)]));
    assert!(idx(&["ingest", &data]).status.success());
    let md = f.data.with_file_name("report.md");
    let out = idx(&["verify", "--markdown", md.to_str().unwrap()]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let text = std::fs::read_to_string(&md).unwrap();
    assert!(text.starts_with("# idx verify: PASS"), "{text}");
    assert!(text.contains("| crisis | yes | present | 1 |"), "{text}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("verify: passed"));

    // Changed split settings are not a leak: the gate says the index is stale and how to
    // recompute it (and verify still exits 4 until it is).
    let config = f.data.with_file_name("idx.toml");
    std::fs::write(&config, "version = 1\n[splits]\nsalt = \"another-salt\"\n").unwrap();
    let out = idx(&["--config", config.to_str().unwrap(), "verify"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(4), "{text}");
    assert!(
        text.contains("leakage: STALE — settings changed: run `idx ingest` to recompute"),
        "{text}"
    );
    assert!(!text.contains("leakage: FAIL"), "{text}");
    assert!(
        idx(&["--config", config.to_str().unwrap(), "ingest", &data])
            .status
            .success()
    );
    let out = idx(&["--config", config.to_str().unwrap(), "verify"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}
