//! Past one machine: three shards export signatures, the Spark job (scale/idx_global.py, local
//! mode) joins them, each shard imports the assignment table and exports, and the merged
//! export equals the export of one index over the same data in rows, splits and near-duplicate
//! collapse. Needs a Python with pyspark and a JDK: `.ci/run` installs them and names the
//! interpreter in IDX_SPARK_PYTHON (with IDX_REQUIRE_SPARK=1, a missing one fails the test).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use idx::fingerprint::Hash128;

use super::clusters::{base, edited, Text};
use super::common::{json_of, run_idx, Fixture};

const SHARDS: [&str; 3] = ["shard-a", "shard-b", "shard-c"];

/// The interpreter that can run the job, or None (the test is then skipped, loudly).
fn spark_python() -> Option<String> {
    match std::env::var("IDX_SPARK_PYTHON") {
        Ok(p) if !p.is_empty() => Some(p),
        _ => {
            assert!(
                std::env::var_os("IDX_REQUIRE_SPARK").is_none(),
                "IDX_REQUIRE_SPARK is set but IDX_SPARK_PYTHON names no interpreter"
            );
            eprintln!(
                "scale: IDX_SPARK_PYTHON is not set; skipping the Spark job (.ci/run sets it)"
            );
            None
        }
    }
}

/// The corpus: per shard a few files of base conversations, with planted cross-shard exact
/// duplicates, cross-shard near-duplicates, a near-duplicate chain through two shards, rows of
/// a holdout family and short rows.
fn write_corpus(f: &Fixture) -> usize {
    let mut files: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut put = |shard: usize, name: &str, t: &Text| {
        files
            .entry(format!("{}/{name}.jsonl", SHARDS[shard % 3]))
            .or_default()
            .push(t.line());
    };
    let n = 240;
    for i in 0..n {
        let t = base(i as u64 + 1);
        let home = i % 3;
        let file = if i % 13 == 0 {
            "sarcasm_chats"
        } else {
            "chats"
        };
        put(home, &format!("{file}-{}", i % 4), &t);
        if i % 5 == 0 {
            put(home + 1, "copies", &t);
        }
        if i % 7 == 0 {
            put(home + 2, "edits", &edited(&t, 2, i as u64 * 31 + 7, 5));
        }
        if i % 11 == 0 {
            // A chain: an edit in the same shard, and an edit of the edit in another.
            let e1 = edited(&t, 2, i as u64 * 17 + 3, 5);
            let e2 = edited(&e1, 2, i as u64 * 19 + 5, 5);
            put(home, "local-edits", &e1);
            put(home + 1, "chain", &e2);
        }
    }
    for (i, s) in SHARDS.iter().enumerate() {
        files
            .entry(format!("{s}/short.jsonl"))
            .or_default()
            .push(super::common::chat(
                &format!("hi number {i}"),
                "hello, how are you today",
            ));
    }
    let mut lines = 0;
    for (path, content) in &files {
        lines += content.len();
        f.write(path, content.join("\n") + "\n");
    }
    lines
}

/// content hash → split of every row of an export's final file.
fn exported(dir: &Path) -> BTreeMap<String, String> {
    let text = std::fs::read_to_string(dir.join("final.chatml.jsonl")).unwrap();
    let mut out = BTreeMap::new();
    for line in text.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let m = &v["metadata"];
        let prev = out.insert(
            m["content_hash"].as_str().unwrap().to_string(),
            m["split"].as_str().unwrap().to_string(),
        );
        assert!(
            prev.is_none(),
            "{} exported twice in {}",
            m["content_hash"],
            dir.display()
        );
    }
    out
}

/// Pairs of rows sharing a cluster, from row → cluster.
fn co_clustered(clusters: &BTreeMap<Hash128, Hash128>) -> BTreeSet<(Hash128, Hash128)> {
    let mut by: BTreeMap<Hash128, Vec<Hash128>> = BTreeMap::new();
    for (row, c) in clusters {
        by.entry(*c).or_default().push(*row);
    }
    let mut out = BTreeSet::new();
    for members in by.values() {
        for (i, a) in members.iter().enumerate() {
            for b in &members[i + 1..] {
                out.insert((*a, *b));
            }
        }
    }
    out
}

