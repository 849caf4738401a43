//! `idx check`: is the index whole? redb's own integrity check (page checksums, tree
//! structure; it needs the write lock, so it is skipped with a note while another process
//! writes), then a consistency check of idx's tables read from one snapshot: the stored
//! counters against a recount, every place pointing at a stored row and every row's place count
//! matching its places, every row with its stored text, and every row's cluster and split as a
//! recomputation from scratch gives them (the leakage gate's own check). It reads only; a damaged
//! index is reported with what is wrong, never "repaired" by guessing.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::config::Settings;
use crate::error::Result;
use crate::fingerprint::Hash128;
use crate::store::{keys, ObjectStatus, ReadView};

/// Problems reported at most (the counts are always complete).
const MAX_PROBLEMS: usize = 50;

/// What `idx check` found.
#[derive(Debug, Clone, Serialize)]
pub struct CheckReport {
    pub passed: bool,
    /// redb's integrity check: `Some(true)` passed, `Some(false)` redb repaired the file, `None`
    /// skipped because another process holds the write lock.
    pub integrity: Option<bool>,
    pub objects_checked: u64,
    pub rows_checked: u64,
    pub places_checked: u64,
    pub problems: Vec<String>,
    /// Problems beyond the ones listed.
    pub more_problems: u64,
}

impl CheckReport {
    /// The report of a database whose integrity check could not finish: nothing else was read.
    pub fn damaged(problem: String) -> CheckReport {
        CheckReport {
            passed: false,
            integrity: Some(false),
            objects_checked: 0,
            rows_checked: 0,
            places_checked: 0,
            problems: vec![problem],
            more_problems: 0,
        }
    }

    /// Record a problem found outside the snapshot (the full-text index, the file).
    pub fn add_problem(&mut self, text: String) {
        self.problem(text);
        self.passed = false;
    }

    fn problem(&mut self, text: String) {
        if self.problems.len() < MAX_PROBLEMS {
            self.problems.push(text);
        } else {
            self.more_problems += 1;
        }
    }
}

/// Check the consistency of one snapshot. `integrity` is the result of redb's check, if it ran.
pub fn check(view: &ReadView, settings: &Settings, integrity: Option<bool>) -> Result<CheckReport> {
    let mut report = CheckReport {
        passed: false,
        integrity,
        objects_checked: 0,
        rows_checked: 0,
        places_checked: 0,
        problems: Vec::new(),
        more_problems: 0,
    };
    if integrity == Some(false) {
        report.problem(
            "redb's integrity check failed: the file was repaired to its last good commit"
                .to_string(),
        );
    }
    // Rows first: each row's place count as stored, and its text.
    let mut stored: BTreeMap<Hash128, u64> = BTreeMap::new();
    let mut rows = 0u64;
    let mut without_text = 0u64;
    let mut flawed = 0u64;
    view.for_each_row(|hash, row| {
        rows += row.places;
        stored.insert(hash, row.places);
        flawed += u64::from(!row.flaws.is_empty());
        match view.representative(hash)? {
            None => {
                without_text += 1;
                if without_text <= 5 {
                    report.problem(format!("row {} has no stored text", hash.to_hex()));
                }
            }
            Some(rep) if crate::structure::flaws(&rep.conversation) != row.flaws => {
                report.problem(format!(
                    "row {}: its structure flags disagree with its text",
                    hash.to_hex()
                ));
            }
            Some(_) => {}
        }
        Ok(())
    })?;
    let unique = stored.len() as u64;
    report.rows_checked = unique;
    // Then the objects' places, each pointing at a stored row, counted per row.
    let mut counted: BTreeMap<Hash128, u64> = BTreeMap::new();
    let (mut indexed, mut skipped, mut failed, mut rejected) = (0u64, 0u64, 0u64, 0u64);
    let mut merged = 0u64;
    let objects = view.objects()?;
    for o in &objects {
        report.objects_checked += 1;
        match o.status {
            ObjectStatus::Indexed => indexed += 1,
            ObjectStatus::Skipped { .. } => skipped += 1,
            ObjectStatus::Failed { .. } => failed += 1,
        }
        rejected += o.rejected;
        merged += o.merged_turns;
        let id = keys::object_id(&o.source, &o.key);
        let object_places = view.object_places(&id)?;
        let merged_here: u64 = object_places
            .iter()
            .map(|p| u64::from(p.3.merged_turns))
            .sum();
        if merged_here != o.merged_turns && o.status == ObjectStatus::Indexed {
            report.problem(format!(
                "{}: its record says {} merged turns, its places {merged_here}",
                o.key, o.merged_turns
            ));
        }
        if object_places.len() as u64 != o.rows && o.status == ObjectStatus::Indexed {
            report.problem(format!(
                "{}: its record says {} rows, {} places are stored",
                o.key,
                o.rows,
                object_places.len()
            ));
        }
        let classes = view.object_classes(&id)?;
        let recounted = view.object_classes_recount(&id)?;
        if classes != recounted {
            report.problem(format!(
                "{}: its stored content classes ({classes:#06b}) are not those of its places \
                 ({recounted:#06b})",
                o.key
            ));
        }
        for (line, _, hash, _) in object_places {
            report.places_checked += 1;
            *counted.entry(hash).or_default() += 1;
            if !stored.contains_key(&hash) {
                report.problem(format!(
                    "{}:{line}: points at row {}, which is not stored",
                    o.key,
                    hash.to_hex()
                ));
            }
        }
    }
    for (hash, places) in &stored {
        let found = counted.get(hash).copied().unwrap_or(0);
        if found != *places {
            report.problem(format!(
                "row {}: counts {places} places, {found} are stored",
                hash.to_hex()
            ));
        }
    }
    let totals = view.totals()?;
    let mut counter = |name: &str, stored: u64, counted: u64| {
        if stored != counted {
            report.problem(format!(
                "counter `{name}` says {stored}, a recount gives {counted}"
            ));
        }
    };
    counter("objects", totals.objects, objects.len() as u64);
    counter("objects_indexed", totals.objects_indexed, indexed);
    counter("objects_skipped", totals.objects_skipped, skipped);
    counter("objects_failed", totals.objects_failed, failed);
    counter("rows", totals.rows, rows);
    counter("unique_rows", totals.unique_rows, unique);
    counter("rejected_rows", totals.rejected_rows, rejected);
    counter("flawed_rows", totals.flawed_rows, flawed);
    counter("merged_turns", totals.merged_turns, merged);
    // Clusters and splits: the leakage gate recomputes them from scratch and compares.
    let verification = crate::verify::verify(view, settings, None)?;
    let leakage = &verification.gates.leakage;
    if leakage.disagreements > 0 {
        report.problem(format!(
            "{} rows have a stored cluster or split other than a recomputation gives (`idx verify` lists them)",
            leakage.disagreements
        ));
    }
    if leakage.cross_split_pairs > 0 {
        report.problem(format!(
            "{} near-duplicate pairs straddle splits",
            leakage.cross_split_pairs
        ));
    }
    report.passed = report.problems.is_empty() && report.more_problems == 0;
    Ok(report)
}
