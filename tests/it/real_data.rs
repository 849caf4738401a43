//! Real public data no one here wrote, read through the shipped mappings: the counsel-chat CSV
//! and the ESConv dialogues under `../shared/data/real/` (beside the checkout). Where that
//! folder is absent (a checkout on its own) the test says so and checks nothing else; the
//! generated fixtures of `formats.rs` and `own_data.rs` cover the same code paths.

use std::path::Path;

use super::common::*;
use idx::index::Index;

fn real(rel: &str) -> Option<std::path::PathBuf> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/data/real")
        .join(rel);
    p.exists().then_some(p)
}

/// A fixture holding these real files under the same relative paths; `None` (said on stderr)
/// when the shared data is not beside the checkout.
fn real_fixture(rels: &[&str]) -> Option<Fixture> {
    let f = Fixture::new();
    for rel in rels {
        let Some(path) = real(rel) else {
            eprintln!("../shared/data/real is not here: the real-data test has nothing to read");
            return None;
        };
        f.write(rel, std::fs::read(path).unwrap());
    }
    Some(f)
}

#[test]
fn counsel_chat_and_esconv_read_through_the_shipped_mappings() {
    let Some(f) = real_fixture(&[
        "counsel-chat/20200325_counsel_chat.csv",
        "esconv/FailedESConv.json",
    ]) else {
        return;
    };
    let r = f.ingest();
    assert_eq!(r.rejected_rows, 0, "{:?}", r.rejections);
    let store = Index::open_store_read(&f.index_dir).unwrap();
    let view = store.read().unwrap();

    // counsel-chat: 2,129 answers to 815 questions, each answer's upvotes and topic kept.
    let cc = &idx::query::source(&view, "counsel-chat/20200325_counsel_chat.csv").unwrap()[0];
    assert_eq!(cc.mapping.as_deref(), Some("counsel-chat"));
    assert_eq!(cc.rows.len(), 2129);
    assert_eq!(cc.sessions, 815);
    assert!(cc
        .rows
        .iter()
        .all(|r| r.attributes.contains_key("upvotes") && r.attributes.contains_key("topic")));
    let first = row(&f.index_dir, &cc.rows[0].content_hash).unwrap();
    assert_eq!(first.messages.len(), 2);
    assert!(first.flaws.is_empty());

    // ESConv: 196 dialogues, each its own session; the structure checks find what real
    // dialogues hold: openings by the supporter and endings on the seeker.
    let es = &idx::query::source(&view, "esconv/FailedESConv.json").unwrap()[0];
    assert_eq!(es.mapping.as_deref(), Some("esconv"));
    assert_eq!((es.rows.len(), es.sessions), (196, 196));
    assert!(es.rows[0].attributes.contains_key("emotion_type"));
    let mut starts = 0;
    let mut ends = 0;
    let mut merged = 0;
    for r in &es.rows {
        let answer = row(&f.index_dir, &r.content_hash).unwrap();
        starts += answer.flaws.contains(&"starts_with_assistant") as u32;
        ends += answer.flaws.contains(&"ends_on_user") as u32;
        merged += r.merged_turns;
        let roles: Vec<_> = answer.messages.iter().map(|m| m.role).collect();
        assert!(
            roles.windows(2).all(|w| w[0] != w[1]),
            "merged turns alternate"
        );
    }
    // The file: 71 dialogues open with the supporter, 81 end on the seeker.
    assert_eq!((starts, ends), (71, 81));
    assert!(merged > 0);
    let status = f.status();
    assert_eq!(
        status.totals.merged_turns,
        u64::from(merged)
            + cc.rows
                .iter()
                .map(|r| u64::from(r.merged_turns))
                .sum::<u64>()
    );
}

#[test]
fn counsel_chat_upvotes_become_preference_pairs() {
    let Some(f) = real_fixture(&["counsel-chat/20200325_counsel_chat.csv"]) else {
        return;
    };
    f.ingest();
    let mut index = Index::open_write(&f.index_dir).unwrap();
    let report = idx::derive::run(&mut index, &f.settings, None, &f.options).unwrap();
    drop(index);
    let pairs = &report.recipes[0];
    // 2,009 distinct answer rows (of 2,129: some answers repeat word for word); the best answer
    // of 199 questions against up to three answers at least one upvote lower: 396 pairs.
    assert_eq!((pairs.inputs, pairs.groups, pairs.rows), (2009, 199, 396));
    assert_eq!(report.ingest.as_ref().unwrap().rows_added, 396);
    // Every pair is in the split of the answers it was made from.
    let store = Index::open_store_read(&f.index_dir).unwrap();
    let view = store.read().unwrap();
    let policy = f.settings.policy();
    let assignments = view.assignments(&policy).unwrap();
    for o in view
        .objects_under(idx::source::derived::DERIVED_SOURCE)
        .unwrap()
    {
        for (_, _, h, meta) in view
            .object_places(&idx::store::keys::object_id(&o.source, &o.key))
            .unwrap()
        {
            let inputs = idx::parse::derived::inputs_of(&meta);
            assert_eq!(inputs.len(), 2);
            for input in inputs {
                assert_eq!(assignments[&input].split, assignments[&h].split);
                assert_eq!(assignments[&input].cluster, assignments[&h].cluster);
            }
        }
    }
}
