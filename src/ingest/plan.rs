//! Planning a run: scan the sources, then decide per object whether it is new, changed,
//! unchanged, deleted, not training data (skipped) or failed, and what the writer must record
//! for each before any object is read.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tracing::warn;

use super::report::{FailureReport, IngestReport};
use super::{IngestOptions, Work};
use crate::config::Settings;
use crate::error::Result;
use crate::families::{Classification, Classifier};
use crate::index::Index;
use crate::model::ObjectVersion;
use crate::parse;
use crate::repair::Repairs;
use crate::source::derived::{DerivedSource, DERIVED_SOURCE};
use crate::source::inventory::Inventory;
use crate::source::local::LocalSource;
use crate::source::s3::{S3Client, S3Source, S3Url};
use crate::source::{FoundObject, Scan, ScanScope, Source, SourceArg};
use crate::store::{keys, ObjectRecord, ObjectStatus};

/// An object an inventory lists and its bucket lacks: (source, key, error).
pub(super) type MissingObject = (String, String, String);

/// A scan with the source that made it (and opens its objects).
pub(super) type SourceScan = (Arc<dyn Source>, Scan);

/// Scan every source: local paths directly, S3 prefixes through one client (with the inventory
/// when one is given). Each scan comes back with the source that made it (which opens its
/// objects); inventory objects missing from their bucket come back as failures.
pub(super) fn scan_sources(
    index: &Index,
    settings: &Settings,
    paths: &[PathBuf],
    options: &IngestOptions,
    report: &mut IngestReport,
) -> Result<(Vec<SourceScan>, Vec<MissingObject>)> {
    let mut s3: Option<Arc<S3Client>> = None;
    let mut client = || -> Result<Arc<S3Client>> {
        if s3.is_none() {
            s3 = Some(Arc::new(S3Client::connect(&settings.idx.s3)?));
        }
        Ok(s3.clone().expect("set above"))
    };
    let mut args: Vec<SourceArg> = paths
        .iter()
        .map(|p| SourceArg::parse(p))
        .collect::<Result<_>>()?;
    let inventory = match &options.inventory {
        None => None,
        Some(loc) => {
            let text = match SourceArg::parse(Path::new(loc))? {
                SourceArg::S3(url) => {
                    String::from_utf8_lossy(&client()?.get_bytes(&url)?).into_owned()
                }
                SourceArg::Local(path) => std::fs::read_to_string(&path)
                    .map_err(|source| crate::error::Error::Io { path, source })?,
                SourceArg::Derived => {
                    return Err(crate::error::Error::S3(format!(
                        "{loc} is no inventory file"
                    )))
                }
            };
            let inv = Inventory::parse(&text, loc).map_err(crate::error::Error::S3)?;
            if !args.iter().any(SourceArg::is_remote) {
                let bucket = inv.bucket.clone().ok_or_else(|| {
                    crate::error::Error::S3(format!(
                        "{loc} names no bucket: give the S3 source (s3://bucket/prefix) too"
                    ))
                })?;
                args.push(SourceArg::S3(S3Url {
                    bucket,
                    prefix: String::new(),
                }));
            }
            Some(Arc::new(inv))
        }
    };
    let mut sources: Vec<Arc<dyn Source>> = Vec::new();
    for arg in args {
        sources.push(match arg {
            SourceArg::Local(path) => Arc::new(LocalSource {
                path,
                skip: Some(index.data_dir.clone()),
            }),
            SourceArg::S3(url) => Arc::new(S3Source {
                client: client()?,
                url,
                inventory: inventory.clone(),
            }),
            SourceArg::Derived => Arc::new(DerivedSource {
                dir: index.data_dir.join("derived"),
            }),
        });
    }
    let mut scans = Vec::new();
    let mut missing = Vec::new();
    let mut unscanned: Vec<(Arc<dyn Source>, crate::error::Error)> = Vec::new();
    for source in sources {
        let found = match source.scan() {
            Ok(found) => found,
            // A local path that cannot be read fails the run, as before any source is touched.
            Err(e) if !source.remote() => return Err(e),
            Err(e) => {
                unscanned.push((source, e));
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
        scans.push((source, found.scan));
    }
    // A listing that failed is a scan error that changes nothing under its prefix while the other
    // sources go on; when no source could be looked at, the run fails with the listing's error.
    if scans.is_empty() {
        if let Some((_, e)) = unscanned.into_iter().next() {
            return Err(e);
        }
    } else {
        for (source, e) in unscanned {
            let scan = Scan {
                source: source.describe(),
                objects: Vec::new(),
                scope: ScanScope::Keys(Vec::new()),
                errors: vec![(String::new(), format!("{e}; nothing under it was changed"))],
            };
            scans.push((source, scan));
        }
    }
    Ok((scans, missing))
}

/// A failed object's record: what was indexed before stays (rows and version, so the next
/// scan retries it); a new object gets an empty record.
#[allow(clippy::too_many_arguments)]
pub(super) fn failed_record(
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
            mapping: None,
            sessions: 0,
            merged_turns: 0,
        },
    }
}

