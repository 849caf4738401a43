//! Derived datasets (issue 15): preference pairs from ranked answers and from KTO labels, made
//! by the recipes, indexed as rows of their family, linked to their inputs (same split),
//! traceable through `query hash`, incremental and independent of the order inputs arrived in.

use std::collections::BTreeMap;

use super::common::*;
use idx::derive::{self, Recipes};
use idx::index::Index;
use idx::source::derived::DERIVED_SOURCE;

/// A CSV in counsel-chat's shape: (question id, question, answer, upvotes) rows.
fn forum(rows: &[(u32, &str, &str, u32)]) -> String {
    let mut s = String::from("questionID,questionTitle,questionText,answerText,topic,upvotes\n");
    for (id, q, a, up) in rows {
        s.push_str(&format!(
            "{id},\"{q}\",\"Please help.\",\"{a}\",sleep,{up}\n"
        ));
    }
    s
}

const ANSWERS: &[(u32, &str, &str, u32)] = &[
    (
        1,
        "I cannot sleep at night",
        "Keep a wind-down routine and a regular wake time every day of the week.",
        9,
    ),
    (
        1,
        "I cannot sleep at night",
        "Try to notice what thoughts keep you awake and write them down before bed.",
        4,
    ),
    (
        1,
        "I cannot sleep at night",
        "Sleep is overrated, just drink more coffee in the morning and push through.",
        0,
    ),
    (
        1,
        "I cannot sleep at night",
        "Talk to your doctor about whether anything medical could be behind this for you.",
        8,
    ),
    (
        2,
        "My friend ignores my messages",
        "It can hurt when someone goes quiet; ask them kindly whether everything is all right.",
        3,
    ),
    (
        2,
        "My friend ignores my messages",
        "Ignore them back and see how they like it, that will teach them a lesson.",
        1,
    ),
    (
        3,
        "Is it normal to feel numb",
        "Feeling numb after a loss is common and tends to ease as you let yourself grieve.",
        2,
    ),
];

/// A KTO line: prompt, completion and desirability label.
fn kto(prompt: &str, completion: &str, label: bool) -> String {
    serde_json::json!({"prompt": prompt, "completion": completion, "label": label}).to_string()
        + "\n"
}

fn derived_rows(index_dir: &std::path::Path) -> Vec<idx::query::RowAnswer> {
    let store = Index::open_store_read(index_dir).unwrap();
    let view = store.read().unwrap();
    let mut out = Vec::new();
    for o in view.objects_under(DERIVED_SOURCE).unwrap() {
        for a in idx::query::source(&view, &format!("{DERIVED_SOURCE}/{}", o.key)).unwrap() {
            for r in a.rows {
                out.push(row(index_dir, &r.content_hash).unwrap());
            }
        }
    }
    out.sort_by(|a, b| a.content_hash.cmp(&b.content_hash));
    out
}

fn run(f: &Fixture, index_dir: &std::path::Path) -> derive::DeriveReport {
    let mut index = Index::open_write(index_dir).unwrap();
    derive::run(&mut index, &f.settings, None, &f.options).unwrap()
}

