//! The ingest driver: scan sources (folders, files, S3 prefixes with an optional inventory),
//! decide per object whether it is new, changed, unchanged, deleted or not training data, then
//! read the changed ones on a reader thread (S3 objects spooled to a file first; parse,
//! normalise), fingerprint them on a pool of workers (order restored), while this thread writes
//! them to redb in batches and feeds the full-text index. The stages are joined by small bounded
//! channels, so a slow writer slows the reader rather than growing memory. An object never
//! straddles two redb transactions.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use tracing::{info, warn};

use crate::config::Settings;
use crate::error::Result;
use crate::families::{Classification, Classifier};
use crate::fingerprint::{fingerprint, Fingerprints, Hash128};
use crate::index::Index;
use crate::model::{Conversation, ObjectVersion, Rejection};
use crate::parse::{self, Item, Limits};
use crate::pii::{PiiRecord, Redactor};
use crate::repair::Repairs;
use crate::search::SearchIndex;
use crate::source::inventory::Inventory;
use crate::source::s3::{S3Client, S3Url};
use crate::source::{self, FoundObject, Location, Scan};
use crate::store::{keys, NewPlace, ObjectRecord, ObjectStatus, WriteBatch, KEPT_REJECTIONS};

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
        }
    }
}

/// An object an inventory lists and its bucket lacks: (source, key, error).
type MissingObject = (String, String, String);

/// A source argument: a local path, or an `s3://bucket/prefix` URL.
fn s3_url_of(path: &Path) -> Option<&str> {
    path.to_str().filter(|s| s.starts_with("s3://"))
}

/// Scan every source: local paths directly, S3 prefixes through one client (with the inventory
/// when one is given). Inventory objects missing from their bucket come back as failures.
fn scan_sources(
    index: &Index,
    settings: &Settings,
    paths: &[PathBuf],
    options: &IngestOptions,
    report: &mut IngestReport,
    s3: &mut Option<Arc<S3Client>>,
) -> Result<(Vec<Scan>, Vec<MissingObject>)> {
    let mut scans = Vec::new();
    let mut missing = Vec::new();
    let mut urls: Vec<S3Url> = Vec::new();
    for p in paths {
        match s3_url_of(p) {
            Some(u) => urls.push(S3Url::parse(u)?),
            None => scans.push(source::local::scan(p, Some(&index.data_dir))?),
        }
    }
    let mut client = || -> Result<Arc<S3Client>> {
        if s3.is_none() {
            *s3 = Some(Arc::new(S3Client::connect(&settings.idx.s3)?));
        }
        Ok(s3.clone().expect("set above"))
    };
    let inventory = match &options.inventory {
        None => None,
        Some(loc) => {
            let text = if loc.starts_with("s3://") {
                let url = S3Url::parse(loc)?;
                String::from_utf8_lossy(&client()?.get_bytes(&url)?).into_owned()
            } else {
                std::fs::read_to_string(loc).map_err(|source| crate::error::Error::Io {
                    path: PathBuf::from(loc),
                    source,
                })?
            };
            let inv = Inventory::parse(&text, loc).map_err(crate::error::Error::S3)?;
            if urls.is_empty() {
                let bucket = inv.bucket.clone().ok_or_else(|| {
                    crate::error::Error::S3(format!(
                        "{loc} names no bucket: give the S3 source (s3://bucket/prefix) too"
                    ))
                })?;
                urls.push(S3Url {
                    bucket,
                    prefix: String::new(),
                });
            }
            Some(inv)
        }
    };
    let mut unlisted: Vec<(S3Url, crate::error::Error)> = Vec::new();
    for url in &urls {
        let found = match source::s3::scan(&*client()?, url, inventory.as_ref()) {
            Ok(found) => found,
            Err(e) => {
                unlisted.push((url.clone(), e));
                continue;
            }
        };
        report.warnings.extend(found.warnings);
        for key in found.missing {
            missing.push((
                found.scan.source.clone(),
                key,
                "listed in the inventory but absent from the bucket".to_string(),
            ));
        }
        scans.push(found.scan);
    }
    // A listing that failed is a scan error that changes nothing under its prefix while the other
    // sources go on; when no source could be looked at, the run fails with the listing's error.
    if scans.is_empty() {
        if let Some((_, e)) = unlisted.into_iter().next() {
            return Err(e);
        }
    } else {
        for (url, e) in unlisted {
            scans.push(Scan {
                source: url.source(),
                objects: Vec::new(),
                scope: source::ScanScope::Keys(Vec::new()),
                errors: vec![(String::new(), format!("{e}; nothing under it was changed"))],
            });
        }
    }
    Ok((scans, missing))
}

