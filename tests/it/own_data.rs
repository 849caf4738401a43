//! A user's own data: Parquet, Arrow IPC and nested JSON read through declared mappings
//! (fixtures made here), attributes kept on rows, sessions as holdout groups, and the structure
//! checks that keep unusable conversations out of exports.

use std::io::Cursor;
use std::sync::Arc;

use arrow_array::RecordBatch;

use super::common::*;
use idx::index::Index;

/// One record batch from JSON lines (nested lists and structs become Arrow lists and structs).
pub(crate) fn batch_of(json_lines: &str) -> RecordBatch {
    let (schema, _) =
        arrow_json::reader::infer_json_schema(Cursor::new(json_lines.as_bytes()), None).unwrap();
    let mut reader = arrow_json::ReaderBuilder::new(Arc::new(schema))
        .build(Cursor::new(json_lines.as_bytes()))
        .unwrap();
    reader.next().unwrap().unwrap()
}

/// A Parquet file of `batch`, `rows_per_group` rows to a row group.
pub(crate) fn parquet_of(batch: &RecordBatch, rows_per_group: usize) -> Vec<u8> {
    let props = parquet::file::properties::WriterProperties::builder()
        .set_max_row_group_row_count(Some(rows_per_group))
        .build();
    let mut out = Vec::new();
    let mut w =
        parquet::arrow::ArrowWriter::try_new(&mut out, batch.schema(), Some(props)).unwrap();
    w.write(batch).unwrap();
    w.close().unwrap();
    out
}

/// An Arrow IPC stream (what Hugging Face `datasets` writes as `.arrow`).
pub(crate) fn arrow_stream_of(batch: &RecordBatch) -> Vec<u8> {
    let mut out = Vec::new();
    let mut w = arrow_ipc::writer::StreamWriter::try_new(&mut out, &batch.schema()).unwrap();
    w.write(batch).unwrap();
    w.finish().unwrap();
    drop(w);
    out
}

fn mappings(toml: &str) -> idx::parse::Mappings {
    idx::parse::Mappings::parse(toml, "sources.toml").unwrap()
}