/// A source root inside (or around) another one already indexed sees the same files under other
/// keys, so their rows would count twice.
pub(super) fn overlap_warnings<'a>(
    scans: impl Iterator<Item = &'a Scan>,
    indexed: &[String],
) -> Vec<String> {
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

pub(super) fn merge_scans(scans: Vec<(Arc<dyn Source>, Scan)>) -> Vec<(Arc<dyn Source>, Scan)> {
    let mut by_source: BTreeMap<String, (Arc<dyn Source>, Scan)> = BTreeMap::new();
    for (from, scan) in scans {
        match by_source.get_mut(&scan.source) {
            None => {
                by_source.insert(scan.source.clone(), (from, scan));
            }
            Some((_, existing)) => {
                existing.scope = match (&existing.scope, &scan.scope) {
                    (ScanScope::Keys(a), ScanScope::Keys(b)) => {
                        ScanScope::Keys(a.iter().chain(b).cloned().collect())
                    }
                    _ => ScanScope::All,
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

/// Record a skipped object; true when that is news (it was not already recorded so).
pub(super) fn plan_skip(
    source: &str,
    found: &FoundObject,
    reason: &str,
    classifier: &Classifier,
    old: Option<&ObjectRecord>,
    out: &mut Vec<ObjectRecord>,
) -> bool {
    let record = ObjectRecord {
        source: source.to_string(),
        key: found.key.clone(),
        version: ObjectVersion {
            size: found.size,
            mtime_ns: found.mtime_ns,
            digest: String::new(),
        },
        status: ObjectStatus::Skipped {
            reason: reason.to_string(),
        },
        primary_family: String::new(),
        families: Vec::new(),
        families_digest: classifier.digest().to_string(),
        rows: 0,
        rejected: 0,
        rejections: Vec::new(),
        repairs: Repairs::default(),
        read_digest: String::new(),
        mapping: None,
        sessions: 0,
        merged_turns: 0,
    };
    let new = old != Some(&record);
    if new {
        out.push(record);
    }
    new
}

/// What a run will do, decided before any object is read.
pub(super) struct Planned {
    /// Objects to read, in scan order.
    pub(super) work: Vec<Work>,
    /// Objects that are not training data, recorded as skipped.
    pub(super) skipped: Vec<ObjectRecord>,
    /// Ids of objects gone from their source.
    pub(super) deletions: Vec<String>,
    /// Objects that could not be had (listed but missing, or set aside after breaking a run).
    pub(super) failed: Vec<ObjectRecord>,
}

impl Planned {
    pub(super) fn is_empty(&self) -> bool {
        self.work.is_empty()
            && self.skipped.is_empty()
            && self.deletions.is_empty()
            && self.failed.is_empty()
    }
}

/// The families of an object: by the family rules, or for a derived object its recipe's.
fn classify(settings: &Settings, source: &str, key: &str) -> Classification {
    if source != DERIVED_SOURCE {
        return settings.classifier.classify(key);
    }
    match settings.recipes.family_of_key(key) {
        Some(family) => Classification::Data {
            primary: family.to_string(),
            tags: vec![family.to_string()],
        },
        None => Classification::NotData {
            reason: "made by a recipe the derive config no longer has".to_string(),
        },
    }
}

/// Scan the sources and decide, per object, whether it is new, changed, unchanged, deleted, not
/// training data or failed; `poisoned` objects (set aside after breaking an earlier pass of this
/// run) are failed without being read.
pub(super) fn plan(
    index: &Index,
    settings: &Settings,
    paths: &[PathBuf],
    options: &IngestOptions,
    poisoned: &BTreeMap<String, String>,
    report: &mut IngestReport,
) -> Result<Planned> {
    let classifier = &settings.classifier;
    let read_digest = settings.read_digest();
    let redactor = settings.redactor();
    let (scans, mut missing) = scan_sources(index, settings, paths, options, report)?;
    // Two paths may name overlapping scans of one source: merge so nothing is seen twice.
    let scans = merge_scans(scans);

    let view = index.store.read()?;
    report.warnings.extend(overlap_warnings(
        scans.iter().map(|(_, s)| s),
        &view.sources()?,
    ));
    let mut work: Vec<Work> = Vec::new();
    let mut skipped: Vec<ObjectRecord> = Vec::new();
    let mut deletions: Vec<String> = Vec::new();
    for (from, scan) in &scans {
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
            let (primary, families) = match classify(settings, &scan.source, &found.key) {
                Classification::NotData { reason } => {
                    let new =
                        plan_skip(&scan.source, found, &reason, classifier, old, &mut skipped);
                    report.note_skip(&found.key, &reason, new);
                    continue;
                }
                Classification::Data { primary, tags } => (primary, tags),
            };
            let derived = scan.source == DERIVED_SOURCE;
            let mapping = if derived {
                None
            } else {
                settings.mappings.for_key(&found.key)
            };
            let format = if derived {
                Some((parse::FileFormat::Derived, false))
            } else {
                parse::file_format(&found.key, mapping.as_deref())
            };
            let Some(format) = format else {
                let ext = Path::new(&found.key)
                    .extension()
                    .map(|e| format!(".{}", e.to_string_lossy()))
                    .unwrap_or_else(|| "no extension".to_string());
                let reason = format!(
                    "unsupported format ({ext}); idx reads .jsonl, .json, .csv, .tsv, .txt (optionally .gz), .parquet and .arrow, or what a mapping in sources.toml declares"
                );
                let new = plan_skip(&scan.source, found, &reason, classifier, old, &mut skipped);
                report.note_skip(&found.key, &reason, new);
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
                from: from.clone(),
                mapping,
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
        let (primary, families) = match classify(settings, &source, &key) {
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
    Ok(Planned {
        work,
        skipped,
        deletions,
        failed,
    })
}
