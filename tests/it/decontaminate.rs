//! Decontamination against benchmark sets: planted benchmark items are found verbatim,
//! re-spaced and inside a longer message, unrelated text is not; the checks follow ingests
//! (only new rows are read) and a changed benchmark set; the export excludes, quarantines or
//! reports, and its manifest records the set.

use std::path::{Path, PathBuf};

use idx::config::ContaminationAction;
use idx::index::Index;
use idx::parse::Limits;
use serde_json::Value;

use super::common::{chat, json_of, run_idx, Fixture};
use super::export::{export_index, options};

const Q1: &str = "Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May. How many clips did Natalia sell altogether in April and May?";
const Q2: &str = "Weng earns 12 dollars an hour for babysitting. Yesterday, she just did 50 minutes of babysitting. How much did she earn for that time?";
const Q3: &str = "Betty is saving money for a new wallet which costs 100 dollars. Betty has only half of the money she needs. Her parents decided to give her 15 dollars for that purpose.";
const SHORT: &str = "What is two plus two?";

fn benchmark(dir: &Path) -> PathBuf {
    let path = dir.join("gsm8k_test.jsonl");
    let mut text = String::new();
    for (q, a) in [(Q1, "72"), (Q2, "10"), (Q3, "5"), (SHORT, "4")] {
        text.push_str(&serde_json::json!({"question": q, "answer": a}).to_string());
        text.push('\n');
    }
    std::fs::write(&path, text).unwrap();
    path
}

/// Three planted rows and two clean ones, in a family folder of the built-in rules.
fn write_rows(f: &Fixture) {
    let respaced = Q2.replace(' ', "   ").replace('.', " .").to_uppercase();
    let rows = [
        chat(Q1, "Let us work through it together."),
        chat(
            "I have a homework question that stresses me out",
            &format!(
                "Here it is, as my teacher wrote it: {respaced} I just freeze when I see these."
            ),
        ),
        chat(
            "Can you help me think about saving?",
            &format!("Sure. For example: {Q3} What would you do?"),
        ),
        chat(
            "I can't sleep before exams",
            "That sounds exhausting. What usually goes through your mind at night?",
        ),
        chat(
            "My friend stopped talking to me",
            "That can hurt a lot. Do you know what changed between you?",
        ),
    ];
    f.write(
        "datasets/gdrive/processed/experimental/rows.jsonl",
        rows.iter().map(|r| r.clone() + "\n").collect::<String>(),
    );
}

fn load(f: &Fixture, bench: &Path, name: &str) -> idx::decontaminate::LoadReport {
    let index = Index::open_write(&f.index_dir).unwrap();
    idx::decontaminate::load(&index, &f.settings, bench, Some(name), Limits::default()).unwrap()
}

fn refresh(f: &Fixture) -> idx::decontaminate::RefreshReport {
    let index = Index::open_write(&f.index_dir).unwrap();
    idx::decontaminate::refresh(&index.store, &f.settings).unwrap()
}

fn answer(f: &Fixture) -> idx::decontaminate::ContaminationAnswer {
    let store = Index::open_store_read(&f.index_dir).unwrap();
    idx::decontaminate::query(&store.read().unwrap(), &f.settings, None, 100).unwrap()
}

