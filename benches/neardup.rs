//! Near-duplicate quality and SimHash table throughput (`cargo bench --bench neardup`; the
//! figures and how to read them are in `docs/NEAR_DUPLICATES.md`).
//!
//! 1. Quality: documents (the real ESConv dialogues under `../shared/data/real/` when present,
//!    plus generated counselling-style text) each get perturbed copies with 1-10% token edits
//!    (substitutions, deletions, insertions). Ground truth is every pair at Jaccard >= 0.8 of word
//!    3-shingle sets, by brute force over all pairs. For several (hamming, blocks) settings it
//!    prints the precision and recall of the pairs idx confirms (SimHash candidates from the
//!    permuted tables, then the Jaccard check), and the recall of "same cluster" (what keeps a
//!    pair in one split).
//! 2. Throughput: `IDX_ND_FINGERPRINTS` (default 1,000,000) fingerprints indexed in the redb
//!    SimHash tables under the default settings (insert rate printed), then criterion measures
//!    candidate queries and further inserts against the full tables.
//!
//! `IDX_ND_QUALITY_ONLY=1` stops after part 1; `IDX_ND_TABLES=HAMMING/BLOCKS` measures part 2
//! under another setting.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};

use idx::config::{IdxConfig, Settings};
use idx::fingerprint::{count_tokens, fingerprint, fingerprint_text, jaccard, Hash128, Shingles};
use idx::model::{Conversation, Message, RecordKind, Role};
use idx::neardup::{all_pairs, Policy, UnionFind};
use idx::normalize::canonicalize;
use idx::rng::Rng;

/// Dialogue turns: the real ESConv dialogues when present, else none.
fn real_dialogues() -> Vec<Vec<String>> {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data/real/esconv/FailedESConv.json");
    let Ok(text) = std::fs::read_to_string(path) else {
        return Vec::new();
    };
    let Ok(value) = serde_json::from_str::<serde_json::Value>(&text) else {
        return Vec::new();
    };
    value
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|d| d["dialog"].as_array())
        .map(|turns| {
            turns
                .iter()
                .filter_map(|t| t["content"].as_str().map(String::from))
                .collect()
        })
        .collect()
}

const VOCAB: &str = "i you we feel felt feeling anxious worried tired sleep night work job family friend \
partner mother father talk talking help helps helped hard easy really very little more less time today \
week month lately always never sometimes maybe think thought thoughts mind heart body breathe breathing \
calm panic stress stressed alone lonely hope change small steps walk journal notice gentle kind safe \
therapy session counsellor plan try trying want need the a an and but so because when if that this it \
is was are be been have has had not can could would should about with without for to of in on at";

/// Generated dialogues of 4-10 turns over a counselling vocabulary.
fn generated_dialogues(n: usize, rng: &mut Rng) -> Vec<Vec<String>> {
    let vocab: Vec<&str> = VOCAB.split_whitespace().collect();
    (0..n)
        .map(|_| {
            (0..4 + rng.below(7))
                .map(|_| {
                    (0..8 + rng.below(30))
                        .map(|_| vocab[rng.below(vocab.len())])
                        .collect::<Vec<_>>()
                        .join(" ")
                })
                .collect()
        })
        .collect()
}

/// A copy with about `percent`% of its words edited (substituted, deleted or inserted).
fn perturb(turns: &[String], percent: usize, vocab: &[String], rng: &mut Rng) -> Vec<String> {
    let mut words: Vec<Vec<String>> = turns
        .iter()
        .map(|t| t.split_whitespace().map(String::from).collect())
        .collect();
    let total: usize = words.iter().map(Vec::len).sum();
    let edits = (total * percent).div_ceil(100).max(1);
    for _ in 0..edits {
        let turn = rng.below(words.len());
        let w = &mut words[turn];
        let replacement = vocab[rng.below(vocab.len())].clone();
        match rng.below(3) {
            0 if !w.is_empty() => {
                let i = rng.below(w.len());
                w[i] = replacement;
            }
            1 if w.len() > 1 => {
                let i = rng.below(w.len());
                w.remove(i);
            }
            _ => {
                let i = rng.below(w.len() + 1);
                w.insert(i, replacement);
            }
        }
    }
    words.into_iter().map(|w| w.join(" ")).collect()
}

struct Doc {
    hash: Hash128,
    simhash: u64,
    words: u32,
    shingles: Shingles,
}

fn doc(turns: &[String]) -> Doc {
    let c = conversation(turns);
    let fp = fingerprint(&c);
    Doc {
        hash: fp.content_hash,
        simhash: fp.simhash,
        words: fp.words,
        shingles: Shingles::of_text(&fingerprint_text(&c)),
    }
}