/// A rejected line with the object it is in.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct RejectionReport {
    pub key: String,
    pub line: u64,
    pub reason: String,
}

/// An object that could not be read.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct FailureReport {
    pub key: String,
    pub error: String,
}

/// What one ingest run did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct IngestReport {
    pub objects_scanned: u64,
    pub objects_new: u64,
    pub objects_changed: u64,
    pub objects_unchanged: u64,
    pub objects_deleted: u64,
    pub objects_skipped: u64,
    pub objects_failed: u64,
    pub rows_added: u64,
    pub rows_removed: u64,
    pub rejected_rows: u64,
    /// The first rejections of this run, with object and line.
    pub rejections: Vec<RejectionReport>,
    pub failures: Vec<FailureReport>,
    /// Folders that could not be read during the scan.
    pub scan_errors: Vec<FailureReport>,
    /// Existing rows whose split changed (near-duplicates merged or split clusters).
    pub split_moves: u64,
    pub bytes_read: u64,
    pub seconds: f64,
    pub commits: u64,
    /// Encoding repairs made in the objects read by this run.
    pub repairs: Repairs,
    /// Things worth a look that are not errors (e.g. overlapping source roots).
    pub warnings: Vec<String>,
}

const REPORTED_REJECTIONS: usize = 10;
const CHUNK_ROWS: usize = 512;
/// Chunks each channel holds: enough (~16k rows, ~20 MB of text) for reading to go on while the
/// writer commits a batch, small enough to bound memory.
const CHANNEL_CHUNKS: usize = 32;

/// One object the reader thread must read.
struct Work {
    source: String,
    found: FoundObject,
    primary: String,
    families: Vec<String>,
    format: (parse::FileFormat, bool),
    existed: bool,
}

struct PreparedRow {
    line: u64,
    record: u32,
    fp: Fingerprints,
    pii: PiiRecord,
    conversation: Conversation,
}

