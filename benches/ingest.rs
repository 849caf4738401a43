//! Ingest and export throughput on a generated corpus.
//!
//! `cargo bench --bench ingest` builds a ~100 MB JSONL corpus (IDX_BENCH_MB overrides the size) of
//! multi-turn conversations (a Zipf-distributed vocabulary, each conversation with its own topic
//! words) with 5% exact duplicates, then times
//! - `ingest`: a complete ingest into a fresh index (redb + tantivy) per iteration; criterion
//!   reports input bytes/s, and the rows per iteration are printed so rows/s = rows / time
//!   (`IDX_BENCH_WORKERS=N` sets the fingerprint pool size);
//! - `export`: `idx export` of that index into a fresh folder per iteration (the gates, the
//!   selection with near-duplicate representatives, shards, final file, provenance, the default
//!   curriculum's trainer files and the manifest); criterion reports exported rows/s;
//! - `decontaminate`: every row of that index checked against a generated benchmark set of
//!   ~10 MB (IDX_BENCH_BENCHMARK_MB) of question/answer items, one in 500 copied from a corpus
//!   row; the checks are cleared before each iteration; criterion reports rows/s.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use idx::config::Settings;
use idx::curriculum::Curriculum;
use idx::export::{export, ExportOptions};
use idx::index::Index;
use idx::ingest::{ingest, IngestOptions};
use idx::rng::Rng;

const WORDS: &[&str] = &[
    "I",
    "feel",
    "anxious",
    "about",
    "work",
    "and",
    "my",
    "sleep",
    "has",
    "been",
    "bad",
    "lately",
    "you",
    "mentioned",
    "that",
    "your",
    "sister",
    "called",
    "what",
    "did",
    "it",
    "bring",
    "up",
    "for",
    "you",
    "sometimes",
    "when",
    "we",
    "are",
    "tired",
    "everything",
    "seems",
    "heavier",
    "can",
    "tell",
    "me",
    "more",
    "the",
    "panic",
    "started",
    "last",
    "week",
    "at",
    "a",
    "meeting",
    "breathing",
    "exercise",
    "helped",
    "little",
    "but",
    "thoughts",
    "keep",
    "racing",
    "night",
    "it",
    "sounds",
    "exhausting",
    "to",
    "carry",
    "alone",
    "who",
    "else",
    "knows",
    "how",
    "hard",
    "this",
    "is",
    "therapy",
    "session",
    "goal",
    "trauma",
    "recovery",
    "shame",
    "boundaries",
    "parents",
    "childhood",
    "memories",
    "grief",
    "loss",
    "friend",
    "lonely",
    "isolated",
    "hope",
    "small",
    "steps",
    "today",
    "tomorrow",
    "plan",
    "notice",
    "body",
    "tension",
    "shoulders",
    "gentle",
    "kind",
    "yourself",
    "progress",
    "not",
    "linear",
    "setback",
    "normal",
    "okay",
];

/// A vocabulary like natural text's: the counselling words above plus 4,000 generated words,
/// drawn with a Zipf-like law (rank r has weight 1/r).
struct Vocabulary {
    words: Vec<String>,
    cumulative: Vec<f64>,
}

impl Vocabulary {
    fn new(rng: &mut Rng) -> Self {
        const SYLLABLES: &[&str] = &[
            "ka", "lo", "mi", "ren", "sa", "tor", "vel", "an", "is", "ur", "del", "mon", "pra",
            "ste", "qui", "ba", "ne", "ho", "ly", "gra",
        ];
        let mut words: Vec<String> = WORDS.iter().map(|w| w.to_string()).collect();
        while words.len() < WORDS.len() + 4000 {
            let n = 2 + rng.below(3);
            words.push(
                (0..n)
                    .map(|_| SYLLABLES[rng.below(SYLLABLES.len())])
                    .collect(),
            );
        }
        let mut total = 0.0;
        let cumulative = (1..=words.len())
            .map(|r| {
                total += 1.0 / r as f64;
                total
            })
            .collect();
        Vocabulary { words, cumulative }
    }

    fn pick(&self, rng: &mut Rng) -> &str {
        let total = self.cumulative[self.cumulative.len() - 1];
        let x = (rng.next() >> 11) as f64 / (1u64 << 53) as f64 * total;
        let i = self.cumulative.partition_point(|&c| c < x);
        &self.words[i.min(self.words.len() - 1)]
    }
}

/// A sentence: like real conversations, each one keeps coming back to its own topic words
/// (bursty), over a background of common words. (Word soup drawn independently from one small
/// list would make every long text look alike to any bag-of-words fingerprint.)
fn sentence(rng: &mut Rng, vocabulary: &Vocabulary, topic: &[String], words: usize) -> String {
    let mut s = String::with_capacity(words * 7);
    for i in 0..words {
        if i > 0 {
            s.push(' ');
        }
        if rng.below(10) < 3 {
            s.push_str(&topic[rng.below(topic.len())]);
        } else {
            s.push_str(vocabulary.pick(rng));
        }
    }
    s.push('.');
    s
}

