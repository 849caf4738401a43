//! Ingest, export and decontamination throughput on generated corpora (`corpus/`).
//!
//! `cargo bench --bench ingest` writes ~100 MB (IDX_BENCH_MB overrides the size) of each corpus
//! (`generated`, `chat`, `templated`; IDX_BENCH_CORPUS=chat,templated picks) and times
//! - `ingest`: a complete ingest into a fresh index (redb + tantivy) per iteration, with 1 and 2
//!   fingerprint workers (IDX_BENCH_WORKERS=1,2); criterion reports input bytes/s of wall time,
//!   and a summary at the end gives, per corpus and worker count, MB/s of wall time and MB per
//!   CPU-second (user + system of the whole process, from /proc/self/stat);
//! - `export`: `idx export` of the `generated` corpus' index into a fresh folder per iteration
//!   (the gates, the selection with near-duplicate representatives, shards, final file,
//!   provenance, the default curriculum's trainer files and the manifest); criterion reports
//!   exported rows/s;
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

mod corpus;
use corpus::{sentence, Corpus, Vocabulary};

/// A new directory per iteration; the previous one is removed outside the timing.
struct FreshDirs {
    root: PathBuf,
    name: String,
    run: u32,
}

impl FreshDirs {
    fn new(root: &Path, name: impl Into<String>) -> FreshDirs {
        FreshDirs {
            root: root.to_path_buf(),
            name: name.into(),
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

/// CPU time (user + system) this process has used so far, from /proc/self/stat (Linux; zero
/// elsewhere, and the per-CPU-second figure is then not printed).
fn cpu_time() -> Duration {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return Duration::ZERO;
    };
    // Fields after the parenthesised command name: state is field 3, utime 14, stime 15.
    let after = &stat[stat.rfind(')').map_or(0, |i| i + 2)..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: u64 = [11, 12]
        .iter()
        .filter_map(|&i| fields.get(i).and_then(|f| f.parse::<u64>().ok()))
        .sum();
    // USER_HZ is 100 on every Linux configuration that matters here.
    Duration::from_millis(ticks * 10)
}

/// The worker counts to measure: IDX_BENCH_WORKERS (comma-separated), else 1 and 2.
fn worker_counts() -> Vec<usize> {
    std::env::var("IDX_BENCH_WORKERS")
        .ok()
        .map(|v| v.split(',').filter_map(|w| w.trim().parse().ok()).collect())
        .filter(|v: &Vec<usize>| !v.is_empty())
        .unwrap_or_else(|| vec![1, 2])
}

fn bench_ingest(c: &mut Criterion) {
    let (mb, tmp, _) = corpus_place();
    let settings = Settings::builtin();
    let mut summary = Vec::new();
    for corpus in Corpus::from_env() {
        let data = tmp.path().join(corpus.name());
        let (bytes, rows) = corpus.generate(&data, mb << 20);
        eprintln!(
            "corpus {}: {:.1} MB, {rows} rows (rows/s = {rows} / time per iteration)",
            corpus.name(),
            bytes as f64 / 1e6
        );
        let mut group = c.benchmark_group("ingest");
        group.sample_size(10);
        group.measurement_time(Duration::from_secs(30));
        group.throughput(Throughput::Bytes(bytes));
        for workers in worker_counts() {
            let options = IngestOptions {
                workers,
                ..IngestOptions::default()
            };
            let mut fresh =
                FreshDirs::new(tmp.path(), format!("index-{}-{workers}", corpus.name()));
            let (mut wall, mut cpu, mut runs) = (Duration::ZERO, Duration::ZERO, 0u32);
            // The writer's serial batch finishing, against the ingests' own time.
            let (mut finishing, mut ingesting) = (0.0f64, 0.0f64);
            group.bench_function(format!("{}_{mb}MB_{workers}_workers", corpus.name()), |b| {
                b.iter_custom(|iters| {
                    let mut timed = Duration::ZERO;
                    for _ in 0..iters {
                        let dir = fresh.next();
                        let (cpu0, t0) = (cpu_time(), std::time::Instant::now());
                        let mut index = Index::open_write(&dir).unwrap();
                        let report =
                            ingest(&mut index, &settings, std::slice::from_ref(&data), &options)
                                .unwrap();
                        assert_eq!(report.rows_added, rows);
                        finishing += report.finish_seconds;
                        ingesting += report.seconds;
                        // Dropping waits for tantivy's background work: part of the cost.
                        drop(index);
                        let elapsed = t0.elapsed();
                        timed += elapsed;
                        wall += elapsed;
                        cpu += cpu_time().saturating_sub(cpu0);
                        runs += 1;
                    }
                    timed
                })
            });
            let mb_per = |d: Duration| bytes as f64 / 1e6 * runs as f64 / d.as_secs_f64();
            summary.push(format!(
                "{:<10} {workers} worker(s): {:6.1} MB/s wall, {:6.1} MB per CPU-second, \
                 batch finishing {:4.1}% of the ingest ({runs} runs)",
                corpus.name(),
                mb_per(wall),
                if cpu.is_zero() { f64::NAN } else { mb_per(cpu) },
                100.0 * finishing / ingesting.max(f64::MIN_POSITIVE),
            ));
        }
        group.finish();
    }
    eprintln!("\ningest summary (all runs, warm-up included):");
    for line in summary {
        eprintln!("  {line}");
    }
}

/// Incremental work: a full ingest of IDX_BENCH_MB (100) of the `generated` corpus in 100
/// files, then per iteration one file (1% of the objects) rewritten with other rows of the same
/// corpus and ingested again; and an unchanged re-scan of 10,000 small objects. The summary prints the
/// incremental ingest as a share of the full one.
fn bench_incremental(c: &mut Criterion) {
    let (mb, tmp, data) = corpus_place();
    // 101 files of the corpus: the last is taken out, to be the other version of a changed one.
    let file_bytes = (mb << 20) / 100;
    Corpus::Generated.generate_files(&data, file_bytes * 101, file_bytes);
    let mut files: Vec<PathBuf> = std::fs::read_dir(data.join("datasets/consolidated"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    let spare = files.pop().unwrap();
    let other = std::fs::read(&spare).unwrap();
    std::fs::remove_file(&spare).unwrap();
    let bytes: u64 = files
        .iter()
        .map(|f| std::fs::metadata(f).unwrap().len())
        .sum();
    eprintln!(
        "incremental corpus: {:.1} MB in {} files",
        bytes as f64 / 1e6,
        files.len()
    );
    let settings = Settings::builtin();
    let options = IngestOptions::default();
    let started = std::time::Instant::now();
    let mut index = indexed(tmp.path(), &data, &settings);
    let full = started.elapsed();
    // Two versions of the changed file: its own rows, and the spare file's (other rows of the
    // same corpus): each change removes 1% of the rows and adds 1%.
    let changed = &files[files.len() / 2];
    let original = std::fs::read(changed).unwrap();
    let mut flip = false;
    let mut incremental = Vec::new();
    let mut group = c.benchmark_group("incremental");
    group.sample_size(10);
    group.bench_function(
        format!("one_of_{}_files_changed_{mb}MB", files.len()),
        |b| {
            b.iter_batched(
                || {
                    flip = !flip;
                    std::fs::write(changed, if flip { &other } else { &original }).unwrap();
                },
                |()| {
                    let t0 = std::time::Instant::now();
                    let report =
                        ingest(&mut index, &settings, std::slice::from_ref(&data), &options)
                            .unwrap();
                    assert_eq!(report.objects_changed, 1);
                    incremental.push(t0.elapsed());
                },
                BatchSize::PerIteration,
            )
        },
    );
    drop(index);

    // 10,000 objects of one short row each, ingested once, then re-scanned unchanged.
    let many = tmp.path().join("many");
    let objects = 10_000usize;
    for i in 0..objects {
        let path = many.join(format!(
            "datasets/consolidated/{:02}/chat_{i:05}.jsonl",
            i % 100
        ));
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        let row = serde_json::json!({"messages": [
            {"role": "user", "content": format!("note {i}: I could not sleep again last night")},
            {"role": "assistant", "content": format!("That sounds hard ({i}). What kept you up?")},
        ]});
        std::fs::write(path, format!("{row}\n")).unwrap();
    }
    let mut many_index = Index::open_write(&tmp.path().join("many-index")).unwrap();
    ingest(
        &mut many_index,
        &settings,
        std::slice::from_ref(&many),
        &options,
    )
    .unwrap();
    eprintln!("re-scan corpus: {objects} objects");
    group.bench_function(format!("unchanged_rescan_{objects}_objects"), |b| {
        b.iter(|| {
            let report = ingest(
                &mut many_index,
                &settings,
                std::slice::from_ref(&many),
                &options,
            )
            .unwrap();
            assert_eq!(report.objects_unchanged, objects as u64);
        })
    });
    group.finish();
    if !incremental.is_empty() {
        incremental.sort();
        let median = incremental[incremental.len() / 2];
        eprintln!(
            "\nincremental summary: full ingest {:.2} s; one changed file {:.3} s (median of {}) = {:.1}% of the full ingest",
            full.as_secs_f64(),
            median.as_secs_f64(),
            incremental.len(),
            100.0 * median.as_secs_f64() / full.as_secs_f64()
        );
    }
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
    Corpus::Generated.generate(&data, mb << 20);
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
    let (_, rows) = Corpus::Generated.generate(&data, mb << 20);
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

criterion_group!(
    benches,
    bench_ingest,
    bench_incremental,
    bench_export,
    bench_decontaminate
);
criterion_main!(benches);
