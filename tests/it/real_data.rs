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

#[test]
fn counsel_chat_and_esconv_read_through_the_shipped_mappings() {
    let (Some(counsel), Some(esconv)) = (
        real("counsel-chat/20200325_counsel_chat.csv"),
        real("esconv/FailedESConv.json"),
    ) else {
        eprintln!("../shared/data/real is not here: the real-data test has nothing to read");
        return;
    };
    let f = Fixture::new();
    f.write(
        "counsel-chat/20200325_counsel_chat.csv",
        std::fs::read(counsel).unwrap(),
    );
    f.write("esconv/FailedESConv.json", std::fs::read(esconv).unwrap());
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
