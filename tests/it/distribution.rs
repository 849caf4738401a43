//! The distribution gate of `idx verify`: split fractions, holdout families in test, a family's
//! share of a phase, the curriculum's mix, and the length figures of the report — each failing
//! when it should, with the failure naming what failed.

use idx::config::{IdxConfig, Settings, ShareBound};
use idx::families::Classifier;

use super::clusters::{base, edited};
use super::common::{run_idx, Fixture};

const FAMILIES: &str = r#"
version = 1

[[family]]
name = "therapy"
required = true

[[family]]
name = "crisis"
required = true
holdout = true

[[rule]]
family = "therapy"
prefixes = ["therapy/"]

[[rule]]
family = "crisis"
prefixes = ["crisis/"]
"#;

fn settings(idx_toml: &str) -> Settings {
    Settings {
        classifier: Classifier::from_toml(FAMILIES, "families.toml").unwrap(),
        idx: IdxConfig::from_toml(idx_toml, "idx.toml").unwrap(),
        mappings: idx::parse::Mappings::builtin(),
        recipes: idx::derive::Recipes::builtin(),
    }
}

fn verify(
    f: &Fixture,
    curriculum: Option<&idx::curriculum::Curriculum>,
) -> idx::verify::Verification {
    let store = idx::index::Index::open_store_read(&f.index_dir).unwrap();
    idx::verify::verify(&store.read().unwrap(), &f.settings, curriculum).unwrap()
}

/// 30 therapy rows of their own, and 30 crisis sessions each with a therapy near-duplicate:
/// those join the crisis holdout clusters.
fn write_data(f: &Fixture) {
    let mut therapy = String::new();
    for i in 0..30 {
        therapy.push_str(&(base(i).line() + "\n"));
    }
    for i in 100..130 {
        let t = base(i);
        f.write(&format!("crisis/session-{i}.jsonl"), t.line() + "\n");
        therapy.push_str(&(edited(&t, 2, i, 6).line() + "\n"));
    }
    f.write("therapy/all.jsonl", therapy);
}

const ALL_TRAIN_HOLDOUT_TEST: &str = r#"
version = 1
[splits]
train = 1.0
val = 0.0
test = 0.0
[holdout]
train = 0.0
val = 0.0
test = 1.0
[distribution]
min_units = 1
"#;

#[test]
fn a_family_pulled_into_test_by_its_holdout_near_duplicates_fails_its_split_fractions() {
    let mut f = Fixture::new();
    f.settings = settings(ALL_TRAIN_HOLDOUT_TEST);
    write_data(&f);
    f.ingest();
    let v = verify(&f, None);
    let d = &v.gates.distribution;
    assert!(v.gates.leakage.passed, "{:?}", v.gates.leakage);
    assert!(!d.passed && !v.passed);
    let therapy = d.splits.iter().find(|s| s.family == "therapy").unwrap();
    assert!(therapy.judged && !therapy.passed);
    assert_eq!(therapy.rows, 60);
    assert!((therapy.observed[&idx::neardup::Split::Test] - 0.5).abs() < 1e-9);
    // The crisis family is where its fractions say: every row in test.
    let crisis = d.splits.iter().find(|s| s.family == "crisis").unwrap();
    assert!(crisis.judged && crisis.passed, "{crisis:?}");
    assert!(d.holdout_in_test.iter().all(|h| h.judged && h.passed));
    let failure = d.failures.join("\n");
    assert!(
        failure.contains("`therapy`") && failure.contains("50.0% of its 60 rows are in test"),
        "{failure}"
    );
    assert!(!failure.contains("`crisis`"), "{failure}");
    assert_eq!(v.gates.failed(), vec!["distribution"]);
}

#[test]
fn a_holdout_family_with_no_test_rows_fails_once_it_has_enough_groups() {
    let mut f = Fixture::new();
    let toml = r#"
version = 1
[holdout]
train = 1.0
val = 0.0
test = 0.0
[distribution]
min_units = 20
"#;
    f.settings = settings(toml);
    write_data(&f);
    f.ingest();
    let v = verify(&f, None);
    let h = &v.gates.distribution.holdout_in_test;
    assert_eq!(h.len(), 1);
    assert_eq!(
        (h[0].family.as_str(), h[0].groups, h[0].test_rows),
        ("crisis", 30, 0)
    );
    assert!(h[0].judged && !h[0].passed);
    assert!(v
        .gates
        .distribution
        .failures
        .iter()
        .any(|s| s.contains("holdout family `crisis`")
            && s.contains("30 holdout groups and none in test")));
    // With fewer groups than `min_units` it is not judged.
    let mut relaxed = settings(&toml.replace("min_units = 20", "min_units = 31"));
    std::mem::swap(&mut f.settings, &mut relaxed);
    let v = verify(&f, None);
    assert!(!v.gates.distribution.holdout_in_test[0].judged);
    assert!(v
        .gates
        .distribution
        .failures
        .iter()
        .all(|s| !s.contains("holdout family")));
}

