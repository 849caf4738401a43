//! Decontamination: benchmark sets (`idx decontaminate --against FILE|DIR|s3://…`) read like
//! any source — through the declared mappings, PII redacted as rows are, so the text compares
//! like for like — and kept in redb as the exact word n-grams of each item (`ngrams`). Every
//! row is checked per message against the current set; a row's result (the items it shares a
//! run of `ngram` words with, the message and byte span, the share of its n-grams matched) is
//! stored with the set's digest, so the check is incremental: after an ingest only rows not yet
//! checked against this set are read, and a changed set re-checks everything. The export
//! acts on it (`[decontamination] action`: report, exclude, quarantine) and the manifest
//! records the set. The same machinery compares the index's own val/test rows with train.

pub mod ngrams;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::config::{ContaminationAction, DecontaminationConfig, Settings};
use crate::error::{Error, Result};
use crate::fingerprint::Hash128;
use crate::index::Index;
use crate::neardup::Split;
use crate::parse::{self, Item, Limits};
use crate::source::{self, SourceArg};
use crate::store::{
    BenchmarkItem, BenchmarkRecord, Contamination, ContaminationHit, ContaminationUpdate, ReadView,
    Store,
};
use ngrams::{text_ngrams, Matcher};

/// Rows checked per commit.
const CHUNK: usize = 20_000;
/// Rejections a benchmark record keeps (file:line and reason).
const KEPT_REJECTIONS: usize = 10;
/// Examples a report lists.
const EXAMPLES: usize = 20;

/// What a pass over the rows did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RefreshReport {
    /// Digest of the benchmark set checked against (empty: no benchmark).
    pub set: String,
    pub benchmarks: usize,
    /// Rows read and checked now (the rest were checked before).
    pub checked: u64,
    /// Of them, rows sharing an n-gram with a benchmark.
    pub matched: u64,
    /// Checks dropped for rows no longer in the index.
    pub removed: u64,
    pub seconds: f64,
}

/// What `idx decontaminate --against` loaded.
#[derive(Debug, Clone, Serialize)]
pub struct LoadReport {
    pub benchmark: BenchmarkRecord,
    pub refresh: RefreshReport,
}

