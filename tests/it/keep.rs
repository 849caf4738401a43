//! Redundant objects and the kept copy: the overlap of a consolidated file with the files it
//! repeats, redundant places not counting toward families or coverage, and each keep policy
//! choosing the same representative and primary place whatever the ingest order.

use std::path::Path;

use idx::config::{IdxConfig, Settings};
use idx::families::Classifier;
use idx::index::Index;
use idx::keep::KeepPolicy;
use serde_json::Value;

use super::clusters::{base, edited};
use super::common::{chat, run_idx, Fixture};
use super::export::{export_index, files, options};

const FAMILIES: &str = r#"
version = 1
[[family]]
name = "curated"
required = true
[[family]]
name = "consolidated"
required = true
[[rule]]
family = "curated"
globs = ["**/priority_*.jsonl"]
[[rule]]
family = "consolidated"
globs = ["**/all_unified.jsonl"]
"#;

fn settings(objects: &str) -> Settings {
    Settings {
        classifier: Classifier::from_toml(FAMILIES, "families.toml").unwrap(),
        idx: IdxConfig::from_toml(&format!("version = 1\n[objects]\n{objects}"), "idx.toml")
            .unwrap(),
        mappings: idx::parse::Mappings::builtin(),
        recipes: idx::derive::Recipes::builtin(),
    }
}

/// priority_1 holds A and a long X, priority_2 holds B and X' (a shorter near-duplicate of X);
/// all_unified repeats A, B and X, and has E of its own.
fn write(f: &Fixture, parked: Option<&str>) {
    let (a, b) = (base(1).line(), base(2).line());
    let x = base(3);
    // X without its last two words: fewer tokens, the same text otherwise.
    let mut shorter = edited(&x, 0, 7, 6);
    let words: Vec<&str> = x.assistant.split(' ').collect();
    shorter.assistant = words[..words.len() - 2].join(" ");
    let x_short = shorter.line();
    let e = chat(
        "Something only the unified file has",
        "And it is kept under its family.",
    );
    let files = [
        ("data/priority_1.jsonl", format!("{a}\n{}\n", x.line())),
        ("data/priority_2.jsonl", format!("{b}\n{x_short}\n")),
        (
            "data/all_unified.jsonl",
            format!("{a}\n{b}\n{}\n{e}\n", x.line()),
        ),
    ];
    for (path, text) in files {
        let target = if Some(path) == parked {
            format!(".parked/{path}")
        } else {
            path.to_string()
        };
        f.write(&target, text);
    }
}

fn verify(f: &Fixture) -> idx::verify::Verification {
    let store = Index::open_store_read(&f.index_dir).unwrap();
    idx::verify::verify(&store.read().unwrap(), &f.settings, None).unwrap()
}

#[test]
fn the_overlap_of_a_consolidated_file_shows_what_it_repeats() {
    let mut f = Fixture::new();
    f.settings = settings("");
    write(&f, None);
    f.ingest();
    let store = Index::open_store_read(&f.index_dir).unwrap();
    let view = store.read().unwrap();
    let all = idx::overlap::overlap(&view, None, &|_| false).unwrap();
    let unified = all
        .iter()
        .find(|o| o.key == "data/all_unified.jsonl")
        .unwrap();
    assert_eq!((unified.rows, unified.shared_rows), (4, 3));
    assert!(!unified.contained);
    let p1 = all
        .iter()
        .find(|o| o.key == "data/priority_1.jsonl")
        .unwrap();
    assert!(p1.contained && (p1.share - 1.0).abs() < 1e-9);
    assert_eq!(p1.others[0].key, "data/all_unified.jsonl");
    assert_eq!(p1.others[0].rows, 2);
    assert!((p1.others[0].share_of_other - 0.5).abs() < 1e-9);
    // priority_2's near-duplicate of X is not X: one of its two rows is elsewhere.
    let p2 = all
        .iter()
        .find(|o| o.key == "data/priority_2.jsonl")
        .unwrap();
    assert_eq!((p2.shared_rows, p2.contained), (1, false));
    // One object by key; an unknown key is an error naming it.
    assert_eq!(
        idx::overlap::overlap(&view, Some("data/priority_1.jsonl"), &|_| false)
            .unwrap()
            .len(),
        1
    );
    assert!(idx::overlap::overlap(&view, Some("nope.jsonl"), &|_| false)
        .unwrap_err()
        .to_string()
        .contains("nope.jsonl"));
    drop(view);
    // verify lists the contained object and says what to do.
    let v = verify(&f);
    assert_eq!(v.report.contained_objects.len(), 1);
    assert_eq!(v.report.contained_objects[0].key, "data/priority_1.jsonl");
    assert!(v
        .warnings
        .iter()
        .any(|w| w.contains("data/priority_1.jsonl holds no row of its own")));
    // The CLI.
    let out = run_idx(
        &f.index_dir,
        &["--json", "query", "overlap", "--min-share", "0.9"],
    );
    let j: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(j.as_array().unwrap().len(), 1);
    assert_eq!(j[0]["key"], "data/priority_1.jsonl");
}

