//! PII at ingest: redacted before hashing (so rows differing only in a phone number are one row),
//! statuses and kinds on the row, excluded rows kept for audit, a settings change re-reads.

use idx::config::{IdxConfig, Settings};

use super::common::{chat, hashes_of, row, Fixture};

#[test]
fn pii_is_redacted_before_hashing_and_recorded_on_the_row() {
    let f = Fixture::new();
    f.write(
        "a.jsonl",
        format!(
            "{}\n{}\n{}\n",
            chat(
                "you can reach me at 415-555-2671",
                "Thank you for sharing that."
            ),
            chat(
                "you can reach me at (212) 555-0199",
                "Thank you for sharing that."
            ),
            chat(
                "my ssn is 123-45-6789, is that safe?",
                "Please never share that."
            ),
        ),
    );
    f.write(
        "b.jsonl",
        chat("Hi, my name is Sarah and I feel low", "I'm here, Sarah."),
    );
    let r = f.ingest();
    assert_eq!(r.rows_added, 4);

    let a = hashes_of(&f.index_dir, "a.jsonl");
    // Two phone numbers, one row: the hash is over the redacted text.
    assert_eq!(a[0], a[1]);
    let phone = row(&f.index_dir, &a[0]).unwrap();
    assert_eq!(phone.pii_status, "redacted");
    assert_eq!(phone.pii_kinds.get("phone"), Some(&1));
    assert_eq!(phone.messages[0].content, "you can reach me at [PHONE]");
    assert_eq!(phone.sources.len(), 2);

    // High-risk kinds exclude the row; it stays queryable (redacted) for the audit.
    let ssn = row(&f.index_dir, &a[2]).unwrap();
    assert_eq!(ssn.pii_status, "excluded");
    assert_eq!(ssn.messages[0].content, "my ssn is [SSN], is that safe?");

    let b = hashes_of(&f.index_dir, "b.jsonl");
    let name = row(&f.index_dir, &b[0]).unwrap();
    assert_eq!(
        name.messages[0].content,
        "Hi, my name is [NAME] and I feel low"
    );
    // The name given once is redacted in the reply too.
    assert_eq!(name.messages[1].content, "I'm here, [NAME].");
    // One person named twice is one value.
    assert_eq!(name.pii_kinds.get("name"), Some(&1));

    let s = f.status();
    assert_eq!(s.totals.unique_rows, 3);
    assert_eq!(s.totals.pii_redacted_rows, 2);
    assert_eq!(s.totals.pii_excluded_rows, 1);

    // No original value is anywhere in the database file.
    let db = std::fs::read(f.index_dir.join("index.redb")).unwrap();
    for secret in ["415-555-2671", "123-45-6789", "Sarah"] {
        assert!(
            !db.windows(secret.len()).any(|w| w == secret.as_bytes()),
            "{secret} stored"
        );
    }
}

#[test]
fn excluded_rows_do_not_count_for_coverage() {
    let mut f = Fixture::new();
    let families = r#"
version = 1
[[family]]
name = "therapy"
required = true
[[rule]]
family = "therapy"
prefixes = ["therapy/"]
"#;
    f.settings = Settings {
        classifier: idx::families::Classifier::from_toml(families, "t").unwrap(),
        idx: IdxConfig::load(None).unwrap(),
        mappings: idx::parse::Mappings::builtin(),
        recipes: idx::derive::Recipes::builtin(),
    };
    f.write(
        "therapy/a.jsonl",
        chat("card 4111 1111 1111 1111 declined", "ok"),
    );
    f.ingest();
    let store = idx::index::Index::open_store_read(&f.index_dir).unwrap();
    let v = idx::verify::verify(&store.read().unwrap(), &f.settings, None).unwrap();
    let therapy = &v.gates.coverage.families[0];
    assert_eq!(therapy.rows, 0);
    assert!(!v.gates.coverage.passed);
    assert_eq!(
        v.report.by_pii_status[&idx::pii::PiiStatus::Excluded].rows,
        1
    );
}

#[test]
fn changing_the_pii_settings_reads_every_object_again() {
    let mut f = Fixture::new();
    f.write("a.jsonl", chat("mail me: someone@example.org", "ok"));
    f.write("b.jsonl", chat("no pii here at all", "fine"));
    f.ingest();
    let before = hashes_of(&f.index_dir, "a.jsonl");
    assert_eq!(
        row(&f.index_dir, &before[0]).unwrap().pii_status,
        "redacted"
    );

    let mut config = IdxConfig::load(None).unwrap();
    config.pii.exclude_kinds.push(idx::pii::PiiKind::Email);
    f.settings = Settings {
        classifier: idx::families::Classifier::load(None).unwrap(),
        idx: config,
        mappings: idx::parse::Mappings::builtin(),
        recipes: idx::derive::Recipes::builtin(),
    };
    let r = f.ingest();
    assert_eq!(r.objects_changed, 2);
    let after = hashes_of(&f.index_dir, "a.jsonl");
    assert_eq!(after, before, "same redacted text, same row");
    assert_eq!(row(&f.index_dir, &after[0]).unwrap().pii_status, "excluded");
    assert_eq!(f.status().totals.pii_excluded_rows, 1);
    // Unchanged settings: nothing is read.
    assert_eq!(f.ingest().objects_unchanged, 2);
}
