//! The ingest driver: scan sources (folders, files, S3 prefixes with an optional inventory),
//! decide per object whether it is new, changed, unchanged, deleted or not training data, then
//! read the changed ones on a reader thread (S3 objects spooled to a file first; parse,
//! normalise), fingerprint them on a pool of workers (order restored), while this thread writes
//! them to redb in batches and feeds the full-text index. The stages are joined by small bounded
//! channels, so a slow writer slows the reader rather than growing memory. An object never
//! straddles two redb transactions.
//!
//! The files follow the pipeline: `plan` (scan, and what to do with each object), `read` (the
//! reader stage), `prepare` (the fingerprint pool), `write` (batches into redb and the full-text
//! index), `progress` and `report`. This file holds the options, the messages between the
//! stages and the orchestration: `ingest` runs passes until one finishes (a pass that an object
//! broke restarts without it), `ingest_once` plans one pass, starts the stages and commits.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::mpsc::sync_channel;
use std::sync::Arc;
use std::time::Instant;

use tracing::{info, warn};

use crate::config::Settings;
use crate::error::Result;
use crate::fingerprint::{Fingerprints, Shingles};
use crate::index::Index;
use crate::model::{Conversation, RecordMeta, Rejection};
use crate::parse::{self, Limits, Mapping};
use crate::pii::PiiRecord;
use crate::repair::Repairs;
use crate::source::{FoundObject, Source};
use crate::store::keys;

mod plan;
mod prepare;
mod progress;
mod read;
mod report;
mod write;

use plan::*;
use prepare::*;
use progress::*;
use read::*;
pub use report::{FailureReport, IngestReport, RejectionReport};
use write::*;

/// Knobs of one ingest run.
#[derive(Debug, Clone)]
pub struct IngestOptions {
    pub limits: Limits,
    /// Input bytes per redb write transaction (an object is never split).
    pub batch_bytes: u64,
    /// Draw a progress line on stderr.
    pub progress: bool,
    /// An S3 inventory (a local file or `s3://bucket/key`) saying which objects exist under the
    /// S3 sources; without S3 sources, its bucket is the source.
    pub inventory: Option<String>,
    /// Set from another thread to stop taking objects: what was read is committed, the rest
    /// is left for the next run.
    pub stop: Option<Arc<AtomicBool>>,
    /// (planned, done): objects this run will read, and has finished, for a watcher to see.
    pub counters: Option<(Arc<AtomicU64>, Arc<AtomicU64>)>,
    /// Fingerprint worker threads (PII, hashes, tokens). Default: one per core — on 2 cores, 2
    /// workers ingest 8 % faster than 1 (`cargo bench --bench ingest`, IDX_BENCH_WORKERS).
    pub workers: usize,
    /// After a run that grew the redb file by at least this many bytes and a quarter of its
    /// size, give the file's free pages back to the file system when as much and a quarter of
    /// the file are free (a first large ingest leaves about half of it free: every batch
    /// rewrites most leaves of its tables). `u64::MAX` never compacts.
    pub compact_min_free_bytes: u64,
}

impl Default for IngestOptions {
    fn default() -> Self {
        IngestOptions {
            limits: Limits::default(),
            batch_bytes: 64 << 20,
            progress: false,
            inventory: None,
            stop: None,
            counters: None,
            workers: std::thread::available_parallelism()
                .map_or(1, |n| n.get())
                .max(1),
            compact_min_free_bytes: 64 << 20,
        }
    }
}

pub(super) const CHUNK_ROWS: usize = 512;

/// Chunks each channel holds: enough (~16k rows, ~20 MB of text) for reading to go on while the
/// writer commits a batch, small enough to bound memory.
pub(super) const CHANNEL_CHUNKS: usize = 32;

/// One object the reader thread must read.
pub(super) struct Work {
    pub(super) source: String,
    /// The source that found the object, and opens it.
    pub(super) from: Arc<dyn Source>,
    /// The declared mapping its records are read with, if one matches its key.
    pub(super) mapping: Option<Arc<Mapping>>,
    pub(super) found: FoundObject,
    pub(super) primary: String,
    pub(super) families: Vec<String>,
    pub(super) format: (parse::FileFormat, bool),
    pub(super) existed: bool,
}

pub(super) struct PreparedRow {
    pub(super) line: u64,
    pub(super) record: u32,
    pub(super) fp: Fingerprints,
    pub(super) pii: PiiRecord,
    pub(super) conversation: Conversation,
    pub(super) meta: RecordMeta,
    /// Its `variants` value (head and compressed text), made on the worker thread.
    pub(super) stored: Vec<u8>,
    /// The shingles of its fingerprint text, made on the worker thread; the writer takes them
    /// for a row new to the index, whose near-duplicate check then reads no stored text.
    pub(super) shingles: Option<Shingles>,
}

