//! Damaged stores: `idx check` finds what is wrong, and no command panics on a damaged file —
//! a flipped run of bytes in `index.redb` is reported, garbage in the full-text index's
//! `meta.json` is rebuilt from redb by the next writer instead of blocking it. Regressions named
//! after what broke.

use std::process::Output;

use super::common::{chat, copy_dir, json_of, run_idx, Fixture};

fn populate(f: &Fixture) {
    for file in 0..6 {
        let body: String = (0..40)
            .map(|i| {
                chat(
                    &format!(
                        "file {file} line {i}: the evenings are the hardest part {}",
                        i % 7
                    ),
                    "Tell me what the evenings look like.",
                ) + "\n"
            })
            .collect();
        f.write(&format!("sarcasm/part_{file}.jsonl"), body);
    }
}

fn no_panic(what: &str, out: &Output) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_ne!(out.status.code(), Some(101), "{what} panicked: {stderr}");
    assert!(!stderr.contains("panicked"), "{what} panicked: {stderr}");
}

#[test]
fn a_healthy_index_checks_clean() {
    let f = Fixture::new();
    populate(&f);
    f.ingest();
    let report = json_of(&run_idx(&f.index_dir, &["check", "--json"]));
    assert_eq!(report["passed"], true, "{report}");
    assert_eq!(report["integrity"], true, "{report}");
    assert_eq!(report["rows_checked"], 240);
    // While a writer holds the index, redb's check is skipped and the rest still runs.
    let writer = idx::index::Index::open_write(&f.index_dir).unwrap();
    let report = json_of(&run_idx(&f.index_dir, &["check", "--json"]));
    assert!(report["integrity"].is_null(), "{report}");
    assert_eq!(report["passed"], true, "{report}");
    drop(writer);
}

/// Regression: flipping 16 bytes of `index.redb` went unnoticed by `status` and `verify` and made
/// `ingest` panic in 4 of 14 runs.
#[test]
fn flipped_bytes_in_the_database_never_make_a_command_panic() {
    let f = Fixture::new();
    populate(&f);
    f.ingest();
    let pristine = f.index_dir.with_file_name("pristine");
    copy_dir(&f.index_dir, &pristine);
    let len = std::fs::metadata(pristine.join("index.redb"))
        .unwrap()
        .len() as usize;
    let mut reported = 0;
    for trial in 0..14usize {
        let dir = f.index_dir.with_file_name(format!("damaged-{trial}"));
        copy_dir(&pristine, &dir);
        let db = dir.join("index.redb");
        let mut bytes = std::fs::read(&db).unwrap();
        // Past redb's header, spread over the file.
        let at = 4096 + (len - 4096 - 16) * trial / 14;
        for b in &mut bytes[at..at + 16] {
            *b ^= 0xA5;
        }
        std::fs::write(&db, bytes).unwrap();
        let check = run_idx(&dir, &["check", "--json"]);
        no_panic(&format!("check (trial {trial})"), &check);
        if check.status.code() != Some(0) {
            reported += 1;
        }
        for args in [&["status"][..], &["verify"], &["query", "text", "evenings"]] {
            no_panic(&format!("{args:?} (trial {trial})"), &run_idx(&dir, args));
        }
        let data = f.data.to_str().unwrap();
        no_panic(
            &format!("ingest (trial {trial})"),
            &run_idx(&dir, &["ingest", data]),
        );
    }
    assert!(reported > 0, "no damage was reported in 14 trials");
}

/// Regression: garbage in the full-text index's `meta.json` blocked `ingest`, `serve` and even
/// `reindex` until `text/` was deleted by hand.
#[test]
fn a_damaged_full_text_index_is_rebuilt_by_the_next_writer() {
    let f = Fixture::new();
    populate(&f);
    f.ingest();
    std::fs::write(f.index_dir.join("text/meta.json"), "{ not json at all").unwrap();
    let check = run_idx(&f.index_dir, &["check"]);
    assert_eq!(check.status.code(), Some(4));
    assert!(String::from_utf8_lossy(&check.stdout).contains("full-text index cannot be opened"));
    let query = run_idx(&f.index_dir, &["query", "text", "evenings"]);
    no_panic("query text", &query);
    assert_eq!(query.status.code(), Some(1));
    // Any writer rebuilds it.
    let data = f.data.to_str().unwrap();
    json_of(&run_idx(&f.index_dir, &["ingest", data, "--json"]));
    let hits = json_of(&run_idx(
        &f.index_dir,
        &["query", "text", "evenings", "--limit", "500", "--json"],
    ));
    assert_eq!(hits.as_array().unwrap().len(), 240);
    // And `reindex` works on a damaged one too.
    std::fs::write(f.index_dir.join("text/meta.json"), "garbage").unwrap();
    json_of(&run_idx(&f.index_dir, &["reindex", "--json"]));
    assert_eq!(
        json_of(&run_idx(&f.index_dir, &["check", "--json"]))["passed"],
        true
    );
}