/// Writes the corpus; returns (bytes, rows).
fn generate(dir: &Path, target_bytes: u64) -> (u64, u64) {
    std::fs::create_dir_all(dir).unwrap();
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let vocabulary = Vocabulary::new(&mut rng);
    let (mut bytes, mut rows, mut file_no) = (0u64, 0u64, 0);
    let mut previous: Vec<String> = Vec::new();
    while bytes < target_bytes {
        let path = dir.join(format!(
            "datasets/consolidated/conversations_{file_no:03}.jsonl"
        ));
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        let mut out = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
        let mut file_bytes = 0u64;
        while file_bytes < 8 << 20 && bytes + file_bytes < target_bytes {
            let line = if !previous.is_empty() && rng.below(20) == 0 {
                previous[rng.below(previous.len())].clone()
            } else {
                let turns = 2 + rng.below(6);
                let topic: Vec<String> = (0..12)
                    .map(|_| vocabulary.words[rng.below(vocabulary.words.len())].clone())
                    .collect();
                let messages: Vec<serde_json::Value> = (0..turns)
                    .map(|t| {
                        let role = if t % 2 == 0 { "user" } else { "assistant" };
                        let len = 15 + rng.below(60);
                        let content = sentence(&mut rng, &vocabulary, &topic, len);
                        serde_json::json!({"role": role, "content": content})
                    })
                    .collect();
                serde_json::json!({ "messages": messages }).to_string()
            };
            if previous.len() < 1000 {
                previous.push(line.clone());
            }
            writeln!(out, "{line}").unwrap();
            file_bytes += line.len() as u64 + 1;
            rows += 1;
        }
        out.flush().unwrap();
        bytes += file_bytes;
        file_no += 1;
    }
    (bytes, rows)
}

/// A new directory per iteration; the previous one is removed outside the timing.
struct FreshDirs {
    root: PathBuf,
    name: &'static str,
    run: u32,
}

impl FreshDirs {
    fn new(root: &Path, name: &'static str) -> FreshDirs {
        FreshDirs {
            root: root.to_path_buf(),
            name,
            run: 0,
        }
    }

    fn next(&mut self) -> PathBuf {
        let _ = std::fs::remove_dir_all(self.root.join(format!("{}-{}", self.name, self.run)));
        self.run += 1;
        self.root.join(format!("{}-{}", self.name, self.run))
    }
}

/// The corpus size (IDX_BENCH_MB, default 100), a temporary folder, and the data folder in it.
fn corpus_place() -> (u64, tempfile::TempDir, PathBuf) {
    let mb: u64 = std::env::var("IDX_BENCH_MB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100);
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    (mb, tmp, data)
}

fn bench_ingest(c: &mut Criterion) {
    let (mb, tmp, data) = corpus_place();
    let (bytes, rows) = generate(&data, mb << 20);
    eprintln!(
        "corpus: {:.1} MB, {rows} rows (rows/s = {rows} / time per iteration)",
        bytes as f64 / 1e6
    );
    let settings = Settings::builtin();
    // IDX_BENCH_WORKERS sets the fingerprint pool size (default: IngestOptions' default).
    let mut options = IngestOptions::default();
    if let Some(w) = std::env::var("IDX_BENCH_WORKERS")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        options.workers = w;
    }
    eprintln!("fingerprint workers: {}", options.workers);
    let mut group = c.benchmark_group("ingest");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(30));
    group.throughput(Throughput::Bytes(bytes));
    let mut fresh = FreshDirs::new(tmp.path(), "index");
    group.bench_function(format!("generated_{mb}MB_full_text"), |b| {
        b.iter_batched(
            || fresh.next(),
            |dir| {
                let mut index = Index::open_write(&dir).unwrap();
                let report =
                    ingest(&mut index, &settings, std::slice::from_ref(&data), &options).unwrap();
                assert_eq!(report.rows_added, rows);
                // Dropping waits for tantivy's background work: part of the cost of an ingest.
                drop(index);
            },
            BatchSize::PerIteration,
        )
    });
    group.finish();
}

/// The corpus in `data`, ingested into `tmp/index` with the built-in settings.
fn indexed(tmp: &Path, data: &Path, settings: &Settings) -> Index {
    let mut index = Index::open_write(&tmp.join("index")).unwrap();
    ingest(
        &mut index,
        settings,
        &[data.to_path_buf()],
        &IngestOptions::default(),
    )
    .unwrap();
    index
}