/// What flows from the reader through the fingerprint stage to the writer. Every object is
/// `Begin`, its records, then `End` or `Failed`; the stream ends with `Done`. A channel that
/// closes before `Done` means a stage died, and the writer commits nothing of its open batch.
enum Msg {
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

/// How one pass of [`ingest`] ended.
enum RunEnd {
    Finished(IngestReport),
    /// An object broke mid-batch; the report holds the figures of the batches committed before
    /// it (the planning figures come from the pass that finishes).
    Aborted {
        id: String,
        error: String,
        report: IngestReport,
    },
}

/// A failed object's record: what was indexed before stays (rows and version, so the next
/// scan retries it); a new object gets an empty record.
#[allow(clippy::too_many_arguments)]
fn failed_record(
    old: Option<ObjectRecord>,
    source: &str,
    key: &str,
    primary: &str,
    families: &[String],
    families_digest: &str,
    read_digest: &str,
    error: String,
) -> ObjectRecord {
    let status = ObjectStatus::Failed { error };
    match old {
        Some(mut o) => {
            o.status = status;
            o
        }
        None => ObjectRecord {
            source: source.to_string(),
            key: key.to_string(),
            version: ObjectVersion {
                size: 0,
                mtime_ns: 0,
                digest: String::new(),
            },
            status,
            primary_family: primary.to_string(),
            families: families.to_vec(),
            families_digest: families_digest.to_string(),
            rows: 0,
            rejected: 0,
            rejections: Vec::new(),
            repairs: Repairs::default(),
            read_digest: read_digest.to_string(),
        },
    }
}

fn ingest_once(
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
    let read_digest = settings.read_digest();
    let redactor = settings.redactor();
    if let Some(moved) = index.store.ensure_policy(&policy)? {
        report.split_moves += moved;
        if moved > 0 {
            report.warnings.push(format!(
                "the near-duplicate/split settings changed: clusters recomputed, {moved} rows moved split"
            ));
        }
    }
    let mut s3: Option<Arc<S3Client>> = None;
    let (scans, mut missing) = scan_sources(index, settings, paths, options, &mut report, &mut s3)?;
    // Two paths may name overlapping scans of one source: merge so nothing is seen twice.
    let scans = merge_scans(scans);

    let view = index.store.read()?;
    report
        .warnings
        .extend(overlap_warnings(&scans, &view.sources()?));
    let mut work: Vec<Work> = Vec::new();
    let mut skipped: Vec<ObjectRecord> = Vec::new();
    let mut deletions: Vec<String> = Vec::new();
    for scan in &scans {
        for (path, error) in &scan.errors {
            report.scan_errors.push(FailureReport {
                key: if path.is_empty() {
                    scan.source.clone()
                } else {
                    path.clone()
                },
                error: error.clone(),
            });
        }
        let stored: BTreeMap<String, ObjectRecord> = view
            .objects_under(&scan.source)?
            .into_iter()
            .map(|o| (o.key.clone(), o))
            .collect();
        let seen: BTreeSet<&str> = scan.objects.iter().map(|o| o.key.as_str()).collect();
        for key in stored.keys() {
            if !seen.contains(key.as_str()) && scan.vouches_for(key) {
                deletions.push(keys::object_id(&scan.source, key));
            }
        }
        for found in &scan.objects {
            report.objects_scanned += 1;
            let old = stored.get(&found.key);
            let (primary, families) = match classifier.classify(&found.key) {
                Classification::NotData { reason } => {
                    report.objects_skipped += 1;
                    plan_skip(&scan.source, found, reason, classifier, old, &mut skipped);
                    continue;
                }
                Classification::Data { primary, tags } => (primary, tags),
            };
            let Some(format) = parse::detect_file_format(&found.key) else {
                report.objects_skipped += 1;
                let ext = Path::new(&found.key)
                    .extension()
                    .map(|e| format!(".{}", e.to_string_lossy()))
                    .unwrap_or_else(|| "no extension".to_string());
                let reason = format!(
                    "unsupported format ({ext}); idx reads .jsonl, .json and .txt, optionally .gz"
                );
                plan_skip(&scan.source, found, reason, classifier, old, &mut skipped);
                continue;
            };
            // A config edit re-reads only the objects whose classification it changes.
            let unchanged = old.is_some_and(|o| {
                o.status == ObjectStatus::Indexed
                    && o.read_digest == read_digest
                    && o.version.size == found.size
                    && o.version.mtime_ns == found.mtime_ns
                    && found.etag.as_ref().is_none_or(|e| &o.version.digest == e)
                    && o.primary_family == primary
                    && o.families == families
            });
            if unchanged {
                report.objects_unchanged += 1;
                continue;
            }
            if let Some(error) = poisoned.get(&keys::object_id(&scan.source, &found.key)) {
                missing.push((scan.source.clone(), found.key.clone(), error.clone()));
                continue;
            }
            work.push(Work {
                source: scan.source.clone(),
                found: found.clone(),
                primary,
                families,
                format,
                // A failed object keeps the rows of its last good read: reading it again changes it.
                existed: old.is_some_and(|o| o.status == ObjectStatus::Indexed || o.rows > 0),
            });
        }
    }
    // Inventory objects the bucket lacks, and objects set aside after breaking a batch: failed
    // (kept as they were, retried next time).
    let mut failed: Vec<ObjectRecord> = Vec::new();
    for (source, key, error) in missing {
        if !poisoned.contains_key(&keys::object_id(&source, &key)) {
            report.objects_scanned += 1;
        }
        report.objects_failed += 1;
        warn!(
            key = %redactor.redact_key(&key),
            error = %redactor.redact_key(&error),
            "object failed"
        );
        report.failures.push(FailureReport {
            key: key.clone(),
            error: error.clone(),
        });
        let id = keys::object_id(&source, &key);
        let old = view.object(&id)?;
        if old.as_ref().is_some_and(|o| {
            o.status
                == (ObjectStatus::Failed {
                    error: error.clone(),
                })
        }) {
            continue;
        }
        let (primary, families) = match classifier.classify(&key) {
            Classification::Data { primary, tags } => (primary, tags),
            Classification::NotData { .. } => continue,
        };
        failed.push(failed_record(
            old,
            &source,
            &key,
            &primary,
            &families,
            classifier.digest(),
            &read_digest,
            error,
        ));
    }
    drop(view);

    if work.is_empty() && skipped.is_empty() && deletions.is_empty() && failed.is_empty() {
        report.seconds = started.elapsed().as_secs_f64();
        return Ok(RunEnd::Finished(report));
    }

    let total_bytes: u64 = work.iter().map(|w| w.found.size).sum();
    let (tx, parsed_rx) = sync_channel::<Msg>(CHANNEL_CHUNKS);
    let (fp_tx, rx) = sync_channel::<Msg>(CHANNEL_CHUNKS);
    let limits = options.limits;
    let work_for_reader: Vec<ReadJob> = work
        .iter()
        .map(|w| ReadJob {
            location: w.found.location.clone(),
            key: w.found.key.clone(),
            format: w.format,
        })
        .collect();
    // Set when the writer gives up on this run, so the reader stops taking objects.
    let abandon = Arc::new(AtomicBool::new(false));
    let reader = Reader {
        redactor: redactor.clone(),
        s3: s3.clone(),
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
        let mut first = true;
        let mut finished = false;
        let mut text_pending: Option<u64> = None;
        let mut aborted = None;
        while !finished {
            let txn = index.store.begin_write()?;
            let mut batch = WriteBatch::open(&txn, &policy)?;
            // This batch's figures count only once it commits.
            let mut pending = IngestReport::default();
            if first {
                first = false;
                for id in &deletions {
                    if let Some(old) = batch.delete_object(id)? {
                        pending.rows_removed += old.rows;
                        pending.objects_deleted += 1;
                        info!(key = %redactor.redact_key(&old.key), rows = old.rows, "object deleted");
                    }
                }
                for record in &failed {
                    batch.put_object(record)?;
                }
                for record in &skipped {
                    let id = keys::object_id(&record.source, &record.key);
                    if let Some(old) = batch.object(&id)? {
                        pending.rows_removed += batch.remove_places(&id, &old.families)?;
                    }
                    batch.put_object(record)?;
                }
            }
            let mut early = EarlyText::default();
            let end = write_batch(
                &mut batch,
                &mut index.search,
                &mut early,
                &rx,
                &plan,
                &mut pending,
                &mut progress,
            )?;
            match end {
                BatchEnd::Full => {}
                BatchEnd::Done => finished = true,
                BatchEnd::Abort { work, error } => {
                    // Dropping the batch and its transaction commits nothing of it.
                    abandon.store(true, Ordering::SeqCst);
                    aborted = Some((work, error));
                    break;
                }
            }
            let written = Instant::now();
            let outcome = batch.finish(fts_seq)?;
            // The number of this commit in the run, for the fail points.
            let commit_no = committed.commits + 1;
            if crate::failpoint::at(crate::failpoint::COMMIT_ERROR, commit_no) {
                return Err(crate::error::Error::Io {
                    path: index.store.path().to_path_buf(),
                    source: std::io::Error::new(
                        std::io::ErrorKind::StorageFull,
                        "fail point: the disk refused the commit",
                    ),
                });
            }
            txn.commit()?;
            if crate::failpoint::at(crate::failpoint::ABORT_AFTER_COMMIT, commit_no) {
                std::process::abort();
            }
            pending.commits += 1;
            pending.split_moves += outcome.moved;
            committed.add(pending);
            info!(
                seq = outcome.seq,
                touched = outcome.touched.len(),
                commit_ms = written.elapsed().as_millis() as u64,
                "batch committed to redb"
            );
            if !outcome.touched.is_empty() {
                // Rows indexed early and untouched since need no second look. The full-text index
                // commits once at the end: its fts_log entries cover a crash meanwhile.
                let rest: Vec<_> = outcome
                    .touched
                    .iter()
                    .copied()
                    .filter(|h| !early.clean.contains_key(h))
                    .collect();
                index.search.reindex(&index.store.read()?, &rest)?;
                text_pending = Some(outcome.seq);
            }
        }
        if aborted.is_none() {
            if let Some(seq) = text_pending {
                let started = Instant::now();
                index.search.commit(seq)?;
                info!(
                    seq,
                    commit_ms = started.elapsed().as_millis() as u64,
                    "full-text index committed"
                );
            }
            progress.finish();
        }
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

impl IngestReport {
    /// Add the figures of a later part of the same run (a committed batch, a restarted pass).
    fn add(&mut self, later: IngestReport) {
        let earlier = std::mem::replace(self, later);
        self.objects_scanned += earlier.objects_scanned;
        self.objects_unchanged += earlier.objects_unchanged;
        self.objects_skipped += earlier.objects_skipped;
        self.objects_new += earlier.objects_new;
        self.objects_changed += earlier.objects_changed;
        self.objects_deleted += earlier.objects_deleted;
        self.objects_failed += earlier.objects_failed;
        self.rows_added += earlier.rows_added;
        self.rows_removed += earlier.rows_removed;
        self.rejected_rows += earlier.rejected_rows;
        let mut rejections = earlier.rejections;
        rejections.append(&mut self.rejections);
        rejections.truncate(REPORTED_REJECTIONS);
        self.rejections = rejections;
        let mut failures = earlier.failures;
        failures.append(&mut self.failures);
        self.failures = failures;
        let mut scan_errors = earlier.scan_errors;
        scan_errors.append(&mut self.scan_errors);
        self.scan_errors = scan_errors;
        self.split_moves += earlier.split_moves;
        self.bytes_read += earlier.bytes_read;
        self.commits += earlier.commits;
        self.repairs.add(earlier.repairs);
        let mut warnings = earlier.warnings;
        for w in std::mem::take(&mut self.warnings) {
            if !warnings.contains(&w) {
                warnings.push(w);
            }
        }
        self.warnings = warnings;
    }
}

/// A source root inside (or around) another one already indexed sees the same files under other
/// keys, so their rows would count twice.
fn overlap_warnings(scans: &[Scan], indexed: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    for scan in scans {
        for other in indexed {
            let nested = other.starts_with(&format!("{}/", scan.source))
                || scan.source.starts_with(&format!("{other}/"));
            if nested {
                out.push(format!(
                    "{} overlaps {} already in the index: files under both are indexed twice; ingest one root consistently",
                    scan.source, other
                ));
            }
        }
    }
    out
}

fn merge_scans(scans: Vec<Scan>) -> Vec<Scan> {
    let mut by_source: BTreeMap<String, Scan> = BTreeMap::new();
    for scan in scans {
        match by_source.get_mut(&scan.source) {
            None => {
                by_source.insert(scan.source.clone(), scan);
            }
            Some(existing) => {
                existing.scope = match (&existing.scope, &scan.scope) {
                    (source::ScanScope::Keys(a), source::ScanScope::Keys(b)) => {
                        source::ScanScope::Keys(a.iter().chain(b).cloned().collect())
                    }
                    _ => source::ScanScope::All,
                };
                existing.errors.extend(scan.errors);
                existing.objects.extend(scan.objects);
                existing.objects.sort_by(|a, b| a.key.cmp(&b.key));
                existing.objects.dedup_by(|a, b| a.key == b.key);
            }
        }
    }
    by_source.into_values().collect()
}

fn plan_skip(
    source: &str,
    found: &FoundObject,
    reason: String,
    classifier: &Classifier,
    old: Option<&ObjectRecord>,
    out: &mut Vec<ObjectRecord>,
) {
    let record = ObjectRecord {
        source: source.to_string(),
        key: found.key.clone(),
        version: ObjectVersion {
            size: found.size,
            mtime_ns: found.mtime_ns,
            digest: String::new(),
        },
        status: ObjectStatus::Skipped { reason },
        primary_family: String::new(),
        families: Vec::new(),
        families_digest: classifier.digest().to_string(),
        rows: 0,
        rejected: 0,
        rejections: Vec::new(),
        repairs: Repairs::default(),
        read_digest: String::new(),
    };
    if old != Some(&record) {
        out.push(record);
    }
}

/// Rows new to the index are sent to the full-text index as they are written, so tantivy works
/// while the batch is still being read. A row stays "clean" while every later place of it in the
/// same batch has the same spelling and family tags; any other row is re-indexed from redb after
/// the commit.
#[derive(Default)]
struct EarlyText {
    /// content hash → (variant hash, index of the work item whose family tags it carries)
    clean: HashMap<Hash128, (Hash128, usize)>,
}

/// What the writer needs to know of the run besides the messages.
struct Plan<'a> {
    work: &'a [Work],
    batch_bytes: u64,
    /// Digest of the families config every object of this run was classified with.
    families_digest: &'a str,
    /// Digest of the settings every object of this run was read with.
    read_digest: String,
    redactor: &'a Redactor,
}

/// How a batch ended.
enum BatchEnd {
    /// Full: commit it and open the next.
    Full,
    /// The reader sent `Done`: commit it, and the run is over.
    Done,
    /// An object broke after its `Begin`: drop the batch uncommitted.
    Abort { work: usize, error: String },
}

/// Records of an object that the fingerprint stage could not prepare, by work item.
#[derive(Default)]
struct LateRejections {
    by_work: HashMap<usize, (u64, Vec<Rejection>)>,
}

/// Consume reader messages into one batch until it is full or the stream ends.
fn write_batch(
    batch: &mut WriteBatch<'_>,
    search: &mut SearchIndex,
    early: &mut EarlyText,
    rx: &Receiver<Msg>,
    plan: &Plan<'_>,
    report: &mut IngestReport,
    progress: &mut Progress,
) -> Result<BatchEnd> {
    let mut batch_bytes = 0u64;
    let mut late = LateRejections::default();
    // The object whose `Begin` came and whose `End` has not.
    let mut open: Option<usize> = None;
    loop {
        let Ok(msg) = rx.recv() else {
            return Err(crate::error::Error::Invariant(
                "the reading stages stopped without finishing (a stage died); nothing of the open batch was committed"
                    .to_string(),
            ));
        };
        let subject = match &msg {
            Msg::Begin(i) | Msg::Parsed(i, _) | Msg::Rows(i, _, _) | Msg::Failed(i, _) => Some(*i),
            Msg::End { work, .. } => Some(*work),
            Msg::StageFailed(_) | Msg::Done => None,
        };
        // A bug that panics on one object's rows costs that object, not the process.
        let step = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            write_message(
                batch,
                search,
                early,
                msg,
                plan,
                report,
                progress,
                &mut late,
                &mut open,
                &mut batch_bytes,
            )
        }));
        match step {
            Ok(Ok(Step::Continue)) => {}
            Ok(Ok(Step::End(end))) => return Ok(end),
            Ok(Err(e)) => return Err(e),
            Err(panic) => {
                let error = format!(
                    "internal error while writing its rows (a bug in idx): {}",
                    crate::pii::bounded_excerpt(&crate::error::panic_message(panic.as_ref()))
                );
                return match open.or(subject) {
                    Some(work) => Ok(BatchEnd::Abort { work, error }),
                    None => Err(crate::error::Error::Invariant(error)),
                };
            }
        }
    }
}