/// The fingerprint text of a dialogue.
fn doc_text(turns: &[String]) -> String {
    fingerprint_text(&conversation(turns))
}

/// A canonical conversation of alternating user and assistant turns.
fn conversation(turns: &[String]) -> Conversation {
    let mut c = Conversation {
        kind: RecordKind::Chatml,
        messages: turns
            .iter()
            .enumerate()
            .map(|(i, t)| {
                let role = if i % 2 == 0 {
                    Role::User
                } else {
                    Role::Assistant
                };
                Message::new(role, t.as_str())
            })
            .collect(),
        rejected: None,
        label: None,
    };
    canonicalize(&mut c);
    c
}

/// Bases with perturbed copies; deduplicated by content hash.
fn corpus(bases: &[Vec<String>], copies: usize, rng: &mut Rng) -> Vec<Doc> {
    let vocab: Vec<String> = bases
        .iter()
        .flatten()
        .flat_map(|t| t.split_whitespace().map(String::from))
        .collect();
    let mut out: BTreeMap<Hash128, Doc> = BTreeMap::new();
    for b in bases {
        let d = doc(b);
        out.insert(d.hash, d);
        for _ in 0..copies {
            let percent = 1 + rng.below(10);
            let d = doc(&perturb(b, percent, &vocab, rng));
            out.insert(d.hash, d);
        }
    }
    out.into_values().collect()
}

struct Quality {
    candidates: usize,
    truth: usize,
    found: usize,
    correct: usize,
    same_cluster: usize,
}

fn evaluate(docs: &[Doc], truth: &BTreeSet<(Hash128, Hash128)>, policy: &Policy) -> Quality {
    let eligible: Vec<&Doc> = docs
        .iter()
        .filter(|d| policy.fingerprintable(d.words))
        .collect();
    let by_hash: BTreeMap<Hash128, &Doc> = eligible.iter().map(|d| (d.hash, *d)).collect();
    let fps: Vec<(Hash128, u64)> = eligible.iter().map(|d| (d.hash, d.simhash)).collect();
    let mut found = BTreeSet::new();
    let mut sets = UnionFind::default();
    let candidates = all_pairs(&fps, policy);
    let n_candidates = candidates.len();
    for (a, b, distance) in candidates {
        let (x, y) = (fps[a as usize].0, fps[b as usize].0);
        let (a, b) = (x.min(y), x.max(y));
        if policy
            .judge(distance, &by_hash[&a].shingles, &by_hash[&b].shingles)
            .is_some()
        {
            found.insert((a, b));
            sets.union(a, b);
        }
    }
    let correct = found.intersection(truth).count();
    let same_cluster = truth
        .iter()
        .filter(|(a, b)| sets.find(*a) == sets.find(*b))
        .count();
    Quality {
        candidates: n_candidates,
        truth: truth.len(),
        found: found.len(),
        correct,
        same_cluster,
    }
}

fn ground_truth(docs: &[Doc], policy: &Policy) -> BTreeSet<(Hash128, Hash128)> {
    let eligible: Vec<&Doc> = docs
        .iter()
        .filter(|d| policy.fingerprintable(d.words))
        .collect();
    let mut truth = BTreeSet::new();
    for (i, a) in eligible.iter().enumerate() {
        for b in &eligible[i + 1..] {
            if jaccard(a.shingles.set(), b.shingles.set()) >= policy.jaccard {
                truth.insert((a.hash.min(b.hash), a.hash.max(b.hash)));
            }
        }
    }
    truth
}

