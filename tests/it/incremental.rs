//! Incremental ingest: unchanged objects write nothing, a changed object replaces exactly its
//! rows, a deleted one drops them, and the state never depends on ingest order or batch size.

use super::common::{chat, digest_of, hashes_of, row, status_of, Fixture};

fn lines(pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .map(|(u, a)| format!("{}\n", chat(u, a)))
        .collect()
}

#[test]
fn re_ingesting_unchanged_objects_writes_nothing() {
    let f = Fixture::new();
    f.write("a.jsonl", lines(&[("a1", "x"), ("a2", "y")]));
    f.write("README.md", "docs");
    let first = f.ingest();
    assert_eq!(first.commits, 1);
    let before = f.digest();
    let seq_before = f.status().commits;
    // redb rewrites its own header on close; what must not change is any table or the text index.
    let text_meta = f.index_dir.join("text").join("meta.json");
    let meta_before = std::fs::read(&text_meta).unwrap();

    let again = f.ingest();
    assert_eq!(again.commits, 0);
    assert_eq!(again.objects_unchanged, 1);
    assert_eq!(again.objects_skipped, 1);
    assert_eq!(again.rows_added + again.rows_removed, 0);
    assert_eq!(f.digest(), before);
    assert_eq!(f.status().commits, seq_before);
    assert_eq!(
        std::fs::read(&text_meta).unwrap(),
        meta_before,
        "the text index was committed"
    );
}

#[test]
fn a_changed_object_replaces_exactly_its_rows() {
    let f = Fixture::new();
    f.write("a.jsonl", lines(&[("keep", "1"), ("drop", "2")]));
    f.write("b.jsonl", lines(&[("drop", "2"), ("other", "3")]));
    f.ingest();
    let old = hashes_of(&f.index_dir, "a.jsonl");
    let b_before = hashes_of(&f.index_dir, "b.jsonl");

    // Different size, so the change is seen whatever the clock's resolution.
    f.write(
        "a.jsonl",
        lines(&[("keep", "1"), ("new row", "4"), ("another new", "5")]),
    );
    let r = f.ingest();
    assert_eq!(r.objects_changed, 1);
    assert_eq!(r.objects_unchanged, 1);
    assert_eq!(r.rows_removed, 2);
    assert_eq!(r.rows_added, 3);
    let new = hashes_of(&f.index_dir, "a.jsonl");
    assert_eq!(new[0], old[0]);
    assert_eq!(new.len(), 3);
    assert_eq!(hashes_of(&f.index_dir, "b.jsonl"), b_before);
    // The shared row lost its place in a.jsonl but lives on in b.jsonl.
    let shared = row(&f.index_dir, &old[1]).unwrap();
    assert_eq!(shared.sources.len(), 1);
    assert_eq!(shared.sources[0].key, "b.jsonl");
    let s = f.status();
    assert_eq!((s.totals.rows, s.totals.unique_rows), (5, 5));
}

#[test]
fn a_deleted_object_drops_its_rows() {
    let f = Fixture::new();
    f.write("a.jsonl", lines(&[("only in a", "1"), ("shared", "2")]));
    f.write("sub/b.jsonl", lines(&[("shared", "2")]));
    f.ingest();
    let a = hashes_of(&f.index_dir, "a.jsonl");
    f.remove("a.jsonl");
    let r = f.ingest();
    assert_eq!(r.objects_deleted, 1);
    assert_eq!(r.rows_removed, 2);
    assert!(row(&f.index_dir, &a[0]).is_none());
    assert_eq!(row(&f.index_dir, &a[1]).unwrap().sources.len(), 1);
    let s = f.status();
    assert_eq!(
        (s.totals.objects, s.totals.rows, s.totals.unique_rows),
        (1, 1, 1)
    );
}

#[test]
fn ingesting_one_file_does_not_delete_its_neighbours() {
    let f = Fixture::new();
    f.write("a.jsonl", lines(&[("a", "1")]));
    f.write("b.jsonl", lines(&[("b", "2")]));
    f.ingest();
    f.write("a.jsonl", lines(&[("a", "1"), ("a2", "3")]));
    let r = f.ingest_into(&f.index_dir, [f.data.join("a.jsonl")]);
    assert_eq!(r.objects_deleted, 0);
    assert_eq!(f.status().totals.objects, 2);
}

#[test]
fn state_does_not_depend_on_ingest_order_or_batching() {
    let f = Fixture::new();
    f.write(
        "a.jsonl",
        lines(&[("one", "x"), ("two", "y"), ("SHARED  row", "z")]),
    );
    f.write("b.jsonl", lines(&[("three", "x"), ("shared row", "z")]));
    f.write("c.json", format!("[{}]", chat("four", "w")));
    let (a, b, c) = (
        f.data.join("a.jsonl"),
        f.data.join("b.jsonl"),
        f.data.join("c.json"),
    );

    let ab = f.with_index("ab");
    f.ingest_into(&ab, [&a]);
    f.ingest_into(&ab, [&b]);
    f.ingest_into(&ab, [&c]);

    let ba = f.with_index("ba");
    f.ingest_into(&ba, [&c]);
    f.ingest_into(&ba, [&b]);
    f.ingest_into(&ba, [&a]);

    let mut tiny = Fixture::new();
    tiny.options.batch_bytes = 1;
    let together = f.with_index("together");
    let r = tiny.ingest_into(&together, [&f.data]);
    assert!(r.commits >= 3, "one commit per object with a 1-byte batch");

    let once = f.with_index("once");
    f.ingest_into(&once, [c, b, a]);

    let reference = digest_of(&ab);
    assert_eq!(digest_of(&ba), reference);
    assert_eq!(digest_of(&together), reference);
    assert_eq!(digest_of(&once), reference);
    assert_eq!(status_of(&ab), status_of(&ba));
}