fn clusters_of(index_dir: &Path) -> BTreeMap<Hash128, Hash128> {
    let store = idx::index::Index::open_store_read(index_dir).unwrap();
    let view = store.read().unwrap();
    let policy = view.policy().unwrap().unwrap();
    view.assignments(&policy)
        .unwrap()
        .into_iter()
        .map(|(h, a)| (h, a.cluster))
        .collect()
}

/// Export an index (gates reported, not enforced: the corpus covers no required family).
fn export(index: &Path, out: &Path) {
    run_ok(
        index,
        &[
            "--json",
            "export",
            "--out",
            out.to_str().unwrap(),
            "--allow-failing-gates",
        ],
    );
}

/// `idx export signatures` of `index` as `shard` into `out`; its JSON summary.
fn signatures_of(index: &Path, shard: &str, out: &Path, incremental: bool) -> serde_json::Value {
    let mut args = vec!["--json", "export", "signatures", "--shard", shard];
    args.extend(["--out", out.to_str().unwrap()]);
    if incremental {
        args.push("--incremental");
    }
    run_ok(index, &args)
}

fn run_ok(index_dir: &Path, args: &[&str]) -> serde_json::Value {
    json_of(&run_idx(index_dir, args))
}

#[test]
fn three_shards_joined_by_the_spark_job_export_what_one_index_exports() {
    let Some(python) = spark_python() else {
        return;
    };
    let f = Fixture::new();
    let lines = write_corpus(&f);
    let root = f.data.parent().unwrap().to_path_buf();
    let shard_dirs: Vec<PathBuf> = SHARDS.iter().map(|s| f.data.join(s)).collect();

    // One index over everything: the reference.
    let single = root.join("single");
    f.ingest_into(&single, &shard_dirs);
    let single_out = root.join("single-export");
    export(&single, &single_out);
    let reference = exported(&single_out);
    assert!(
        reference.len() > 200,
        "{} rows from {lines} lines",
        reference.len()
    );

    // Three shards, each an ordinary index over its folder, exporting signatures.
    let signatures = root.join("signatures");
    let mut shard_indexes = Vec::new();
    for (s, dir) in SHARDS.iter().zip(&shard_dirs) {
        let index = root.join(format!("index-{s}"));
        f.ingest_into(&index, [dir]);
        let out = signatures_of(&index, s, &signatures, false);
        assert_eq!(out["generation"], 1);
        assert_eq!(out["snapshot"], true);
        shard_indexes.push(index);
    }

    // The global job, in local mode.
    let job_out = root.join("job");
    let job = std::process::Command::new(&python)
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("scale/idx_global.py"))
        .arg(&signatures)
        .arg(&job_out)
        .env("IDX_SPARK_MASTER", "local[2]")
        .output()
        .expect("run the Spark job");
    assert!(
        job.status.success(),
        "the Spark job failed:\n{}",
        String::from_utf8_lossy(&job.stderr)
    );
    let assignments = job_out.join("assignments");

    // Without the table, the shards' own exports do not add up to the single one: the test
    // can tell the difference.
    let mut naive: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (s, index) in SHARDS.iter().zip(&shard_indexes) {
        let out = root.join("naive").join(s);
        export(index, &out);
        for (h, split) in exported(&out) {
            naive.entry(h).or_default().push(split);
        }
    }
    assert!(
        naive.len() != reference.len() || naive.values().any(|s| s.len() > 1),
        "the corpus must plant rows the shards cannot decide alone"
    );

    // Each shard imports the table, passes the leakage gate with it, and exports.
    let merged_root = root.join("merged");
    let mut manifests = Vec::new();
    let mut imported_rows = 0;
    for (s, index) in SHARDS.iter().zip(&shard_indexes) {
        let imported = run_ok(
            index,
            &[
                "--json",
                "import",
                "assignments",
                assignments.to_str().unwrap(),
            ],
        );
        assert_eq!(imported["shard"], *s);
        assert_eq!(imported["missing"], 0);
        imported_rows += imported["imported"].as_u64().unwrap();
        let verify = json_of_any(&run_idx(index, &["--json", "verify"]));
        let leakage = &verify["gates"]["leakage"];
        assert_eq!(leakage["passed"], true, "{leakage}");
        assert_eq!(leakage["global"]["conflicts"], 0);
        assert_eq!(leakage["global"]["stale"], false);
        let out = merged_root.join(s);
        export(index, &out);
        manifests.push(out.join("manifest.json"));
    }
    let mut args: Vec<String> = vec!["--json".into(), "export".into(), "merge".into()];
    args.extend(manifests.iter().map(|m| m.display().to_string()));
    args.extend([
        "--out".into(),
        merged_root.display().to_string(),
        "--assignments".into(),
        assignments.display().to_string(),
    ]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let merged = run_ok(&shard_indexes[0], &args);
    assert_eq!(merged["shards"], 3);
    assert!(
        imported_rows > 50,
        "{imported_rows} rows in cross-shard clusters"
    );
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(merged_root.join("manifest.json")).unwrap()).unwrap();
    assert!(manifest["totals"]["left_to_other_shards"].as_u64().unwrap() > 0);
    assert_eq!(manifest["shards"].as_array().unwrap().len(), 3);

    // Rows and splits: the union of the shard exports is the single export.
    let mut union = BTreeMap::new();
    for s in SHARDS {
        for (h, split) in exported(&merged_root.join(s)) {
            assert!(
                union.insert(h.clone(), split).is_none(),
                "{h} exported by two shards"
            );
        }
    }
    let missing: Vec<_> = reference
        .keys()
        .filter(|h| !union.contains_key(*h))
        .collect();
    let extra: Vec<_> = union
        .keys()
        .filter(|h| !reference.contains_key(*h))
        .collect();
    let moved: Vec<_> = reference
        .iter()
        .filter(|(h, s)| union.get(*h).is_some_and(|u| u != *s))
        .collect();
    assert!(
        missing.is_empty() && extra.is_empty() && moved.is_empty(),
        "merged export differs: {} missing, {} extra, {} in another split",
        missing.len(),
        extra.len(),
        moved.len()
    );
    assert_eq!(merged["rows"].as_u64().unwrap() as usize, reference.len());

    // Clusters: pairs of rows sharing a cluster, globally against the single index.
    let reference_clusters = clusters_of(&single);
    let mut global: BTreeMap<Hash128, Hash128> = BTreeMap::new();
    for index in &shard_indexes {
        for (h, c) in clusters_of(index) {
            if let Some(prev) = global.insert(h, c) {
                assert_eq!(prev, c, "{h} sits in two global clusters");
            }
        }
    }
    let want = co_clustered(&reference_clusters);
    let got = co_clustered(&global);
    let both = want.intersection(&got).count() as f64;
    let precision = both / got.len().max(1) as f64;
    let recall = both / want.len().max(1) as f64;
    eprintln!(
        "scale: {} rows, {} co-clustered pairs in one index, {} after the job: precision \
         {precision:.4}, recall {recall:.4}",
        reference.len(),
        want.len(),
        got.len()
    );
    assert!(want.len() > 50, "the corpus plants clusters");
    assert!(precision >= 0.99 && recall >= 0.97);
}