/// What flows from the reader through the fingerprint stage to the writer. Every object is
/// `Begin`, its records, then `End` or `Failed`; the stream ends with `Done`. A channel that
/// closes before `Done` means a stage died, and the writer commits nothing of its open batch.
pub(super) enum Msg {
    Begin(usize),
    /// Records read but not yet fingerprinted (the fingerprint stage turns these into `Rows`).
    Parsed(usize, Vec<parse::ParsedRecord>),
    /// Prepared rows, and the records of the chunk that could not be prepared.
    Rows(usize, Vec<PreparedRow>, Vec<Rejection>),
    End {
        work: usize,
        digest: String,
        bytes: u64,
        rows: u64,
        rejected: u64,
        rejections: Vec<Rejection>,
        repairs: Repairs,
    },
    /// The object could not be read; after `Begin` this means it broke in the middle.
    Failed(usize, String),
    /// A stage could not go on (a bug caught as a panic outside any one object).
    StageFailed(String),
    /// The reader has sent everything it will send.
    Done,
}

/// Ingest the given folders and files into the index.
///
/// One object that breaks in the middle (a panic while reading it) costs only itself: the batch
/// it was in is dropped uncommitted, the object is recorded `failed` with its error, and the run
/// starts again from planning without it (objects committed meanwhile are unchanged by then).
pub fn ingest(
    index: &mut Index,
    settings: &Settings,
    paths: &[PathBuf],
    options: &IngestOptions,
) -> Result<IngestReport> {
    let started = Instant::now();
    let file_before = index.store.file_bytes()?;
    let mut poisoned: BTreeMap<String, String> = BTreeMap::new();
    let mut earlier: Option<IngestReport> = None;
    loop {
        match ingest_once(index, settings, paths, options, &poisoned)? {
            RunEnd::Finished(mut report) => {
                if let Some(mut e) = earlier {
                    // This pass saw the objects committed by the earlier ones as unchanged.
                    let settled = e.objects_new + e.objects_changed;
                    report.objects_unchanged = report.objects_unchanged.saturating_sub(settled);
                    e.add(report);
                    report = e;
                    let mut seen = BTreeSet::new();
                    report.failures.retain(|f| seen.insert(f.key.clone()));
                    report.objects_failed = report.failures.len() as u64;
                }
                {
                    let view = index.store.read()?;
                    for w in crate::verify::holdout_warnings(&view, &settings.policy())? {
                        if !report.warnings.contains(&w) {
                            report.warnings.push(w);
                        }
                    }
                }
                let file_now = index.store.file_bytes()?;
                let grown = file_now.saturating_sub(file_before);
                if worth_compacting(
                    grown,
                    file_now,
                    report.commits,
                    options.compact_min_free_bytes,
                ) {
                    report.compaction = index
                        .store
                        .compact_if_sparse(options.compact_min_free_bytes)?;
                }
                report.seconds = started.elapsed().as_secs_f64();
                return Ok(report);
            }
            RunEnd::Aborted { id, error, report } => {
                warn!(
                    object = %crate::pii::bounded_excerpt(&id),
                    error = %crate::pii::bounded_excerpt(&error),
                    "object failed in the middle of its batch: batch dropped, run restarted without it"
                );
                if poisoned.insert(id.clone(), error).is_some() {
                    return Err(crate::error::Error::Invariant(format!(
                        "{id} failed again after it was set aside"
                    )));
                }
                earlier = Some(match earlier {
                    None => report,
                    Some(mut e) => {
                        e.add(report);
                        e
                    }
                });
            }
        }
    }
}

/// Whether an ingest that grew the index file by `grown` bytes to `file_now` in `commits`
/// commits should measure the free space and compact. Only a run of several commits is worth
/// it: each commit frees the pages the one before rewrote (copy-on-write; keys are hashes
/// spread over every leaf, so a large batch rewrites most leaves), and those pile up. A single
/// commit also grows a freshly compacted file, by the leaves it rewrote, but the pages it freed
/// are what the next change reuses: compacting after a one-file change was most of its time
/// and won nothing for long. Measuring the free space reads the whole file, so the question is
/// not even asked otherwise.
fn worth_compacting(grown: u64, file_now: u64, commits: u64, min_free_bytes: u64) -> bool {
    commits >= 2 && grown >= min_free_bytes.max(1) && grown.saturating_mul(4) >= file_now
}

/// How one pass of [`ingest`] ended.
pub(super) enum RunEnd {
    Finished(IngestReport),
    /// An object broke mid-batch; the report holds the figures of the batches committed before
    /// it (the planning figures come from the pass that finishes).
    Aborted {
        id: String,
        error: String,
        report: IngestReport,
    },
}

