//! One bad row must never stop the index. Fail points (`IDX_FAILPOINTS`, armed in a real `idx`
//! child process) make a worker panic on one row, a reader panic in the middle of an object, the
//! process die between the redb and the tantivy commit, and the disk refuse a commit; each run is
//! followed by a re-run whose state digest must equal a one-shot ingest's. Regressions named
//! after what broke.

use std::io::Read;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use idx::query;

use super::common::{chat, digest_of, hashes_of, json_of, run_idx, status_of, Fixture};

/// Run `idx` with fail points armed.
fn idx_failing(index_dir: &Path, failpoints: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_idx"))
        .arg("--data-dir")
        .arg(index_dir)
        .args(args)
        .env_remove("IDX_FAMILIES")
        .env_remove("RUST_LOG")
        .env(idx::failpoint::ENV, failpoints)
        .current_dir(index_dir.parent().unwrap())
        .output()
        .expect("run idx")
}

fn lines(prefix: &str, n: usize) -> String {
    (0..n)
        .map(|i| {
            chat(
                &format!("{prefix} question {i}: how do I stop overthinking at night"),
                &format!("{prefix} answer {i}: try writing the thoughts down first"),
            ) + "\n"
        })
        .collect()
}

fn source(index_dir: &Path, key: &str) -> query::SourceAnswer {
    let store = idx::index::Index::open_store_read(index_dir).unwrap();
    let mut answers = query::source(&store.read().unwrap(), key).unwrap();
    assert_eq!(answers.len(), 1, "one object {key}");
    answers.remove(0)
}

/// The digest a single uninterrupted ingest of the fixture's folder gives.
fn one_shot_digest(f: &Fixture) -> String {
    let clean = f.with_index("one-shot");
    f.ingest_into(&clean, [&f.data]);
    digest_of(&clean)
}

#[test]
fn an_arabic_indic_ssn_no_longer_stops_the_folder() {
    let f = Fixture::new();
    f.write("sarcasm/a.jsonl", lines("plain", 3));
    f.write(
        "sarcasm/b.jsonl",
        chat("my ssn is ١٢٣-٤٥-٦٧٨٩", "please never share it here") + "\n",
    );
    let out = run_idx(&f.index_dir, &["ingest", "data", "--json"]);
    let report = json_of(&out);
    assert_eq!(report["rows_added"], 4);
    let b = source(&f.index_dir, "sarcasm/b.jsonl");
    assert_eq!(b.rows.len(), 1);
    let row = super::common::row(&f.index_dir, &b.rows[0].content_hash).unwrap();
    let text = serde_json::to_string(&row).unwrap();
    assert!(text.contains("[SSN]"), "{text}");
    assert!(!text.contains("٦٧٨٩"), "{text}");
    assert!(text.contains("excluded"), "an SSN excludes the row: {text}");
    // Every later ingest works too.
    let again = json_of(&run_idx(&f.index_dir, &["ingest", "data", "--json"]));
    assert_eq!(again["objects_unchanged"], 2);
}

#[test]
fn a_row_that_panics_its_worker_is_rejected_with_its_line_and_the_rest_is_indexed() {
    let f = Fixture::new();
    let mut body = lines("first", 2);
    body.push_str(&(chat("POISON row", "an answer") + "\n"));
    body.push_str(&lines("last", 2));
    f.write("sarcasm/a.jsonl", body);
    f.write("sarcasm/b.jsonl", lines("other", 3));
    for workers in ["1", "2"] {
        let dir = f.with_index(&format!("workers-{workers}"));
        let out = idx_failing(
            &dir,
            "prepare-panic=POISON",
            &["ingest", "data", "--json", "--workers", workers],
        );
        let report = json_of(&out);
        assert_eq!(report["rows_added"], 7, "{report}");
        assert_eq!(report["rejected_rows"], 1);
        let a = source(&dir, "sarcasm/a.jsonl");
        assert_eq!(a.status, "indexed");
        assert_eq!(a.rows.len(), 4);
        assert_eq!(a.rejected, 1);
        assert_eq!(a.rejections[0].line, 3);
        assert!(a.rejections[0].reason.contains("internal error"));
        assert_eq!(source(&dir, "sarcasm/b.jsonl").rows.len(), 3);
    }
}