/// The JSON of a command that may exit non-zero for a failing gate (coverage, here).
fn json_of_any(out: &std::process::Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&out.stderr)))
}

/// (content hash → record digest) of a shard's effective signatures: its latest snapshot with
/// every later generation applied.
fn effective(folder: &Path) -> BTreeMap<String, i64> {
    use arrow_array::cast::AsArray;
    use arrow_array::types::Int64Type;
    let shard: serde_json::Value =
        serde_json::from_slice(&std::fs::read(folder.join("shard.json")).unwrap()).unwrap();
    let gens = shard["generations"].as_array().unwrap();
    let start = gens.iter().rposition(|g| g["snapshot"] == true).unwrap();
    let mut state = BTreeMap::new();
    for g in &gens[start..] {
        let file = std::fs::File::open(folder.join(g["file"].as_str().unwrap())).unwrap();
        let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
            .unwrap()
            .build()
            .unwrap();
        for batch in reader {
            let batch = batch.unwrap();
            let hashes = batch
                .column_by_name("content_hash")
                .unwrap()
                .as_string::<i32>();
            let digests = batch
                .column_by_name("record_digest")
                .unwrap()
                .as_primitive::<Int64Type>();
            let deleted = batch.column_by_name("deleted").unwrap().as_boolean();
            for i in 0..batch.num_rows() {
                if deleted.value(i) {
                    assert!(
                        state.remove(hashes.value(i)).is_some(),
                        "a deletion of an absent row"
                    );
                } else {
                    state.insert(hashes.value(i).to_string(), digests.value(i));
                }
            }
        }
    }
    state
}