/// One pass: catch the full-text index up, apply changed split settings, plan, then run the
/// reader and fingerprint stages while this thread commits batches. Objects in `poisoned` are
/// recorded failed without being read.
pub(super) fn ingest_once(
    index: &mut Index,
    settings: &Settings,
    paths: &[PathBuf],
    options: &IngestOptions,
    poisoned: &BTreeMap<String, String>,
) -> Result<RunEnd> {
    let started = Instant::now();
    let mut report = IngestReport::default();
    // A run that failed after some commits left the full-text index behind redb: catch it up
    // before this run's commits move its commit number past them.
    let catchup = index.search.catch_up(&index.store)?;
    if catchup != crate::search::Catchup::UpToDate {
        info!(?catchup, "full-text index brought up to date from redb");
    }
    let classifier = &settings.classifier;
    let policy = settings.policy();
    let redactor = settings.redactor();
    if let Some(moved) = index.store.ensure_policy(&policy)? {
        report.split_moves += moved;
        if moved > 0 {
            report.warnings.push(format!(
                "the near-duplicate/split settings changed: clusters recomputed, {moved} rows moved split"
            ));
        }
    }
    let planned = plan(index, settings, paths, options, poisoned, &mut report)?;

    if planned.is_empty() {
        report.seconds = started.elapsed().as_secs_f64();
        return Ok(RunEnd::Finished(report));
    }

    let Planned {
        work,
        skipped,
        deletions,
        failed,
    } = planned;
    let total_bytes: u64 = work.iter().map(|w| w.found.size).sum();
    let (tx, parsed_rx) = sync_channel::<Msg>(CHANNEL_CHUNKS);
    let (fp_tx, rx) = sync_channel::<Msg>(CHANNEL_CHUNKS);
    let limits = options.limits;
    let work_for_reader: Vec<ReadJob> = work
        .iter()
        .map(|w| ReadJob {
            from: w.from.clone(),
            object: w.found.clone(),
            mapping: w.mapping.clone(),
            format: w.format,
        })
        .collect();
    // Set when the writer gives up on this run, so the reader stops taking objects.
    let abandon = Arc::new(AtomicBool::new(false));
    let reader = Reader {
        redactor: redactor.clone(),
        spool: index.data_dir.join("spool"),
        stop: options.stop.clone(),
        abandon: abandon.clone(),
    };
    let fts_seq = index.search.committed_seq()?;
    // Figures of committed batches (planning figures stay in `report`).
    let mut committed = IngestReport::default();
    let run = std::thread::scope(|scope| -> Result<Option<(usize, String)>> {
        // Owned here, so that leaving this closure early (an error, an abort) closes the
        // channel and every stage upstream stops at its next send.
        let rx = rx;
        let reader_thread =
            scope.spawn(move || reader_thread(work_for_reader, &reader, limits, tx));
        let redactor = &redactor;
        let workers = options.workers.max(1);
        let fp_thread = scope.spawn(move || fingerprint_stage(parsed_rx, fp_tx, redactor, workers));
        let mut progress = Progress::new(
            options.progress,
            work.len(),
            total_bytes,
            options.counters.clone(),
        );
        let plan = Plan {
            work: &work,
            batch_bytes: options.batch_bytes,
            families_digest: classifier.digest(),
            read_digest: settings.read_digest(),
            redactor,
        };
        let commits = Commits {
            deletions: &deletions,
            failed: &failed,
            skipped: &skipped,
            policy: &policy,
            fts_seq,
        };
        let aborted = commit_batches(
            index,
            &commits,
            &rx,
            &plan,
            &mut progress,
            &abandon,
            &mut committed,
        )?;
        drop(rx);
        // The stages end on their own once the channel is closed; a panic that escaped them
        // is an error of this run, never a crash of the process.
        for (stage, handle) in [("reader", reader_thread), ("fingerprint", fp_thread)] {
            if let Err(panic) = handle.join() {
                return Err(crate::error::Error::Invariant(format!(
                    "the {stage} stage panicked: {}",
                    crate::error::panic_message(panic.as_ref())
                )));
            }
        }
        Ok(aborted)
    });
    let aborted = match run {
        Ok(aborted) => aborted,
        Err(e) => {
            if let Err(rollback) = index.search.rollback() {
                warn!(error = %rollback, "full-text index rollback failed; its uncommitted changes go with the writer");
            }
            return Err(e);
        }
    };
    report.seconds = started.elapsed().as_secs_f64();
    match aborted {
        None => {
            report.add(committed);
            Ok(RunEnd::Finished(report))
        }
        Some((i, error)) => {
            // What was added to the full-text index early for the dropped batch goes; the
            // batches committed before it are replayed from redb's log by the next pass.
            index.search.rollback()?;
            let w = &work[i];
            Ok(RunEnd::Aborted {
                id: keys::object_id(&w.source, &w.found.key),
                error,
                report: committed,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::worth_compacting;

    #[test]
    fn only_a_run_of_several_commits_compacts() {
        const MB: u64 = 1 << 20;
        // A first ingest of two 64 MB batches that left a 400 MB file.
        assert!(worth_compacting(400 * MB, 400 * MB, 2, 64 * MB));
        // One changed file, one commit, that grew a compacted 200 MB file by a quarter.
        assert!(!worth_compacting(60 * MB, 240 * MB, 1, 1));
        // A large load into a much larger index: the file grew too little to look.
        assert!(!worth_compacting(100 * MB, 4000 * MB, 12, 64 * MB));
        // Below the floor nothing is measured; nothing committed, nothing to win.
        assert!(!worth_compacting(10 * MB, 20 * MB, 30, 64 * MB));
        assert!(worth_compacting(10 * MB, 20 * MB, 30, 1));
        assert!(!worth_compacting(10 * MB, 20 * MB, 0, 1));
    }
}
