//! What an ingest run reports: counts of objects and rows, rejections with file and line,
//! failures and warnings, added up over the committed batches of a run.

use serde::Serialize;

use crate::repair::Repairs;

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

/// An object the run did not read, and why.
#[derive(Debug, Clone, Serialize)]
pub struct SkipReport {
    pub key: String,
    pub reason: String,
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
    /// The first objects newly skipped (not training data, or a format idx does not read), and
    /// why; `idx status` lists every skipped object.
    pub skipped: Vec<SkipReport>,
    /// Folders that could not be read during the scan.
    pub scan_errors: Vec<FailureReport>,
    /// Existing rows whose split changed (near-duplicates merged or split clusters).
    pub split_moves: u64,
    pub bytes_read: u64,
    pub seconds: f64,
    /// Of `seconds`, the time the writer spent finishing batches (row records, near-duplicate
    /// clusters and splits, the redb commit) while reading and fingerprinting waited for it.
    pub finish_seconds: f64,
    pub commits: u64,
    /// The redb file compacted after the run (its free pages given back), when there was
    /// enough to win; its time is part of `seconds`.
    pub compaction: Option<crate::store::Compaction>,
    /// Encoding repairs made in the objects read by this run.
    pub repairs: Repairs,
    /// Things worth a look that are not errors (e.g. overlapping source roots).
    pub warnings: Vec<String>,
}

pub(super) const REPORTED_REJECTIONS: usize = 10;

/// How many skipped objects a report names (all are counted).
pub(super) const REPORTED_SKIPS: usize = 20;

impl IngestReport {
    /// Add the figures of a later part of the same run (a committed batch, a restarted pass).
    /// Count a skipped object; name it when the skip is news.
    pub(super) fn note_skip(&mut self, key: &str, reason: &str, new: bool) {
        self.objects_skipped += 1;
        if new && self.skipped.len() < REPORTED_SKIPS {
            self.skipped.push(SkipReport {
                key: key.to_string(),
                reason: reason.to_string(),
            });
        }
    }

    pub(super) fn add(&mut self, later: IngestReport) {
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
        // A restarted pass plans the same skips again.
        let mut skipped = earlier.skipped;
        for s in std::mem::take(&mut self.skipped) {
            if skipped.len() < REPORTED_SKIPS && !skipped.iter().any(|e| e.key == s.key) {
                skipped.push(s);
            }
        }
        self.skipped = skipped;
        let mut failures = earlier.failures;
        failures.append(&mut self.failures);
        self.failures = failures;
        let mut scan_errors = earlier.scan_errors;
        scan_errors.append(&mut self.scan_errors);
        self.scan_errors = scan_errors;
        self.split_moves += earlier.split_moves;
        self.bytes_read += earlier.bytes_read;
        self.commits += earlier.commits;
        self.finish_seconds += earlier.finish_seconds;
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
