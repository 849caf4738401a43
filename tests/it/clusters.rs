//! Near-duplicate clusters and splits, maintained incrementally: joins, merges, splits after a
//! deletion, holdout groups, order independence, and agreement with the from-scratch
//! recomputation of `idx verify` after every step.

use std::collections::BTreeSet;
use std::path::Path;

use idx::config::{IdxConfig, Settings};
use idx::fingerprint::{fingerprint, fingerprint_text, jaccard, shingle_set, Hash128};
use idx::model::{Conversation, Message, RecordKind, Role};
use idx::neardup::{Policy, Split};
use idx::normalize::canonicalize;

use super::common::{chat, digest_of, Fixture};

/// A conversation as ingest sees it: canonical, with its fingerprints.
pub struct Text {
    pub user: String,
    pub assistant: String,
}

impl Text {
    fn conversation(&self) -> Conversation {
        let mut c = Conversation {
            kind: RecordKind::Chatml,
            messages: vec![
                Message::new(Role::User, self.user.as_str()),
                Message::new(Role::Assistant, self.assistant.as_str()),
            ],
            rejected: None,
            label: None,
        };
        canonicalize(&mut c);
        c
    }

    pub fn hash(&self) -> Hash128 {
        fingerprint(&self.conversation()).content_hash
    }

    fn simhash(&self) -> u64 {
        fingerprint(&self.conversation()).simhash
    }

    fn shingles(&self) -> Vec<u64> {
        shingle_set(&fingerprint_text(&self.conversation()))
    }

    pub fn line(&self) -> String {
        chat(&self.user, &self.assistant)
    }
}

const WORDS: &[&str] = &[
    "sleep", "worry", "work", "family", "anxious", "tired", "friend", "talk", "night", "morning",
    "heart", "racing", "breathe", "calm", "therapy", "session", "feel", "alone", "hope", "change",
    "small", "steps", "walk", "journal", "thoughts", "stress", "panic", "gentle", "notice", "body",
];

fn xorshift(seed: &mut u64) -> u64 {
    *seed ^= *seed << 13;
    *seed ^= *seed >> 7;
    *seed ^= *seed << 17;
    *seed
}

/// A long conversation (about 120 words) from a seed.
pub fn base(seed: u64) -> Text {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let words: Vec<String> = (0..120)
        .map(|i| {
            format!(
                "{}{}",
                WORDS[(xorshift(&mut s) % WORDS.len() as u64) as usize],
                i % 7
            )
        })
        .collect();
    Text {
        user: words[..60].join(" "),
        assistant: words[60..].join(" "),
    }
}

/// `t` with `edits` words of the assistant turn replaced, chosen (deterministically, by trying
/// seeds) so that it stays within `max_hamming` SimHash bits of `t`.
pub fn edited(t: &Text, edits: usize, seed: u64, max_hamming: u32) -> Text {
    let mut s = seed | 1;
    loop {
        let mut words: Vec<String> = t.assistant.split(' ').map(String::from).collect();
        for _ in 0..edits {
            let i = (xorshift(&mut s) % words.len() as u64) as usize;
            words[i] = format!("edit{}", xorshift(&mut s) % 10_000);
        }
        let out = Text {
            user: t.user.clone(),
            assistant: words.join(" "),
        };
        if (out.simhash() ^ t.simhash()).count_ones() <= max_hamming {
            return out;
        }
    }
}

fn similarity(a: &Text, b: &Text) -> f64 {
    jaccard(&a.shingles(), &b.shingles())
}

fn hamming(a: &Text, b: &Text) -> u32 {
    (a.simhash() ^ b.simhash()).count_ones()
}

fn policy() -> Policy {
    Settings::builtin().policy()
}

fn verify(dir: &Path, settings: &Settings) -> idx::verify::Verification {
    let store = idx::index::Index::open_store_read(dir).unwrap();
    idx::verify::verify(&store.read().unwrap(), settings, None).unwrap()
}