#[test]
fn planted_benchmark_items_are_found_and_unrelated_text_is_not() {
    let f = Fixture::new();
    write_rows(&f);
    f.ingest();
    let bench_dir = f.data.parent().unwrap().join("bench");
    std::fs::create_dir_all(&bench_dir).unwrap();
    let loaded = load(&f, &benchmark(&bench_dir), "gsm8k");
    let b = &loaded.benchmark;
    assert_eq!((b.items, b.short_items, b.rejected, b.n), (3, 1, 0, 13));
    assert_eq!(loaded.refresh.checked, 5);
    assert_eq!(loaded.refresh.matched, 3);

    let a = answer(&f);
    assert_eq!((a.rows, a.unchecked), (3, 0));
    assert_eq!(a.rows_by_benchmark["gsm8k"], 3);
    let mut found: Vec<(String, u32, String)> = a
        .matches
        .iter()
        .flat_map(|m| {
            m.hits
                .iter()
                .map(|h| (h.item.clone(), h.message, h.text.clone()))
        })
        .collect();
    found.sort();
    assert_eq!(found.len(), 3, "{found:?}");
    // Item 1 verbatim as the user's message; item 2 re-spaced and upper-cased inside the
    // assistant's; item 3 inside a longer assistant message.
    assert_eq!(found[0].0, "gsm8k_test.jsonl:1");
    assert_eq!(
        (found[0].1, found[0].2.as_str()),
        (0, Q1.trim_end_matches('?'))
    );
    assert_eq!((found[1].0.as_str(), found[1].1), ("gsm8k_test.jsonl:2", 1));
    // Stored text is canonical (whitespace collapsed): the span is the row's own spelling.
    assert!(
        found[1].2.starts_with("WENG EARNS 12 DOLLARS"),
        "{}",
        found[1].2
    );
    assert_eq!((found[2].0.as_str(), found[2].1), ("gsm8k_test.jsonl:3", 1));
    assert_eq!(found[2].2, Q3.trim_end_matches('.'));
    // Shares: the verbatim copy is all benchmark; the embedded ones are part of their row.
    let shares: Vec<f64> = a.matches.iter().map(|m| m.share).collect();
    assert!(
        shares.iter().any(|s| (*s - 1.0).abs() > 1e-9 && *s > 0.3),
        "{shares:?}"
    );
    assert!(a.matches.iter().all(|m| m
        .place
        .as_deref()
        .is_some_and(|p| p.ends_with("rows.jsonl:1")
            || p.ends_with("rows.jsonl:2")
            || p.ends_with("rows.jsonl:3"))));
}

#[test]
fn checks_follow_ingests_and_a_changed_benchmark_set() {
    let f = Fixture::new();
    write_rows(&f);
    f.ingest();
    let bench_dir = f.data.parent().unwrap().join("bench");
    std::fs::create_dir_all(&bench_dir).unwrap();
    let bench = benchmark(&bench_dir);
    load(&f, &bench, "gsm8k");
    // Nothing changed: nothing is read.
    assert_eq!(refresh(&f).checked, 0);
    // A new object: only its rows are read.
    f.write(
        "datasets/gdrive/processed/experimental/more.jsonl",
        chat("Quick question", &format!("{Q2} That was on my test."))
            + "\n"
            + &chat("How do I calm down", "Slow breathing helps many people.")
            + "\n",
    );
    f.ingest();
    let r = refresh(&f);
    assert_eq!((r.checked, r.matched, r.removed), (2, 1, 0));
    assert_eq!(answer(&f).rows, 4);
    // Deleting it drops the checks of its rows.
    f.remove("datasets/gdrive/processed/experimental/more.jsonl");
    f.ingest();
    let r = refresh(&f);
    assert_eq!((r.checked, r.removed), (0, 2));
    assert_eq!(answer(&f).rows, 3);
    // A changed benchmark set re-checks every row; removing it clears every check.
    std::fs::write(
        &bench,
        serde_json::json!({"question": Q1, "answer": "72"}).to_string() + "\n",
    )
    .unwrap();
    let loaded = load(&f, &bench, "gsm8k");
    assert_eq!((loaded.refresh.checked, loaded.refresh.matched), (5, 1));
    let index = Index::open_write(&f.index_dir).unwrap();
    let r = idx::decontaminate::remove(&index, &f.settings, "gsm8k").unwrap();
    drop(index);
    assert_eq!((r.benchmarks, r.removed), (0, 5));
    assert!(answer(&f).benchmarks.is_empty());
}

