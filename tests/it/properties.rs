//! Property tests (proptest) over arbitrary Unicode and over mutations of a checked-in corpus
//! (`testdata/fuzz/corpus/`), through the whole row preparation: read → repair → normalise →
//! redact → fingerprint. Nothing may panic, redaction must be idempotent, and the same input
//! must always give the same hashes. Hostile input is the normal case for this tool.

use std::path::Path;

use proptest::prelude::*;

use idx::fingerprint::fingerprint;
use idx::model::{Conversation, Message, RecordKind, Role};
use idx::normalize::canonicalize;
use idx::parse::{detect_file_format, read_object, Item, Limits};
use idx::pii::{PiiConfig, Redactor};

/// Fragments that exercise the redactor's and the repairer's edges: PII in several scripts of
/// digits, name contexts, mojibake, combining runs, emoji sequences, BOMs and controls.
const FRAGMENTS: &[&str] = &[
    "my ssn is ",
    "١٢٣-٤٥-٦٧٨٩",
    "123-45-6789",
    "call me on ",
    "415-555-0132",
    "０４１５ ５５５ ０１３２",
    "４１１１ １１１１ １１１１ １１１１",
    "4111-1111-1111-1111",
    "९८७६५४३२१०",
    "Hi ",
    "I'm ",
    "my name is ",
    "my friend ",
    "Sarah",
    "Jennifer Lopez",
    "Thanks, ",
    "born on ",
    "12/03/1990",
    "42 Oak Street",
    "me@x.org",
    "https://x.com/jen?u=1",
    "192.168.0.1",
    "::1",
    "donâ€™t",
    "\u{FEFF}",
    "\u{0007}",
    "e\u{301}\u{301}\u{301}",
    "👩‍👩‍👧‍👦",
    "[NAME]",
    "[PHONE]",
    " ",
    ", ",
    "\n",
    "-",
];

fn text() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        3 => proptest::sample::select(FRAGMENTS).prop_map(str::to_string),
        1 => any::<String>(),
        1 => proptest::collection::vec(any::<char>(), 0..8).prop_map(|c| c.into_iter().collect()),
    ];
    proptest::collection::vec(piece, 0..12).prop_map(|p| p.concat())
}

fn conversation() -> impl Strategy<Value = Conversation> {
    let message = (0u8..3, text()).prop_map(|(r, content)| Message {
        role: [Role::System, Role::User, Role::Assistant][r as usize],
        content,
    });
    (
        proptest::collection::vec(message, 1..5),
        proptest::option::of(text()),
    )
        .prop_map(|(messages, rejected)| Conversation {
            kind: if rejected.is_some() {
                RecordKind::Preference
            } else {
                RecordKind::Chatml
            },
            messages,
            rejected: rejected.map(|content| {
                vec![Message {
                    role: Role::Assistant,
                    content,
                }]
            }),
            label: None,
        })
}

