//! The reader stage: opens each planned object (S3 objects spooled to a file first), parses
//! and normalises it record by record, and sends the records on, ending the stream with an
//! explicit `Done`. A panic while reading one object fails that object, not the run.

use std::io::Read;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::SyncSender;
use std::sync::Arc;

use super::{Msg, CHUNK_ROWS};
use crate::parse::{self, Item, Limits};
use crate::pii::Redactor;
use crate::repair::Repairs;
use crate::source::{FoundObject, Source};
use crate::store::KEPT_REJECTIONS;

/// What the reader thread needs besides the work list.
pub(super) struct Reader {
    /// Rejection reasons quote parts of the input (an unknown role, a key name): they are
    /// redacted before they are kept or printed.
    pub(super) redactor: Redactor,
    /// Where S3 objects are streamed to before parsing (one at a time).
    pub(super) spool: PathBuf,
    pub(super) stop: Option<Arc<AtomicBool>>,
    /// Set by the writer when it drops the run.
    pub(super) abandon: Arc<AtomicBool>,
}

/// One object for the reader, with the source that opens it.
pub(super) struct ReadJob {
    pub(super) from: Arc<dyn Source>,
    pub(super) object: FoundObject,
    pub(super) mapping: Option<Arc<parse::Mapping>>,
    pub(super) format: (parse::FileFormat, bool),
}

impl Reader {
    pub(super) fn stopped(&self) -> bool {
        self.abandon.load(Ordering::SeqCst)
            || self.stop.as_ref().is_some_and(|s| s.load(Ordering::SeqCst))
    }
}

/// Reads and parses objects in order, streaming records to the fingerprint stage, and ends the
/// stream with `Done`. Each object is read under `catch_unwind`: a panic while reading one (a
/// bug met by its bytes) makes that object `Failed`, and the reader goes on with the next.
pub(super) fn reader_thread(
    work: Vec<ReadJob>,
    reader: &Reader,
    limits: Limits,
    tx: SyncSender<Msg>,
) {
    for (i, job) in work.into_iter().enumerate() {
        if reader.stopped() {
            break;
        }
        let read = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            read_one(i, &job, reader, limits, &tx)
        }));
        let sent = match read {
            Ok(sent) => sent,
            Err(panic) => {
                let error = format!(
                    "internal error while reading (a bug in idx): {}",
                    crate::pii::bounded_excerpt(&crate::error::panic_message(panic.as_ref()))
                );
                tx.send(Msg::Failed(i, error)).is_ok()
            }
        };
        if !sent {
            return;
        }
    }
    let _ = tx.send(Msg::Done);
}

/// Read one object; false when the writer has gone.
pub(super) fn read_one(
    i: usize,
    job: &ReadJob,
    reader: &Reader,
    limits: Limits,
    tx: &SyncSender<Msg>,
) -> bool {
    let (format, gzip) = job.format;
    let file = match job.from.open(&job.object, &reader.spool) {
        Ok(f) => f,
        Err(e) => return tx.send(Msg::Failed(i, e)).is_ok(),
    };
    if tx.send(Msg::Begin(i)).is_err() {
        return false;
    }
    // Test hook: panic after this many records of an object whose key holds the marker.
    let panic_after = crate::failpoint::armed(crate::failpoint::READ_PANIC).and_then(|arg| {
        let (marker, n) = arg.split_once('@').unwrap_or((arg, "1"));
        job.object
            .key
            .contains(marker)
            .then(|| n.parse::<u64>().unwrap_or(1))
    });
    let mut digester = DigestReader {
        inner: file,
        hasher: xxhash_rust::xxh3::Xxh3::new(),
        bytes: 0,
    };
    let mut chunk: Vec<parse::ParsedRecord> = Vec::with_capacity(CHUNK_ROWS);
    let mut rows = 0u64;
    let mut rejected = 0u64;
    let mut rejections = Vec::new();
    let mut repairs = Repairs::default();
    let mut closed = false;
    let mut on_item = |item| match item {
        Item::Record(r) => {
            repairs.add(r.repairs);
            chunk.push(r);
            rows += 1;
            if panic_after == Some(rows) {
                panic!("fail point {}", crate::failpoint::READ_PANIC);
            }
            if chunk.len() >= CHUNK_ROWS && !closed {
                let full = std::mem::replace(&mut chunk, Vec::with_capacity(CHUNK_ROWS));
                closed = tx.send(Msg::Parsed(i, full)).is_err();
            }
        }
        Item::Rejected(mut r) => {
            rejected += 1;
            if rejections.len() < KEPT_REJECTIONS {
                r.reason = reader.redactor.redact(&r.reason).0;
                rejections.push(r);
            }
        }
    };
    let columnar = parse::is_columnar_file(format, gzip);
    if columnar {
        // Parquet and Arrow files are read by seeking: the digest is taken in one pass first.
        if let Err(e) = std::io::copy(&mut digester, &mut std::io::sink())
            .and_then(|_| std::io::Seek::rewind(&mut digester.inner))
        {
            return tx.send(Msg::Failed(i, format!("read error: {e}"))).is_ok();
        }
        match digester.inner.try_clone() {
            Ok(file) => parse::read_file_mapped(
                file,
                format,
                gzip,
                limits,
                job.mapping.as_deref(),
                &mut on_item,
            ),
            Err(e) => return tx.send(Msg::Failed(i, format!("read error: {e}"))).is_ok(),
        }
    } else {
        parse::read_object_mapped(
            &mut digester,
            format,
            gzip,
            limits,
            job.mapping.as_deref(),
            &mut on_item,
        );
    }
    if closed {
        return false;
    }
    // Drain what the parser left unread (e.g. after a document-size rejection) so the digest
    // covers the whole object (a columnar object was digested whole before it was read).
    if !columnar {
        let _ = std::io::copy(&mut digester, &mut std::io::sink());
    }
    if !chunk.is_empty() && tx.send(Msg::Parsed(i, chunk)).is_err() {
        return false;
    }
    tx.send(Msg::End {
        work: i,
        digest: format!("{:032x}", digester.hasher.digest128()),
        bytes: digester.bytes,
        rows,
        rejected,
        rejections,
        repairs,
    })
    .is_ok()
}

pub(super) struct DigestReader<R> {
    pub(super) inner: R,
    pub(super) hasher: xxhash_rust::xxh3::Xxh3,
    pub(super) bytes: u64,
}

impl<R: Read> Read for DigestReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }
}