#[test]
fn ranked_answers_become_pairs_linked_to_their_inputs() {
    let f = Fixture::new();
    f.write("forum/counsel_chat_sleep.csv", forum(ANSWERS));
    f.ingest();
    let report = run(&f, &f.index_dir);
    let pairs = &report.recipes[0];
    assert_eq!(pairs.name, "counsel-chat-pairs");
    assert_eq!(pairs.inputs, 7);
    // Question 1: the 9-upvote answer against 0, 4 and 8 (one below at least): 3 pairs; question
    // 2: 3 against 1; question 3 has one answer.
    assert_eq!((pairs.rows, pairs.groups), (4, 2));
    assert_eq!(pairs.skipped["group without a pair"], 1);

    let rows = derived_rows(&f.index_dir);
    assert_eq!(rows.len(), 4);
    let by_rejected: BTreeMap<String, &idx::query::RowAnswer> = rows
        .iter()
        .map(|r| (r.rejected.as_ref().unwrap()[0].content.clone(), r))
        .collect();
    let coffee = by_rejected
        .keys()
        .find(|k| k.contains("coffee"))
        .expect("the 0-upvote answer is rejected");
    let pair = by_rejected[coffee];
    assert!(
        pair.messages[1].content.contains("wind-down"),
        "chosen: the 9-upvote answer"
    );
    assert_eq!(pair.family, "dpo_preference");
    assert_eq!(pair.kind, "preference");
    // Traceable: the recipe and both inputs with their places.
    assert_eq!(pair.sources[0].source, DERIVED_SOURCE);
    assert_eq!(pair.sources[0].attributes["recipe"], "counsel-chat-pairs");
    assert_eq!(pair.derived_from.len(), 2);
    for input in &pair.derived_from {
        assert_eq!(input.sources[0].key, "forum/counsel_chat_sleep.csv");
        // Linked: a derived row is in its inputs' cluster, so in their split.
        let i = row(&f.index_dir, &input.content_hash).unwrap();
        assert_eq!(
            (i.cluster.as_str(), i.split),
            (pair.cluster.as_str(), pair.split)
        );
    }
    // Every pair of question 1 and all its answers share one cluster.
    let q1: Vec<_> = rows
        .iter()
        .filter(|r| r.messages[0].content.contains("sleep"))
        .collect();
    assert_eq!(q1.len(), 3);
    assert!(q1.iter().all(|r| r.cluster == q1[0].cluster));
    // The gates agree with the stored clusters, and the index is whole.
    let store = Index::open_store_read(&f.index_dir).unwrap();
    let v = idx::verify::verify(&store.read().unwrap(), &f.settings, None).unwrap();
    assert!(v.gates.leakage.passed, "{:?}", v.gates.leakage);
    assert_eq!(v.gates.leakage.disagreements, 0);
    // Counted in their family, marked as derived.
    let family = v
        .gates
        .coverage
        .families
        .iter()
        .find(|x| x.family == "dpo_preference")
        .unwrap();
    assert_eq!((family.rows, family.derived_rows), (4, 4));
    // A second run changes nothing.
    let again = run(&f, &f.index_dir);
    assert_eq!((again.files_written, again.files_removed), (0, 0));
    let i = again.ingest.unwrap();
    assert_eq!((i.rows_added, i.rows_removed), (0, 0));
}

#[test]
fn derived_rows_follow_their_inputs_and_not_the_order_they_came_in() {
    let f = Fixture::new();
    // One index: everything at once.
    f.write("forum/counsel_chat_sleep.csv", forum(ANSWERS));
    f.ingest();
    run(&f, &f.index_dir);
    let whole = derived_rows(&f.index_dir);

    // Another: questions arriving in two objects, a wrong answer first, derive in between.
    let other = f.with_index("other");
    let g = Fixture::new();
    let (q1, rest): (Vec<_>, Vec<_>) = ANSWERS.iter().copied().partition(|a| a.0 == 1);
    g.write("forum/counsel_chat_sleep.csv", forum(&rest));
    g.ingest_into(&other, [&g.data]);
    run(&g, &other);
    let mut wrong = q1.clone();
    wrong[0].3 = 1; // the best answer's upvotes, mistyped at first
    g.write(
        "forum/counsel_chat_sleep.csv",
        forum(&[rest.clone(), wrong].concat()),
    );
    g.ingest_into(&other, [&g.data]);
    run(&g, &other);
    // Corrected: the file as the first index has it.
    g.write("forum/counsel_chat_sleep.csv", forum(ANSWERS));
    g.ingest_into(&other, [&g.data]);
    run(&g, &other);
    let stepwise = derived_rows(&other);
    let key = |rows: &[idx::query::RowAnswer]| -> Vec<(String, idx::neardup::Split, String)> {
        rows.iter()
            .map(|r| (r.content_hash.clone(), r.split, r.cluster.clone()))
            .collect()
    };
    assert_eq!(key(&whole), key(&stepwise));

    // An input gone: the rows made from it go with it.
    g.write(
        "forum/counsel_chat_sleep.csv",
        forum(
            &ANSWERS
                .iter()
                .copied()
                .filter(|a| !a.2.contains("coffee"))
                .collect::<Vec<_>>(),
        ),
    );
    g.ingest_into(&other, [&g.data]);
    run(&g, &other);
    let after = derived_rows(&other);
    assert_eq!(after.len(), 3);
    assert!(after
        .iter()
        .all(|r| !r.rejected.as_ref().unwrap()[0].content.contains("coffee")));
    // The whole source gone: no derived row is left.
    g.remove("forum/counsel_chat_sleep.csv");
    g.ingest_into(&other, [&g.data]);
    run(&g, &other);
    assert!(derived_rows(&other).is_empty());
    assert_eq!(status_of(&other).totals.rows, 0);
}