#[test]
fn parquet_arrow_and_nested_json_are_read_through_mappings() {
    let mut f = Fixture::new();
    // Parquet: five answers in three row groups; the fourth has no answer.
    let qa = batch_of(
        r#"{"question": "I can't sleep.", "answer": "Try a wind-down routine.", "topic": "sleep", "score": 5}
{"question": "I feel alone.", "answer": "Loneliness is common; who could you call?", "topic": "loneliness", "score": 3}
{"question": "Exams scare me.", "answer": "Let's break the work into steps.", "topic": "anxiety", "score": 4}
{"question": "Nobody answers me.", "topic": "loneliness", "score": 0}
{"question": "I argue with my dad.", "answer": "What happens before the arguments?", "topic": "family", "score": 2}
"#,
    );
    let parquet = parquet_of(&qa, 2);
    let groups =
        parquet::file::reader::SerializedFileReader::new(bytes::Bytes::from(parquet.clone()))
            .map(|r| parquet::file::reader::FileReader::metadata(&r).num_row_groups())
            .unwrap();
    assert_eq!(groups, 3, "the fixture must span several row groups");
    f.write("forum/answers.parquet", &parquet);
    // Arrow IPC stream with a ChatML `messages` column: read by detection, no mapping.
    let chats = batch_of(
        r#"{"messages": [{"role": "user", "content": "Hello, I need to talk."}, {"role": "assistant", "content": "I'm here. What's on your mind?"}]}
{"messages": [{"role": "user", "content": "Work is too much."}, {"role": "assistant", "content": "Tell me about a typical day."}]}
"#,
    );
    f.write(
        "hf/train/data-00000-of-00001.arrow",
        arrow_stream_of(&chats),
    );
    // Nested JSON: an object of records keyed by id, turns by agent id (roles by speaker order).
    f.write(
        "chats/topical.json",
        r#"{
  "t_1": {"config": "A", "content": [
    {"agent": "agent_1", "message": "Did you see the match?", "sentiment": "Curious"},
    {"agent": "agent_2", "message": "Yes, what a finish!", "sentiment": "Happy"},
    {"agent": "agent_1", "message": "Unbelievable.", "sentiment": "Surprised"},
    {"agent": "agent_2", "message": "I was shouting at the TV.", "sentiment": "Happy"}]},
  "t_2": {"config": "B", "content": [
    {"agent": "agent_2", "message": "Do you like jazz?", "sentiment": "Curious"},
    {"agent": "agent_1", "message": "Only live.", "sentiment": "Neutral"}]}
}"#,
    );
    // Records under a JSON pointer, message groups nested per speaker turn.
    f.write(
        "chats/export.json",
        r#"{"meta": {"version": 2}, "data": {"items": [
  {"id": "s1", "turns": [
     {"who": "client", "lines": ["I keep worrying.", "All the time."]},
     {"who": "coach", "lines": ["What do you worry about most?"]}]}
]}}"#,
    );
    f.settings.mappings = mappings(
        r#"version = 1

[[mapping]]
name = "forum"
keys = ["forum/*.parquet"]
columns = { prompt = "question", response = "answer" }
attributes = ["topic", "score"]

[[mapping]]
name = "topical"
keys = ["chats/topical.json"]
records = "object"
columns = { messages = "content" }
tags = { role_tag = "agent", content_tag = "message", speaker_order = true }
attributes = ["config"]

[[mapping]]
name = "coaching"
keys = ["chats/export.json"]
records = "/data/items"
columns = { messages = "turns" }
tags = { role_tag = "who", group_tag = "lines", user_tag = "client", assistant_tag = "coach" }
session = "id"
"#,
    );
    let r = f.ingest();
    assert_eq!(r.rows_added, 4 + 2 + 2 + 1, "{:?}", r.rejections);
    assert_eq!(r.rejected_rows, 1);
    let rej = &r.rejections[0];
    assert_eq!((rej.key.as_str(), rej.line), ("forum/answers.parquet", 4));
    assert!(
        rej.reason
            .contains("mapping `forum`: field `answer` is missing"),
        "{}",
        rej.reason
    );

    // The object names its mapping; the rows keep their attributes (typed as they were).
    let store = Index::open_store_read(&f.index_dir).unwrap();
    let view = store.read().unwrap();
    let found = idx::query::source(&view, "forum/answers.parquet").unwrap();
    assert_eq!(found[0].mapping.as_deref(), Some("forum"));
    let rows = &found[0].rows;
    assert_eq!(
        rows.iter().map(|r| r.line).collect::<Vec<_>>(),
        [1, 2, 3, 5]
    );
    assert_eq!(rows[1].attributes["topic"], "loneliness");
    assert_eq!(rows[1].attributes["score"], 3);
    let hf = idx::query::source(&view, "hf/train/data-00000-of-00001.arrow").unwrap();
    assert_eq!((hf[0].mapping.as_deref(), hf[0].rows.len()), (None, 2));
    let export = idx::query::source(&view, "chats/export.json").unwrap();
    assert_eq!(export[0].sessions, 1);
    let turns = row(&f.index_dir, &export[0].rows[0].content_hash).unwrap();
    let said: Vec<(&str, &str)> = turns
        .messages
        .iter()
        .map(|m| (m.role.as_str(), m.content.as_str()))
        .collect();
    // The client's two lines are one turn once merged (and the merge is counted).
    assert_eq!(
        said,
        [
            ("user", "I keep worrying. All the time."),
            ("assistant", "What do you worry about most?")
        ]
    );
    assert_eq!(export[0].rows[0].merged_turns, 1);
    // Speaker order: t_2's first speaker (agent_2) is its user.
    let topical = idx::query::source(&view, "chats/topical.json").unwrap();
    let t2 = row(&f.index_dir, &topical[0].rows[1].content_hash).unwrap();
    assert_eq!(t2.messages[0].content, "Do you like jazz?");
    assert_eq!(t2.messages[0].role.as_str(), "user");
    assert_eq!(topical[0].rows[1].attributes["config"], "B");
    assert!(t2.flaws.is_empty());
    // `idx status` counts the objects each mapping read.
    let mappings: Vec<(String, u64)> = f.status().mappings.into_iter().collect();
    assert_eq!(
        mappings,
        [
            ("coaching".to_string(), 1),
            ("forum".to_string(), 1),
            ("topical".to_string(), 1)
        ]
    );
}

#[test]
fn a_broken_parquet_file_is_a_rejection_not_a_failure_of_the_run() {
    let f = Fixture::new();
    let good = parquet_of(&batch_of("{\"prompt\": \"p\", \"response\": \"r\"}\n"), 10);
    f.write("a/good.parquet", &good);
    f.write("a/truncated.parquet", &good[..good.len() / 2]);
    f.write("a/garbage.arrow", b"not arrow at all");
    let r = f.ingest();
    assert_eq!(r.rows_added, 1);
    assert_eq!(r.rejected_rows, 2, "{:?}", r.rejections);
    assert!(r
        .rejections
        .iter()
        .any(|x| x.key == "a/truncated.parquet" && x.reason.contains("Parquet")));
    assert!(r
        .rejections
        .iter()
        .any(|x| x.key == "a/garbage.arrow" && x.reason.contains("Arrow")));
}