/// The digest naming the current benchmark set and settings; empty without a benchmark.
pub fn set_digest(view: &ReadView, config: &DecontaminationConfig) -> Result<String> {
    let benchmarks = view.benchmarks()?;
    if benchmarks.is_empty() {
        return Ok(String::new());
    }
    let mut h = Sha256::new();
    h.update(format!(
        "n={};max={}\n",
        config.ngram, config.max_items_per_ngram
    ));
    for b in &benchmarks {
        h.update(format!("{}\0{}\n", b.name, b.digest));
    }
    Ok(hex(&h.finalize()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The name a benchmark gets by default: the file or folder name, extensions dropped.
fn default_name(against: &Path) -> String {
    let s = against.to_string_lossy();
    let last = s
        .trim_end_matches('/')
        .rsplit('/')
        .next()
        .unwrap_or("")
        .to_string();
    last.split('.').next().unwrap_or("").to_string()
}

/// Read a benchmark set from `against`, store it as `name` (replacing a set of that name),
/// and check every row against the new set.
pub fn load(
    index: &Index,
    settings: &Settings,
    against: &Path,
    name: Option<&str>,
    limits: Limits,
) -> Result<LoadReport> {
    let name = name.map_or_else(|| default_name(against), str::to_string);
    if name.is_empty() || name.contains('\0') || name.len() > 200 {
        return Err(Error::Query(format!(
            "`{name}` cannot name a benchmark: give --name (1 to 200 characters)"
        )));
    }
    let config = &settings.idx.decontamination;
    let arg = SourceArg::parse(against)?;
    let origin = against.display().to_string();
    let source = source::open(arg, &settings.idx.s3, Some(index.data_dir.clone()))?;
    let scan = source.scan()?.scan;
    if let Some((path, e)) = scan.errors.first() {
        return Err(Error::Query(format!("reading {path}: {e}")));
    }
    let redactor = settings.redactor();
    let spool = index.data_dir.join("spool");
    let mut record = BenchmarkRecord {
        name: name.clone(),
        origin,
        digest: String::new(),
        objects: 0,
        items: 0,
        short_items: 0,
        rejected: 0,
        rejections: Vec::new(),
        ngrams: 0,
        n: config.ngram,
    };
    let mut items = Vec::new();
    let reject = |record: &mut BenchmarkRecord, at: String| {
        record.rejected += 1;
        if record.rejections.len() < KEPT_REJECTIONS {
            record.rejections.push(at);
        }
    };
    for object in &scan.objects {
        let mapping = settings.mappings.for_key(&object.key);
        let Some((format, gzip)) = parse::file_format(&object.key, mapping.as_deref()) else {
            continue;
        };
        record.objects += 1;
        let file = match source.open(object, &spool) {
            Ok(f) => f,
            Err(e) => {
                reject(&mut record, format!("{}: {e}", object.key));
                continue;
            }
        };
        let mut sink = |item: Item| match item {
            Item::Record(mut r) => {
                redactor.redact_conversation(&mut r.conversation);
                let mut grams: Vec<u64> = r
                    .conversation
                    .all_messages()
                    .flat_map(|m| text_ngrams(&m.content, config.ngram as usize))
                    .collect();
                grams.sort_unstable();
                grams.dedup();
                if grams.is_empty() {
                    record.short_items += 1;
                    return;
                }
                items.push(BenchmarkItem {
                    key: object.key.clone(),
                    line: r.line,
                    record: r.record,
                    ngrams: grams,
                });
            }
            Item::Rejected(r) => reject(
                &mut record,
                format!("{}:{}: {}", object.key, r.line, r.reason),
            ),
        };
        parse::read_file_mapped(file, format, gzip, limits, mapping.as_deref(), &mut sink);
    }
    if items.is_empty() {
        return Err(Error::Query(format!(
            "{}: no benchmark item with {} words or more was read ({} objects, {} rejected{})",
            against.display(),
            config.ngram,
            record.objects,
            record.rejected,
            record
                .rejections
                .first()
                .map_or(String::new(), |r| format!("; first: {r}"))
        )));
    }
    let mut digest = Sha256::new();
    let mut distinct: BTreeSet<u64> = BTreeSet::new();
    for item in &items {
        digest.update(format!("{}\0{}\0{}\0", item.key, item.line, item.record));
        for g in &item.ngrams {
            digest.update(g.to_le_bytes());
        }
        distinct.extend(item.ngrams.iter().copied());
    }
    record.digest = hex(&digest.finalize());
    record.items = items.len() as u64;
    record.ngrams = distinct.len() as u64;
    index.store.put_benchmark(&record, &items)?;
    let refresh = refresh(&index.store, settings)?;
    Ok(LoadReport {
        benchmark: record,
        refresh,
    })
}

/// Forget a benchmark set and re-check the rows against what is left.
pub fn remove(index: &Index, settings: &Settings, name: &str) -> Result<RefreshReport> {
    if !index.store.remove_benchmark(name)? {
        return Err(Error::Query(format!("no benchmark named `{name}`")));
    }
    refresh(&index.store, settings)
}

/// Every benchmark item of the current set in one matcher; `names[i]` is item `i`'s
/// (benchmark, item number).
fn matcher(
    view: &ReadView,
    config: &DecontaminationConfig,
) -> Result<(Matcher, Vec<(String, u32)>)> {
    let mut m = Matcher::new(config.ngram as usize, config.max_items_per_ngram as usize);
    let mut names = Vec::new();
    for b in view.benchmarks()? {
        view.for_each_benchmark_item(&b.name, |i, item| {
            m.add(names.len() as u32, &item.ngrams);
            names.push((b.name.clone(), i));
            Ok(())
        })?;
    }
    Ok((m, names))
}

/// Bring every row's check up to date with the current benchmark set: rows not yet checked
/// against it are read and checked, checks of deleted rows dropped. Nothing is read when there
/// is no benchmark.
pub fn refresh(store: &Store, settings: &Settings) -> Result<RefreshReport> {
    let started = std::time::Instant::now();
    let config = &settings.idx.decontamination;
    let view = store.read()?;
    let set = set_digest(&view, config)?;
    let mut report = RefreshReport {
        set: set.clone(),
        benchmarks: view.benchmarks()?.len(),
        ..RefreshReport::default()
    };
    if set.is_empty() {
        // No benchmark: no row has a check to keep (and no row is read).
        let stale = view.contaminated_any()?.len() as u64;
        if stale > 0 {
            report.removed = stale;
            store.update_contamination(&ContaminationUpdate {
                clear: true,
                ..ContaminationUpdate::default()
            })?;
        }
        return Ok(report);
    }
    let (todo, gone) = view.contamination_work(&set)?;
    report.removed = gone.len() as u64;
    let (matcher, names) = matcher(&view, config)?;
    let mut delete = gone;
    for chunk in todo.chunks(CHUNK) {
        let mut update = ContaminationUpdate {
            delete: std::mem::take(&mut delete),
            ..ContaminationUpdate::default()
        };
        for &h in chunk {
            let Some(v) = view.representative(h)? else {
                continue;
            };
            let c = check_row(&matcher, &names, &set, &v.conversation);
            report.checked += 1;
            report.matched += u64::from(!c.hits.is_empty());
            update.put.push((h, c));
        }
        store.update_contamination(&update)?;
    }
    if !delete.is_empty() {
        store.update_contamination(&ContaminationUpdate {
            delete,
            ..ContaminationUpdate::default()
        })?;
    }
    report.seconds = started.elapsed().as_secs_f64();
    Ok(report)
}

/// Check one conversation (every message, a pair's rejected answer after them).
pub fn check_row(
    matcher: &Matcher,
    names: &[(String, u32)],
    set: &str,
    c: &crate::model::Conversation,
) -> Contamination {
    let r = matcher.check(c.all_messages().map(|m| m.content.as_str()));
    Contamination {
        set: set.to_string(),
        ngrams: r.ngrams,
        matched: r.matched,
        hits: r
            .hits
            .into_iter()
            .map(|h| {
                let (benchmark, item) = names[h.item as usize].clone();
                ContaminationHit {
                    benchmark,
                    item,
                    message: h.message,
                    start: h.span.start as u32,
                    end: h.span.end as u32,
                    ngrams: h.ngrams,
                }
            })
            .collect(),
    }
}

/// Whether a check makes the row contaminated under `config`.
pub fn is_contaminated(c: &Contamination, config: &DecontaminationConfig) -> bool {
    !c.hits.is_empty()
        && c.ngrams > 0
        && f64::from(c.matched) / f64::from(c.ngrams) >= config.min_share
}

/// The rows an export must act on, from one snapshot.
#[derive(Debug, Clone, Default)]
pub struct Verdicts {
    pub set: String,
    pub action: Option<ContaminationAction>,
    /// Contaminated rows → the benchmarks they matched.
    pub rows: BTreeMap<Hash128, BTreeSet<String>>,
    /// Rows not yet checked against the current set.
    pub unchecked: u64,
}

impl Verdicts {
    /// Rows to keep out of the dataset (none when the action is `report`).
    pub fn withheld(&self) -> BTreeSet<Hash128> {
        match self.action {
            Some(ContaminationAction::Exclude | ContaminationAction::Quarantine) => {
                self.rows.keys().copied().collect()
            }
            _ => BTreeSet::new(),
        }
    }
}

/// The contaminated rows of a snapshot under the current set and settings.
pub fn verdicts(view: &ReadView, settings: &Settings) -> Result<Verdicts> {
    let config = &settings.idx.decontamination;
    let set = set_digest(view, config)?;
    if set.is_empty() {
        return Ok(Verdicts::default());
    }
    let (todo, _) = view.contamination_work(&set)?;
    let mut rows = BTreeMap::new();
    for (h, c) in view.contaminated(&set)? {
        if is_contaminated(&c, config) {
            rows.insert(h, c.hits.iter().map(|x| x.benchmark.clone()).collect());
        }
    }
    Ok(Verdicts {
        set,
        action: Some(config.action),
        rows,
        unchecked: todo.len() as u64,
    })
}

/// `idx query contamination`: the matching rows with what they matched and where they came
/// from.
#[derive(Debug, Clone, Serialize)]
pub struct ContaminationAnswer {
    pub set: String,
    pub action: &'static str,
    pub benchmarks: Vec<BenchmarkRecord>,
    /// Matching rows per benchmark (a row matching two counts under both).
    pub rows_by_benchmark: BTreeMap<String, u64>,
    pub rows: u64,
    pub unchecked: u64,
    pub matches: Vec<RowMatch>,
}

#[derive(Debug, Clone, Serialize)]
pub struct RowMatch {
    pub content_hash: String,
    /// Share of the row's n-grams found in a benchmark item.
    pub share: f64,
    pub contaminated: bool,
    /// Where the row first occurs (`key:line`).
    pub place: Option<String>,
    pub hits: Vec<HitAnswer>,
}

#[derive(Debug, Clone, Serialize)]
pub struct HitAnswer {
    pub benchmark: String,
    /// The benchmark item, `key:line`.
    pub item: String,
    pub message: u32,
    pub start: u32,
    pub end: u32,
    pub ngrams: u32,
    /// The row's text in the span (redacted, as stored), at most 200 characters.
    pub text: String,
}

pub fn query(
    view: &ReadView,
    settings: &Settings,
    benchmark: Option<&str>,
    limit: usize,
) -> Result<ContaminationAnswer> {
    let config = &settings.idx.decontamination;
    let set = set_digest(view, config)?;
    let benchmarks = view.benchmarks()?;
    if let Some(b) = benchmark {
        if !benchmarks.iter().any(|x| x.name == b) {
            return Err(Error::Query(format!("no benchmark named `{b}`")));
        }
    }
    let (todo, _) = view.contamination_work(&set)?;
    let mut answer = ContaminationAnswer {
        set: set.clone(),
        action: config.action.as_str(),
        benchmarks,
        rows_by_benchmark: BTreeMap::new(),
        rows: 0,
        unchecked: if set.is_empty() { 0 } else { todo.len() as u64 },
        matches: Vec::new(),
    };
    if set.is_empty() {
        return Ok(answer);
    }
    for (h, c) in view.contaminated(&set)? {
        let names: BTreeSet<&str> = c.hits.iter().map(|x| x.benchmark.as_str()).collect();
        if benchmark.is_some_and(|b| !names.contains(b)) {
            continue;
        }
        for n in &names {
            *answer.rows_by_benchmark.entry(n.to_string()).or_default() += 1;
        }
        answer.rows += 1;
        if answer.matches.len() >= limit {
            continue;
        }
        let conversation = view.representative(h)?.map(|v| v.conversation);
        let messages: Vec<&str> = conversation
            .iter()
            .flat_map(|c| c.all_messages().map(|m| m.content.as_str()))
            .collect();
        let mut hits = Vec::new();
        for x in c
            .hits
            .iter()
            .filter(|x| benchmark.is_none_or(|b| x.benchmark == b))
        {
            let item = view.benchmark_item(&x.benchmark, x.item)?.map_or_else(
                || format!("#{}", x.item),
                |i| format!("{}:{}", i.key, i.line),
            );
            let text = messages
                .get(x.message as usize)
                .and_then(|m| m.get(x.start as usize..x.end as usize))
                .map(|t| t.chars().take(200).collect())
                .unwrap_or_default();
            hits.push(HitAnswer {
                benchmark: x.benchmark.clone(),
                item,
                message: x.message,
                start: x.start,
                end: x.end,
                ngrams: x.ngrams,
                text,
            });
        }
        let place = view
            .places(h)?
            .first()
            .map(|(id, line, _)| format!("{}:{line}", id.split('\0').nth(1).unwrap_or(id)));
        answer.matches.push(RowMatch {
            content_hash: h.to_hex(),
            share: if c.ngrams == 0 {
                0.0
            } else {
                f64::from(c.matched) / f64::from(c.ngrams)
            },
            contaminated: is_contaminated(&c, config),
            place,
            hits,
        });
    }
    Ok(answer)
}

/// The index's own val and test rows against train, at n-gram level: what near-duplicate
/// detection does not call a duplicate but shares `ngram`-word runs with a training row.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SplitOverlap {
    pub ngram: u32,
    pub train_rows: u64,
    /// Per held-out split: rows checked and rows sharing an n-gram with a train row.
    pub checked: BTreeMap<Split, u64>,
    pub matched: BTreeMap<Split, u64>,
    pub examples: Vec<SplitMatch>,
}

#[derive(Debug, Clone, Serialize)]
pub struct SplitMatch {
    pub content_hash: String,
    pub split: Split,
    pub train_row: String,
    pub share: f64,
}

/// Check val and test rows against the n-grams of train rows (PII-excluded rows left out).
pub fn split_overlap(view: &ReadView, settings: &Settings) -> Result<SplitOverlap> {
    let config = &settings.idx.decontamination;
    let policy = settings.policy();
    let assignments = view.assignments(&policy)?;
    let mut held_out: Vec<(Hash128, Split)> = Vec::new();
    let mut train: Vec<Hash128> = Vec::new();
    view.for_each_row(|h, row| {
        if row.pii.status == crate::pii::PiiStatus::Excluded {
            return Ok(());
        }
        match assignments.get(&h).map_or(Split::Train, |a| a.split) {
            Split::Train => train.push(h),
            s => held_out.push((h, s)),
        }
        Ok(())
    })?;
    let mut m = Matcher::new(config.ngram as usize, config.max_items_per_ngram as usize);
    for (i, &h) in train.iter().enumerate() {
        if let Some(v) = view.representative(h)? {
            let grams: Vec<u64> = v
                .conversation
                .all_messages()
                .flat_map(|m| text_ngrams(&m.content, config.ngram as usize))
                .collect::<BTreeSet<u64>>()
                .into_iter()
                .collect();
            m.add(i as u32, &grams);
        }
    }
    let mut out = SplitOverlap {
        ngram: config.ngram,
        train_rows: train.len() as u64,
        ..SplitOverlap::default()
    };
    for (h, split) in held_out {
        let Some(v) = view.representative(h)? else {
            continue;
        };
        *out.checked.entry(split).or_default() += 1;
        let r = m.check(v.conversation.all_messages().map(|m| m.content.as_str()));
        if let Some(first) = r.hits.first() {
            *out.matched.entry(split).or_default() += 1;
            if out.examples.len() < EXAMPLES {
                out.examples.push(SplitMatch {
                    content_hash: h.to_hex(),
                    split,
                    train_row: train[first.item as usize].to_hex(),
                    share: f64::from(r.matched) / f64::from(r.ngrams.max(1)),
                });
            }
        }
    }
    Ok(out)
}
