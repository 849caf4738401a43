//! `idx export` and `idx export verify`: the snapshot, the layout, determinism across ingest
//! orders, near-duplicate collapsing, privacy, split moves against a previous export, and
//! tamper detection.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::common::{chat, Fixture};
use idx::config::Settings;
use idx::curriculum::Curriculum;
use idx::export::{export, verify_export, ExportLine, ExportOptions, ExportSummary, Manifest};
use idx::index::Index;
use idx::rng::Rng;

const WORDS: &[&str] = &[
    "feel",
    "anxious",
    "sleep",
    "work",
    "family",
    "therapy",
    "breathing",
    "talk",
    "friend",
    "tired",
    "worry",
    "night",
    "morning",
    "heart",
    "calm",
    "panic",
    "support",
    "listen",
    "hope",
    "change",
    "small",
    "steps",
    "today",
    "week",
    "notice",
    "body",
    "thoughts",
    "kind",
    "safe",
    "trust",
    "grief",
    "anger",
    "school",
    "partner",
    "mother",
    "father",
    "drink",
    "recover",
];

/// A sentence of `n` words drawn from a fixed vocabulary.
pub fn sentence(rng: &mut Rng, n: usize) -> String {
    (0..n)
        .map(|_| rng.pick(WORDS))
        .collect::<Vec<_>>()
        .join(" ")
}

/// A data folder covering several families, with exact duplicates, a near-duplicate pair,
/// a preference file, a transcript, a redacted and an excluded row.
pub fn populate(f: &Fixture) {
    let mut rng = Rng(0x00C0_FFEE_1234_5678);
    let lines = |n: usize, rng: &mut Rng| -> String {
        (0..n)
            .map(|_| chat(&sentence(rng, 12), &sentence(rng, 30)) + "\n")
            .collect()
    };
    f.write(
        "datasets/professional_therapeutic/sessions.jsonl",
        lines(12, &mut rng),
    );
    f.write("datasets/sarcasm/sarcasm.jsonl", lines(6, &mut rng));
    f.write("datasets/cptsd/cptsd_chats.jsonl", lines(8, &mut rng));
    f.write("datasets/mental_health/counsel.jsonl", lines(15, &mut rng));
    // An exact duplicate in another object, and a near-duplicate (one word changed).
    let long = sentence(&mut rng, 60);
    let mut words: Vec<&str> = long.split(' ').collect();
    words[30] = "different";
    let near = words.join(" ");
    f.write(
        "datasets/mental_health/dupes.jsonl",
        format!(
            "{}\n{}\n{}\n",
            chat("what helps", &long),
            chat("what helps", &near),
            chat("what helps", &format!("{long} and more words at the end"))
        ),
    );
    f.write(
        "datasets/addiction/recovery.jsonl",
        format!("{}{}", lines(4, &mut rng), chat("what helps", &long) + "\n"),
    );
    let mut prefs = String::new();
    for _ in 0..5 {
        prefs.push_str(
            &serde_json::json!({"prompt": sentence(&mut rng, 10), "chosen": sentence(&mut rng, 20), "rejected": sentence(&mut rng, 8)})
                .to_string(),
        );
        prefs.push('\n');
    }
    f.write("datasets/huggingface/dpo_pairs.jsonl", prefs);
    f.write(
        "datasets/gdrive/tier4_voice_persona/Speaker/talk.txt",
        sentence(&mut rng, 200),
    );
    f.write(
        "datasets/mental_health/private.jsonl",
        format!(
            "{}\n{}\n",
            chat(
                "Hi, my name is Sarah and you can reach me at sarah.k@example.com",
                "Thank you for reaching out, Sarah. What is on your mind today?"
            ),
            chat(
                "My SSN is 123-45-6789, someone stole it",
                "That sounds frightening. Let's think about the first steps."
            )
        ),
    );
}

pub fn options() -> ExportOptions {
    ExportOptions {
        shard_bytes: 4096,
        collapse_near_duplicates: true,
        previous: None,
        allow_failing_gates: true,
    }
}

