//! Exact duplicates: spelling variants share one content hash and keep every place.

use super::common::{hashes_of, row, Fixture};

fn msg(text: &str) -> String {
    serde_json::json!({"messages": [
        {"role": "user", "content": text},
        {"role": "assistant", "content": "I hear you. Tell me more about that."}
    ]})
    .to_string()
}

#[test]
fn spacing_crlf_width_and_case_variants_are_one_row_with_all_places() {
    let f = Fixture::new();
    let variants = [
        "I feel anxious about tomorrow",
        "  I   feel anxious\r\nabout tomorrow ",
        "I FEEL ANXIOUS ABOUT TOMORROW",
        "Ｉ ｆｅｅｌ ａｎｘｉｏｕｓ ａｂｏｕｔ ｔｏｍｏｒｒｏｗ",
    ];
    let body: String = variants.iter().map(|v| format!("{}\n", msg(v))).collect();
    f.write("a.jsonl", body);
    f.write("b.jsonl", format!("{}\n", msg(variants[0])));
    f.write(
        "c.jsonl",
        format!("{}\n", msg("I feel anxious about today")),
    );
    f.ingest();

    let a = hashes_of(&f.index_dir, "a.jsonl");
    assert_eq!(a.len(), 4);
    assert!(a.iter().all(|h| h == &a[0]), "{a:?}");
    let c = hashes_of(&f.index_dir, "c.jsonl");
    assert_ne!(c[0], a[0]);

    let r = row(&f.index_dir, &a[0]).unwrap();
    let places: Vec<(String, u64)> = r.sources.iter().map(|s| (s.key.clone(), s.line)).collect();
    assert_eq!(
        places,
        vec![
            ("a.jsonl".to_string(), 1),
            ("a.jsonl".to_string(), 2),
            ("a.jsonl".to_string(), 3),
            ("a.jsonl".to_string(), 4),
            ("b.jsonl".to_string(), 1),
        ]
    );
    let s = f.status();
    assert_eq!(s.totals.rows, 6);
    assert_eq!(s.totals.unique_rows, 2);
}

#[test]
fn the_representative_spelling_does_not_depend_on_order() {
    let f = Fixture::new();
    f.write("x.jsonl", msg("Hello THERE friend"));
    f.write("y.jsonl", msg("hello there friend"));
    let first = f.with_index("first");
    let second = f.with_index("second");
    f.ingest_into(&first, [f.data.join("x.jsonl")]);
    f.ingest_into(&first, [f.data.join("y.jsonl")]);
    f.ingest_into(&second, [f.data.join("y.jsonl")]);
    f.ingest_into(&second, [f.data.join("x.jsonl")]);
    let h = hashes_of(&first, "x.jsonl")[0].clone();
    let a = row(&first, &h).unwrap();
    let b = row(&second, &h).unwrap();
    assert_eq!(a.messages, b.messages);
    // Removing the object holding the representative switches to the other spelling.
    f.remove("x.jsonl");
    f.ingest_into(&first, [&f.data]);
    let after = row(&first, &h).unwrap();
    assert_eq!(after.messages[0].content, "hello there friend");
    assert_eq!(after.sources.len(), 1);
}

#[test]
fn mojibake_is_repaired_before_hashing_and_counted_per_family() {
    let f = Fixture::new();
    f.write(
        "clean.jsonl",
        format!("{}\n", msg("I don’t know why I feel this way")),
    );
    f.write(
        "datasets/consolidated/datasets/sarcasm_data.jsonl",
        format!("{}\n", msg("I donâ€™t know why I feel this way\u{0}")),
    );
    // A Windows-1252 transcript: not UTF-8 at all.
    f.write(
        "talks/windows_transcript.txt",
        b"I don\x92t know why I feel this way".as_slice(),
    );
    f.ingest();
    let clean = hashes_of(&f.index_dir, "clean.jsonl");
    let broken = hashes_of(
        &f.index_dir,
        "datasets/consolidated/datasets/sarcasm_data.jsonl",
    );
    assert_eq!(clean, broken, "repaired text must hash like the clean text");
    let transcript = hashes_of(&f.index_dir, "talks/windows_transcript.txt");
    let t = row(&f.index_dir, &transcript[0]).unwrap();
    assert_eq!(t.messages[0].content, "I don’t know why I feel this way");
    let s = f.status();
    assert_eq!(s.repairs.mojibake, 1);
    assert_eq!(s.repairs.controls, 1);
    assert_eq!(s.repairs.decoded, 1);
    assert_eq!(s.repairs_by_family["sarcasm"].mojibake, 1);
    assert_eq!(s.repairs_by_family["video_transcripts"].decoded, 1);
}