/// Deterministic runs: a fixed seed per property (so `cargo test` is the same every time), no
/// persistence files. To explore, set `IDX_PROPTEST_SEED` (added to each seed) and
/// `IDX_PROPTEST_CASES`; a failure found that way goes into the corpus or a named regression.
fn config(cases: u32, seed: u64) -> ProptestConfig {
    let env = |name: &str| std::env::var(name).ok().and_then(|v| v.parse::<u64>().ok());
    ProptestConfig {
        cases: env("IDX_PROPTEST_CASES").map_or(cases, |c| c as u32),
        rng_seed: proptest::test_runner::RngSeed::Fixed(
            seed.wrapping_add(env("IDX_PROPTEST_SEED").unwrap_or(0)),
        ),
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// One compiled redactor for every case (compiling its patterns dominates a case otherwise).
fn redactor() -> &'static Redactor {
    static REDACTOR: std::sync::LazyLock<Redactor> =
        std::sync::LazyLock::new(|| Redactor::new(&PiiConfig::default()));
    &REDACTOR
}

/// The row preparation the ingest's fingerprint stage runs, from a parsed conversation.
fn prepare(
    redactor: &Redactor,
    mut c: Conversation,
) -> (Conversation, idx::fingerprint::Fingerprints) {
    canonicalize(&mut c);
    redactor.redact_conversation(&mut c);
    let fp = fingerprint(&c);
    (c, fp)
}

proptest! {
    #![proptest_config(config(1024, 0x1D_0001))]

    #[test]
    fn redaction_never_panics_and_is_idempotent(t in text()) {
        let r = redactor();
        let (once, _) = r.redact(&t);
        let (twice, found) = r.redact(&once);
        prop_assert_eq!(&twice, &once, "found again: {:?}", found.kinds);
    }

    #[test]
    fn row_preparation_never_panics_and_gives_stable_hashes(c in conversation()) {
        let r = redactor();
        let (first, fp1) = prepare(r, c.clone());
        let (_, fp2) = prepare(r, c);
        prop_assert_eq!(fp1.content_hash, fp2.content_hash);
        prop_assert_eq!(fp1.simhash, fp2.simhash);
        prop_assert_eq!(fp1.tokens, fp2.tokens);
        // Preparing a prepared row changes nothing: what is stored is a fixed point.
        let (again, fp3) = prepare(r, first.clone());
        prop_assert_eq!(&again.messages, &first.messages);
        prop_assert_eq!(fp3.content_hash, fp1.content_hash);
    }
}

/// The mappings the corpus's seeds are read through (by file name).
fn seed_mappings() -> &'static idx::parse::Mappings {
    static MAPPINGS: std::sync::LazyLock<idx::parse::Mappings> = std::sync::LazyLock::new(|| {
        let text = format!(
            "{}\n{}",
            idx::parse::mapping::DEFAULT_SOURCES_TOML,
            r#"
[[mapping]]
name = "table"
keys = ["table.csv"]
columns = { prompt = ["questionTitle", "questionText"], response = "answerText" }
attributes = ["topic", "upvotes"]
session = "questionID"

[[mapping]]
name = "qa"
keys = ["qa.parquet"]
columns = { prompt = "question", response = "answer" }
attributes = ["topic", "score"]

[[mapping]]
name = "nested"
keys = ["nested.json"]
records = "object"
columns = { messages = "content" }
tags = { role_tag = "agent", content_tag = "message", speaker_order = true }
attributes = ["config"]
session = "$record"
"#
        );
        idx::parse::Mappings::parse(&text, "seed mappings").expect("valid")
    });
    &MAPPINGS
}

/// Seeds: every file of the checked-in corpus.
fn corpus() -> &'static [(String, Vec<u8>)] {
    static CORPUS: std::sync::LazyLock<Vec<(String, Vec<u8>)>> =
        std::sync::LazyLock::new(read_corpus);
    &CORPUS
}

fn read_corpus() -> Vec<(String, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/fuzz/corpus");
    let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .expect("testdata/fuzz/corpus")
        .map(|e| {
            let p = e.unwrap().path();
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read(&p).unwrap())
        })
        .collect();
    files.sort();
    assert!(files.len() >= 3, "the corpus is checked in");
    files
}

