//! Full-text search over rows, and the full-text index's recovery from redb.

use idx::index::Index;
use idx::query;

use super::common::{chat, hashes_of, Fixture};

fn search(f: &Fixture, q: &str, family: Option<&str>) -> Vec<query::TextHit> {
    let (store, search, _lag) = Index::open_read(&f.index_dir).unwrap();
    let view = store.read().unwrap();
    query::text(&view, &search, q, family, 10).unwrap()
}

#[test]
fn text_search_finds_rows_with_place_family_and_snippet() {
    let f = Fixture::new();
    f.write(
        "datasets/consolidated/datasets/sarcasm_data.json",
        format!(
            "[{}]",
            chat(
                "Oh wonderful, my insomnia is back",
                "That sounds frustrating."
            )
        ),
    );
    f.write(
        "misc/other.jsonl",
        chat("I cannot sleep, insomnia again", "Let's talk about it."),
    );
    f.ingest();
    let hits = search(&f, "insomnia", None);
    assert_eq!(hits.len(), 2);
    assert!(hits.iter().all(|h| h.snippet.contains("**insomnia**")));
    let sarcasm = search(&f, "insomnia", Some("sarcasm"));
    assert_eq!(sarcasm.len(), 1);
    assert_eq!(
        sarcasm[0].key,
        "datasets/consolidated/datasets/sarcasm_data.json"
    );
    assert_eq!(sarcasm[0].line, 1);
    assert_eq!(sarcasm[0].family, "sarcasm");
    assert!(search(&f, "nonexistentword", None).is_empty());
}

#[test]
fn deleted_and_changed_rows_leave_the_text_index() {
    let f = Fixture::new();
    f.write("a.jsonl", chat("pineapple worries", "ok"));
    f.ingest();
    assert_eq!(search(&f, "pineapple", None).len(), 1);
    f.write("a.jsonl", chat("mango worries instead", "ok"));
    f.ingest();
    assert!(search(&f, "pineapple", None).is_empty());
    assert_eq!(search(&f, "mango", None).len(), 1);
    f.remove("a.jsonl");
    f.ingest();
    assert!(search(&f, "mango", None).is_empty());
}

#[test]
fn a_lost_text_index_is_rebuilt_from_redb() {
    let f = Fixture::new();
    f.write("a.jsonl", chat("lighthouse dreams", "ok"));
    f.ingest();
    f.write("b.jsonl", chat("lighthouse keepers", "ok"));
    f.ingest(); // the text index committed the first batch, so its log entry is pruned
    std::fs::remove_dir_all(f.index_dir.join("text")).unwrap();
    let index = Index::open_write(&f.index_dir).unwrap();
    assert_eq!(index.catchup, idx::search::Catchup::Rebuilt { rows: 2 });
    drop(index);
    assert_eq!(search(&f, "lighthouse", None).len(), 2);
}

#[test]
fn a_text_index_behind_redb_replays_the_log() {
    // Simulates a crash between the redb commit and the tantivy commit: rows reach redb only.
    let f = Fixture::new();
    f.write("a.jsonl", chat("first harbour", "ok"));
    f.ingest();
    f.write("b.jsonl", chat("second harbour", "ok"));
    {
        let store = idx::store::Store::open_write(&f.index_dir.join("index.redb")).unwrap();
        let txn = store.begin_write().unwrap();
        let mut batch = idx::store::WriteBatch::open(&txn, &f.settings.policy()).unwrap();
        let mut conv = idx::model::Conversation {
            kind: idx::model::RecordKind::Chatml,
            messages: vec![idx::model::Message::new(
                idx::model::Role::User,
                "third harbour",
            )],
            rejected: None,
            label: None,
        };
        idx::normalize::canonicalize(&mut conv);
        let fp = idx::fingerprint::fingerprint(&conv);
        let id = idx::store::keys::object_id("file:///elsewhere", "c.jsonl");
        batch
            .add_place(
                &id,
                &["unassigned".to_string()],
                1,
                0,
                idx::store::NewPlace {
                    fp: &fp,
                    conversation: &conv,
                    pii: &idx::pii::PiiRecord::clean(),
                    meta: &idx::model::RecordMeta::default(),
                    stored: None,
                },
            )
            .unwrap();
        batch.finish(0).unwrap();
        txn.commit().unwrap();
    }
    let index = Index::open_write(&f.index_dir).unwrap();
    assert_eq!(index.catchup, idx::search::Catchup::Replayed { rows: 1 });
    drop(index);
    assert_eq!(search(&f, "harbour", None).len(), 2);
    f.ingest();
    assert_eq!(search(&f, "harbour", None).len(), 3);
    assert_eq!(hashes_of(&f.index_dir, "b.jsonl").len(), 1);
}