fn assert_leak_free(dir: &Path, settings: &Settings) {
    let v = verify(dir, settings);
    let l = &v.gates.leakage;
    assert!(
        l.passed,
        "leakage gate: {} cross-split pairs, {} disagreements {:?}",
        l.cross_split_pairs, l.disagreements, l.disagreement_examples
    );
}

fn assignment(dir: &Path, t: &Text) -> idx::store::Assignment {
    let store = idx::index::Index::open_store_read(dir).unwrap();
    let view = store.read().unwrap();
    assert!(view.row(t.hash()).unwrap().is_some(), "row not indexed");
    view.assignment(t.hash(), &policy()).unwrap()
}

fn near(dir: &Path, t: &Text) -> idx::query::NearAnswer {
    let store = idx::index::Index::open_store_read(dir).unwrap();
    idx::query::near(&store.read().unwrap(), &t.hash().to_hex(), &policy())
        .unwrap()
        .unwrap()
}

#[test]
fn near_duplicates_share_a_cluster_and_a_split() {
    let f = Fixture::new();
    let a = base(1);
    let b = edited(&a, 2, 11, 3);
    let unrelated = base(2);
    assert!(similarity(&a, &b) >= 0.8);
    f.write("one/a.jsonl", a.line() + "\n" + &unrelated.line());
    f.write("two/b.jsonl", b.line());
    f.ingest();

    let answer = near(&f.index_dir, &a);
    assert_eq!(answer.neighbours.len(), 1, "{answer:?}");
    let n = &answer.neighbours[0];
    assert_eq!(n.content_hash, b.hash().to_hex());
    assert_eq!(n.hamming, hamming(&a, &b));
    assert!((n.similarity - similarity(&a, &b)).abs() < 1e-9);
    assert_eq!(n.sources[0].key, "two/b.jsonl");
    assert_eq!(n.sources[0].line, 1);
    assert_eq!(answer.cluster_size, 2);

    let (sa, sb) = (assignment(&f.index_dir, &a), assignment(&f.index_dir, &b));
    assert_eq!(sa, sb);
    assert_eq!(sa.cluster, a.hash().min(b.hash()));
    assert_eq!(sa.split, policy().split_of(sa.cluster, false));
    assert!(near(&f.index_dir, &unrelated).neighbours.is_empty());
    assert_eq!(
        assignment(&f.index_dir, &unrelated).cluster,
        unrelated.hash()
    );
    assert_leak_free(&f.index_dir, &f.settings);
}

#[test]
fn rows_below_the_word_minimum_match_only_exactly() {
    let f = Fixture::new();
    f.write(
        "a.jsonl",
        chat("i cannot sleep at night", "that sounds exhausting"),
    );
    f.write(
        "b.jsonl",
        chat("i cannot sleep at night", "that sounds exhausting!"),
    );
    f.ingest();
    let store = idx::index::Index::open_store_read(&f.index_dir).unwrap();
    let view = store.read().unwrap();
    let mut rows = Vec::new();
    view.for_each_row(|h, _| {
        rows.push(h);
        Ok(())
    })
    .unwrap();
    assert_eq!(rows.len(), 2);
    for h in rows {
        let a = idx::query::near(&view, &h.to_hex(), &policy())
            .unwrap()
            .unwrap();
        assert!(!a.fingerprinted);
        assert!(a.neighbours.is_empty());
        assert_eq!(a.cluster, h.to_hex());
    }
}

/// A chain a ~ b ~ c where a and c are not near-duplicates of each other, and a and c fall in
/// different splits on their own (so joining them must move one).
fn chain() -> (Text, Text, Text) {
    let p = policy();
    for seed in 1..500u64 {
        let a = base(100 + seed);
        let b = edited(&a, 2, seed * 7, 4);
        let c = edited(&b, 2, seed * 13, 4);
        if similarity(&a, &b) >= 0.8
            && similarity(&b, &c) >= 0.8
            && (similarity(&a, &c) < 0.8 || hamming(&a, &c) > p.hamming)
            && p.split_of(a.hash(), false) != p.split_of(c.hash(), false)
        {
            return (a, b, c);
        }
    }
    panic!("no chain found");
}