#[test]
fn incremental_signatures_add_up_to_a_fresh_snapshot() {
    let f = Fixture::new();
    let lines = |seeds: std::ops::Range<u64>| {
        seeds.map(|s| base(s).line()).collect::<Vec<_>>().join("\n") + "\n"
    };
    f.write("one.jsonl", lines(1..40));
    f.write("two.jsonl", lines(40..80));
    f.write("three.jsonl", lines(80..120));
    f.ingest();
    let root = f.data.parent().unwrap().to_path_buf();
    let sig = root.join("signatures");
    let first = signatures_of(&f.index_dir, "s1", &sig, false);
    assert_eq!(first["rows"], 119);
    // A file gone, one changed (a row replaced by a near-duplicate of another), one kept.
    f.remove("two.jsonl");
    f.write(
        "three.jsonl",
        lines(80..119) + &edited(&base(5), 2, 99, 5).line() + "\n",
    );
    f.ingest();
    let second = signatures_of(&f.index_dir, "s1", &sig, true);
    assert_eq!(second["generation"], 2);
    assert_eq!(second["snapshot"], false);
    assert_eq!(second["deleted"], 41, "{second}");
    // The new row, and base(5) whose cluster it joined.
    assert_eq!(second["written"], 2, "{second}");
    // Nothing changed: an empty generation.
    let third = signatures_of(&f.index_dir, "s1", &sig, true);
    assert_eq!(
        (third["written"].as_u64(), third["deleted"].as_u64()),
        (Some(0), Some(0))
    );

    let fresh = root.join("fresh");
    signatures_of(&f.index_dir, "s1", &fresh, false);
    assert_eq!(effective(&sig.join("s1")), effective(&fresh.join("s1")));
    assert_eq!(effective(&fresh.join("s1")).len(), 79);

    // A shard keeps its id.
    let other = run_idx(
        &f.index_dir,
        &[
            "export",
            "signatures",
            "--shard",
            "s2",
            "--out",
            sig.to_str().unwrap(),
        ],
    );
    assert!(!other.status.success());
    assert!(String::from_utf8_lossy(&other.stderr).contains("\"s1\""));
}

/// An assignment row: shard, row, cluster, owner, representative.
type TableRow<'a> = (&'a str, Hash128, Hash128, bool, Hash128);