#[test]
fn share_bounds_and_the_curriculum_mix_fail_naming_the_family_and_phase() {
    let mut f = Fixture::new();
    f.settings = settings("version = 1\n");
    write_data(&f);
    f.ingest();
    // therapy holds 60 of the 90 sft rows' tokens, about two thirds.
    f.settings.idx.distribution.share = vec![
        ShareBound {
            phase: "sft".into(),
            family: "therapy".into(),
            min: 0.0,
            max: 0.5,
        },
        ShareBound {
            phase: "sft".into(),
            family: "crisis".into(),
            min: 0.2,
            max: 0.5,
        },
    ];
    let v = verify(&f, None);
    let d = &v.gates.distribution;
    let therapy = &d.shares[0];
    assert!(
        !therapy.passed && therapy.share > 0.6 && therapy.share < 0.7,
        "{therapy:?}"
    );
    assert_eq!(therapy.phase_tokens, v.report.by_phase["sft"].tokens);
    assert!(d.shares[1].passed);
    assert!(d
        .failures
        .iter()
        .any(|s| s.contains("family `therapy` holds") && s.contains("sft phase")));

    // A curriculum routing a family the index has no rows for: reported, then gated.
    f.settings.idx.distribution.share.clear();
    let curriculum: idx::curriculum::Curriculum = toml::from_str(
        r#"
version = 1
name = "t"
[[stage]]
id = "sft"
phase = "sft"
[stage.weights]
therapy = 0.5
crisis = 0.5
[[stage]]
id = "pref"
phase = "preference"
[stage.weights]
therapy = 1.0
"#,
    )
    .unwrap();
    let v = verify(&f, Some(&curriculum));
    let mix = v.gates.distribution.curriculum_mix.as_ref().unwrap();
    assert!(!mix.gate && mix.passed);
    assert!(
        mix.shortfalls
            .iter()
            .any(|s| s.contains("stage `pref`: family `therapy`")),
        "{:?}",
        mix.shortfalls
    );
    f.settings.idx.distribution.curriculum_mix = true;
    let v = verify(&f, Some(&curriculum));
    assert!(!v.gates.distribution.passed);
    assert!(v
        .gates
        .distribution
        .failures
        .iter()
        .any(|s| s.starts_with("curriculum mix: stage `pref`")));
}

#[test]
fn the_report_has_length_percentiles_and_turns_per_family_and_the_cli_gates_on_it() {
    let mut f = Fixture::new();
    f.settings = settings(ALL_TRAIN_HOLDOUT_TEST);
    write_data(&f);
    // A longer conversation: four turns.
    f.write(
        "therapy/long.jsonl",
        r#"{"messages":[{"role":"user","content":"I keep waking at four."},{"role":"assistant","content":"What happens then?"},{"role":"user","content":"My mind races."},{"role":"assistant","content":"Let us look at that together."}]}"#.to_string() + "\n",
    );
    f.ingest();
    let v = verify(&f, None);
    let therapy = &v.report.lengths["therapy"];
    assert_eq!(therapy.tokens.rows, v.report.by_family["therapy"].rows);
    let turns = therapy.turns.as_ref().unwrap();
    assert_eq!((turns.min, turns.p50, turns.max), (2, 2, 4));
    assert!(therapy.tokens.p50 <= therapy.tokens.p90 && therapy.tokens.p99 <= therapy.tokens.max);
    assert_eq!(
        v.report.by_family_phase["therapy"]["sft"],
        v.report.by_family["therapy"]
    );

    // The CLI: exit 4, the failure in the text, JSON and Markdown outputs.
    let idx_toml = f.data.parent().unwrap().join("idx.toml");
    let families = f.data.parent().unwrap().join("families.toml");
    std::fs::write(&idx_toml, ALL_TRAIN_HOLDOUT_TEST).unwrap();
    std::fs::write(&families, FAMILIES).unwrap();
    let md = f.data.parent().unwrap().join("verify.md");
    let args = [
        "--config",
        idx_toml.to_str().unwrap(),
        "--families",
        families.to_str().unwrap(),
    ];
    let mut verify_args = args.to_vec();
    verify_args.extend(["verify", "--markdown", md.to_str().unwrap()]);
    let out = run_idx(&f.index_dir, &verify_args);
    assert_eq!(out.status.code(), Some(4));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("distribution: FAIL"), "{text}");
    assert!(text.contains("family `therapy`"), "{text}");
    let md = std::fs::read_to_string(md).unwrap();
    assert!(md.contains("## Distribution gate: FAIL"), "{md}");
    assert!(md.contains("| therapy | cluster | 61 |"), "{md}");
    let mut json_args = args.to_vec();
    json_args.extend(["--json", "verify"]);
    let out = run_idx(&f.index_dir, &json_args);
    let j: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(j["gates"]["distribution"]["passed"], false);
    assert_eq!(j["report"]["lengths"]["therapy"]["turns"]["max"], 4);
}