#[test]
fn a_bridge_row_merges_two_clusters_and_its_deletion_splits_them_again() {
    let f = Fixture::new();
    let (a, b, c) = chain();
    f.write("a.jsonl", a.line());
    f.write("c.jsonl", c.line());
    f.ingest();
    let (sa, sc) = (assignment(&f.index_dir, &a), assignment(&f.index_dir, &c));
    assert_ne!(sa.cluster, sc.cluster);
    assert_ne!(sa.split, sc.split);
    let seq_before = super::common::status_of(&f.index_dir).commits;

    // The bridge arrives: one cluster, one split, the smallest hash as its id.
    f.write("b.jsonl", b.line());
    let r = f.ingest();
    let ids = [a.hash(), b.hash(), c.hash()];
    let cluster = *ids.iter().min().unwrap();
    let merged: Vec<_> = [&a, &b, &c]
        .iter()
        .map(|t| assignment(&f.index_dir, t))
        .collect();
    assert!(merged
        .iter()
        .all(|m| m.cluster == cluster && m.split == merged[0].split));
    assert_eq!(merged[0].split, policy().split_of(cluster, false));
    assert_leak_free(&f.index_dir, &f.settings);

    // Every existing row whose split changed is recorded, from where to where.
    let store = idx::index::Index::open_store_read(&f.index_dir).unwrap();
    let moves = idx::query::moves(&store.read().unwrap(), seq_before).unwrap();
    drop(store);
    let expected: BTreeSet<(String, Split, Split)> = [(&a, sa.split), (&c, sc.split)]
        .into_iter()
        .filter(|(_, old)| *old != merged[0].split)
        .map(|(t, old)| (t.hash().to_hex(), old, merged[0].split))
        .collect();
    assert!(!expected.is_empty());
    let got: BTreeSet<(String, Split, Split)> = moves
        .into_iter()
        .map(|m| (m.content_hash, m.from, m.to))
        .collect();
    assert_eq!(got, expected);
    assert_eq!(r.split_moves, expected.len() as u64);

    // The bridge goes: the cluster splits back into the two it joined.
    f.remove("b.jsonl");
    f.ingest();
    assert_eq!(assignment(&f.index_dir, &a), sa);
    assert_eq!(assignment(&f.index_dir, &c), sc);
    assert_leak_free(&f.index_dir, &f.settings);
}

#[test]
fn a_changed_object_moves_its_rows_between_clusters() {
    let f = Fixture::new();
    let a = base(7);
    let a2 = edited(&a, 1, 5, 3);
    let b = base(8);
    let b2 = edited(&b, 1, 9, 3);
    f.write("x.jsonl", a.line());
    f.write("y.jsonl", a2.line());
    f.ingest();
    assert_eq!(
        assignment(&f.index_dir, &a2).cluster,
        a.hash().min(a2.hash())
    );
    // y now holds a near-duplicate of b instead.
    f.write("y.jsonl", b2.line() + "\n");
    f.write("z.jsonl", b.line());
    f.ingest();
    assert_eq!(assignment(&f.index_dir, &a).cluster, a.hash());
    assert_eq!(
        assignment(&f.index_dir, &b2).cluster,
        b.hash().min(b2.hash())
    );
    assert_leak_free(&f.index_dir, &f.settings);
}

#[test]
fn clusters_and_splits_do_not_depend_on_ingest_order() {
    let f = Fixture::new();
    let (a, b, c) = chain();
    let d = edited(&base(40), 3, 3, 4);
    let files = [
        ("1.jsonl", format!("{}\n{}\n", a.line(), base(40).line())),
        ("2.jsonl", format!("{}\n", c.line())),
        ("3.jsonl", format!("{}\n{}\n", b.line(), d.line())),
        ("4.jsonl", format!("{}\n", base(41).line())),
    ];
    for (k, body) in &files {
        f.write(k, body);
    }
    f.ingest();
    let one_shot = digest_of(&f.index_dir);

    // Another index fed file by file in reverse order, re-ingesting one file in the middle.
    let other = f.with_index("reverse");
    for (k, _) in files.iter().rev() {
        f.ingest_into(&other, [f.data.join(k)]);
    }
    f.ingest_into(&other, [f.data.join("2.jsonl")]);
    assert_eq!(digest_of(&other), one_shot);
    for t in [&a, &b, &c, &d] {
        assert_eq!(assignment(&other, t), assignment(&f.index_dir, t));
    }
    assert_leak_free(&other, &f.settings);
}