#[test]
fn opposite_labels_on_one_prompt_become_pairs() {
    let f = Fixture::new();
    f.write(
        "datasets/huggingface/dpo_kto/labels.jsonl",
        [
            kto(
                "Everything is too much today.",
                "That sounds heavy. What is weighing on you most?",
                true,
            ),
            kto("Everything is too much today.", "Just get over it.", false),
            kto(
                "Everything is too much today.",
                "Stop complaining, others have it worse.",
                false,
            ),
            kto(
                "I got the job!",
                "Congratulations, how are you feeling about it?",
                true,
            ),
        ]
        .concat(),
    );
    f.ingest();
    let report = run(&f, &f.index_dir);
    let labels = report
        .recipes
        .iter()
        .find(|r| r.name == "kto-label-pairs")
        .unwrap();
    assert_eq!((labels.inputs, labels.rows, labels.groups), (4, 2, 1));
    assert_eq!(labels.skipped["prompt without both labels"], 1);
    let rows = derived_rows(&f.index_dir);
    assert_eq!(rows.len(), 2);
    for r in &rows {
        assert_eq!(r.label, None);
        assert!(r.messages[1].content.starts_with("That sounds heavy"));
        assert_eq!(r.derived_from.len(), 2);
    }
}

#[test]
fn recipes_come_from_the_config_and_a_removed_recipe_takes_its_rows() {
    let mut f = Fixture::new();
    f.write("forum/counsel_chat_sleep.csv", forum(ANSWERS));
    f.ingest();
    run(&f, &f.index_dir);
    assert_eq!(derived_rows(&f.index_dir).len(), 4);
    // A tighter margin, then no recipe at all.
    let toml = |margin: u32| {
        format!(
            "[[derive]]\nname = \"counsel-chat-pairs\"\nkind = \"rank_pairs\"\nfamily = \"dpo_preference\"\n\
             select = {{ mappings = [\"counsel-chat\"] }}\ngroup_by = \"questionID\"\nscore = \"upvotes\"\nmargin = {margin}\n"
        )
    };
    f.settings.recipes = Recipes::from_toml(&toml(5), "t.toml").unwrap();
    run(&f, &f.index_dir);
    // Only 9 vs 4 and 9 vs 0 keep a margin of 5.
    assert_eq!(derived_rows(&f.index_dir).len(), 2);
    f.settings.recipes = Recipes::from_toml("", "empty.toml").unwrap();
    let r = run(&f, &f.index_dir);
    assert_eq!(r.files_removed, 1);
    assert!(derived_rows(&f.index_dir).is_empty());
    // Naming a recipe that does not exist is an error that lists the recipes.
    let mut index = Index::open_write(&f.index_dir).unwrap();
    let err = derive::run(&mut index, &f.settings, Some("nope"), &f.options).unwrap_err();
    assert!(err.to_string().contains("no recipe `nope`"), "{err}");
}