#[derive(Debug, Clone)]
enum Mutation {
    Flip(usize, u8),
    Insert(usize, Vec<u8>),
    Delete(usize, usize),
    Splice(usize, usize, usize),
    Truncate(usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let noise = prop_oneof![
        proptest::collection::vec(any::<u8>(), 1..6),
        proptest::sample::select(vec![
            b"\xff".to_vec(),
            b"\x00".to_vec(),
            "\u{301}".as_bytes().to_vec(),
            "١٢٣".as_bytes().to_vec(),
            b"\\ud83d".to_vec(),
            b"\"}]".to_vec(),
            b"\n".to_vec(),
        ]),
    ];
    prop_oneof![
        (any::<usize>(), any::<u8>()).prop_map(|(a, b)| Mutation::Flip(a, b)),
        (any::<usize>(), noise).prop_map(|(a, n)| Mutation::Insert(a, n)),
        (any::<usize>(), 1usize..16).prop_map(|(a, n)| Mutation::Delete(a, n)),
        (any::<usize>(), any::<usize>(), 1usize..64)
            .prop_map(|(a, b, n)| Mutation::Splice(a, b, n)),
        any::<usize>().prop_map(Mutation::Truncate),
    ]
}

fn apply(data: &mut Vec<u8>, m: &Mutation) {
    if data.is_empty() {
        return;
    }
    let at = |i: usize, len: usize| i % len.max(1);
    match m {
        Mutation::Flip(i, b) => {
            let i = at(*i, data.len());
            data[i] ^= b | 1;
        }
        Mutation::Insert(i, bytes) => {
            let i = at(*i, data.len());
            data.splice(i..i, bytes.iter().copied());
        }
        Mutation::Delete(i, n) => {
            let i = at(*i, data.len());
            let end = (i + n).min(data.len());
            data.drain(i..end);
        }
        Mutation::Splice(from, to, n) => {
            let from = at(*from, data.len());
            let end = (from + n).min(data.len());
            let piece: Vec<u8> = data[from..end].to_vec();
            let to = at(*to, data.len());
            data.splice(to..to, piece);
        }
        Mutation::Truncate(i) => {
            let i = at(*i, data.len());
            data.truncate(i);
        }
    }
}

proptest! {
    #![proptest_config(config(1024, 0x1D_0002))]

    /// The fuzz target, run as a property test: a corpus file, mutated, read as its format (and
    /// gzip-wrapped as a bogus stream), every record prepared. Nothing panics, every line of a
    /// JSON Lines file is a record or a rejection, and no rejection reason is empty.
    #[test]
    fn mutated_corpus_goes_through_the_whole_row_preparation(
        seed in any::<proptest::sample::Index>(),
        mutations in proptest::collection::vec(mutation(), 0..8),
    ) {
        let files = corpus();
        let (name, original) = &files[seed.index(files.len())];
        let mut data = original.clone();
        for m in &mutations {
            apply(&mut data, m);
        }
        let (format, gzip) = detect_file_format(name).expect("corpus files have known formats");
        let r = redactor();
        let mut records = 0u64;
        let mut rejected = 0u64;
        // Tables also go through the shipped counsel-chat mapping (its columns are the
        // corpus's); the Parquet seed and the nested JSON through mappings of their own.
        let mapping = seed_mappings().for_key(name);
        idx::parse::read_object_mapped(&data[..], format, gzip, Limits::default(), mapping.as_deref(), &mut |item| match item {
            Item::Record(rec) => {
                records += 1;
                let _ = prepare(r, rec.conversation);
            }
            Item::Rejected(rej) => {
                assert!(!rej.reason.is_empty());
                rejected += 1;
            }
        });
        if name.ends_with(".jsonl") {
            let lines = data
                .split(|&b| b == b'\n')
                .filter(|l| !l.iter().all(u8::is_ascii_whitespace))
                .count() as u64;
            prop_assert_eq!(records + rejected, lines, "lines of {} unaccounted for", name);
        }
        read_object(&data[..], format, true, Limits::default(), &mut |_| {});
        // Parquet and Arrow are read from a file by seeking, too.
        if idx::parse::is_columnar_file(format, gzip) {
            let mut file = tempfile::tempfile().unwrap();
            std::io::Write::write_all(&mut file, &data).unwrap();
            std::io::Seek::rewind(&mut file).unwrap();
            idx::parse::read_file_mapped(file, format, gzip, Limits::default(), mapping.as_deref(), &mut |item| {
                if let Item::Rejected(rej) = item {
                    assert!(!rej.reason.is_empty());
                }
            });
        }
    }
}

/// Any JSON value, a few levels deep.
fn json_value() -> impl Strategy<Value = serde_json::Value> {
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::Bool),
        any::<i64>().prop_map(|n| serde_json::json!(n)),
        text().prop_map(serde_json::Value::String),
        proptest::sample::select(vec![
            "user",
            "assistant",
            "system",
            "agent_1",
            "agent_2",
            "gpt"
        ])
        .prop_map(|s| serde_json::Value::String(s.to_string())),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(serde_json::Value::Array),
            proptest::collection::vec(
                (
                    proptest::sample::select(vec![
                        "messages", "content", "message", "agent", "role", "question", "answer",
                        "turns", "lines", "who", "topic", "id", "text"
                    ]),
                    inner
                ),
                0..6
            )
            .prop_map(|kv| serde_json::Value::Object(
                kv.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
            )),
        ]
    })
}