#[test]
fn holdout_families_keep_whole_objects_in_one_split() {
    let f = Fixture::new();
    // `sarcasm` is a holdout family in the default config; `cptsd` is not.
    let session: Vec<Text> = (0..30).map(|i| base(200 + i)).collect();
    let other_session: Vec<Text> = (0..30).map(|i| base(300 + i)).collect();
    let lines = |ts: &[Text]| ts.iter().map(|t| t.line() + "\n").collect::<String>();
    f.write("sarcasm/session_1.jsonl", lines(&session));
    f.write("sarcasm/session_2.jsonl", lines(&other_session));
    let plain: Vec<Text> = (0..30).map(|i| base(400 + i)).collect();
    f.write("cptsd/rows.jsonl", lines(&plain));
    f.ingest();

    for group in [&session, &other_session] {
        let first = assignment(&f.index_dir, &group[0]);
        let cluster = group.iter().map(Text::hash).min().unwrap();
        assert_eq!(first.cluster, cluster);
        assert!(first.holdout);
        assert_eq!(first.split, policy().split_of(cluster, true));
        for t in group.iter() {
            assert_eq!(assignment(&f.index_dir, t), first);
        }
    }
    // Ordinary rows are split one by one.
    let splits: BTreeSet<Split> = plain
        .iter()
        .map(|t| assignment(&f.index_dir, t).split)
        .collect();
    assert!(plain
        .iter()
        .all(|t| assignment(&f.index_dir, t).cluster == t.hash()));
    assert!(splits.len() > 1 || plain.len() < 5, "{splits:?}");
    let v = verify(&f.index_dir, &f.settings);
    assert_eq!(v.gates.leakage.holdout_groups, 2);

    // A row of a held-out session that also turns up elsewhere stays with its session.
    f.write("cptsd/more.jsonl", session[3].line());
    f.ingest();
    assert_eq!(
        assignment(&f.index_dir, &session[3]),
        assignment(&f.index_dir, &session[0])
    );
    // Removing the session frees its rows.
    f.remove("sarcasm/session_1.jsonl");
    f.ingest();
    let freed = assignment(&f.index_dir, &session[3]);
    assert_eq!(freed.cluster, session[3].hash());
    assert!(!freed.holdout);
    assert_leak_free(&f.index_dir, &f.settings);
}

#[test]
fn directory_groups_join_the_objects_of_one_folder() {
    let mut f = Fixture::new();
    let mut config = IdxConfig::load(None).unwrap();
    config.holdout.group = idx::config::GroupBy::Directory;
    f.settings.idx = config;
    let x = base(500);
    let y = base(501);
    let z = base(502);
    f.write("sarcasm/speaker_a/1.jsonl", x.line());
    f.write("sarcasm/speaker_a/2.jsonl", y.line());
    f.write("sarcasm/speaker_b/1.jsonl", z.line());
    f.ingest();
    let store = idx::index::Index::open_store_read(&f.index_dir).unwrap();
    let view = store.read().unwrap();
    let p = f.settings.policy();
    let ax = view.assignment(x.hash(), &p).unwrap();
    assert_eq!(ax, view.assignment(y.hash(), &p).unwrap());
    assert_eq!(ax.cluster, x.hash().min(y.hash()));
    assert_eq!(view.assignment(z.hash(), &p).unwrap().cluster, z.hash());
    drop(view);
    drop(store);
    assert_leak_free(&f.index_dir, &f.settings);
}