pub fn export_index(
    index_dir: &Path,
    settings: &Settings,
    out: &Path,
    o: &ExportOptions,
) -> ExportSummary {
    let store = Index::open_store_read(index_dir).unwrap();
    let view = store.read().unwrap();
    export(
        &view,
        settings,
        &Curriculum::load(None).unwrap(),
        out,
        o,
        &mut |_| {},
    )
    .unwrap()
}

/// Every file of an export (relative path → bytes), except the one with the wall-clock time.
pub fn files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let rel = p
                    .strip_prefix(dir)
                    .unwrap()
                    .to_string_lossy()
                    .replace('\\', "/");
                if rel != "export_info.json" {
                    out.insert(rel, std::fs::read(&p).unwrap());
                }
            }
        }
    }
    out
}

fn lines_of(path: &Path) -> Vec<ExportLine> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn out_dir(f: &Fixture, name: &str) -> PathBuf {
    f.index_dir.with_file_name(name)
}

#[test]
fn exports_are_byte_identical_whatever_the_ingest_order() {
    let f = Fixture::new();
    populate(&f);
    f.ingest();
    // Index B: half the objects parked in a hidden folder (not scanned), ingested, then the
    // rest; renames keep mtimes, so B ends with the same objects as A.
    let b = f.with_index("index-b");
    let parked = f.data.join(".parked");
    std::fs::create_dir_all(&parked).unwrap();
    let moved = [
        "datasets/mental_health",
        "datasets/huggingface",
        "datasets/sarcasm",
    ];
    for (i, m) in moved.iter().enumerate() {
        std::fs::rename(f.data.join(m), parked.join(i.to_string())).unwrap();
    }
    f.ingest_into(&b, [&f.data]);
    for (i, m) in moved.iter().enumerate() {
        std::fs::rename(parked.join(i.to_string()), f.data.join(m)).unwrap();
    }
    f.ingest_into(&b, [&f.data]);
    // Index C: everything, then one object dropped and re-added.
    let c = f.with_index("index-c");
    f.ingest_into(&c, [&f.data]);
    let addiction = f.data.join("datasets/addiction");
    std::fs::rename(&addiction, parked.join("a")).unwrap();
    f.ingest_into(&c, [&f.data]);
    std::fs::rename(parked.join("a"), &addiction).unwrap();
    f.ingest_into(&c, [&f.data]);

    let o = options();
    let a_out = out_dir(&f, "out-a");
    let s = export_index(&f.index_dir, &f.settings, &a_out, &o);
    assert!(s.rows > 40, "{s:?}");
    assert!(
        s.shards > 5,
        "small shards: several per split and family: {s:?}"
    );
    let a = files(&a_out);
    for (name, dir) in [("b", &b), ("c", &c)] {
        let out = out_dir(&f, &format!("out-{name}"));
        export_index(dir, &f.settings, &out, &o);
        let other = files(&out);
        assert_eq!(
            a.keys().collect::<Vec<_>>(),
            other.keys().collect::<Vec<_>>(),
            "index {name}: same files"
        );
        for (k, v) in &a {
            assert!(v == &other[k], "index {name}: {k} differs");
        }
    }
    // Exporting again into the same folder replaces it with the same bytes.
    export_index(&f.index_dir, &f.settings, &a_out, &o);
    assert_eq!(files(&a_out), a);
    assert!(
        verify_export(&a_out.join("manifest.json"), None)
            .unwrap()
            .passed
    );
}

