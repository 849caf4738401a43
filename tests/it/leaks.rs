//! Nothing private leaves and nothing is silently lost through metadata: rejection reasons that
//! quote the input are redacted before they are stored or printed, object keys carrying PII are
//! redacted in everything an export writes (and still found by `idx query source`), and file
//! names that are not UTF-8 keep distinct, stable keys. Regressions named after what broke.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;

use super::common::{chat, json_of, run_idx, Fixture};

#[test]
fn rejection_reasons_never_store_the_pii_they_quote() {
    let f = Fixture::new();
    f.write(
        "sarcasm/a.jsonl",
        [
            r#"{"messages":[{"role":"jane@x.com","content":"a"}]}"#,
            r#"{"415-555-0199":1}"#,
            &chat("a fine question here", "a fine answer"),
        ]
        .join("\n")
            + "\n",
    );
    let report = json_of(&run_idx(&f.index_dir, &["ingest", "data", "--json"]));
    assert_eq!(report["rejected_rows"], 2, "{report}");
    let printed = run_idx(&f.index_dir, &["query", "source", "sarcasm/a.jsonl"]);
    let text = String::from_utf8_lossy(&printed.stdout).into_owned()
        + &serde_json::to_string(&report).unwrap();
    assert!(!text.contains("jane@x.com"), "{text}");
    assert!(!text.contains("415-555-0199"), "{text}");
    assert!(text.contains("[EMAIL]"), "{text}");
    // Nor does the database file hold them.
    let db = std::fs::read(f.index_dir.join("index.redb")).unwrap();
    for value in ["jane@x.com", "415-555-0199"] {
        assert!(
            !db.windows(value.len()).any(|w| w == value.as_bytes()),
            "{value} is in index.redb"
        );
    }
}

#[test]
fn keys_with_pii_are_redacted_in_exports_and_still_found() {
    let f = Fixture::new();
    let key = "sarcasm/call john@gmail.com 415-555-0177.jsonl";
    f.write(
        key,
        chat("oh great, another monday", "Mondays can feel heavy.") + "\n",
    );
    json_of(&run_idx(&f.index_dir, &["ingest", "data", "--json"]));
    let out = f.index_dir.with_file_name("out");
    json_of(&run_idx(
        &f.index_dir,
        &[
            "export",
            "--allow-failing-gates",
            "--out",
            out.to_str().unwrap(),
            "--json",
        ],
    ));
    let mut shown = None;
    for file in ["final.chatml.jsonl", "provenance.jsonl", "manifest.json"] {
        let text = std::fs::read_to_string(out.join(file)).unwrap();
        assert!(!text.contains("john@gmail.com"), "{file}: {text}");
        assert!(!text.contains("415-555-0177"), "{file}: {text}");
        if file == "final.chatml.jsonl" {
            let line: serde_json::Value =
                serde_json::from_str(text.lines().next().unwrap()).unwrap();
            shown = line["metadata"]["source_key"].as_str().map(str::to_string);
        }
    }
    let shown = shown.unwrap();
    assert!(
        shown.starts_with("sarcasm/call [EMAIL] [PHONE].jsonl [key "),
        "{shown}"
    );
    // The redacted key leads back to the object locally, where the raw key may be shown.
    let found = json_of(&run_idx(
        &f.index_dir,
        &["query", "source", &shown, "--json"],
    ));
    assert_eq!(found[0]["key"], key, "{found}");
}

/// Regression: `bad\xff.jsonl` and `bad\xfe.jsonl` both became `bad\u{FFFD}.jsonl`: one file's
/// rows were dropped and every later ingest read it again.
#[test]
fn file_names_that_are_not_utf8_keep_distinct_keys_and_settle() {
    let f = Fixture::new();
    let dir = f.data.join("sarcasm");
    std::fs::create_dir_all(&dir).unwrap();
    for (name, words) in [
        (&b"bad\xff.jsonl"[..], "first file words"),
        (&b"bad\xfe.jsonl"[..], "second file words"),
    ] {
        std::fs::write(
            dir.join(OsStr::from_bytes(name)),
            chat(words, "an answer") + "\n",
        )
        .unwrap();
    }
    let report = f.ingest();
    assert_eq!(report.objects_new, 2, "{report:?}");
    assert_eq!(report.rows_added, 2);
    let status = f.status();
    assert_eq!(status.totals.unique_rows, 2);
    for key in ["sarcasm/bad%FF.jsonl", "sarcasm/bad%FE.jsonl"] {
        assert_eq!(
            super::common::hashes_of(&f.index_dir, key).len(),
            1,
            "{key}"
        );
    }
    let again = f.ingest();
    assert_eq!(
        (again.objects_unchanged, again.rows_added),
        (2, 0),
        "{again:?}"
    );
}