#[test]
fn changed_settings_recompute_clusters_once_and_record_the_moves() {
    let mut f = Fixture::new();
    let rows: Vec<Text> = (0..40).map(|i| base(600 + i)).collect();
    f.write(
        "rows.jsonl",
        rows.iter().map(|t| t.line() + "\n").collect::<String>(),
    );
    f.ingest();
    let before: Vec<Split> = rows
        .iter()
        .map(|t| assignment(&f.index_dir, t).split)
        .collect();

    let mut config = IdxConfig::load(None).unwrap();
    config.splits.salt = "another salt".into();
    let changed = Settings {
        classifier: idx::families::Classifier::load(None).unwrap(),
        idx: config,
        mappings: idx::parse::Mappings::builtin(),
        recipes: idx::derive::Recipes::builtin(),
    };
    // Until the next ingest, verify says the index is stale.
    let v = verify(&f.index_dir, &changed);
    assert!(!v.gates.leakage.settings_current);
    assert!(!v.passed);

    f.settings = changed;
    let r = f.ingest();
    let p = f.settings.policy();
    let store = idx::index::Index::open_store_read(&f.index_dir).unwrap();
    let view = store.read().unwrap();
    let mut moved = 0;
    for (t, old) in rows.iter().zip(&before) {
        let now = view.assignment(t.hash(), &p).unwrap().split;
        assert_eq!(now, p.split_of(t.hash(), false));
        moved += usize::from(now != *old);
    }
    assert!(moved > 0);
    assert_eq!(r.split_moves, moved as u64);
    assert_eq!(view.split_moves(0).unwrap().len(), moved);
    drop(view);
    drop(store);
    assert_leak_free(&f.index_dir, &f.settings);
}

#[test]
fn random_edits_keep_the_incremental_state_equal_to_the_recomputation() {
    let f = Fixture::new();
    let mut seed = 0x00C0_FFEE_u64;
    let bases: Vec<Text> = (0..6).map(|i| base(900 + i)).collect();
    // A pool of rows: bases and near-duplicates of them, some in a holdout family.
    let pool: Vec<Text> = bases
        .iter()
        .enumerate()
        .flat_map(|(i, b)| {
            (0..4).map(move |j| {
                if j == 0 {
                    Text {
                        user: b.user.clone(),
                        assistant: b.assistant.clone(),
                    }
                } else {
                    edited(b, j, (i * 10 + j) as u64, 4)
                }
            })
        })
        .collect();
    let names = [
        "a/1.jsonl",
        "a/2.jsonl",
        "b/3.jsonl",
        "sarcasm/4.jsonl",
        "sarcasm/5.jsonl",
    ];
    for step in 0..14 {
        let name = names[(xorshift(&mut seed) % names.len() as u64) as usize];
        if xorshift(&mut seed).is_multiple_of(4) && f.data.join(name).exists() {
            f.remove(name);
        } else {
            let n = 1 + xorshift(&mut seed) % 5;
            let body: String = (0..n)
                .map(|_| pool[(xorshift(&mut seed) % pool.len() as u64) as usize].line() + "\n")
                .collect();
            f.write(name, body);
        }
        f.ingest();
        let v = verify(&f.index_dir, &f.settings);
        assert!(
            v.gates.leakage.passed,
            "step {step}: {:?}",
            v.gates.leakage.disagreement_examples
        );
    }
}

#[test]
fn large_batches_looking_up_in_memory_find_the_same_clusters_as_redb_lookups() {
    let mut f = Fixture::new();
    let mut rows: Vec<Text> = Vec::new();
    for i in 0..150 {
        let b = base(2000 + i);
        if i % 3 == 0 {
            rows.push(edited(&b, 1, i + 1, 3));
        }
        rows.push(b);
    }
    // One object of 200 rows: one batch, lookups in memory.
    let one = f.with_index("one");
    f.write(
        "all/rows.jsonl",
        rows.iter().map(|t| t.line() + "\n").collect::<String>(),
    );
    f.write(
        "all/more.jsonl",
        (0..100)
            .map(|i| base(3000 + i).line() + "\n")
            .collect::<String>(),
    );
    f.ingest_into(&one, [f.data.join("all")]);
    // One object per row, one commit each: lookups in redb.
    for (i, t) in rows.iter().enumerate() {
        f.write(&format!("each/{i:03}.jsonl"), t.line());
    }
    f.options.batch_bytes = 1;
    let each = f.with_index("each");
    f.ingest_into(&each, [f.data.join("each")]);
    let mut clustered = 0;
    for t in &rows {
        let (a, b) = (assignment(&one, t), assignment(&each, t));
        assert_eq!(a, b);
        clustered += usize::from(a.cluster != t.hash());
    }
    // 50 pairs: in each, the row with the larger hash points at the other.
    assert_eq!(clustered, 50);
    assert_leak_free(&one, &f.settings);
    assert_leak_free(&each, &f.settings);
}