#[test]
fn layout_rows_metadata_and_provenance() {
    let f = Fixture::new();
    populate(&f);
    f.ingest();
    let out = out_dir(&f, "out");
    let s = export_index(&f.index_dir, &f.settings, &out, &options());
    let m = Manifest::read(&out.join("manifest.json")).unwrap();
    assert_eq!(m.totals.rows, s.rows);
    // Shards: bounded, named by split and family, rows in hash order, all of their split/family.
    let mut all = Vec::new();
    for shard in &m.shards {
        assert!(
            shard.file.bytes <= 4096 || shard.file.rows == 1,
            "{:?}",
            shard.file
        );
        let expected_prefix = format!("data/{}/{}-", shard.split, shard.family);
        assert!(
            shard.file.path.starts_with(&expected_prefix),
            "{}",
            shard.file.path
        );
        let lines = lines_of(&out.join(&shard.file.path));
        assert_eq!(lines.len() as u64, shard.file.rows);
        for l in &lines {
            assert_eq!(l.metadata.split, shard.split);
            assert_eq!(l.metadata.source_family, shard.family);
        }
        all.extend(lines);
    }
    let finals = lines_of(&out.join("final.chatml.jsonl"));
    assert_eq!(
        finals, all,
        "final.chatml.jsonl is every shard in manifest order"
    );
    // One row per content hash.
    let mut hashes: Vec<&str> = all
        .iter()
        .map(|l| l.metadata.content_hash.as_str())
        .collect();
    hashes.sort();
    let n = hashes.len();
    hashes.dedup();
    assert_eq!(hashes.len(), n);
    // The near-duplicates went out once: the longest stands for the others.
    let reps: Vec<&ExportLine> = all
        .iter()
        .filter(|l| l.metadata.near_duplicates > 0)
        .collect();
    assert_eq!(reps.len(), 1, "one near-duplicate group");
    assert_eq!(reps[0].metadata.near_duplicates, 2);
    assert!(reps[0].messages[1]
        .content
        .ends_with("and more words at the end"));
    assert_eq!(s.near_duplicates_collapsed, 2);
    // Privacy: the excluded row is not there, the redacted one is, with its placeholders.
    assert!(all
        .iter()
        .all(|l| !l.messages.iter().any(|m| m.content.contains("SSN"))));
    let redacted: Vec<&ExportLine> = all
        .iter()
        .filter(|l| l.metadata.pii_status == idx::pii::PiiStatus::Redacted)
        .collect();
    assert_eq!(redacted.len(), 1);
    assert!(redacted[0].messages[0].content.contains("[NAME]"));
    assert!(redacted[0].messages[0].content.contains("[EMAIL]"));
    assert!(!redacted[0].messages[0].content.contains("Sarah"));
    assert_eq!(m.pii.excluded_rows, 1);
    // Provenance: every exported row, with all its places, near-duplicates' places included.
    let prov: Vec<idx::export::ProvenanceLine> =
        std::fs::read_to_string(out.join("provenance.jsonl"))
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
    assert_eq!(prov.len(), all.len());
    let rep = prov
        .iter()
        .find(|p| p.content_hash == reps[0].metadata.content_hash)
        .unwrap();
    let stood_for: std::collections::BTreeSet<&str> = rep
        .sources
        .iter()
        .map(|p| p.content_hash.as_str())
        .filter(|h| *h != rep.content_hash)
        .collect();
    assert_eq!(stood_for.len(), 2, "the places of both near-duplicates");
    let dup_row = all
        .iter()
        .find(|l| l.messages.len() == 2 && l.messages[1].content.split(' ').count() == 60)
        .map(|l| l.metadata.content_hash.clone());
    assert!(
        dup_row.is_none(),
        "the shorter near-duplicates are not exported"
    );
    let places: usize = rep.sources.len();
    assert_eq!(
        places, 4,
        "3 lines of dupes.jsonl and the copy in recovery.jsonl"
    );
    // Totals add up by family, split and phase.
    for by in [
        m.totals.by_family.values().map(|c| c.rows).sum::<u64>(),
        m.totals.by_split.values().map(|c| c.rows).sum::<u64>(),
        m.totals.by_phase.values().map(|c| c.rows).sum::<u64>(),
    ] {
        assert_eq!(by, m.totals.rows);
    }
    // Without collapsing, all three near-duplicates go out.
    let keep = ExportOptions {
        collapse_near_duplicates: false,
        ..options()
    };
    let s2 = export_index(&f.index_dir, &f.settings, &out_dir(&f, "out-keep"), &keep);
    assert_eq!(s2.rows, s.rows + 2);
}