enum Step {
    Continue,
    End(BatchEnd),
}

#[allow(clippy::too_many_arguments)]
fn write_message(
    batch: &mut WriteBatch<'_>,
    search: &mut SearchIndex,
    early: &mut EarlyText,
    msg: Msg,
    plan: &Plan<'_>,
    report: &mut IngestReport,
    progress: &mut Progress,
    late: &mut LateRejections,
    open: &mut Option<usize>,
    batch_bytes: &mut u64,
) -> Result<Step> {
    let work = plan.work;
    match msg {
        Msg::Begin(i) => {
            *open = Some(i);
            let w = &work[i];
            let id = keys::object_id(&w.source, &w.found.key);
            if let Some(old) = batch.object(&id)? {
                report.rows_removed += batch.remove_places(&id, &old.families)?;
            }
        }
        Msg::Parsed(i, records) => {
            let (rows, rejected) = prepare(records, plan.redactor);
            write_rows(batch, search, early, work, i, &rows)?;
            report.rows_added += rows.len() as u64;
            late.add(i, rejected);
        }
        Msg::Rows(i, rows, rejected) => {
            write_rows(batch, search, early, work, i, &rows)?;
            report.rows_added += rows.len() as u64;
            late.add(i, rejected);
        }
        Msg::End {
            work: i,
            digest,
            bytes,
            rows,
            rejected,
            mut rejections,
            repairs,
        } => {
            *open = None;
            let w = &work[i];
            let (late_count, late_rejections) = late.by_work.remove(&i).unwrap_or_default();
            let rows = rows.saturating_sub(late_count);
            let rejected = rejected + late_count;
            if late_count > 0 {
                rejections.extend(late_rejections);
                rejections.sort_by_key(|r| r.line);
                rejections.truncate(KEPT_REJECTIONS);
            }
            report.repairs.add(repairs);
            for r in &rejections {
                if report.rejections.len() < REPORTED_REJECTIONS {
                    report.rejections.push(RejectionReport {
                        key: w.found.key.clone(),
                        line: r.line,
                        reason: r.reason.clone(),
                    });
                }
            }
            report.rejected_rows += rejected;
            report.bytes_read += bytes;
            if w.existed {
                report.objects_changed += 1;
            } else {
                report.objects_new += 1;
            }
            batch.put_object(&ObjectRecord {
                source: w.source.clone(),
                key: w.found.key.clone(),
                version: ObjectVersion {
                    size: w.found.size,
                    mtime_ns: w.found.mtime_ns,
                    // S3 objects are known by their ETag, which the next listing repeats.
                    digest: w.found.etag.clone().unwrap_or(digest),
                },
                status: ObjectStatus::Indexed,
                primary_family: w.primary.clone(),
                families: w.families.clone(),
                families_digest: plan.families_digest.to_string(),
                rows,
                rejected,
                rejections,
                repairs,
                read_digest: plan.read_digest.clone(),
            })?;
            info!(key = %plan.redactor.redact_key(&w.found.key), rows, rejected, family = %w.primary, "object indexed");
            progress.object_done(w.found.size);
            *batch_bytes += w.found.size;
            if *batch_bytes >= plan.batch_bytes {
                return Ok(Step::End(BatchEnd::Full));
            }
        }
        Msg::Failed(i, error) => {
            if *open == Some(i) {
                // Part of it may be in this batch already: the batch must not commit.
                return Ok(Step::End(BatchEnd::Abort { work: i, error }));
            }
            let w = &work[i];
            warn!(
                key = %plan.redactor.redact_key(&w.found.key),
                error = %plan.redactor.redact_key(&error),
                "object could not be read"
            );
            report.objects_failed += 1;
            report.failures.push(FailureReport {
                key: w.found.key.clone(),
                error: error.clone(),
            });
            let id = keys::object_id(&w.source, &w.found.key);
            let record = failed_record(
                batch.object(&id)?,
                &w.source,
                &w.found.key,
                &w.primary,
                &w.families,
                plan.families_digest,
                &plan.read_digest,
                error,
            );
            batch.put_object(&record)?;
            progress.object_done(w.found.size);
        }
        Msg::StageFailed(error) => return Err(crate::error::Error::Invariant(error)),
        Msg::Done => {
            if let Some(i) = *open {
                return Err(crate::error::Error::Invariant(format!(
                    "the reader ended inside {} without finishing it",
                    work[i].found.key
                )));
            }
            return Ok(Step::End(BatchEnd::Done));
        }
    }
    Ok(Step::Continue)
}