fn quality_report() {
    let mut rng = Rng(0x5EED_1234_ABCD_0001);
    let real = real_dialogues();
    let generated = generated_dialogues(400, &mut rng);
    let mut sets: Vec<(&str, Vec<Doc>)> = vec![(
        "generated dialogues (400 x 5 copies)",
        corpus(&generated, 4, &mut rng),
    )];
    if !real.is_empty() {
        let label = "real ESConv dialogues (196 x 5 copies)";
        sets.push((label, corpus(&real, 4, &mut rng)));
    } else {
        eprintln!("(../shared/data/real not found: real-data figures skipped)");
    }
    let settings = Settings::builtin();
    for (name, docs) in &sets {
        let truth = ground_truth(docs, &settings.policy());
        eprintln!(
            "\n{name}: {} documents, {} pairs at Jaccard >= 0.8 (brute force)",
            docs.len(),
            truth.len()
        );
        eprintln!(
            "{:>8} {:>7} {:>7} {:>10} {:>9} {:>9} {:>9} {:>14}",
            "hamming",
            "blocks",
            "probes",
            "candidates",
            "confirmed",
            "precision",
            "recall",
            "same-cluster"
        );
        for (hamming, blocks) in [(3, 4), (4, 4), (5, 4), (6, 4), (7, 4), (6, 7)] {
            let mut config = IdxConfig::load(None).unwrap();
            config.near_dup.hamming = hamming;
            config.near_dup.blocks = blocks;
            let policy = config.policy(&settings.classifier);
            let q = evaluate(docs, &truth, &policy);
            let precision = if q.found == 0 {
                1.0
            } else {
                q.correct as f64 / q.found as f64
            };
            let recall = q.correct as f64 / q.truth.max(1) as f64;
            let cluster = q.same_cluster as f64 / q.truth.max(1) as f64;
            eprintln!(
                "{hamming:>8} {blocks:>7} {:>7} {:>10} {:>9} {precision:>9.4} {recall:>9.4} {cluster:>14.4}",
                policy.tables().probes(),
                q.candidates,
                q.found
            );
        }
        let policy = settings.policy();
        let (candidates, found, correct, same) = sketch_quality(docs, &truth, &policy);
        eprintln!(
            "across shards (sketch bands, SimHash <= {} bits, estimated Jaccard >= {}): {candidates} \
             candidates, {found} confirmed, precision {:.4}, recall {:.4}, same-cluster {:.4}",
            policy.hamming,
            policy.jaccard,
            correct as f64 / found.max(1) as f64,
            correct as f64 / truth.len().max(1) as f64,
            same as f64 / truth.len().max(1) as f64
        );
    }
}

/// The pair test of the global job (`scale/idx_global.py`), where two texts are in different
/// shards: candidates share one of 25 bands of 5 sketch bins, and a pair counts when the
/// SimHashes are within `hamming` bits and the sketch estimates Jaccard >= the threshold.
/// Returns (candidates, found, correct, truth pairs in one cluster) against the exact ground
/// truth.
fn sketch_quality(
    docs: &[Doc],
    truth: &BTreeSet<(Hash128, Hash128)>,
    policy: &Policy,
) -> (usize, usize, usize, usize) {
    use idx::scale::sketch::{estimate, sketch};
    let eligible: Vec<(&Doc, Vec<u32>)> = docs
        .iter()
        .filter(|d| policy.fingerprintable(d.words))
        .filter_map(|d| sketch(d.shingles.set()).map(|s| (d, s)))
        .collect();
    let mut bands: BTreeMap<(usize, &[u32]), Vec<usize>> = BTreeMap::new();
    for (i, (_, s)) in eligible.iter().enumerate() {
        for b in 0..25 {
            bands.entry((b, &s[b * 5..b * 5 + 5])).or_default().push(i);
        }
    }
    let mut candidates = BTreeSet::new();
    for members in bands.values() {
        for (k, &i) in members.iter().enumerate() {
            for &j in &members[k + 1..] {
                candidates.insert((i.min(j), i.max(j)));
            }
        }
    }
    let mut found = BTreeSet::new();
    for &(i, j) in &candidates {
        let ((a, sa), (b, sb)) = (&eligible[i], &eligible[j]);
        if (a.simhash ^ b.simhash).count_ones() <= policy.hamming
            && estimate(sa, sb) >= policy.jaccard
        {
            found.insert((a.hash.min(b.hash), a.hash.max(b.hash)));
        }
    }
    let correct = found.intersection(truth).count();
    let mut sets = UnionFind::default();
    for &(a, b) in &found {
        sets.union(a, b);
    }
    let same_cluster = truth
        .iter()
        .filter(|(a, b)| sets.find(*a) == sets.find(*b))
        .count();
    (candidates.len(), found.len(), correct, same_cluster)
}

/// `n` fingerprints: random ones, a tenth of them with a neighbour a few bits away.
fn fingerprints(n: usize, rng: &mut Rng) -> Vec<(Hash128, u64)> {
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        let s = rng.next();
        out.push((
            Hash128((u128::from(rng.next()) << 64) | (out.len() as u128 + 1)),
            s,
        ));
        if rng.below(10) == 0 && out.len() < n {
            let mut near = s;
            for _ in 0..rng.below(4) {
                near ^= 1 << rng.below(64);
            }
            out.push((
                Hash128((u128::from(rng.next()) << 64) | (out.len() as u128 + 1)),
                near,
            ));
        }
    }
    out
}

