//! Hostile input never panics and never loses a line silently; an index of another format
//! version is refused with a message naming both versions.

use super::common::{chat, Fixture};
use idx::parse::{read_object, FileFormat, Item, Limits};
use idx::rng::Rng;

/// Randomly mutated JSONL: every non-blank line ends up a record or a rejection, nothing panics.
#[test]
fn mutated_input_is_fully_accounted_for() {
    let seeds = [
        chat("I can't sleep", "Tell me about your evenings."),
        r#"{"prompt": "p", "chosen": [{"role": "assistant", "content": "c"}], "rejected": "r"}"#
            .to_string(),
        r#"{"instruction": "i", "input": null, "output": "o", "system": "s"}"#.to_string(),
        r#"{"conversations": [{"from": "human", "value": "ü 😀"}]}"#.to_string(),
        r#"{"prompt": "p", "completion": "c", "label": 1}"#.to_string(),
    ];
    let mut rng = Rng(0xDEAD_BEEF_CAFE_F00D);
    for round in 0..300 {
        let mut data: Vec<u8> = Vec::new();
        let mut lines = 0u64;
        for _ in 0..20 {
            let mut line = seeds[(rng.next() % seeds.len() as u64) as usize]
                .clone()
                .into_bytes();
            const NOISE: &[u8] = b"\"{}[]:,\\\xff\x00";
            for _ in 0..(rng.next() % 4) {
                if line.is_empty() {
                    break;
                }
                let at = (rng.next() % line.len() as u64) as usize;
                match rng.next() % 4 {
                    0 => line[at] = (rng.next() & 0xFF) as u8,
                    1 => {
                        line.remove(at);
                    }
                    2 => line.insert(at, NOISE[(rng.next() % NOISE.len() as u64) as usize]),
                    _ => line.truncate(at),
                }
            }
            line.retain(|&b| b != b'\n');
            if !line.iter().all(u8::is_ascii_whitespace) {
                lines += 1;
            }
            data.extend_from_slice(&line);
            data.push(b'\n');
        }
        let (mut records, mut rejected) = (0u64, 0u64);
        read_object(
            &data[..],
            FileFormat::Jsonl,
            false,
            Limits::default(),
            &mut |item| match item {
                Item::Record(r) => {
                    assert!(!r.conversation.messages.is_empty());
                    records += 1;
                }
                Item::Rejected(r) => {
                    assert!(!r.reason.is_empty());
                    rejected += 1;
                }
            },
        );
        assert_eq!(records + rejected, lines, "round {round}");
        // The same bytes as one .json document: one rejection at most, or records.
        read_object(
            &data[..],
            FileFormat::Json,
            false,
            Limits::default(),
            &mut |_| {},
        );
        // And as a (bogus) gzip stream: a read error, reported, not a panic.
        let mut errors = 0;
        read_object(
            &data[..],
            FileFormat::Jsonl,
            true,
            Limits::default(),
            &mut |item| {
                if let Item::Rejected(r) = item {
                    assert!(r.reason.contains("read error"), "{}", r.reason);
                    errors += 1;
                }
            },
        );
        assert_eq!(errors, 1);
    }
}

#[test]
fn an_index_of_another_format_version_is_refused() {
    let f = Fixture::new();
    f.write("a.jsonl", chat("a", "b"));
    f.ingest();
    {
        let db = redb::Database::builder()
            .set_concurrency_mode(redb::ConcurrencyMode::SingleWriter)
            .open(f.index_dir.join("index.redb"))
            .unwrap();
        let txn = db.begin_write().unwrap();
        {
            let mut meta = txn
                .open_table(redb::TableDefinition::<&str, &[u8]>::new("meta"))
                .unwrap();
            let v = bincode::serde::encode_to_vec(999u32, bincode::config::standard()).unwrap();
            meta.insert("format_version", v.as_slice()).unwrap();
        }
        txn.commit().unwrap();
    }
    let err = idx::index::Index::open_store_read(&f.index_dir)
        .unwrap_err()
        .to_string();
    assert!(err.contains("format version 999"), "{err}");
    assert!(
        err.contains(&format!("reads version {}", idx::store::FORMAT_VERSION)),
        "{err}"
    );
    let err = idx::index::Index::open_write(&f.index_dir)
        .err()
        .expect("refused")
        .to_string();
    assert!(err.contains("format version 999"), "{err}");
}