#[test]
fn an_object_that_breaks_mid_read_keeps_its_old_rows_and_nothing_of_it_is_committed() {
    let f = Fixture::new();
    // More rows than one chunk (512), so some of the broken object reach the writer first.
    f.write("sarcasm/big.jsonl", lines("old", 600));
    f.write("sarcasm/other.jsonl", lines("other", 5));
    f.ingest();
    let old_rows = hashes_of(&f.index_dir, "sarcasm/big.jsonl");
    assert_eq!(old_rows.len(), 600);

    f.write("sarcasm/big.jsonl", lines("new", 700));
    f.write("sarcasm/added.jsonl", lines("added", 4));
    let out = idx_failing(
        &f.index_dir,
        "read-panic=big.jsonl@600",
        &["ingest", "data", "--json"],
    );
    let report = json_of(&out);
    assert_eq!(report["objects_failed"], 1, "{report}");
    assert_eq!(report["objects_new"], 1, "{report}");
    let big = source(&f.index_dir, "sarcasm/big.jsonl");
    assert_eq!(big.status, "failed");
    assert!(
        big.reason
            .as_deref()
            .unwrap_or("")
            .contains("internal error while reading"),
        "{:?}",
        big.reason
    );
    // The old version's rows, all of them and nothing else.
    assert_eq!(hashes_of(&f.index_dir, "sarcasm/big.jsonl"), old_rows);
    assert_eq!(hashes_of(&f.index_dir, "sarcasm/added.jsonl").len(), 4);

    // Without the fault, the next run reads it and converges to a one-shot ingest.
    let out = run_idx(&f.index_dir, &["ingest", "data", "--json"]);
    json_of(&out);
    assert_eq!(digest_of(&f.index_dir), one_shot_digest(&f));
}

#[test]
fn a_crash_between_the_redb_and_the_tantivy_commit_is_repaired_by_the_next_run() {
    let f = Fixture::new();
    f.write("sarcasm/a.jsonl", lines("alpha", 50));
    f.write("sarcasm/b.jsonl", lines("bravo", 50));
    let out = idx_failing(
        &f.index_dir,
        "abort-after-commit=1",
        &["ingest", "data", "--batch-bytes", "1"],
    );
    assert!(!out.status.success(), "the process was meant to die");
    // Committed in redb, not yet in tantivy: `idx recover` repairs redb and catches tantivy up.
    json_of(&run_idx(&f.index_dir, &["recover", "--json"]));
    assert!(status_of(&f.index_dir).totals.rows > 0);
    json_of(&run_idx(&f.index_dir, &["ingest", "data", "--json"]));
    assert_eq!(digest_of(&f.index_dir), one_shot_digest(&f));
    let hits = json_of(&run_idx(
        &f.index_dir,
        &["query", "text", "alpha", "--limit", "100", "--json"],
    ));
    assert_eq!(hits.as_array().unwrap().len(), 50, "{hits}");
}

#[test]
fn a_refused_commit_fails_the_run_and_the_rerun_converges() {
    let f = Fixture::new();
    for name in ["a", "b", "c"] {
        f.write(&format!("sarcasm/{name}.jsonl"), lines(name, 20));
    }
    let out = idx_failing(
        &f.index_dir,
        "commit-error=2",
        &["ingest", "data", "--batch-bytes", "1"],
    );
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("disk refused"), "{stderr}");
    // The first batch (one object) is committed, the second is not.
    assert_eq!(status_of(&f.index_dir).totals.rows, 20);
    json_of(&run_idx(&f.index_dir, &["ingest", "data", "--json"]));
    assert_eq!(digest_of(&f.index_dir), one_shot_digest(&f));
}

#[test]
fn a_reader_opens_read_only_while_a_writer_holds_the_index() {
    let f = Fixture::new();
    f.write("sarcasm/a.jsonl", lines("held", 3));
    f.ingest();
    let writer = idx::index::Index::open_write(&f.index_dir).unwrap();
    for args in [
        &["status", "--json"][..],
        &["query", "text", "held", "--json"],
        &["query", "source", "sarcasm/a.jsonl", "--json"],
        &["verify", "--json"],
    ] {
        let out = run_idx(&f.index_dir, args);
        assert!(
            out.status.code() == Some(0) || out.status.code() == Some(4),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    drop(writer);
}

#[test]
fn output_cut_short_by_a_closed_pipe_is_a_quiet_exit_0() {
    let f = Fixture::new();
    f.write("sarcasm/big.jsonl", lines("piped", 2000));
    f.ingest();
    let mut child = Command::new(env!("CARGO_BIN_EXE_idx"))
        .arg("--data-dir")
        .arg(&f.index_dir)
        .args(["query", "source", "sarcasm/big.jsonl"])
        .current_dir(f.index_dir.parent().unwrap())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut first = [0u8; 64];
    stdout.read_exact(&mut first).unwrap();
    drop(stdout);
    let out = child.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
