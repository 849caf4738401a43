//! Redaction speed on real text: `cargo bench --bench pii`.
//!
//! Redacts the hand-labelled real texts shipped in `testdata/pii/` (598 casual chat turns and
//! 228 counselling answers; about 400 KB) as one-message conversations, the way ingest calls
//! the redactor for every row, and reports bytes per second. Most rows hold no PII, so this
//! mostly measures the prefilter and the name rules on ordinary text. `pii/new_redactor` is
//! what making a redactor costs.

use std::path::Path;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use idx::model::{Conversation, Message, RecordKind, Role};
use idx::pii::{PiiConfig, Redactor};

fn texts() -> Vec<String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/pii");
    let mut out = Vec::new();
    for file in ["casual_chat_labelled.jsonl", "counsel_chat_labelled.jsonl"] {
        let text = std::fs::read_to_string(root.join(file)).expect("labelled file");
        for line in text.lines() {
            let v: serde_json::Value = serde_json::from_str(line).expect("JSON line");
            out.push(v["text"].as_str().expect("text").to_string());
        }
    }
    out
}

fn bench_redact(c: &mut Criterion) {
    let texts = texts();
    let bytes: usize = texts.iter().map(String::len).sum();
    let redactor = Redactor::new(&PiiConfig::default());
    let mut group = c.benchmark_group("pii");
    group.throughput(Throughput::Bytes(bytes as u64));
    group.bench_function("redact_real_texts", |b| {
        b.iter(|| {
            for t in &texts {
                let mut conversation = Conversation {
                    kind: RecordKind::Chatml,
                    messages: vec![Message::new(Role::User, t.clone())],
                    rejected: None,
                    label: None,
                };
                std::hint::black_box(redactor.redact_conversation(&mut conversation));
            }
        })
    });
    group.finish();
}

/// What making a redactor costs: every ingest pass, plan, decontamination refresh and export
/// makes one.
fn bench_new_redactor(c: &mut Criterion) {
    c.bench_function("pii/new_redactor", |b| {
        b.iter(|| std::hint::black_box(Redactor::new(&PiiConfig::default())))
    });
}

criterion_group!(benches, bench_redact, bench_new_redactor);
criterion_main!(benches);
