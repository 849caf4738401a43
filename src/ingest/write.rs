//! The writer stage: takes prepared rows in object order, writes them into redb batches (an
//! object never straddles two transactions), records late rejections, and feeds the full-text
//! index. A message that panics or an object that failed mid-read ends the batch unwritten.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Receiver;
use std::time::Instant;

use tracing::{info, warn};

use super::plan::failed_record;
use super::prepare::prepare;
use super::progress::Progress;
use super::report::{FailureReport, IngestReport, RejectionReport, REPORTED_REJECTIONS};
use super::{Msg, PreparedRow, Work};
use crate::error::Result;
use crate::fingerprint::Hash128;
use crate::index::Index;
use crate::model::{ObjectVersion, Rejection};
use crate::neardup::Policy;
use crate::pii::Redactor;
use crate::search::SearchIndex;
use crate::store::{keys, NewPlace, ObjectRecord, ObjectStatus, WriteBatch, KEPT_REJECTIONS};

/// Rows new to the index are sent to the full-text index as they are written, so tantivy works
/// while the batch is still being read. A row stays "clean" while every later place of it in the
/// same batch has the same spelling and family tags; any other row is re-indexed from redb after
/// the commit.
#[derive(Default)]
pub(super) struct EarlyText {
    /// content hash → (variant hash, index of the work item whose family tags it carries)
    pub(super) clean: crate::fingerprint::Hash128Map<(Hash128, usize)>,
}

/// What the writer needs to know of the run besides the messages.
pub(super) struct Plan<'a> {
    pub(super) work: &'a [Work],
    pub(super) batch_bytes: u64,
    /// Digest of the families config every object of this run was classified with.
    pub(super) families_digest: &'a str,
    /// Digest of the settings every object of this run was read with.
    pub(super) read_digest: String,
    pub(super) redactor: &'a Redactor,
}

/// How a batch ended.
pub(super) enum BatchEnd {
    /// Full: commit it and open the next.
    Full,
    /// The reader sent `Done`: commit it, and the run is over.
    Done,
    /// An object broke after its `Begin`: drop the batch uncommitted.
    Abort { work: usize, error: String },
}

/// What the writer counts of an object while its rows arrive, by work item: the records the
/// fingerprint stage could not prepare, the distinct sessions and the merged turns of the rows
/// written.
#[derive(Default)]
pub(super) struct Tallies {
    by_work: HashMap<usize, Tally>,
}

#[derive(Default)]
struct Tally {
    late: u64,
    rejections: Vec<Rejection>,
    sessions: HashSet<u64>,
    merged_turns: u64,
}

/// Consume reader messages into one batch until it is full or the stream ends.
pub(super) fn write_batch(
    batch: &mut WriteBatch<'_>,
    search: &mut SearchIndex,
    early: &mut EarlyText,
    rx: &Receiver<Msg>,
    plan: &Plan<'_>,
    report: &mut IngestReport,
    progress: &mut Progress,
) -> Result<BatchEnd> {
    let mut batch_bytes = 0u64;
    let mut tallies = Tallies::default();
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
                &mut tallies,
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

pub(super) enum Step {
    Continue,
    End(BatchEnd),
}

#[allow(clippy::too_many_arguments)]
pub(super) fn write_message(
    batch: &mut WriteBatch<'_>,
    search: &mut SearchIndex,
    early: &mut EarlyText,
    msg: Msg,
    plan: &Plan<'_>,
    report: &mut IngestReport,
    progress: &mut Progress,
    tallies: &mut Tallies,
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
            let (mut rows, rejected) = prepare(records, plan.redactor);
            write_rows(batch, search, early, work, i, &mut rows)?;
            report.rows_added += rows.len() as u64;
            tallies.add(i, &rows, rejected);
        }
        Msg::Rows(i, mut rows, rejected) => {
            write_rows(batch, search, early, work, i, &mut rows)?;
            report.rows_added += rows.len() as u64;
            tallies.add(i, &rows, rejected);
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
            let tally = tallies.by_work.remove(&i).unwrap_or_default();
            let rows = rows.saturating_sub(tally.late);
            let rejected = rejected + tally.late;
            if tally.late > 0 {
                rejections.extend(tally.rejections);
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
                mapping: w.mapping.as_ref().map(|m| m.name.clone()),
                sessions: tally.sessions.len() as u64,
                merged_turns: tally.merged_turns,
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

impl Tallies {
    pub(super) fn add(&mut self, work: usize, rows: &[PreparedRow], rejected: Vec<Rejection>) {
        let entry = self.by_work.entry(work).or_default();
        for r in rows {
            entry.merged_turns += u64::from(r.meta.merged_turns);
            if let Some(s) = r.meta.session {
                entry.sessions.insert(s);
            }
        }
        entry.late += rejected.len() as u64;
        let room = KEPT_REJECTIONS.saturating_sub(entry.rejections.len());
        entry.rejections.extend(rejected.into_iter().take(room));
    }
}

pub(super) fn write_rows(
    batch: &mut WriteBatch<'_>,
    search: &mut SearchIndex,
    early: &mut EarlyText,
    work: &[Work],
    i: usize,
    rows: &mut [PreparedRow],
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
            meta: &r.meta,
            stored: Some(&r.stored),
        };
        batch.add_place(&id, &w.families, r.line, r.record, row)?;
        if new {
            if let Some(shingles) = r.shingles.take() {
                batch.hold_shingles(hash, r.fp.words, shingles);
            }
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

/// What the writer records before the first object of a run, and how it commits.
pub(super) struct Commits<'a> {
    pub(super) deletions: &'a [String],
    pub(super) failed: &'a [ObjectRecord],
    pub(super) skipped: &'a [ObjectRecord],
    pub(super) policy: &'a Policy,
    /// The full-text index's commit number at the start of the run.
    pub(super) fts_seq: u64,
}

/// Write the run's batches until the stream ends (`Ok(None)`) or an object breaks its batch
/// (`Ok(Some((work index, error)))`: that batch is dropped uncommitted and `abandon` is set so
/// the reader stops). The figures of every committed batch are added to `committed`; the
/// full-text index is committed once at the end.
pub(super) fn commit_batches(
    index: &mut Index,
    commits: &Commits<'_>,
    rx: &Receiver<Msg>,
    plan: &Plan<'_>,
    progress: &mut Progress,
    abandon: &AtomicBool,
    committed: &mut IngestReport,
) -> Result<Option<(usize, String)>> {
    let mut first = true;
    let mut finished = false;
    let mut text_pending: Option<u64> = None;
    let mut aborted = None;
    while !finished {
        let txn = index.store.begin_write()?;
        let mut batch = WriteBatch::open(&txn, commits.policy)?;
        // This batch's figures count only once it commits.
        let mut pending = IngestReport::default();
        if first {
            first = false;
            for id in commits.deletions {
                if let Some(old) = batch.delete_object(id)? {
                    pending.rows_removed += old.rows;
                    pending.objects_deleted += 1;
                    info!(key = %plan.redactor.redact_key(&old.key), rows = old.rows, "object deleted");
                }
            }
            for record in commits.failed {
                batch.put_object(record)?;
            }
            for record in commits.skipped {
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
            rx,
            plan,
            &mut pending,
            progress,
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
        let outcome = batch.finish(commits.fts_seq)?;
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
        pending.finish_seconds += written.elapsed().as_secs_f64();
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
    Ok(aborted)
}