#[test]
fn verify_catches_tampered_and_missing_files() {
    let f = Fixture::new();
    populate(&f);
    f.ingest();
    let out = out_dir(&f, "out");
    export_index(&f.index_dir, &f.settings, &out, &options());
    let manifest = out.join("manifest.json");
    let ok = verify_export(&manifest, None).unwrap();
    assert!(ok.passed, "{:?}", ok.problems);
    let m = Manifest::read(&manifest).unwrap();
    // One changed byte in a shard: same size, other hash.
    let victim = &m.shards[1].file.path;
    let p = out.join(victim);
    let mut bytes = std::fs::read(&p).unwrap();
    let at = bytes.iter().position(|&b| b == b'e').unwrap();
    bytes[at] = b'a';
    std::fs::write(&p, bytes).unwrap();
    let bad = verify_export(&manifest, None).unwrap();
    assert!(!bad.passed);
    assert!(
        bad.problems
            .iter()
            .any(|x| x.contains(victim.as_str()) && x.contains("sha256")),
        "{:?}",
        bad.problems
    );
    // A missing shard is named.
    let gone = &m.shards[0].file.path;
    std::fs::remove_file(out.join(gone)).unwrap();
    let bad = verify_export(&manifest, None).unwrap();
    assert!(
        bad.problems
            .iter()
            .any(|x| x.contains(gone.as_str()) && x.contains("missing")),
        "{:?}",
        bad.problems
    );
    // A line that breaks the schema is named with its line number.
    let third = &m.shards[2].file.path;
    let p = out.join(third);
    let mut text = std::fs::read_to_string(&p).unwrap();
    text.push_str("{\"messages\": []}\n");
    std::fs::write(&p, text).unwrap();
    let bad = verify_export(&manifest, None).unwrap();
    let line = m.shards[2].file.rows + 1;
    assert!(
        bad.problems
            .iter()
            .any(|x| x.starts_with(&format!("{third}:{line}: not a valid export line"))),
        "{:?}",
        bad.problems
    );
}

#[test]
fn an_export_is_one_committed_state_while_writes_go_on() {
    let f = Fixture::new();
    populate(&f);
    f.ingest();
    let o = options();
    let before = out_dir(&f, "before");
    export_index(&f.index_dir, &f.settings, &before, &o);
    // Hold a snapshot, then let a writer commit more rows while the export runs from it.
    let mut index = Index::open_write(&f.index_dir).unwrap();
    let view = index.store.read().unwrap();
    let data = f.data.clone();
    let mut rng = Rng(0xABCD_EF01_2345_6789);
    let mut more = String::new();
    for _ in 0..300 {
        more.push_str(&(chat(&sentence(&mut rng, 10), &sentence(&mut rng, 30)) + "\n"));
    }
    f.write("datasets/sarcasm/more.jsonl", more);
    let settings = Settings::builtin();
    let writer = std::thread::spawn(move || {
        let options = idx::ingest::IngestOptions {
            batch_bytes: 4096,
            ..Default::default()
        };
        idx::ingest::ingest(&mut index, &settings, &[data], &options).unwrap()
    });
    let during = out_dir(&f, "during");
    export(
        &view,
        &f.settings,
        &Curriculum::load(None).unwrap(),
        &during,
        &o,
        &mut |_| {},
    )
    .unwrap();
    let report = writer.join().unwrap();
    assert!(report.rows_added >= 300, "the writer committed meanwhile");
    assert_eq!(
        files(&before),
        files(&during),
        "the snapshot's export is the pre-write state"
    );
    drop(view);
    let after = out_dir(&f, "after");
    let s = export_index(&f.index_dir, &f.settings, &after, &o);
    assert!(
        s.rows
            >= 300
                + Manifest::read(&before.join("manifest.json"))
                    .unwrap()
                    .totals
                    .rows
    );
}