#[test]
fn the_cli_derives_after_ingest_and_by_hand() {
    let f = Fixture::new();
    f.write("forum/counsel_chat_sleep.csv", forum(ANSWERS));
    let data = f.data.to_str().unwrap();
    let out = run_idx(&f.index_dir, &["--json", "ingest", data]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let j = json_of(&out);
    assert_eq!(j["derive"]["recipes"][0]["rows"], 4);
    assert_eq!(j["derive"]["ingest"]["rows_added"], 4);
    let out = run_idx(&f.index_dir, &["derive", "--recipe", "counsel-chat-pairs"]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("derive counsel-chat-pairs: 7 input rows, 4 rows made in 2 groups"),
        "{text}"
    );
    let out = run_idx(&f.index_dir, &["--json", "ingest", "--no-derive", data]);
    assert!(json_of(&out).get("derive").is_none());
}

/// The example generator, copied where a test may change it, and a recipe running it on the
/// edge-case scenarios (`edge_case_synthetic`) to make `edge_case_resulting_chats` rows.
fn generator_recipe(f: &Fixture, extra: &str) -> (std::path::PathBuf, Recipes) {
    let script = f.data.with_file_name("resulting_chat.py");
    std::fs::copy(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("examples/generators/resulting_chat.py"),
        &script,
    )
    .unwrap();
    let toml = format!(
        "[[derive]]\nname = \"resulting-chats\"\nkind = \"generate\"\nfamily = \"edge_case_resulting_chats\"\n\
         select = {{ families = [\"edge_case_synthetic\"] }}\ncommand = [\"python3\", {:?}]\ntimeout_seconds = 60\n{extra}",
        script.to_str().unwrap()
    );
    (script, Recipes::from_toml(&toml, "t.toml").unwrap())
}

fn scenarios(lines: &[&str]) -> String {
    lines
        .iter()
        .map(|s| serde_json::json!({"prompt": s, "response": "(scenario)"}).to_string() + "\n")
        .collect()
}

#[test]
fn a_generator_is_sent_each_row_once_and_again_when_it_changes() {
    let mut f = Fixture::new();
    let (script, recipes) = generator_recipe(&f, "");
    f.settings.recipes = recipes;
    f.write(
        "edge_cases/synthetic_scenarios.jsonl",
        scenarios(&[
            "I don't see the point in anything anymore.",
            "My heart racing at night and I can't breathe.",
            "My new job starts on Monday.",
        ]),
    );
    f.ingest();
    let r = run(&f, &f.index_dir);
    let g = &r.recipes[0];
    assert!(g.failures.is_empty(), "{:?}", g.failures);
    assert_eq!((g.inputs, g.sent, g.cached, g.rows), (3, 3, 0, 3));
    let rows = derived_rows(&f.index_dir);
    assert_eq!(rows.len(), 3);
    for r in &rows {
        assert_eq!(r.family, "edge_case_resulting_chats");
        assert_eq!(r.messages.len(), 4, "a four-turn resulting chat");
        assert_eq!(r.derived_from.len(), 1);
        assert!(r.sources[0].attributes["generator"].is_string());
        let input = row(&f.index_dir, &r.derived_from[0].content_hash).unwrap();
        assert_eq!(input.messages[0].content, r.messages[0].content);
        assert_eq!(
            (input.cluster.as_str(), input.split),
            (r.cluster.as_str(), r.split)
        );
    }
    let crisis = rows
        .iter()
        .find(|r| r.messages[0].content.contains("point"))
        .unwrap();
    assert!(crisis.messages[1].content.contains("safe"));
    // A re-run sends nothing.
    let r = run(&f, &f.index_dir);
    assert_eq!((r.recipes[0].sent, r.recipes[0].cached), (0, 3));
    assert_eq!(r.files_written, 0);
    // A new input row sends one row.
    f.write(
        "edge_cases/synthetic_more.jsonl",
        scenarios(&["Everything is too much and I'm exhausted."]),
    );
    f.ingest();
    let r = run(&f, &f.index_dir);
    assert_eq!((r.recipes[0].sent, r.recipes[0].cached), (1, 3));
    assert_eq!(derived_rows(&f.index_dir).len(), 4);
    // A changed generator regenerates everything, and its old objects go.
    let mut text = std::fs::read_to_string(&script).unwrap();
    text = text.replace(
        "I don't really know what to do.",
        "I'm not sure where to start.",
    );
    std::fs::write(&script, text).unwrap();
    let r = run(&f, &f.index_dir);
    assert_eq!((r.recipes[0].sent, r.recipes[0].cached), (4, 0));
    assert_eq!(r.files_removed, 4);
    let rows = derived_rows(&f.index_dir);
    assert_eq!(rows.len(), 4);
    assert!(rows
        .iter()
        .all(|r| r.messages[2].content == "I'm not sure where to start."));
}

#[test]
fn a_failing_or_hanging_generator_is_recorded_and_blocks_nothing() {
    let mut f = Fixture::new();
    f.write(
        "edge_cases/synthetic_scenarios.jsonl",
        scenarios(&["I can't cope with exams."]),
    );
    f.write("forum/counsel_chat_sleep.csv", forum(ANSWERS));
    f.ingest();
    let recipe = |name: &str, command: &str, timeout: u32| {
        format!(
            "[[derive]]\nname = \"{name}\"\nkind = \"generate\"\nfamily = \"edge_case_resulting_chats\"\n\
             select = {{ families = [\"edge_case_synthetic\"] }}\ncommand = {command}\ntimeout_seconds = {timeout}\n"
        )
    };
    let pairs = "[[derive]]\nname = \"pairs\"\nkind = \"rank_pairs\"\nfamily = \"dpo_preference\"\n\
                 select = { mappings = [\"counsel-chat\"] }\ngroup_by = \"questionID\"\nscore = \"upvotes\"\n";
    let toml = [
        recipe(
            "broken",
            r#"["sh", "-c", "echo model unavailable >&2; exit 3"]"#,
            30,
        ),
        recipe("hangs", r#"["sleep", "30"]"#, 1),
        recipe(
            "garbled",
            r#"["sh", "-c", "echo 'not json'; echo '{\"input\": \"00\"}'"]"#,
            30,
        ),
        pairs.to_string(),
    ]
    .concat();
    f.settings.recipes = Recipes::from_toml(&toml, "t.toml").unwrap();
    let started = std::time::Instant::now();
    let r = run(&f, &f.index_dir);
    assert!(started.elapsed() < std::time::Duration::from_secs(20));
    let by: BTreeMap<&str, &derive::RecipeReport> =
        r.recipes.iter().map(|x| (x.name.as_str(), x)).collect();
    assert!(
        by["broken"].failures[0].contains("model unavailable"),
        "{:?}",
        by["broken"].failures
    );
    assert!(
        by["hangs"].failures[0].contains("timed out after 1 s"),
        "{:?}",
        by["hangs"].failures
    );
    assert_eq!(by["garbled"].skipped["unreadable generator output"], 2);
    assert!(
        by["garbled"].failures[0].contains("invalid JSON"),
        "{:?}",
        by["garbled"].failures
    );
    // The other recipe went on.
    assert_eq!(by["pairs"].rows, 4);
    assert_eq!(derived_rows(&f.index_dir).len(), 4);
    // Fixed, the broken generator's input is sent again.
    let (_, working) = generator_recipe(&f, "");
    f.settings.recipes = working;
    let r = run(&f, &f.index_dir);
    assert_eq!((r.recipes[0].sent, r.recipes[0].rows), (1, 1));
}

#[test]
fn an_export_traces_derived_rows_to_their_recipe_and_inputs() {
    let f = Fixture::new();
    f.write("forum/counsel_chat_sleep.csv", forum(ANSWERS));
    let data = f.data.to_str().unwrap();
    assert!(run_idx(&f.index_dir, &["ingest", data]).status.success());
    let out = f.index_dir.with_file_name("export");
    let export = run_idx(
        &f.index_dir,
        &[
            "export",
            "--out",
            out.to_str().unwrap(),
            "--allow-failing-gates",
        ],
    );
    assert!(
        export.status.success(),
        "{}",
        String::from_utf8_lossy(&export.stderr)
    );
    let provenance = std::fs::read_to_string(out.join("provenance.jsonl")).unwrap();
    let derived: Vec<serde_json::Value> = provenance
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|l| l["sources"][0]["source"] == DERIVED_SOURCE)
        .collect();
    assert_eq!(derived.len(), 4);
    for line in &derived {
        assert_eq!(line["family"], "dpo_preference");
        let attributes: serde_json::Value =
            serde_json::from_str(line["sources"][0]["attributes"].as_str().unwrap()).unwrap();
        assert_eq!(attributes["recipe"], "counsel-chat-pairs");
        let inputs = attributes["inputs"].as_array().unwrap();
        assert_eq!(inputs.len(), 2);
        // The inputs are rows of the same export, in the same split.
        for input in inputs {
            let input_line = provenance
                .lines()
                .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
                .find(|l| &l["content_hash"] == input)
                .expect("the input row is exported too");
            assert_eq!(input_line["split"], line["split"]);
        }
    }
    // The pairs are in the export's preference lines, with their rejected answer.
    let lines = std::fs::read_to_string(out.join("final.chatml.jsonl")).unwrap();
    let pairs = lines
        .lines()
        .filter(|l| l.contains("\"source_family\":\"dpo_preference\""))
        .count();
    assert_eq!(pairs, 4);
    // Every answer still feeds SFT: a pair does not stand for the conversation it was made from.
    let answers = lines
        .lines()
        .filter(|l| l.contains("\"phase\":\"sft\""))
        .count();
    assert_eq!(answers, ANSWERS.len());
}

#[test]
fn a_full_text_query_selects_a_recipes_rows() {
    let mut f = Fixture::new();
    let (_, recipes) = generator_recipe(&f, "");
    let mut recipe = recipes.derive[0].clone();
    recipe.select.query = Some("breathe OR exhausted".to_string());
    f.settings.recipes = Recipes {
        derive: vec![recipe],
    };
    f.write(
        "edge_cases/synthetic_scenarios.jsonl",
        scenarios(&[
            "I don't see the point in anything anymore.",
            "My heart racing at night and I can't breathe.",
            "Everything is too much and I'm exhausted.",
        ]),
    );
    f.ingest();
    let r = run(&f, &f.index_dir);
    assert_eq!((r.recipes[0].inputs, r.recipes[0].rows), (2, 2));
    let rows = derived_rows(&f.index_dir);
    assert!(rows
        .iter()
        .all(|r| !r.messages[0].content.contains("point")));
}

/// The content classes of an object's places as the index keeps them, and what `idx check`
/// says of them.
fn classes_of(index_dir: &std::path::Path, key: &str) -> (u8, bool) {
    let store = Index::open_store_read(index_dir).unwrap();
    let view = store.read().unwrap();
    let id = view
        .objects()
        .unwrap()
        .iter()
        .find(|o| o.key == key)
        .map_or_else(String::new, |o| {
            idx::store::keys::object_id(&o.source, &o.key)
        });
    let check = idx::check::check(&view, &idx::config::Settings::builtin(), None).unwrap();
    (view.object_classes(&id).unwrap(), check.passed)
}

#[test]
fn a_selection_by_kind_reads_only_objects_holding_that_kind_as_they_change() {
    use idx::model::RecordKind;
    let f = Fixture::new();
    let labels = "datasets/huggingface/dpo_kto/labels.jsonl";
    let chats = "datasets/consolidated/chats.jsonl";
    let pair = [
        kto(
            "I feel stuck.",
            "What does stuck feel like for you today?",
            true,
        ),
        kto("I feel stuck.", "Everyone feels that way, move on.", false),
    ]
    .concat();
    f.write(labels, &pair);
    f.write(
        chats,
        chat("I slept badly again.", "That is hard. What kept you up?") + "\n",
    );
    f.ingest();
    assert_eq!(
        classes_of(&f.index_dir, labels),
        (RecordKind::Kto.class_bit(), true)
    );
    assert_eq!(
        classes_of(&f.index_dir, chats),
        (RecordKind::Chatml.class_bit(), true)
    );
    // The same conversation as ShareGPT: one stored spelling (whose head says ChatML) for two
    // kinds of one class, and the check agrees with what the writer kept.
    let share = "datasets/consolidated/share.jsonl";
    f.write(
        share,
        serde_json::json!({"conversations": [
            {"from": "human", "value": "I slept badly again."},
            {"from": "gpt", "value": "That is hard. What kept you up?"}
        ]})
        .to_string()
            + "\n",
    );
    f.ingest();
    assert_eq!(
        classes_of(&f.index_dir, share),
        (RecordKind::Sharegpt.class_bit(), true)
    );
    let inputs = |r: &derive::DeriveReport| {
        r.recipes
            .iter()
            .find(|r| r.name == "kto-label-pairs")
            .unwrap()
            .inputs
    };
    assert_eq!(inputs(&run(&f, &f.index_dir)), 2);

    // The chat file gains labelled rows: its kinds follow, and the recipe reads them.
    f.write(
        chats,
        chat("I slept badly again.", "That is hard. What kept you up?")
            + "\n"
            + &kto(
                "Work is too much.",
                "That sounds like a lot. What part weighs most?",
                true,
            ),
    );
    f.ingest();
    assert_eq!(
        classes_of(&f.index_dir, chats),
        (
            RecordKind::Chatml.class_bit() | RecordKind::Kto.class_bit(),
            true
        )
    );
    assert_eq!(inputs(&run(&f, &f.index_dir)), 3);

    // The labels file becomes plain chat; then it goes.
    f.write(labels, chat("Hello.", "Hi, how are you today?") + "\n");
    f.ingest();
    assert_eq!(
        classes_of(&f.index_dir, labels),
        (RecordKind::Chatml.class_bit(), true)
    );
    assert_eq!(inputs(&run(&f, &f.index_dir)), 1);
    f.remove(labels);
    f.ingest();
    assert_eq!(classes_of(&f.index_dir, labels), (0, true));
}