#[test]
fn redundant_places_do_not_count_toward_families_or_give_a_primary_family() {
    let mut f = Fixture::new();
    f.settings = settings("");
    write(&f, None);
    f.ingest();
    // Without `redundant`: all_unified sorts first, so A, B and X are `consolidated` rows.
    let v = verify(&f);
    assert_eq!(v.report.by_family["consolidated"].rows, 4);
    let family = |v: &idx::verify::Verification, name: &str| {
        v.gates
            .coverage
            .families
            .iter()
            .find(|c| c.family == name)
            .unwrap()
            .clone()
    };
    assert_eq!(family(&v, "consolidated").rows, 4);

    f.settings = settings(r#"redundant = ["**/all_unified.jsonl"]"#);
    let v = verify(&f);
    // Only E (in no other object) stays consolidated; A, B, X count as curated.
    assert_eq!(v.report.by_family["consolidated"].rows, 1);
    assert_eq!(v.report.by_family["curated"].rows, 4);
    assert_eq!(family(&v, "consolidated").rows, 1);
    assert_eq!(family(&v, "curated").rows, 4);
    assert!(v
        .report
        .contained_objects
        .iter()
        .all(|c| c.key != "data/all_unified.jsonl"));
    // The export follows: lines name the primary family and key of a counted place.
    let out = f.index_dir.with_file_name("out");
    export_index(&f.index_dir, &f.settings, &out, &options());
    for line in std::fs::read_to_string(out.join("final.chatml.jsonl"))
        .unwrap()
        .lines()
    {
        let l: Value = serde_json::from_str(line).unwrap();
        let (family, key) = (
            &l["metadata"]["source_family"],
            &l["metadata"]["source_key"],
        );
        if key == "data/all_unified.jsonl" {
            assert_eq!(family, "consolidated", "{line}");
        } else {
            assert_eq!(family, "curated", "{line}");
        }
    }
}

/// The representative of {X, X'} and the primary place of A under each policy.
fn chosen(f: &Fixture) -> (String, String) {
    let out = f
        .index_dir
        .with_file_name(format!("out-{}", f.settings.idx.objects.keep.as_str()));
    export_index(&f.index_dir, &f.settings, &out, &options());
    let lines: Vec<Value> = std::fs::read_to_string(out.join("final.chatml.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let x = lines
        .iter()
        .find(|l| l["metadata"]["near_duplicates"] == 1)
        .expect("one collapsed pair");
    let a_text = base(1).user;
    let a = lines
        .iter()
        .find(|l| l["messages"][0]["content"] == a_text.as_str())
        .unwrap();
    (
        x["metadata"]["source_key"].as_str().unwrap().to_string(),
        a["metadata"]["source_key"].as_str().unwrap().to_string(),
    )
}

#[test]
fn each_keep_policy_chooses_the_same_copy_whatever_the_ingest_order() {
    let mut f = Fixture::new();
    write(&f, None);
    let priority = r#"priority = ["**/priority_2.jsonl", "**/priority_1.jsonl"]"#;
    for (policy, want_x, want_a) in [
        // The longest X (in priority_1 and all_unified; first place by key: all_unified).
        (
            KeepPolicy::Longest,
            "data/all_unified.jsonl",
            "data/all_unified.jsonl",
        ),
        // priority_2 first: its shorter X' stands for the group; A's place in priority_1
        // outranks all_unified (no priority).
        (
            KeepPolicy::SourcePriority,
            "data/priority_2.jsonl",
            "data/priority_1.jsonl",
        ),
        // The smallest key: all_unified.
        (
            KeepPolicy::EarliestKey,
            "data/all_unified.jsonl",
            "data/all_unified.jsonl",
        ),
    ] {
        f.settings = settings(&format!("{priority}\nkeep = \"{}\"", policy.as_str()));
        f.ingest();
        assert_eq!(
            chosen(&f),
            (want_x.to_string(), want_a.to_string()),
            "{policy:?}"
        );
    }
    // Order independence: a second index built with priority_2 first, then the rest.
    let mut g = Fixture::new();
    g.settings = settings("");
    write(&g, Some("data/priority_1.jsonl"));
    std::fs::rename(
        g.data.join(".parked/data/priority_1.jsonl"),
        g.data.join("park.tmp"),
    )
    .unwrap();
    let b = g.with_index("index-b");
    g.ingest_into(&b, [&g.data]);
    std::fs::rename(
        g.data.join("park.tmp"),
        g.data.join("data/priority_1.jsonl"),
    )
    .unwrap();
    g.ingest_into(&b, [&g.data]);
    for policy in [
        KeepPolicy::Longest,
        KeepPolicy::SourcePriority,
        KeepPolicy::EarliestKey,
    ] {
        let s = settings(&format!("{priority}\nkeep = \"{}\"", policy.as_str()));
        let (oa, ob) = (
            f.index_dir.with_file_name(format!("a-{}", policy.as_str())),
            b.with_file_name(format!("b-{}", policy.as_str())),
        );
        export_index(&f.index_dir, &s, &oa, &options());
        export_index(&b, &s, &ob, &options());
        let (fa, fb) = (files(&oa), files(&ob));
        // Provenance names the source root, which differs between the two fixtures.
        let strip = |m: std::collections::BTreeMap<String, Vec<u8>>, root: &Path| {
            m.into_iter()
                .map(|(k, v)| {
                    let text =
                        String::from_utf8_lossy(&v).replace(&root.display().to_string(), "ROOT");
                    (k, text)
                })
                .filter(|(k, _)| k != "manifest.json")
                .collect::<std::collections::BTreeMap<_, _>>()
        };
        assert_eq!(strip(fa, &f.data), strip(fb, &g.data), "{policy:?}");
    }
}