#[test]
fn the_manifest_reports_rows_that_moved_split_since_a_previous_export() {
    let f = Fixture::new();
    populate(&f);
    f.ingest();
    let first = out_dir(&f, "first");
    export_index(&f.index_dir, &f.settings, &first, &options());
    // Other split settings: the next ingest moves rows; the next export says which.
    let mut settings = Settings::builtin();
    settings.idx.splits.salt = "another-salt".to_string();
    settings.idx.splits.train = 0.5;
    settings.idx.splits.val = 0.25;
    settings.idx.splits.test = 0.25;
    let mut index = Index::open_write(&f.index_dir).unwrap();
    idx::ingest::ingest(
        &mut index,
        &settings,
        std::slice::from_ref(&f.data),
        &Default::default(),
    )
    .unwrap();
    drop(index);
    let second = out_dir(&f, "second");
    let o = ExportOptions {
        previous: Some(first.join("manifest.json")),
        ..options()
    };
    export_index(&f.index_dir, &settings, &second, &o);
    let m1 = Manifest::read(&first.join("manifest.json")).unwrap();
    let m2 = Manifest::read(&second.join("manifest.json")).unwrap();
    let changes = m2.previous.expect("changes recorded");
    // Recount from the two exports' final files.
    let split_of = |dir: &Path| -> BTreeMap<String, idx::neardup::Split> {
        lines_of(&dir.join("final.chatml.jsonl"))
            .into_iter()
            .map(|l| (l.metadata.content_hash, l.metadata.split))
            .collect()
    };
    let (a, b) = (split_of(&first), split_of(&second));
    let moved: Vec<&String> = a
        .keys()
        .filter(|h| b.get(*h).is_some_and(|s| *s != a[*h]))
        .collect();
    assert!(!moved.is_empty());
    assert_eq!(changes.moved as usize, moved.len());
    assert_eq!(changes.moves.len(), moved.len());
    assert_eq!(changes.rows_added, 0);
    assert_eq!(changes.rows_removed, 0);
    assert_eq!(changes.previous_state_digest, m1.index.state_digest);
    for mv in &changes.moves {
        assert_eq!(a[&mv.content_hash], mv.from);
        assert_eq!(b[&mv.content_hash], mv.to);
    }
}

#[test]
fn export_refuses_a_non_export_folder_and_failing_gates() {
    let f = Fixture::new();
    populate(&f);
    f.ingest();
    let out = out_dir(&f, "busy");
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(out.join("notes.txt"), "mine").unwrap();
    let store = Index::open_store_read(&f.index_dir).unwrap();
    let view = store.read().unwrap();
    let c = Curriculum::load(None).unwrap();
    let err = export(&view, &f.settings, &c, &out, &options(), &mut |_| {}).unwrap_err();
    assert!(err.to_string().contains("not empty"), "{err}");
    assert_eq!(
        std::fs::read_to_string(out.join("notes.txt")).unwrap(),
        "mine"
    );
    // A previous export whose manifest points outside its folder is not cleaned up blindly.
    let prev = out_dir(&f, "previous");
    export(&view, &f.settings, &c, &prev, &options(), &mut |_| {}).unwrap();
    let victim = out_dir(&f, "victim.txt");
    std::fs::write(&victim, "keep me").unwrap();
    let manifest = prev.join("manifest.json");
    let text = std::fs::read_to_string(&manifest).unwrap();
    let text = text.replacen(
        "\"path\": \"final.chatml.jsonl\"",
        "\"path\": \"../victim.txt\"",
        1,
    );
    std::fs::write(&manifest, text).unwrap();
    let err = export(&view, &f.settings, &c, &prev, &options(), &mut |_| {}).unwrap_err();
    assert!(
        err.to_string().contains("not a path inside the export"),
        "{err}"
    );
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "keep me");
    // The fixture lacks most required families: coverage fails, and export says so.
    let strict = ExportOptions {
        allow_failing_gates: false,
        ..options()
    };
    let err = export(
        &view,
        &f.settings,
        &c,
        &out_dir(&f, "strict"),
        &strict,
        &mut |_| {},
    )
    .unwrap_err();
    assert!(
        matches!(err, idx::error::Error::GatesFailed(ref g) if g == "coverage"),
        "{err}"
    );
}