impl LateRejections {
    fn add(&mut self, work: usize, rejected: Vec<Rejection>) {
        if rejected.is_empty() {
            return;
        }
        let entry = self.by_work.entry(work).or_default();
        entry.0 += rejected.len() as u64;
        let room = KEPT_REJECTIONS.saturating_sub(entry.1.len());
        entry.1.extend(rejected.into_iter().take(room));
    }
}

/// Redact PII, then fingerprint: hashes are computed on redacted text only. A record whose
/// preparation panics (a bug met by one row) is rejected with its line; the others go on.
fn prepare(
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

fn prepare_row(mut r: parse::ParsedRecord, redactor: &Redactor) -> PreparedRow {
    if let Some(marker) = crate::failpoint::armed(crate::failpoint::PREPARE_PANIC) {
        if r.conversation
            .all_messages()
            .any(|m| m.content.contains(marker))
        {
            panic!("fail point {}", crate::failpoint::PREPARE_PANIC);
        }
    }
    let pii = redactor.redact_conversation(&mut r.conversation);
    PreparedRow {
        line: r.line,
        record: r.record,
        fp: fingerprint(&r.conversation),
        pii,
        conversation: r.conversation,
    }
}

fn write_rows(
    batch: &mut WriteBatch<'_>,
    search: &mut SearchIndex,
    early: &mut EarlyText,
    work: &[Work],
    i: usize,
    rows: &[PreparedRow],
) -> Result<()> {
    let w = &work[i];
    let id = keys::object_id(&w.source, &w.found.key);
    for r in rows {
        let hash = r.fp.content_hash;
        let new = batch.is_new_row(hash)?;
        let row = NewPlace {
            fp: &r.fp,
            conversation: &r.conversation,
            pii: &r.pii,
        };
        batch.add_place(&id, &w.families, r.line, r.record, row)?;
        if new {
            search.add_new_row(hash, &r.conversation, &w.families)?;
            early.clean.insert(hash, (r.fp.variant_hash, i));
        } else if let Some(&(variant, first)) = early.clean.get(&hash) {
            if variant != r.fp.variant_hash || work[first].families != w.families {
                early.clean.remove(&hash);
            }
        }
    }
    Ok(())
}

/// The fingerprint stage (PII redaction, hashes, SimHash, tokens) between the reader and the
/// writer, on a pool of `workers` threads; everything but parsed records passes through.
/// Messages are numbered on the way in and put back in order on the way out, so the writer
/// sees exactly the reader's sequence. Every channel is bounded, and so is the work in flight:
/// a message is dispatched only while fewer than `window` are between dispatch and release, so
/// a slow or stuck worker holds the others back instead of growing the reorder buffer.
fn fingerprint_stage(rx: Receiver<Msg>, tx: SyncSender<Msg>, redactor: &Redactor, workers: usize) {
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

/// What the reader thread needs besides the work list.
struct Reader {
    /// Rejection reasons quote parts of the input (an unknown role, a key name): they are
    /// redacted before they are kept or printed.
    redactor: Redactor,
    s3: Option<Arc<S3Client>>,
    /// Where S3 objects are streamed to before parsing (one at a time).
    spool: PathBuf,
    stop: Option<Arc<AtomicBool>>,
    /// Set by the writer when it drops the run.
    abandon: Arc<AtomicBool>,
}

/// One object for the reader.
struct ReadJob {
    location: Location,
    key: String,
    format: (parse::FileFormat, bool),
}

impl Reader {
    /// Open an object for reading: a local file directly; an S3 object streamed to a spool file
    /// first (so a dropped connection is retried before any of its rows are sent on).
    fn open(&self, location: &Location) -> std::result::Result<std::fs::File, String> {
        match location {
            Location::File(path) => std::fs::File::open(path)
                .map_err(|e| format!("cannot open {}: {e}", path.display())),
            Location::S3 { bucket, key } => {
                let client = self
                    .s3
                    .as_ref()
                    .ok_or_else(|| format!("s3://{bucket}/{key}: no S3 client"))?;
                std::fs::create_dir_all(&self.spool)
                    .map_err(|e| format!("{}: {e}", self.spool.display()))?;
                let path = self.spool.join("object");
                client.download(bucket, key, &path)?;
                let file = std::fs::File::open(&path)
                    .map_err(|e| format!("cannot open {}: {e}", path.display()))?;
                // The open handle keeps the bytes; the name is reused by the next download.
                let _ = std::fs::remove_file(&path);
                Ok(file)
            }
        }
    }

    fn stopped(&self) -> bool {
        self.abandon.load(Ordering::SeqCst)
            || self.stop.as_ref().is_some_and(|s| s.load(Ordering::SeqCst))
    }
}

/// Reads and parses objects in order, streaming records to the fingerprint stage, and ends the
/// stream with `Done`. Each object is read under `catch_unwind`: a panic while reading one (a
/// bug met by its bytes) makes that object `Failed`, and the reader goes on with the next.
fn reader_thread(work: Vec<ReadJob>, reader: &Reader, limits: Limits, tx: SyncSender<Msg>) {
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
fn read_one(
    i: usize,
    job: &ReadJob,
    reader: &Reader,
    limits: Limits,
    tx: &SyncSender<Msg>,
) -> bool {
    let (format, gzip) = job.format;
    let file = match reader.open(&job.location) {
        Ok(f) => f,
        Err(e) => return tx.send(Msg::Failed(i, e)).is_ok(),
    };
    if tx.send(Msg::Begin(i)).is_err() {
        return false;
    }
    // Test hook: panic after this many records of an object whose key holds the marker.
    let panic_after = crate::failpoint::armed(crate::failpoint::READ_PANIC).and_then(|arg| {
        let (marker, n) = arg.split_once('@').unwrap_or((arg, "1"));
        job.key
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
    parse::read_object(
        &mut digester,
        format,
        gzip,
        limits,
        &mut |item| match item {
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
        },
    );
    if closed {
        return false;
    }
    // Drain what the parser left unread (e.g. after a document-size rejection) so the digest
    // covers the whole object.
    let _ = std::io::copy(&mut digester, &mut std::io::sink());
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

struct DigestReader<R> {
    inner: R,
    hasher: xxhash_rust::xxh3::Xxh3,
    bytes: u64,
}

impl<R: Read> Read for DigestReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }
}

/// A single progress line on stderr, redrawn at most a few times a second.
struct Progress {
    enabled: bool,
    objects: usize,
    total_bytes: u64,
    done_objects: usize,
    done_bytes: u64,
    started: Instant,
    last: Instant,
    counters: Option<(Arc<AtomicU64>, Arc<AtomicU64>)>,
}

impl Progress {
    fn new(
        enabled: bool,
        objects: usize,
        total_bytes: u64,
        counters: Option<(Arc<AtomicU64>, Arc<AtomicU64>)>,
    ) -> Self {
        let now = Instant::now();
        if let Some((planned, done)) = &counters {
            planned.store(objects as u64, Ordering::SeqCst);
            done.store(0, Ordering::SeqCst);
        }
        Progress {
            enabled,
            objects,
            total_bytes,
            done_objects: 0,
            done_bytes: 0,
            started: now,
            last: now - Duration::from_secs(1),
            counters,
        }
    }

    fn object_done(&mut self, bytes: u64) {
        self.done_objects += 1;
        self.done_bytes += bytes;
        if let Some((_, done)) = &self.counters {
            done.fetch_add(1, Ordering::SeqCst);
        }
        if self.enabled && self.last.elapsed() >= Duration::from_millis(200) {
            self.last = Instant::now();
            self.draw();
        }
    }

    fn draw(&self) {
        let secs = self.started.elapsed().as_secs_f64().max(1e-6);
        eprint!(
            "\ringest: {}/{} objects, {:.1}/{:.1} MB, {:.1} MB/s   ",
            self.done_objects,
            self.objects,
            self.done_bytes as f64 / 1e6,
            self.total_bytes as f64 / 1e6,
            self.done_bytes as f64 / 1e6 / secs
        );
    }

    fn finish(&self) {
        if self.enabled && self.objects > 0 {
            self.draw();
            eprintln!();
        }
    }
}