proptest! {
    #![proptest_config(config(512, 0x1D_0003))]

    /// A mapping meets records of any shape: each becomes a conversation or a rejection that
    /// names the mapping, never a panic; what comes out has alternating roles once merged, and
    /// merging again changes nothing.
    #[test]
    fn mappings_read_any_record_or_say_why(records in proptest::collection::vec(json_value(), 1..6)) {
        let text = serde_json::to_string(&serde_json::Value::Array(records)).unwrap();
        for name in ["nested.json", "qa.parquet", "table.csv"] {
            let mapping = seed_mappings().for_key(name).unwrap();
            idx::parse::read_object_mapped(
                text.as_bytes(),
                idx::parse::FileFormat::Json,
                false,
                Limits::default(),
                Some(&mapping),
                &mut |item| match item {
                    Item::Record(rec) => {
                        let roles: Vec<Role> = rec.conversation.messages.iter().map(|m| m.role).collect();
                        assert!(roles.windows(2).all(|w| w[0] != w[1]), "{roles:?}");
                        let mut again = rec.conversation.clone();
                        assert_eq!(idx::structure::merge_conversation(&mut again), 0);
                        let _ = idx::structure::flaws(&again);
                    }
                    Item::Rejected(rej) => assert!(!rej.reason.is_empty()),
                },
            );
        }
    }
}

proptest! {
    #![proptest_config(config(256, 0x1D_0004))]

    /// A generator's output line of any shape, and a derived object damaged in any way, read
    /// as a conversation or a reason — never a panic, never an empty row.
    #[test]
    fn generator_output_and_derived_objects_read_or_say_why(
        v in json_value(),
        c in conversation(),
        m in mutation(),
    ) {
        if let Ok(c) = idx::parse::derived::conversation_of(v) {
            assert!(!c.messages.is_empty());
        }
        let line = idx::parse::derived::DerivedLine {
            conversation: c,
            recipe: "r".into(),
            inputs: vec!["0123456789abcdef0123456789abcdef".into()],
            generator: None,
        };
        let mut data = serde_json::to_vec(&line).unwrap();
        data.push(b'\n');
        apply(&mut data, &m);
        read_object(&data[..], idx::parse::FileFormat::Derived, false, Limits::default(), &mut |item| match item {
            Item::Record(r) => assert!(r.conversation.all_messages().any(|m| !m.content.trim().is_empty())),
            Item::Rejected(rej) => assert!(!rej.reason.is_empty()),
        });
    }
}

proptest! {
    #![proptest_config(config(512, 0x1D_0003))]

    /// The decontamination matcher on hostile text: the corpus's own records are the
    /// benchmark, mutated corpus files the rows. Nothing panics, every span lies on character
    /// boundaries inside its message, and the matched n-grams never exceed the row's.
    #[test]
    fn mutated_text_checked_against_a_benchmark_gives_valid_spans(
        seed in any::<proptest::sample::Index>(),
        mutations in proptest::collection::vec(mutation(), 0..8),
        n in 1usize..8,
    ) {
        use idx::decontaminate::ngrams::{text_ngrams, Matcher};
        let files = corpus();
        let mut matcher = Matcher::new(n, 4);
        let mut item = 0u32;
        for (name, data) in files {
            let (format, gzip) = detect_file_format(name).expect("known formats");
            read_object(&data[..], format, gzip, Limits::default(), &mut |i| {
                if let Item::Record(rec) = i {
                    for m in &rec.conversation.messages {
                        matcher.add(item, &text_ngrams(&m.content, n));
                    }
                    item += 1;
                }
            });
        }
        let (name, original) = &files[seed.index(files.len())];
        let mut data = original.clone();
        for m in &mutations {
            apply(&mut data, m);
        }
        let (format, gzip) = detect_file_format(name).expect("known formats");
        read_object(&data[..], format, gzip, Limits::default(), &mut |i| {
            if let Item::Record(rec) = i {
                let texts: Vec<&str> = rec.conversation.messages.iter().map(|m| m.content.as_str()).collect();
                let c = matcher.check(texts.iter().copied());
                assert!(c.matched <= c.ngrams);
                for h in &c.hits {
                    let t = texts[h.message as usize];
                    assert!(h.span.start < h.span.end && h.span.end <= t.len());
                    assert!(t.is_char_boundary(h.span.start) && t.is_char_boundary(h.span.end));
                }
            }
        });
    }
}