/// Rows a trainer cannot use are kept and queryable, flagged, counted, failing the structure
/// gate above its threshold, and held back from every export file, counted per family.
#[test]
fn structure_checks_flag_count_and_hold_back_unusable_conversations() {
    let f = Fixture::new();
    let good = chat("How do I calm down before a talk?", "Slow breathing helps.");
    let lines = [
        good.clone(),
        // Only the user speaks.
        r#"{"messages": [{"role": "user", "content": "Is anyone there?"}, {"role": "user", "content": "Hello?"}]}"#.to_string(),
        // Ends on the user.
        r#"{"messages": [{"role": "user", "content": "I failed my exam."}, {"role": "assistant", "content": "That hurts. What happened?"}, {"role": "user", "content": "I froze."}]}"#.to_string(),
        // Two assistant turns in a row are merged, not flagged.
        r#"{"messages": [{"role": "user", "content": "I can't focus."}, {"role": "assistant", "content": "Let's look at it."}, {"role": "assistant", "content": "When did it start?"}]}"#.to_string(),
    ];
    f.write("conversations/mixed.jsonl", lines.join("\n"));
    f.ingest();
    let s = f.status();
    assert_eq!(s.totals.unique_rows, 4);
    assert_eq!(s.totals.flawed_rows, 2);
    assert_eq!(s.totals.merged_turns, 2, "one merge in each of two records");
    let hashes = hashes_of(&f.index_dir, "conversations/mixed.jsonl");
    assert_eq!(
        row(&f.index_dir, &hashes[1]).unwrap().flaws,
        ["no_assistant_turn"]
    );
    assert_eq!(
        row(&f.index_dir, &hashes[2]).unwrap().flaws,
        ["ends_on_user"]
    );
    let merged = row(&f.index_dir, &hashes[3]).unwrap();
    assert!(merged.flaws.is_empty());
    assert_eq!(
        merged.messages[1].content,
        "Let's look at it. When did it start?"
    );

    // The gate: 2 of 4 conversations fail (50% > 10%).
    let out = run_idx(&f.index_dir, &["verify", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let family = &v["gates"]["structure"]["families"][0];
    assert_eq!(v["gates"]["structure"]["passed"], false);
    assert_eq!(
        (family["rows"].as_u64(), family["flawed"].as_u64()),
        (Some(4), Some(2))
    );
    assert_eq!(family["checks"]["no_assistant_turn"], 1);
    assert!(!out.status.success());
    let text = run_idx(&f.index_dir, &["verify"]);
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(text.contains("structure: FAIL"), "{text}");

    // The export holds them back and says so per family and check.
    let out_dir = f.index_dir.with_file_name("export");
    let out = run_idx(
        &f.index_dir,
        &[
            "export",
            "--out",
            out_dir.to_str().unwrap(),
            "--allow-failing-gates",
            "--json",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary = json_of(&out);
    assert_eq!(summary["rows"], 2);
    assert_eq!(summary["structure"]["held_back_rows"], 2);
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out_dir.join("manifest.json")).unwrap()).unwrap();
    let by_family = &manifest["structure"]["by_family"];
    let (family, checks) = by_family.as_object().unwrap().iter().next().unwrap();
    assert!(!family.is_empty());
    assert_eq!(checks["no_assistant_turn"], 1);
    assert_eq!(checks["ends_on_user"], 1);
    let compiled = std::fs::read_to_string(out_dir.join("final.chatml.jsonl")).unwrap();
    assert!(!compiled.contains("Is anyone there?"));
    assert!(!compiled.contains("I froze."));
    assert!(compiled.contains("Slow breathing helps."));
}

/// A holdout family whose data is one object: without a session field every row goes to one
/// split and idx says so; with `session` each record is its own group and the rows spread.
#[test]
fn sessions_make_holdout_groups_inside_one_object() {
    let mut f = Fixture::new();
    let sessions: Vec<String> = (0..60)
        .map(|i| {
            format!(
                r#"{{"session": "s{i}", "dialog": [{{"speaker": "seeker", "content": "Session {i}: I have been feeling low for {i} days and cannot explain why."}}, {{"speaker": "supporter", "content": "Thank you for telling me about those {i} days; what changed when it began?"}}]}}"#
            )
        })
        .collect();
    // `edge_cases/` is the holdout family `edge_case_generator` in the shipped families.toml.
    let key = "edge_cases/sessions.json";
    f.write(key, format!("[{}]", sessions.join(",\n")));
    let r = f.ingest();
    assert_eq!(r.rows_added, 60);
    assert!(
        r.warnings
            .iter()
            .any(|w| w.contains("single holdout group") && w.contains("session")),
        "{:?}",
        r.warnings
    );
    let splits_of = |f: &Fixture| -> std::collections::BTreeSet<String> {
        hashes_of(&f.index_dir, key)
            .iter()
            .map(|h| row(&f.index_dir, h).unwrap().split.to_string())
            .collect()
    };
    assert_eq!(splits_of(&f).len(), 1, "one group, one split");

    f.settings.mappings = mappings(
        r#"version = 1
[[mapping]]
name = "sessions"
keys = ["edge_cases/*.json"]
columns = { messages = "dialog" }
tags = { role_tag = "speaker", content_tag = "content" }
session = "session"
"#,
    );
    let r = f.ingest();
    assert!(
        !r.warnings
            .iter()
            .any(|w| w.contains("single holdout group")),
        "{:?}",
        r.warnings
    );
    assert!(
        splits_of(&f).len() > 1,
        "sixty sessions spread over the splits"
    );
    let out = run_idx(&f.index_dir, &["verify", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["gates"]["leakage"]["passed"], true, "{v}");
    assert_eq!(v["gates"]["leakage"]["holdout_groups"], 60);
}
