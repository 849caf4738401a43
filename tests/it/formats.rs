//! Every record format and file format reads into the expected canonical row.

use std::io::Write;

use super::common::{hashes_of, row, Fixture};

#[test]
fn every_record_format_becomes_a_row_of_its_kind() {
    let f = Fixture::new();
    let lines = [
        (
            r#"{"messages":[{"role":"system","content":"Be kind."},{"role":"user","content":"hi"},{"role":"assistant","content":"hello"}]}"#,
            "chatml",
            3,
        ),
        (
            r#"{"conversations":[{"from":"human","value":"q1"},{"from":"gpt","value":"a1"}]}"#,
            "sharegpt",
            2,
        ),
        (
            r#"{"instruction":"Summarise","input":"long text","output":"short"}"#,
            "alpaca",
            2,
        ),
        (r#"{"prompt":"p2","response":"r2"}"#, "prompt_response", 2),
        (r#"{"question":"q3","answer":"a3"}"#, "prompt_response", 2),
        (
            r#"{"prompt":"p4","chosen":"good","rejected":"bad"}"#,
            "preference",
            2,
        ),
        (
            r#"{"prompt":"p5","completion":"c5","label":false}"#,
            "kto",
            2,
        ),
        (r#"{"text":"Plain pretraining text."}"#, "text", 1),
    ];
    let body: String = lines.iter().map(|(l, _, _)| format!("{l}\n")).collect();
    f.write("mixed.jsonl", body);
    let r = f.ingest();
    assert_eq!(r.rows_added, lines.len() as u64);
    assert_eq!(r.rejected_rows, 0, "{:?}", r.rejections);
    let hashes = hashes_of(&f.index_dir, "mixed.jsonl");
    assert_eq!(hashes.len(), lines.len());
    for (hash, (_, kind, messages)) in hashes.iter().zip(lines) {
        let row = row(&f.index_dir, hash).unwrap();
        assert_eq!(row.kind, kind);
        assert_eq!(row.messages.len(), messages, "{kind}");
        assert!(row.tokens > 0);
    }
    let alpaca = row(&f.index_dir, &hashes[2]).unwrap();
    assert_eq!(alpaca.messages[0].content, "Summarise long text");
    let pref = row(&f.index_dir, &hashes[5]).unwrap();
    assert_eq!(pref.rejected.unwrap()[0].content, "bad");
    let kto = row(&f.index_dir, &hashes[6]).unwrap();
    assert_eq!(kto.label, Some(false));
}

#[test]
fn json_arrays_single_records_text_and_gzip() {
    let f = Fixture::new();
    f.write(
        "arr.json",
        "[\n {\"text\": \"one\"},\n {\"text\": \"two\"}\n]\n",
    );
    f.write("single.json", r#"{"prompt": "p", "response": "r"}"#);
    f.write("talk.txt", "A transcript\nover two lines.\n");
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(b"{\"text\": \"zipped one\"}\n{\"text\": \"zipped two\"}\n")
        .unwrap();
    f.write("packed.jsonl.gz", gz.finish().unwrap());
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(b"[{\"text\": \"zipped array\"}]").unwrap();
    f.write("packed.json.gz", gz.finish().unwrap());

    let r = f.ingest();
    assert_eq!(r.objects_new, 5);
    assert_eq!(r.rows_added, 2 + 1 + 1 + 2 + 1);
    assert_eq!(r.rejected_rows, 0);
    let store = idx::index::Index::open_store_read(&f.index_dir).unwrap();
    let view = store.read().unwrap();
    let arr = idx::query::source(&view, "arr.json").unwrap();
    assert_eq!(
        arr[0].rows.iter().map(|r| r.line).collect::<Vec<_>>(),
        vec![2, 3]
    );
    let txt = hashes_of(&f.index_dir, "talk.txt");
    let t = row(&f.index_dir, &txt[0]).unwrap();
    assert_eq!(t.kind, "text");
    assert_eq!(t.messages[0].content, "A transcript over two lines.");
}

#[test]
fn non_training_objects_are_listed_not_indexed_and_unmatched_keys_are_unassigned() {
    let f = Fixture::new();
    f.write("README.md", "# docs");
    f.write("notes/analysis.ipynb", "{}");
    f.write("tables/data.xml", "<rows/>");
    f.write("misc/stuff.jsonl", super::common::chat("a", "b"));
    let r = f.ingest();
    assert_eq!(r.objects_skipped, 3);
    assert_eq!(r.rows_added, 1);
    let s = f.status();
    assert_eq!(s.totals.objects_skipped, 3);
    assert_eq!(s.unassigned_objects, vec!["misc/stuff.jsonl".to_string()]);
    assert_eq!(s.families["unassigned"].rows, 1);
    assert!(s
        .skipped_objects
        .iter()
        .any(|o| o.key == "tables/data.xml" && o.reason.contains("unsupported format (.xml)")));
    assert!(s
        .skipped_objects
        .iter()
        .any(|o| o.key == "README.md" && o.reason.contains("not training data")));
}

#[test]
fn families_are_counted_per_tag() {
    let f = Fixture::new();
    f.write(
        "datasets/gdrive/tier4_voice_persona/Tim Fletcher/Addiction and Complex Trauma Recovery.txt",
        "A talk about recovery from addiction and complex trauma.",
    );
    f.write(
        "datasets/consolidated/datasets/sarcasm_data.json",
        format!("[{}]", super::common::chat("oh great", "hmm")),
    );
    f.ingest();
    let s = f.status();
    for family in [
        "video_transcripts",
        "voice_persona",
        "cptsd",
        "addiction",
        "sarcasm",
    ] {
        assert_eq!(s.families[family].unique_rows, 1, "{family}");
        assert!(s.families[family].tokens > 0, "{family}");
    }
    assert_eq!(s.families["dpo_preference"].rows, 0);
    assert_eq!(s.totals.unique_rows, 2);
}

/// Regression: random bytes and an executable named `.txt` each became a text row, and most
/// invalid UTF-8 in JSON Lines was accepted through the Windows-1252 fallback.
#[test]
fn binary_data_is_rejected_and_windows_1252_only_when_it_reads_as_text() {
    let f = Fixture::new();
    let mut rng = idx::rng::Rng(0x5EED_0BAD_F00D_0001);
    let random: Vec<u8> = (0..4096).map(|_| (rng.next() & 0xFF) as u8).collect();
    f.write("sarcasm/random.txt", &random);
    let mut elf = b"\x7fELF\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00".to_vec();
    elf.extend_from_slice(b"some readable strings in the binary\x00\x00more");
    f.write("sarcasm/program.txt", &elf);
    f.write(
        "sarcasm/lines.jsonl",
        [
            // Windows-1252: accepted, decoded.
            &b"{\"text\": \"caf\xe9 au lait, na\xefve r\xe9sum\xe9\"}"[..],
            // UTF-8 with one broken byte: damaged UTF-8, not Windows-1252.
            &b"{\"text\": \"caf\xc3\xa9 and a broken \xff byte\"}"[..],
            // Mostly random high bytes.
            &b"{\"text\": \"\xe4\xf6\xfc\xe4\xf6\xfc\xe4\xf6\xfc\xe4\xf6\xfc\xe4\xf6\"}"[..],
        ]
        .join(&b"\n"[..]),
    );
    let report = f.ingest();
    assert_eq!(report.rows_added, 1, "{report:?}");
    let reasons: Vec<(String, u64, String)> = report
        .rejections
        .iter()
        .map(|r| (r.key.clone(), r.line, r.reason.clone()))
        .collect();
    let reason = |key: &str, line: u64| {
        reasons
            .iter()
            .find(|(k, l, _)| k == key && *l == line)
            .map(|(_, _, r)| r.clone())
            .unwrap_or_else(|| panic!("no rejection for {key}:{line} in {reasons:?}"))
    };
    assert!(reason("sarcasm/random.txt", 1).contains("not text"));
    assert!(reason("sarcasm/program.txt", 1).contains("binary"));
    assert!(reason("sarcasm/lines.jsonl", 2).contains("not plausible Windows-1252"));
    assert!(reason("sarcasm/lines.jsonl", 3).contains("not plausible Windows-1252"));
    let kept = hashes_of(&f.index_dir, "sarcasm/lines.jsonl");
    assert_eq!(kept.len(), 1);
    let text = serde_json::to_string(&row(&f.index_dir, &kept[0]).unwrap()).unwrap();
    assert!(text.contains("café au lait"), "{text}");
}

/// CSV through the shipped counsel-chat mapping (a fixture in its shape: one row per answer,
/// the question in two columns, quoted fields over several lines), and through a mapping of the
/// user's own whose missing field is a rejection naming it. A mapping change re-reads objects.
#[test]
fn csv_is_read_through_declared_mappings() {
    let mut f = Fixture::new();
    let counsel = ",questionID,questionTitle,questionText,topic,answerText,upvotes\n\
        0,0,Worthless,\"I feel worthless.\nEvery day.\",depression,\"You are not, and here is why.\",3\n\
        1,0,Worthless,\"I feel worthless.\nEvery day.\",depression,Another answer to the same question.,1\n\
        2,1,,Only a question text here,anxiety,An answer without a title.,0\n\
        3,2,No answer,What now?,anxiety,,0\n";
    f.write("counsel-chat/20200325_counsel_chat.csv", counsel);
    f.write(
        "mine/pairs.tsv",
        "ask\treply\nHow are you?\tFine, thanks.\n",
    );
    let r = f.ingest();
    // The TSV's columns are known to no detection and no mapping: rejected with its line.
    assert_eq!(r.rows_added, 3, "{:?}", r.rejections);
    let reasons: Vec<(String, u64, String)> = r
        .rejections
        .iter()
        .map(|x| (x.key.clone(), x.line, x.reason.clone()))
        .collect();
    assert!(
        reasons
            .iter()
            .any(|(k, line, why)| k.ends_with("counsel_chat.csv")
                && *line == 7
                && why.contains("mapping `counsel-chat`: field `answerText` is missing")),
        "{reasons:?}"
    );
    assert!(
        reasons.iter().any(|(k, line, why)| k.ends_with("pairs.tsv")
            && *line == 2
            && why.contains("unknown record shape (keys: ask, reply)")),
        "{reasons:?}"
    );
    let hashes = hashes_of(&f.index_dir, "counsel-chat/20200325_counsel_chat.csv");
    let first = row(&f.index_dir, &hashes[0]).unwrap();
    assert_eq!(
        first.messages[0].content,
        "Worthless I feel worthless. Every day."
    );
    assert_eq!(first.messages[1].content, "You are not, and here is why.");
    let untitled = row(&f.index_dir, &hashes[2]).unwrap();
    assert_eq!(untitled.messages[0].content, "Only a question text here");

    // The user's own mapping for the TSV: the next ingest reads every object again.
    f.settings.mappings = idx::parse::Mappings::parse(
        "version = 1\n[[mapping]]\nname = \"mine\"\nkeys = [\"mine/*.tsv\"]\ncolumns = { prompt = \"ask\", response = \"reply\" }\n",
        "sources.toml",
    )
    .unwrap();
    let r = f.ingest();
    assert_eq!(r.objects_changed, 2);
    let pair = hashes_of(&f.index_dir, "mine/pairs.tsv");
    assert_eq!(pair.len(), 1);
    assert_eq!(
        row(&f.index_dir, &pair[0]).unwrap().messages[1].content,
        "Fine, thanks."
    );
}