#[test]
fn a_large_batch_that_removes_a_bridge_splits_its_cluster_in_memory() {
    // The batch that takes the bridge away also brings 300 rows: it links in memory
    // (`link_in_memory`), re-linking the broken cluster's members among themselves there.
    let f = Fixture::new();
    let (a, b, c) = chain();
    let filler = |from: u64| {
        (0..300)
            .map(|i| base(from + i).line() + "\n")
            .collect::<String>()
    };
    f.write("a.jsonl", a.line());
    f.write("c.jsonl", c.line());
    f.write("b.jsonl", b.line());
    f.write("first.jsonl", filler(5000));
    f.ingest();
    let cluster = [a.hash(), b.hash(), c.hash()].into_iter().min().unwrap();
    assert_eq!(assignment(&f.index_dir, &a).cluster, cluster);
    assert_eq!(assignment(&f.index_dir, &c).cluster, cluster);

    f.remove("b.jsonl");
    f.write("second.jsonl", filler(6000));
    let r = f.ingest();
    assert_eq!(r.objects_new, 1);
    let (sa, sc) = (assignment(&f.index_dir, &a), assignment(&f.index_dir, &c));
    assert_eq!(sa.cluster, a.hash());
    assert_eq!(sc.cluster, c.hash());
    assert_leak_free(&f.index_dir, &f.settings);

    // The same content ingested at once gives the same assignments.
    let fresh = f.with_index("fresh");
    f.ingest_into(&fresh, [&f.data]);
    assert_eq!(assignment(&fresh, &a), sa);
    assert_eq!(assignment(&fresh, &c), sc);
}

/// Rewrite an index's SimHash buckets as format 4 kept them (a key per table and row, no value)
/// and mark it format 4.
fn downgrade_to_format_4(index_dir: &Path) {
    use redb::{ReadableTable, TableDefinition};
    let buckets = TableDefinition::<&[u8], &[u8]>::new("simhash_buckets");
    let old = TableDefinition::<&[u8], ()>::new("simhash_tables");
    let db = redb::Database::builder()
        .set_concurrency_mode(redb::ConcurrencyMode::SingleWriter)
        .open(index_dir.join("index.redb"))
        .unwrap();
    let txn = db.begin_write().unwrap();
    {
        let mut keys = Vec::new();
        for entry in txn.open_table(buckets).unwrap().iter().unwrap() {
            let (k, v) = entry.unwrap();
            let v = v.value();
            let n = v.len() / 24;
            for i in 0..n {
                let permuted = u64::from_le_bytes(v[i * 8..i * 8 + 8].try_into().unwrap());
                let mut key = vec![k.value()[0]];
                key.extend_from_slice(&permuted.to_be_bytes());
                key.extend_from_slice(&v[n * 8 + i * 16..n * 8 + i * 16 + 16]);
                keys.push(key);
            }
        }
        assert!(!keys.is_empty());
        let mut t = txn.open_table(old).unwrap();
        for key in keys {
            t.insert(key.as_slice(), ()).unwrap();
        }
        let mut meta = txn
            .open_table(TableDefinition::<&str, &[u8]>::new("meta"))
            .unwrap();
        let v = bincode::serde::encode_to_vec(4u32, bincode::config::standard()).unwrap();
        meta.insert("format_version", v.as_slice()).unwrap();
    }
    txn.delete_table(buckets).unwrap();
    txn.commit().unwrap();
    drop(db);
    drop_object_classes(index_dir, 4);
}