fn bench_tables(c: &mut Criterion) {
    quality_report();
    if std::env::var("IDX_ND_QUALITY_ONLY").is_ok_and(|v| v == "1") {
        return;
    }
    let n: usize = std::env::var("IDX_ND_FINGERPRINTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let mut policy = Settings::builtin().policy();
    // `IDX_ND_TABLES=6/8` measures another (hamming, blocks) setting.
    if let Some((h, b)) = std::env::var("IDX_ND_TABLES")
        .ok()
        .and_then(|v| {
            v.split_once('/')
                .map(|(h, b)| (h.parse().ok(), b.parse().ok()))
        })
        .and_then(|(h, b)| Some((h?, b?)))
    {
        policy.hamming = h;
        policy.blocks = b;
    }
    let tmp = tempfile::tempdir().unwrap();
    let store = idx::store::Store::open_write(&tmp.path().join("index.redb")).unwrap();
    let mut rng = Rng(0xF1A9_0000_0000_0001);
    let fps = fingerprints(n, &mut rng);
    let started = Instant::now();
    for chunk in fps.chunks(50_000) {
        store.index_fingerprints(&policy, chunk).unwrap();
    }
    let secs = started.elapsed().as_secs_f64();
    eprintln!(
        "\nindexed {n} fingerprints in {secs:.1} s: {:.0} inserts/s ({} tables, {} probes per lookup, commits of 50,000)",
        n as f64 / secs,
        policy.tables().len(),
        policy.tables().probes()
    );
    let view = store.read().unwrap();
    let probes: Vec<u64> = (0..1000).map(|i| fps[(i * 997) % fps.len()].1).collect();
    let found: usize = probes
        .iter()
        .map(|&s| view.candidates(s, &policy).unwrap().len())
        .sum();
    eprintln!(
        "{:.2} candidates within {} bits per query (itself included)",
        found as f64 / probes.len() as f64,
        policy.hamming
    );
    drop(view);

    let mut group = c.benchmark_group(format!(
        "simhash_tables_{n}_k{}_b{}",
        policy.hamming, policy.blocks
    ));
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(10));
    group.throughput(Throughput::Elements(probes.len() as u64));
    group.bench_function("query_1000", |b| {
        b.iter(|| {
            let view = store.read().unwrap();
            probes
                .iter()
                .map(|&s| view.candidates(s, &policy).unwrap().len())
                .sum::<usize>()
        })
    });
    group.throughput(Throughput::Elements(10_000));
    group.bench_function("insert_10000", |b| {
        b.iter_batched(
            || fingerprints(10_000, &mut rng),
            |batch| store.index_fingerprints(&policy, &batch).unwrap(),
            BatchSize::PerIteration,
        )
    });
    group.finish();
}

/// Shingle sets per second of text: every fingerprinted row's set is made once at ingest (on
/// the fingerprint workers) and again by each verify, over the fingerprint texts of the real
/// dialogues (when present) and generated ones.
fn bench_shingles(c: &mut Criterion) {
    let mut rng = Rng(0x5819_0000_0000_0003);
    let mut dialogues = real_dialogues();
    dialogues.extend(generated_dialogues(2000, &mut rng));
    let texts: Vec<String> = dialogues.iter().map(|d| doc_text(d)).collect();
    let bytes: usize = texts.iter().map(String::len).sum();
    let mut group = c.benchmark_group("shingles");
    group.throughput(Throughput::Bytes(bytes as u64));
    group.bench_function(format!("of_text_{}_dialogues", texts.len()), |b| {
        b.iter(|| {
            texts
                .iter()
                .map(|t| Shingles::of_text(t).set().len())
                .sum::<usize>()
        })
    });
    group.finish();
}

/// o200k token counts per second of message text: every row is counted once at ingest (on the
/// fingerprint workers), over the real dialogues' turns (when present) and generated ones. The
/// thread's remembered counts are warm after the first iteration, as they are through an ingest.
fn bench_tokens(c: &mut Criterion) {
    let mut rng = Rng(0x5819_0000_0000_0004);
    let mut dialogues = real_dialogues();
    dialogues.extend(generated_dialogues(2000, &mut rng));
    let messages: Vec<Message> = dialogues
        .iter()
        .flatten()
        .map(|t| Message::new(Role::User, t.clone()))
        .collect();
    let bytes: usize = messages.iter().map(|m| m.content.len()).sum();
    let mut group = c.benchmark_group("tokens");
    group.throughput(Throughput::Bytes(bytes as u64));
    group.bench_function(format!("count_{}_dialogues", dialogues.len()), |b| {
        b.iter(|| count_tokens(messages.iter()))
    });
    group.finish();
}

criterion_group!(benches, bench_shingles, bench_tokens, bench_tables);
criterion_main!(benches);