#[test]
fn reclassification_follows_a_config_change() {
    let f = Fixture::new();
    f.write("misc/x.jsonl", lines(&[("a", "b")]));
    f.write("other/y.jsonl", lines(&[("c", "d")]));
    f.ingest();
    assert_eq!(f.status().families["unassigned"].rows, 2);
    let text = format!(
        "{}\n[[rule]]\nfamily = \"sarcasm\"\nprefixes = [\"misc/\"]\n",
        idx::families::DEFAULT_FAMILIES_TOML
    );
    let settings = idx::config::Settings {
        classifier: idx::families::Classifier::from_toml(&text, "test").unwrap(),
        idx: idx::config::IdxConfig::load(None).unwrap(),
        mappings: idx::parse::Mappings::builtin(),
        recipes: idx::derive::Recipes::builtin(),
    };
    let mut index = idx::index::Index::open_write(&f.index_dir).unwrap();
    let r = idx::ingest::ingest(
        &mut index,
        &settings,
        std::slice::from_ref(&f.data),
        &f.options,
    )
    .unwrap();
    drop(index);
    // Only the object the new rule reclassifies is read again.
    assert_eq!(r.objects_changed, 1);
    assert_eq!(r.objects_unchanged, 1);
    let s = f.status();
    assert_eq!(s.families["sarcasm"].rows, 1);
    assert_eq!(s.families["unassigned"].rows, 1);
}

#[test]
fn overlapping_source_roots_are_warned_about() {
    let f = Fixture::new();
    f.write("sub/a.jsonl", lines(&[("a", "1")]));
    let first = f.ingest_into(&f.index_dir, [f.data.join("sub")]);
    assert!(first.warnings.is_empty());
    let second = f.ingest();
    assert_eq!(second.warnings.len(), 1, "{:?}", second.warnings);
    assert!(second.warnings[0].contains("overlaps"));
}

#[test]
fn a_pool_of_fingerprint_workers_gives_the_same_index_as_one() {
    let mut f = Fixture::new();
    for file in 0..12 {
        let body: String = (0..300)
            .map(|i| {
                chat(
                    &format!(
                        "file {file} row {i}: my name is Sarah and I worry about {}",
                        i % 17
                    ),
                    &format!("Thank you for telling me, Sarah. Worry number {i} sounds heavy."),
                ) + "\n"
            })
            .collect();
        f.write(&format!("cptsd/part_{file:02}.jsonl"), body);
    }
    f.options.workers = 1;
    f.options.batch_bytes = 50_000;
    let one = f.with_index("one-worker");
    f.ingest_into(&one, [&f.data]);
    f.options.workers = 4;
    let report = f.ingest_into(&f.index_dir, [&f.data]);
    assert_eq!(report.rows_added, 3600);
    assert!(report.commits > 3, "several batches: {}", report.commits);
    assert_eq!(digest_of(&one), f.digest());
    assert_eq!(status_of(&one).totals, f.status().totals);
}

#[test]
fn a_sparse_index_file_is_compacted_after_an_ingest_and_holds_the_same_index() {
    let mut f = Fixture::new();
    for file in 0..30 {
        let pairs: Vec<(String, String)> = (0..40)
            .map(|i| {
                (
                    format!("question {i} of file {file}: how do I sleep better"),
                    format!(
                        "answer {i} of file {file}: keep a routine, {}",
                        "and rest ".repeat(i % 7 + 1)
                    ),
                )
            })
            .collect();
        let pairs: Vec<(&str, &str)> = pairs
            .iter()
            .map(|(u, a)| (u.as_str(), a.as_str()))
            .collect();
        f.write(&format!("f{file:02}.jsonl"), lines(&pairs));
    }
    // Many small commits leave free pages behind; the first index never compacts.
    f.options.batch_bytes = 2048;
    f.options.compact_min_free_bytes = u64::MAX;
    let plain = f.ingest();
    assert!(plain.commits > 20, "{} commits", plain.commits);
    assert_eq!(plain.compaction, None);

    let compacted_dir = f.with_index("compacted");
    f.options.compact_min_free_bytes = 1;
    let report = f.ingest_into(&compacted_dir, [&f.data]);
    let c = report.compaction.expect("a sparse file is compacted");
    assert!(c.bytes_after < c.bytes_before, "{c:?}");
    let file = |dir: &std::path::Path| std::fs::metadata(dir.join("index.redb")).unwrap().len();
    assert!(file(&compacted_dir) < c.bytes_before);
    assert!(file(&compacted_dir) < file(&f.index_dir));
    assert_eq!(digest_of(&compacted_dir), f.digest(), "the same index");

    // redb's own check passes on the compacted file, and it takes the next change like any index.
    let mut store = idx::store::Store::open_write(&compacted_dir.join("index.redb")).unwrap();
    assert!(store.check_integrity().unwrap());
    drop(store);
    f.write(
        "f00.jsonl",
        lines(&[("a changed file", "with one new row")]),
    );
    f.remove("f01.jsonl");
    f.options.compact_min_free_bytes = u64::MAX;
    f.ingest();
    f.ingest_into(&compacted_dir, [&f.data]);
    assert_eq!(digest_of(&compacted_dir), f.digest());
    assert_eq!(hashes_of(&compacted_dir, "f00.jsonl").len(), 1);
}
