//! Memory and time on hostile objects: `cargo bench --bench limits`.
//!
//! Each case writes one hostile object into a fresh folder and ingests it into a fresh index,
//! then reports the ingest's time and the process's peak resident memory during it (Linux:
//! `VmHWM` from `/proc/self/status`, reset before each case by writing 5 to
//! `/proc/self/clear_refs`). The cases are the ones a reliability pass found: four 25 MB lines,
//! a gzip bomb (1 MB → 1 GB), a 200 MB `.txt`, 10 MB of combining marks and of emoji sequences,
//! beside 10 MB of ordinary text for comparison. Criterion times the text cases; the memory
//! figures are printed (criterion has no memory measurement).

use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use idx::config::Settings;
use idx::index::Index;
use idx::ingest::{ingest, IngestOptions, IngestReport};

fn peak_reset() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

fn peak_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

fn ingest_once(root: &Path, name: &str) -> IngestReport {
    let index_dir = root.join(format!("index-{name}"));
    let _ = std::fs::remove_dir_all(&index_dir);
    let mut index = Index::open_write(&index_dir).unwrap();
    let report = ingest(
        &mut index,
        &Settings::builtin(),
        &[root.join(name)],
        &IngestOptions::default(),
    )
    .unwrap();
    drop(index);
    report
}

/// A line of chat whose user message is `text`.
fn chat_line(text: &str) -> String {
    serde_json::json!({"messages": [
        {"role": "user", "content": text},
        {"role": "assistant", "content": "I hear you."}
    ]})
    .to_string()
        + "\n"
}

fn write(root: &Path, case: &str, file: &str, bytes: &[u8]) {
    let dir = root.join(case).join("sarcasm");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(file), bytes).unwrap();
}

fn ordinary_text(bytes: usize) -> String {
    let words = [
        "I", "feel", "tired", "and", "the", "evenings", "are", "long", "my", "sister", "called",
        "today", "about", "work",
    ];
    let mut s = String::with_capacity(bytes + 16);
    let mut i = 0usize;
    while s.len() < bytes {
        s.push_str(words[(i * 7 + i / 3) % words.len()]);
        s.push(' ');
        i += 1;
    }
    s
}

fn hostile_cases(root: &Path) -> Vec<(&'static str, u64)> {
    let mut cases = Vec::new();
    // Four 25 MB lines (over the 8 MiB line limit: rejected without being buffered).
    let long = chat_line(&"a".repeat(25 << 20));
    write(root, "long_lines", "long.jsonl", long.repeat(4).as_bytes());
    cases.push(("long_lines", 4 * long.len() as u64));
    // A gzip bomb: 1 GB of one repeated byte as a .json.gz (over the 64 MiB document limit).
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    let block = vec![b' '; 1 << 20];
    for _ in 0..1024 {
        gz.write_all(&block).unwrap();
    }
    let bomb = gz.finish().unwrap();
    write(root, "gzip_bomb", "bomb.json.gz", &bomb);
    cases.push(("gzip_bomb", bomb.len() as u64));
    // A 200 MB .txt (over the document limit).
    write(
        root,
        "big_txt",
        "big.txt",
        ordinary_text(200 << 20).as_bytes(),
    );
    cases.push(("big_txt", 200 << 20));
    cases
}

fn text_cases(root: &Path) -> Vec<(&'static str, u64)> {
    let size = 10 << 20;
    let lines = |text: String| -> String {
        // 64 KiB messages, as a long transcript's turns would be.
        let chars: Vec<char> = text.chars().collect();
        chars
            .chunks(32 << 10)
            .map(|c| chat_line(&c.iter().collect::<String>()))
            .collect()
    };
    let ordinary = lines(ordinary_text(size));
    write(root, "ordinary", "ordinary.jsonl", ordinary.as_bytes());
    let combining: String = (0..size / 3)
        .map(|i| if i % 40 == 0 { 'e' } else { '\u{301}' })
        .collect();
    let combining = lines(combining);
    write(root, "combining", "combining.jsonl", combining.as_bytes());
    let family = "👩\u{200d}👩\u{200d}👧\u{200d}👦";
    let emoji = lines(family.repeat(size / family.len()));
    write(root, "emoji", "emoji.jsonl", emoji.as_bytes());
    vec![
        ("ordinary", ordinary.len() as u64),
        ("combining", combining.len() as u64),
        ("emoji", emoji.len() as u64),
    ]
}

fn bench_limits(c: &mut Criterion) {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let baseline = peak_mib();
    eprintln!("process peak before the cases: {baseline:.0} MiB");
    for (case, bytes) in hostile_cases(root) {
        peak_reset();
        let started = Instant::now();
        let report = ingest_once(root, case);
        eprintln!(
            "{case}: {:.1} MB in, {:.2} s, peak RSS {:.0} MiB, rows {}, rejected {}: {}",
            bytes as f64 / 1e6,
            started.elapsed().as_secs_f64(),
            peak_mib(),
            report.rows_added,
            report.rejected_rows,
            report
                .rejections
                .first()
                .map_or(String::new(), |r| r.reason.clone())
        );
    }
    let cases = text_cases(root);
    for (case, _) in &cases {
        peak_reset();
        let started = Instant::now();
        let report = ingest_once(root, case);
        eprintln!(
            "{case}: {:.2} s, peak RSS {:.0} MiB, rows {}",
            started.elapsed().as_secs_f64(),
            peak_mib(),
            report.rows_added
        );
    }
    let mut group = c.benchmark_group("limits");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(20));
    for (case, bytes) in cases {
        group.throughput(Throughput::Bytes(bytes));
        group.bench_function(case, |b| b.iter(|| ingest_once(root, case)));
    }
    group.finish();
}

criterion_group!(benches, bench_limits);
criterion_main!(benches);
