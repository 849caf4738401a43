//! The fingerprint stage: a pool of workers prepares each row (repair, normalise, redact,
//! fingerprint, shingle, count tokens), each row under its own panic guard, and hands the rows on in
//! the order they were read, at most 4 × workers messages ahead of the writer.

use std::collections::BTreeMap;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::Arc;

use super::{Msg, PreparedRow};
use crate::fingerprint::fingerprint_and_shingles;
use crate::model::Rejection;
use crate::parse::{self};
use crate::pii::Redactor;

/// Redact PII, then fingerprint: hashes are computed on redacted text only. A record whose
/// preparation panics (a bug met by one row) is rejected with its line; the others go on.
pub(super) fn prepare(
    records: Vec<parse::ParsedRecord>,
    redactor: &Redactor,
) -> (Vec<PreparedRow>, Vec<Rejection>) {
    let mut rows = Vec::with_capacity(records.len());
    let mut rejected = Vec::new();
    for r in records {
        let line = r.line;
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| prepare_row(r, redactor))) {
            Ok(row) => rows.push(row),
            Err(_) => rejected.push(Rejection {
                line,
                // The panic's own message may quote the row's text: it is not kept.
                reason: "internal error while redacting or fingerprinting this row (a bug in idx; the row was left out)"
                    .to_string(),
            }),
        }
    }
    (rows, rejected)
}

pub(super) fn prepare_row(mut r: parse::ParsedRecord, redactor: &Redactor) -> PreparedRow {
    if let Some(marker) = crate::failpoint::armed(crate::failpoint::PREPARE_PANIC) {
        if r.conversation
            .all_messages()
            .any(|m| m.content.contains(marker))
        {
            panic!("fail point {}", crate::failpoint::PREPARE_PANIC);
        }
    }
    let pii = redactor.redact_conversation(&mut r.conversation);
    // Attributes are stored and exported: their text is redacted like messages, then bounded.
    for (_, value) in &mut r.meta.attributes {
        if let Ok(serde_json::Value::String(text)) = serde_json::from_str(value) {
            let redacted = bounded_attribute(redactor.redact(&text).0);
            *value = serde_json::Value::String(redacted).to_string();
        } else if value.len() > MAX_ATTRIBUTE_BYTES {
            *value = serde_json::Value::String(bounded_attribute(value.clone())).to_string();
        }
    }
    let (fp, shingles) = fingerprint_and_shingles(&r.conversation);
    let stored = crate::store::encode_variant(fp.tokens, &r.conversation);
    PreparedRow {
        line: r.line,
        record: r.record,
        fp,
        pii,
        conversation: r.conversation,
        meta: r.meta,
        stored,
        shingles: Some(shingles),
    }
}

/// An attribute is a label (a topic, a score), not a document: longer values are cut.
const MAX_ATTRIBUTE_BYTES: usize = 1024;

fn bounded_attribute(mut text: String) -> String {
    if text.len() > MAX_ATTRIBUTE_BYTES {
        let mut end = MAX_ATTRIBUTE_BYTES;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        text.push('…');
    }
    text
}

/// The fingerprint stage (PII redaction, hashes, SimHash, tokens) between the reader and the
/// writer, on a pool of `workers` threads; everything but parsed records passes through.
/// Messages are numbered on the way in and put back in order on the way out, so the writer
/// sees exactly the reader's sequence. Every channel is bounded, and so is the work in flight:
/// a message is dispatched only while fewer than `window` are between dispatch and release, so
/// a slow or stuck worker holds the others back instead of growing the reorder buffer.
pub(super) fn fingerprint_stage(
    rx: Receiver<Msg>,
    tx: SyncSender<Msg>,
    redactor: &Redactor,
    workers: usize,
) {
    let work = |msg: Msg| -> Msg {
        let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| match msg {
            Msg::Parsed(i, records) => {
                let (rows, rejected) = prepare(records, redactor);
                Msg::Rows(i, rows, rejected)
            }
            other => other,
        }));
        caught.unwrap_or_else(|panic| {
            Msg::StageFailed(format!(
                "the fingerprint stage panicked: {}",
                crate::pii::bounded_excerpt(&crate::error::panic_message(panic.as_ref()))
            ))
        })
    };
    if workers <= 1 {
        for msg in rx {
            if tx.send(work(msg)).is_err() {
                return;
            }
        }
        return;
    }
    let window = workers * 4;
    let (job_tx, job_rx) = sync_channel::<(u64, Msg)>(workers);
    // Each worker holds the job receiver; when they have all gone, the dispatcher's send fails.
    let job_rx = Arc::new(std::sync::Mutex::new(job_rx));
    let (done_tx, done_rx) = sync_channel::<(u64, Msg)>(window);
    // One permit per message in flight; the orderer gives a permit back as it releases one.
    let (permit_tx, permit_rx) = sync_channel::<()>(window);
    for _ in 0..window {
        let _ = permit_tx.try_send(());
    }
    std::thread::scope(|scope| {
        for _ in 0..workers {
            let done_tx = done_tx.clone();
            let job_rx = job_rx.clone();
            let work = &work;
            scope.spawn(move || loop {
                let job = match job_rx.lock() {
                    Ok(r) => r.recv(),
                    Err(poisoned) => poisoned.into_inner().recv(),
                };
                let Ok((seq, msg)) = job else { return };
                if done_tx.send((seq, work(msg))).is_err() {
                    return;
                }
            });
        }
        drop(done_tx);
        drop(job_rx);
        scope.spawn(move || {
            for (seq, msg) in rx.into_iter().enumerate() {
                if permit_rx.recv().is_err() || job_tx.send((seq as u64, msg)).is_err() {
                    return;
                }
            }
        });
        let mut next = 0u64;
        let mut early: BTreeMap<u64, Msg> = BTreeMap::new();
        for (seq, msg) in done_rx {
            early.insert(seq, msg);
            while let Some(msg) = early.remove(&next) {
                if tx.send(msg).is_err() {
                    return;
                }
                let _ = permit_tx.try_send(());
                next += 1;
            }
        }
    });
}