fn final_hashes(out: &Path) -> Vec<String> {
    std::fs::read_to_string(out.join("final.chatml.jsonl"))
        .unwrap()
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["metadata"]["content_hash"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect()
}

#[test]
fn the_export_excludes_quarantines_or_reports_and_records_the_set() {
    let mut f = Fixture::new();
    write_rows(&f);
    f.ingest();
    let bench_dir = f.data.parent().unwrap().join("bench");
    std::fs::create_dir_all(&bench_dir).unwrap();
    load(&f, &benchmark(&bench_dir), "gsm8k");
    let matched: Vec<String> = answer(&f)
        .matches
        .iter()
        .map(|m| m.content_hash.clone())
        .collect();

    for (action, name) in [
        (ContaminationAction::Exclude, "exclude"),
        (ContaminationAction::Quarantine, "quarantine"),
        (ContaminationAction::Report, "report"),
    ] {
        f.settings.idx.decontamination.action = action;
        let out = f.index_dir.with_file_name(format!("out-{name}"));
        export_index(&f.index_dir, &f.settings, &out, &options());
        let hashes = final_hashes(&out);
        let kept = matched.iter().filter(|h| hashes.contains(h)).count();
        let manifest: Value =
            serde_json::from_str(&std::fs::read_to_string(out.join("manifest.json")).unwrap())
                .unwrap();
        let d = &manifest["decontamination"];
        assert_eq!(d["action"], name);
        assert_eq!(d["rows_matched"], 3);
        assert_eq!(d["benchmarks"][0]["name"], "gsm8k");
        assert_eq!(d["benchmarks"][0]["items"], 3);
        let quarantine = out.join("quarantine/contaminated.chatml.jsonl");
        match action {
            ContaminationAction::Report => {
                assert_eq!(kept, 3);
                assert_eq!(d["rows_removed"], 0);
                assert!(!quarantine.exists());
            }
            ContaminationAction::Exclude => {
                assert_eq!((kept, hashes.len()), (0, 2));
                assert_eq!(d["benchmarks"][0]["rows_removed"], 3);
                assert!(!quarantine.exists());
            }
            ContaminationAction::Quarantine => {
                assert_eq!(kept, 0);
                assert_eq!(
                    std::fs::read_to_string(&quarantine)
                        .unwrap()
                        .lines()
                        .count(),
                    3
                );
                assert_eq!(d["quarantine_file"], "quarantine/contaminated.chatml.jsonl");
                assert!(manifest["files"]
                    .to_string()
                    .contains("quarantine/contaminated.chatml.jsonl"));
            }
        }
        // The export checks out, quarantine file included.
        let check = idx::export::verify_export(&out.join("manifest.json"), None).unwrap();
        assert!(check.passed, "{check:?}");
    }

    // Rows ingested and not yet checked: the export refuses rather than leak them.
    f.write(
        "datasets/gdrive/processed/experimental/late.jsonl",
        chat("Late question", &format!("{Q1} Help?")) + "\n",
    );
    f.ingest();
    let store = Index::open_store_read(&f.index_dir).unwrap();
    let err = idx::export::export(
        &store.read().unwrap(),
        &f.settings,
        &idx::curriculum::Curriculum::load(None).unwrap(),
        &f.index_dir.with_file_name("out-late"),
        &options(),
        &mut |_| {},
    )
    .unwrap_err();
    assert!(
        err.to_string().contains("1 rows have not been checked"),
        "{err}"
    );
}

#[test]
fn the_cli_loads_lists_and_checks_its_own_splits() {
    let f = Fixture::new();
    write_rows(&f);
    let bench_dir = f.data.parent().unwrap().join("bench");
    std::fs::create_dir_all(&bench_dir).unwrap();
    let bench = benchmark(&bench_dir);
    let data = f.data.to_str().unwrap();
    assert!(run_idx(&f.index_dir, &["ingest", data]).status.success());
    let out = run_idx(
        &f.index_dir,
        &[
            "decontaminate",
            "--against",
            bench.to_str().unwrap(),
            "--name",
            "gsm8k",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("benchmark gsm8k: 3 items (1 too short"),
        "{text}"
    );
    assert!(
        text.contains("3 rows match a benchmark; the export will exclude them"),
        "{text}"
    );
    // New rows are checked by the ingest itself.
    std::fs::write(
        f.data
            .join("datasets/gdrive/processed/experimental/more.jsonl"),
        chat("Quick question", &format!("{Q2} Thoughts?")) + "\n",
    )
    .unwrap();
    let out = run_idx(&f.index_dir, &["--json", "ingest", data]);
    let j = json_of(&out);
    assert_eq!(j["decontamination"]["checked"], 1);
    assert_eq!(j["decontamination"]["matched"], 1);
    let j = json_of(&run_idx(
        &f.index_dir,
        &["--json", "query", "contamination", "--benchmark", "gsm8k"],
    ));
    assert_eq!(j["rows"], 4);
    assert_eq!(j["matches"].as_array().unwrap().len(), 4);
    // An unknown benchmark is an error naming it.
    let out = run_idx(
        &f.index_dir,
        &["query", "contamination", "--benchmark", "mmlu"],
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no benchmark named `mmlu`"));
    // The index's own splits at n-gram level.
    let j = json_of(&run_idx(
        &f.index_dir,
        &["--json", "decontaminate", "--splits"],
    ));
    assert!(j["splits"]["train_rows"].as_u64().unwrap() > 0);
    assert_eq!(j["splits"]["ngram"], 13);
}