/// Make an index look like one written before `object_classes` (format 5 and earlier): the table
/// gone, the stored format version `version`.
fn drop_object_classes(index_dir: &Path, version: u32) {
    use redb::TableDefinition;
    let db = redb::Database::builder()
        .set_concurrency_mode(redb::ConcurrencyMode::SingleWriter)
        .open(index_dir.join("index.redb"))
        .unwrap();
    let txn = db.begin_write().unwrap();
    assert!(txn
        .delete_table(TableDefinition::<&str, u8>::new("object_classes"))
        .unwrap());
    {
        let mut meta = txn
            .open_table(TableDefinition::<&str, &[u8]>::new("meta"))
            .unwrap();
        let v = bincode::serde::encode_to_vec(version, bincode::config::standard()).unwrap();
        meta.insert("format_version", v.as_slice()).unwrap();
    }
    txn.commit().unwrap();
}

#[test]
fn an_index_of_format_5_gets_its_object_classes_from_the_next_writer() {
    let f = Fixture::new();
    f.write(
        "x/rows.jsonl",
        format!("{}\n{}\n", base(51).line(), base(52).line()),
    );
    f.write(
        "x/labels.jsonl",
        serde_json::json!({"prompt": "I feel low.", "completion": "I am sorry. What happened?", "label": true})
            .to_string(),
    );
    f.ingest();
    let digest = digest_of(&f.index_dir);
    drop_object_classes(&f.index_dir, 5);
    refused_then_upgraded(&f.index_dir, 5);
    // The same state as the index that kept the table all along.
    assert_eq!(digest_of(&f.index_dir), digest);
    let out = super::common::run_idx(&f.index_dir, &["check"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    // A wrong entry is what `idx check` reports.
    {
        use redb::{ReadableTable, TableDefinition};
        let db = redb::Database::open(f.index_dir.join("index.redb")).unwrap();
        let txn = db.begin_write().unwrap();
        {
            let mut t = txn
                .open_table(TableDefinition::<&str, u8>::new("object_classes"))
                .unwrap();
            let id = t
                .iter()
                .unwrap()
                .map(|e| e.unwrap().0.value().to_string())
                .find(|id| id.ends_with("labels.jsonl"))
                .unwrap();
            t.insert(id.as_str(), RecordKind::Chatml.class_bit())
                .unwrap();
        }
        txn.commit().unwrap();
    }
    let out = super::common::run_idx(&f.index_dir, &["check"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(4), "{text}");
    assert!(
        text.contains("labels.jsonl: its stored content classes"),
        "{text}"
    );
}

/// Readers never write: they refuse an index of an older `version`, saying what upgrades it;
/// the next writer (`idx recover`) upgrades it.
fn refused_then_upgraded(index_dir: &Path, version: u32) {
    let out = super::common::run_idx(index_dir, &["status"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains(&format!("format version {version}")), "{err}");
    assert!(err.contains("idx recover"), "{err}");
    let out = super::common::run_idx(index_dir, &["recover"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn an_index_of_format_4_is_upgraded_in_place_by_the_next_writer() {
    let f = Fixture::new();
    let a = base(41);
    let b = edited(&a, 2, 5, 3);
    let lines: String = [a.line(), b.line(), base(42).line(), base(43).line()]
        .iter()
        .map(|l| format!("{l}\n"))
        .collect();
    f.write("x/rows.jsonl", lines);
    f.ingest();
    let digest = digest_of(&f.index_dir);
    let neighbours = near(&f.index_dir, &a).neighbours;
    assert_eq!(neighbours.len(), 1);

    downgrade_to_format_4(&f.index_dir);
    refused_then_upgraded(&f.index_dir, 4);
    // The same state, and it goes on working.
    assert_eq!(digest_of(&f.index_dir), digest);
    assert_eq!(near(&f.index_dir, &a).neighbours, neighbours);
    f.write("x/more.jsonl", edited(&a, 1, 9, 3).line());
    f.ingest();
    assert_eq!(near(&f.index_dir, &a).neighbours.len(), 2);
    assert_leak_free(&f.index_dir, &f.settings);
}
