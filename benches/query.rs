//! Query latency at scale: `cargo bench --bench query`.
//!
//! Builds an index of IDX_BENCH_ROWS (default 100,000) short multi-turn rows of the `short`
//! corpus, 1,000 rows per object (IDX_BENCH_INDEX=DIR keeps it in DIR and reuses it on the next
//! run: building a million rows takes minutes), then measures in-process, on one read view:
//! - `hash`: `idx query hash` (the row, its assignment and every place);
//! - `near`: `idx query near` (SimHash candidates verified by shingles);
//! - `source`: `idx query source` of an object of 1,000 rows;
//! - `text`: `idx query text` of a two-word query, 10 hits with places and snippets.
//!
//! Criterion reports means; before them, a line per kind gives p50, p99 and max over 1,000
//! queries (100 for `source`) of distinct rows, objects and words. IDX_BENCH_GENERATE_ONLY=1
//! writes the corpus (to IDX_BENCH_INDEX/data) and stops: `scripts/scale.sh` uses it.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use idx::config::Settings;
use idx::index::Index;
use idx::ingest::{ingest, IngestOptions};
use idx::query;

mod corpus;
use corpus::Corpus;

/// Words of the corpus' counselling vocabulary, for text queries.
const QUERY_WORDS: &[&str] = &[
    "anxious",
    "sleep",
    "panic",
    "breathing",
    "therapy",
    "grief",
    "lonely",
    "boundaries",
    "parents",
    "childhood",
    "shame",
    "hope",
    "tension",
    "progress",
    "setback",
    "meeting",
];

/// p50, p99 and max of some latencies.
fn percentiles(mut v: Vec<Duration>) -> String {
    v.sort();
    let at = |q: f64| v[((v.len() as f64 * q) as usize).min(v.len() - 1)];
    format!(
        "p50 {:>8.3} ms  p99 {:>8.3} ms  max {:>8.3} ms  ({} queries)",
        at(0.5).as_secs_f64() * 1e3,
        at(0.99).as_secs_f64() * 1e3,
        v[v.len() - 1].as_secs_f64() * 1e3,
        v.len()
    )
}

/// The index to query: IDX_BENCH_INDEX when it holds one, else built there (or in `tmp`).
fn index_dir(tmp: &Path, settings: &Settings) -> PathBuf {
    let rows: u64 = std::env::var("IDX_BENCH_ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let root = std::env::var("IDX_BENCH_INDEX")
        .map(PathBuf::from)
        .unwrap_or_else(|_| tmp.to_path_buf());
    let dir = root.join("index");
    if dir.join(idx::index::DB_FILE).exists() {
        eprintln!("reusing the index in {}", dir.display());
        return dir;
    }
    let data = root.join("data");
    // About 700 bytes a row: generate a little more than asked and count what was written.
    let (bytes, written) = Corpus::Short.generate(&data, rows * 690);
    eprintln!("corpus: {written} rows, {:.1} MB", bytes as f64 / 1e6);
    if std::env::var_os("IDX_BENCH_GENERATE_ONLY").is_some() {
        // scripts/scale.sh: the corpus is all it wants.
        std::process::exit(0);
    }
    let started = Instant::now();
    let mut index = Index::open_write(&dir).unwrap();
    let report = ingest(&mut index, settings, &[data], &IngestOptions::default()).unwrap();
    eprintln!(
        "ingested {} rows in {:.1} s",
        report.rows_added,
        started.elapsed().as_secs_f64()
    );
    dir
}

fn bench_queries(c: &mut Criterion) {
    let tmp = tempfile::tempdir().unwrap();
    let settings = Settings::builtin();
    let dir = index_dir(tmp.path(), &settings);
    let (store, search, _) = Index::open_read(&dir).unwrap();
    let view = store.read().unwrap();
    let policy = query::effective_policy(&view, settings.policy()).unwrap();
    let totals = view.totals().unwrap();
    eprintln!(
        "index: {} unique rows, {} objects",
        totals.unique_rows, totals.objects
    );

    // 1,000 rows spread over the hash space, and 100 objects.
    let step = (totals.unique_rows / 1000).max(1);
    let mut hashes = Vec::new();
    let mut n = 0u64;
    view.for_each_row(|hash, _| {
        if n.is_multiple_of(step) && hashes.len() < 1000 {
            hashes.push(hash.to_hex());
        }
        n += 1;
        Ok(())
    })
    .unwrap();
    let objects: Vec<String> = view
        .objects()
        .unwrap()
        .into_iter()
        .step_by((totals.objects as usize / 100).max(1))
        .take(100)
        .map(|o| o.key)
        .collect();
    let texts: Vec<String> = (0..1000)
        .map(|i| {
            format!(
                "{} {}",
                QUERY_WORDS[i % QUERY_WORDS.len()],
                QUERY_WORDS[(i * 7 + 3) % QUERY_WORDS.len()]
            )
        })
        .collect();

    let time = |f: &mut dyn FnMut(usize)| -> Vec<Duration> {
        (0..1000)
            .map(|i| {
                let t = Instant::now();
                f(i);
                t.elapsed()
            })
            .collect()
    };
    eprintln!(
        "hash   {}",
        percentiles(time(&mut |i| {
            assert!(query::row(&view, &hashes[i % hashes.len()], &policy)
                .unwrap()
                .is_some());
        }))
    );
    eprintln!(
        "near   {}",
        percentiles(time(&mut |i| {
            assert!(query::near(&view, &hashes[i % hashes.len()], &policy)
                .unwrap()
                .is_some());
        }))
    );
    eprintln!(
        "source {}",
        percentiles(
            time(&mut |i| {
                let found = query::source(&view, &objects[i % objects.len()]).unwrap();
                assert_eq!(found[0].rows.len(), 1000);
            })
            .into_iter()
            .take(100)
            .collect()
        )
    );
    eprintln!(
        "text   {}",
        percentiles(time(&mut |i| {
            query::text(&view, &search, &texts[i], None, 10).unwrap();
        }))
    );

    let mut group = c.benchmark_group("query");
    let mut i = 0usize;
    let mut next = || {
        i += 1;
        i
    };
    group.bench_function("hash", |b| {
        b.iter(|| query::row(&view, &hashes[next() % hashes.len()], &policy).unwrap())
    });
    group.bench_function("near", |b| {
        b.iter(|| query::near(&view, &hashes[next() % hashes.len()], &policy).unwrap())
    });
    group.bench_function("source_1000_rows", |b| {
        b.iter(|| query::source(&view, &objects[next() % objects.len()]).unwrap())
    });
    group.bench_function("text", |b| {
        b.iter(|| query::text(&view, &search, &texts[next() % texts.len()], None, 10).unwrap())
    });
    group.finish();
}

criterion_group!(benches, bench_queries);
criterion_main!(benches);