fn bench_export(c: &mut Criterion) {
    let (mb, tmp, data) = corpus_place();
    generate(&data, mb << 20);
    let settings = Settings::builtin();
    let index_dir = tmp.path().join("index");
    drop(indexed(tmp.path(), &data, &settings));
    let store = Index::open_store_read(&index_dir).unwrap();
    let curriculum = Curriculum::load(None).unwrap();
    let options = ExportOptions {
        shard_bytes: settings.idx.export.shard_bytes,
        collapse_near_duplicates: true,
        previous: None,
        // The generated corpus is one family: coverage fails, which is not what is measured.
        allow_failing_gates: true,
    };
    let probe = export(
        &store.read().unwrap(),
        &settings,
        &curriculum,
        &tmp.path().join("probe"),
        &options,
        &mut |_| {},
    )
    .unwrap();
    eprintln!(
        "export: {} rows, {} shards, {:.1} MB of shards",
        probe.rows,
        probe.shards,
        probe.bytes as f64 / 1e6
    );
    let mut group = c.benchmark_group("export");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(30));
    group.throughput(Throughput::Elements(probe.rows));
    let mut fresh = FreshDirs::new(tmp.path(), "out");
    group.bench_function(format!("generated_{mb}MB"), |b| {
        b.iter_batched(
            || fresh.next(),
            |out| {
                let view = store.read().unwrap();
                export(&view, &settings, &curriculum, &out, &options, &mut |_| {}).unwrap()
            },
            BatchSize::PerIteration,
        )
    });
    group.finish();
}

/// A benchmark set of question/answer items drawn from the same vocabulary (another seed), one
/// item in 500 a corpus row's first message; returns its bytes.
fn generate_benchmark(path: &Path, corpus: &Path, target_bytes: u64) -> u64 {
    let mut planted = Vec::new();
    for entry in std::fs::read_dir(corpus.join("datasets/consolidated")).unwrap() {
        let text = std::fs::read_to_string(entry.unwrap().path()).unwrap();
        for line in text.lines().step_by(997).take(200) {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            planted.push(v["messages"][0]["content"].as_str().unwrap().to_string());
        }
    }
    let mut rng = Rng(0xD1B5_4A32_D192_ED03);
    let vocabulary = Vocabulary::new(&mut rng);
    let mut out = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    let (mut bytes, mut n) = (0u64, 0usize);
    while bytes < target_bytes {
        let topic: Vec<String> = (0..8)
            .map(|_| vocabulary.words[rng.below(vocabulary.words.len())].clone())
            .collect();
        let question = if n % 500 == 0 && !planted.is_empty() {
            planted[(n / 500) % planted.len()].clone()
        } else {
            let len = 20 + rng.below(60);
            sentence(&mut rng, &vocabulary, &topic, len)
        };
        let len = 5 + rng.below(20);
        let answer = sentence(&mut rng, &vocabulary, &topic, len);
        let line = serde_json::json!({"question": question, "answer": answer}).to_string();
        writeln!(out, "{line}").unwrap();
        bytes += line.len() as u64 + 1;
        n += 1;
    }
    out.flush().unwrap();
    bytes
}

fn bench_decontaminate(c: &mut Criterion) {
    let (mb, tmp, data) = corpus_place();
    let (_, rows) = generate(&data, mb << 20);
    let benchmark_mb: u64 = std::env::var("IDX_BENCH_BENCHMARK_MB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10);
    let bench_file = tmp.path().join("benchmark.jsonl");
    let bench_bytes = generate_benchmark(&bench_file, &data, benchmark_mb << 20);
    let settings = Settings::builtin();
    let index = indexed(tmp.path(), &data, &settings);
    let started = std::time::Instant::now();
    let loaded = idx::decontaminate::load(
        &index,
        &settings,
        &bench_file,
        Some("generated"),
        idx::parse::Limits::default(),
    )
    .unwrap();
    eprintln!(
        "benchmark: {:.1} MB, {} items, {} n-grams; loaded and every row checked in {:.1} s \
         ({} rows, {} matching)",
        bench_bytes as f64 / 1e6,
        loaded.benchmark.items,
        loaded.benchmark.ngrams,
        started.elapsed().as_secs_f64(),
        loaded.refresh.checked,
        loaded.refresh.matched
    );
    let mut group = c.benchmark_group("decontaminate");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(30));
    group.throughput(Throughput::Elements(rows));
    group.bench_function(format!("generated_{mb}MB_against_{benchmark_mb}MB"), |b| {
        b.iter_batched(
            || {
                index
                    .store
                    .update_contamination(&idx::store::ContaminationUpdate {
                        clear: true,
                        ..Default::default()
                    })
                    .unwrap()
            },
            |()| {
                let r = idx::decontaminate::refresh(&index.store, &settings).unwrap();
                assert!(r.checked > 0 && r.matched > 0);
            },
            BatchSize::PerIteration,
        )
    });
    group.finish();
}

criterion_group!(benches, bench_ingest, bench_export, bench_decontaminate);
criterion_main!(benches);