/// Write an assignment table (one Parquet part and `_idx.json`) as the job would.
pub(super) fn write_table(dir: &Path, shards: &[(&str, &str)], rows: &[TableRow<'_>]) {
    use arrow_array::{ArrayRef, BooleanArray, RecordBatch, StringArray};
    use std::sync::Arc;
    std::fs::create_dir_all(dir).unwrap();
    let col = |f: &dyn Fn(&TableRow<'_>) -> String| -> ArrayRef {
        Arc::new(StringArray::from(rows.iter().map(f).collect::<Vec<_>>()))
    };
    let batch = RecordBatch::try_from_iter([
        ("shard", col(&|r| r.0.to_string())),
        ("content_hash", col(&|r| r.1.to_hex())),
        ("cluster", col(&|r| r.2.to_hex())),
        (
            "holdout",
            Arc::new(BooleanArray::from(vec![false; rows.len()])) as ArrayRef,
        ),
        (
            "owner",
            Arc::new(BooleanArray::from(
                rows.iter().map(|r| r.3).collect::<Vec<_>>(),
            )),
        ),
        ("representative", col(&|r| r.4.to_hex())),
    ])
    .unwrap();
    let file = std::fs::File::create(dir.join("part-0.parquet")).unwrap();
    let mut w = parquet::arrow::ArrowWriter::try_new(file, batch.schema(), None).unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
    let shards: BTreeMap<&str, &str> = shards.iter().copied().collect();
    std::fs::write(
        dir.join("_idx.json"),
        serde_json::json!({"format": "idx-assignments", "shards": shards}).to_string(),
    )
    .unwrap();
}

#[test]
fn an_imported_table_is_checked_by_verify_and_refused_once_stale() {
    let f = Fixture::new();
    let (a, b, c) = (base(1), edited(&base(1), 2, 7, 5), base(2));
    f.write(
        "chats.jsonl",
        [a.line(), b.line(), c.line()].join("\n") + "\n",
    );
    f.ingest();
    let root = f.data.parent().unwrap().to_path_buf();
    let sig = root.join("signatures");
    let out = signatures_of(&f.index_dir, "s1", &sig, false);
    let state = out["state_digest"].as_str().unwrap().to_string();
    let leakage =
        |dir: &Path| json_of_any(&run_idx(dir, &["--json", "verify"]))["gates"]["leakage"].clone();
    let import = |table: &Path, extra: &[&str]| {
        let mut args = vec!["--json", "import", "assignments", table.to_str().unwrap()];
        args.extend_from_slice(extra);
        run_idx(&f.index_dir, &args)
    };
    // a and b are one cluster here; the table puts both into a global cluster with a row of
    // another shard, whose copy stands for c.
    let global = Hash128(1);
    let table = root.join("table");
    write_table(
        &table,
        &[("s1", &state), ("s2", "elsewhere")],
        &[
            ("s1", a.hash(), global, true, a.hash()),
            ("s1", b.hash(), global, true, b.hash()),
            ("s1", c.hash(), c.hash(), false, c.hash()),
            ("s2", c.hash(), c.hash(), true, c.hash()),
        ],
    );
    let imported = json_of(&import(&table, &[]));
    assert_eq!(
        (
            imported["imported"].as_u64(),
            imported["table_rows"].as_u64()
        ),
        (Some(3), Some(4))
    );
    let l = leakage(&f.index_dir);
    assert_eq!(l["passed"], true, "{l}");
    assert_eq!(l["global"]["rows"], 3);
    let policy = Fixture::new().settings.policy();
    let row = super::common::row(&f.index_dir, &a.hash().to_hex()).unwrap();
    assert_eq!(row.split, policy.split_of(global, false));
    // c goes out from the other shard only.
    let out = root.join("export");
    export(&f.index_dir, &out);
    let rows = exported(&out);
    assert!(rows.contains_key(&a.hash().to_hex()) && !rows.contains_key(&c.hash().to_hex()));
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest["global"]["elsewhere"], 1);
    // A merge refuses a shard named twice and an export of an index without a table, and
    // passes the one shard export alone.
    let m = out.join("manifest.json");
    let merge = |manifests: &[&Path]| {
        let mut args = vec!["export", "merge"];
        args.extend(manifests.iter().map(|p| p.to_str().unwrap()));
        args.extend(["--out", root.to_str().unwrap()]);
        run_idx(&f.index_dir, &args)
    };
    let twice = merge(&[&m, &m]);
    assert!(String::from_utf8_lossy(&twice.stderr).contains("named twice"));
    let plain_index = root.join("plain");
    f.ingest_into(&plain_index, [&f.data]);
    let plain = root.join("plain-export");
    export(&plain_index, &plain);
    let not_shard = merge(&[&m, &plain.join("manifest.json")]);
    assert!(
        String::from_utf8_lossy(&not_shard.stderr).contains("not a shard export"),
        "{}",
        String::from_utf8_lossy(&not_shard.stderr)
    );
    assert!(merge(&[&m]).status.success());

    // A table that tears this shard's cluster apart fails the gate.
    let torn = root.join("torn");
    write_table(
        &torn,
        &[("s1", &state)],
        &[("s1", a.hash(), global, true, a.hash())],
    );
    json_of(&import(&torn, &[]));
    let l = leakage(&f.index_dir);
    assert_eq!(l["passed"], false);
    assert_eq!(l["global"]["conflicts"], 1, "{l}");

    // Once the shard changes, the table is stale: verify says so and import refuses it.
    json_of(&import(&table, &[]));
    f.write("more.jsonl", base(3).line() + "\n");
    f.ingest();
    assert_eq!(leakage(&f.index_dir)["global"]["stale"], true);
    let refused = import(&table, &[]);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("--allow-stale"));
    json_of(&import(&table, &["--allow-stale"]));
}
