//! The verification gates behind `idx verify`, and the dataset report.
//!
//! - *Coverage*: every required family has at least its `min_rows` indexed unique rows (rows,
//!   not object names: READMEs and notebooks never count), or a waiver; a family whose objects
//!   failed to index, or that has some rows but fewer than required, is `partial`.
//! - *Leakage*: recomputed from scratch, in memory and independently of the incremental state in
//!   `store::clusters`: candidate pairs from in-memory permuted block tables (hash maps probed
//!   the way the redb tables are; `neardup::candidate_pairs`), confirmed by Jaccard, and holdout groups, joined with a union-find. The gate
//!   passes when no near-duplicate pair sits in two stored splits and every row's stored cluster
//!   and split equal the recomputed ones.
//! - *Report*: unique rows and tokens by primary family, split and phase.
//!
//! Everything is read from one redb snapshot; nothing is written.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Write as _;

use serde::Serialize;

use crate::config::Settings;
use crate::error::Result;
use crate::fingerprint::Hash128;
use crate::neardup::{candidate_pairs, Policy, Split, UnionFind};
use crate::pii::{PiiKind, PiiStatus};
use crate::store::{Assignment, ObjectStatus, ReadView};

/// How many examples each finding lists.
const EXAMPLES: usize = 10;
/// How many evidence keys each family lists.
const EVIDENCE: usize = 10;

#[derive(Debug, Clone, Serialize)]
pub struct Verification {
    pub passed: bool,
    pub gates: Gates,
    pub report: Report,
    /// What does not fail a gate but deserves a look (a holdout family that is one group).
    pub warnings: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Gates {
    pub coverage: CoverageGate,
    pub leakage: LeakageGate,
    pub structure: StructureGate,
}

/// The structure gate: per primary family, the unique conversation rows (PII-excluded rows and
/// plain text left out) that fail a structure check ([`crate::structure`]).
#[derive(Debug, Clone, Serialize)]
pub struct StructureGate {
    pub passed: bool,
    /// `[structure] max_flawed_fraction` in idx.toml.
    pub max_flawed_fraction: f64,
    /// Families with conversation rows, by name.
    pub families: Vec<FamilyStructure>,
}

#[derive(Debug, Clone, Serialize)]
pub struct FamilyStructure {
    pub family: String,
    pub passed: bool,
    /// Unique conversation rows.
    pub rows: u64,
    /// Of them, failing a check (held back from the export).
    pub flawed: u64,
    /// Rows per failed check.
    pub checks: BTreeMap<&'static str, u64>,
    /// Content hashes of the first flawed rows (`idx query row HASH`).
    pub examples: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct CoverageGate {
    pub passed: bool,
    /// Every configured family, in config order.
    pub families: Vec<FamilyCoverage>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CoverageStatus {
    Present,
    Partial,
    Missing,
    Waived,
}

impl CoverageStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            CoverageStatus::Present => "present",
            CoverageStatus::Partial => "partial",
            CoverageStatus::Missing => "missing",
            CoverageStatus::Waived => "waived",
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct FamilyCoverage {
    pub family: String,
    pub required: bool,
    pub status: CoverageStatus,
    /// Unique rows carrying the family tag (PII-excluded rows not counted).
    pub rows: u64,
    pub tokens: u64,
    pub min_rows: u64,
    /// Indexed objects with rows for this family.
    pub objects: u64,
    /// Their keys (the first few).
    pub evidence: Vec<String>,
    /// Objects of this family that could not be read, or gave no row (every line rejected).
    pub failed_objects: Vec<String>,
    pub waiver: Option<String>,
    pub next_action: String,
    /// Of its rows (places), those derive recipes made (`configs/derive.toml`): the derived
    /// marker.
    pub derived_rows: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct LeakageGate {
    pub passed: bool,
    /// Near-duplicate pairs whose rows sit in different splits.
    pub cross_split_pairs: u64,
    pub cross_split_examples: Vec<CrossSplitPair>,
    /// Rows whose stored cluster or split differs from the recomputation.
    pub disagreements: u64,
    pub disagreement_examples: Vec<Disagreement>,
    /// Whether the index was built with the current settings.
    pub settings_current: bool,
    /// Recomputed figures.
    pub near_duplicate_pairs: u64,
    pub clusters: u64,
    pub rows_in_clusters: u64,
    pub holdout_groups: u64,
    pub candidate_pairs: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct CrossSplitPair {
    pub a: String,
    pub b: String,
    pub split_a: Split,
    pub split_b: Split,
    pub hamming: u32,
    pub similarity: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Disagreement {
    pub content_hash: String,
    pub stored_cluster: String,
    pub stored_split: Split,
    pub expected_cluster: String,
    pub expected_split: Split,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Count {
    pub rows: u64,
    pub tokens: u64,
}

impl Count {
    fn add(&mut self, tokens: u64) {
        self.rows += 1;
        self.tokens += tokens;
    }
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    /// Unique rows and their tokens, PII-excluded rows left out (as in every breakdown but the PII ones).
    pub total: Count,
    /// By primary family (each row counted once).
    pub by_family: BTreeMap<String, Count>,
    pub by_split: BTreeMap<Split, Count>,
    pub by_phase: BTreeMap<String, Count>,
    pub by_family_split: BTreeMap<String, BTreeMap<Split, Count>>,
    /// By PII status (clean, redacted, excluded).
    pub by_pii_status: BTreeMap<PiiStatus, Count>,
    /// Placeholders per PII kind, over all unique rows.
    pub pii_kinds: BTreeMap<PiiKind, u64>,
}

/// Run every gate and build the report.
pub fn verify(view: &ReadView, settings: &Settings) -> Result<Verification> {
    let policy = settings.policy();
    let stored_policy = view.policy()?;
    let assignments = view.assignments(&policy)?;
    let coverage = coverage(view, settings)?;
    let mut leakage = leakage(view, &policy, &assignments)?;
    leakage.settings_current = stored_policy.as_ref().is_none_or(|p| *p == policy);
    leakage.passed =
        leakage.cross_split_pairs == 0 && leakage.disagreements == 0 && leakage.settings_current;
    let report = report(view, &assignments)?;
    let structure = structure(view, settings.idx.structure.max_flawed_fraction)?;
    let warnings = holdout_warnings(view, &policy)?;
    Ok(Verification {
        passed: coverage.passed && leakage.passed && structure.passed,
        gates: Gates {
            coverage,
            leakage,
            structure,
        },
        report,
        warnings,
    })
}

fn structure(view: &ReadView, max_flawed_fraction: f64) -> Result<StructureGate> {
    let mut by_family: BTreeMap<String, FamilyStructure> = BTreeMap::new();
    view.for_each_row(|hash, row| {
        if row.pii.status == PiiStatus::Excluded || row.kind == crate::model::RecordKind::Text {
            return Ok(());
        }
        let f = by_family
            .entry(row.primary_family.clone())
            .or_insert_with(|| FamilyStructure {
                family: row.primary_family.clone(),
                passed: true,
                rows: 0,
                flawed: 0,
                checks: BTreeMap::new(),
                examples: Vec::new(),
            });
        f.rows += 1;
        if !row.flaws.is_empty() {
            f.flawed += 1;
            for check in row.flaws.names() {
                *f.checks.entry(check).or_default() += 1;
            }
            if f.examples.len() < EXAMPLES {
                f.examples.push(hash.to_hex());
            }
        }
        Ok(())
    })?;
    let mut families: Vec<FamilyStructure> = by_family.into_values().collect();
    for f in &mut families {
        f.passed = f.flawed as f64 <= max_flawed_fraction * f.rows as f64;
    }
    Ok(StructureGate {
        passed: families.iter().all(|f| f.passed),
        max_flawed_fraction,
        families,
    })
}

/// Holdout families whose rows are all one holdout group: every row of such a family goes to
/// one split (typically a single file of many sessions with no `session` declared).
pub fn holdout_warnings(view: &ReadView, policy: &Policy) -> Result<Vec<String>> {
    // Per holdout family: (declared sessions, distinct undivided groups, first key).
    let mut groups: BTreeMap<&String, (u64, BTreeSet<Hash128>, String)> = BTreeMap::new();
    let objects = view.objects()?;
    for o in &objects {
        if o.status != ObjectStatus::Indexed || o.rows == 0 {
            continue;
        }
        for f in o
            .families
            .iter()
            .filter(|f| policy.holdout_families.contains(*f))
        {
            let entry = groups
                .entry(f)
                .or_insert_with(|| (0, BTreeSet::new(), o.key.clone()));
            if o.sessions > 0 {
                entry.0 += o.sessions;
            } else if let Some(g) = policy.group_of(&o.source, &o.key, &o.families, None) {
                entry.1.insert(g);
            }
        }
    }
    Ok(groups
        .into_iter()
        .filter(|(_, (sessions, undivided, _))| sessions + undivided.len() as u64 == 1)
        .map(|(family, (_, _, key))| {
            format!(
                "holdout family `{family}` is a single holdout group ({key}): all its rows go to one split. \
                 If that object holds many sessions, declare a `session` field (or session = \"$record\") \
                 in a sources.toml mapping for it"
            )
        })
        .collect())
}

fn coverage(view: &ReadView, settings: &Settings) -> Result<CoverageGate> {
    // Unique rows per family tag that can reach the dataset (PII-excluded rows and rows held
    // back by the structure checks never do).
    let mut stats: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    view.for_each_row(|_, row| {
        if row.pii.status != PiiStatus::Excluded && row.flaws.is_empty() {
            for (f, _) in &row.families {
                let s = stats.entry(f.clone()).or_default();
                s.0 += 1;
                s.1 += row.tokens;
            }
        }
        Ok(())
    })?;
    let objects = view.objects()?;
    let mut families = Vec::new();
    for f in &settings.classifier.config().families {
        let (rows, tokens) = stats.get(&f.name).copied().unwrap_or((0, 0));
        let mut evidence = Vec::new();
        let mut count = 0u64;
        let mut failed_objects = Vec::new();
        let mut derived_rows = 0u64;
        for o in objects.iter().filter(|o| o.families.contains(&f.name)) {
            if o.source == crate::source::derived::DERIVED_SOURCE {
                derived_rows += o.rows;
            }
            match &o.status {
                ObjectStatus::Indexed if o.rows > 0 => {
                    count += 1;
                    if evidence.len() < EVIDENCE {
                        evidence.push(o.key.clone());
                    }
                }
                ObjectStatus::Failed { .. } => failed_objects.push(o.key.clone()),
                ObjectStatus::Indexed if o.rejected > 0 => failed_objects.push(o.key.clone()),
                _ => {}
            }
        }
        let enough = rows >= f.min_rows.max(1);
        let mut status = if enough && failed_objects.is_empty() {
            CoverageStatus::Present
        } else if rows > 0 || !failed_objects.is_empty() {
            CoverageStatus::Partial
        } else {
            CoverageStatus::Missing
        };
        if status != CoverageStatus::Present && f.waiver.is_some() {
            status = CoverageStatus::Waived;
        }
        let next_action = match status {
            CoverageStatus::Present => "none".to_string(),
            CoverageStatus::Waived => format!(
                "none (waived: {})",
                f.waiver.as_deref().unwrap_or_default()
            ),
            CoverageStatus::Partial if !failed_objects.is_empty() => format!(
                "fix and re-ingest {} unreadable object(s), first {}",
                failed_objects.len(),
                failed_objects[0]
            ),
            CoverageStatus::Partial => format!(
                "add {} more row(s) (has {rows}, needs {})",
                f.min_rows - rows,
                f.min_rows
            ),
            CoverageStatus::Missing => format!(
                "add data whose keys match the `{}` rules in families.toml and ingest it, or give the family a waiver",
                f.name
            ),
        };
        families.push(FamilyCoverage {
            family: f.name.clone(),
            required: f.required,
            status,
            rows,
            tokens,
            min_rows: f.min_rows,
            objects: count,
            evidence,
            failed_objects,
            waiver: f.waiver.clone(),
            next_action,
            derived_rows,
        });
    }
    let passed = families.iter().all(|f| {
        !f.required || matches!(f.status, CoverageStatus::Present | CoverageStatus::Waived)
    });
    Ok(CoverageGate { passed, families })
}

fn leakage(
    view: &ReadView,
    policy: &Policy,
    stored: &BTreeMap<Hash128, Assignment>,
) -> Result<LeakageGate> {
    let mut sets = UnionFind::default();
    // Holdout groups, from the objects and their places.
    let mut groups: BTreeMap<Hash128, BTreeSet<Hash128>> = BTreeMap::new();
    for o in view.objects()? {
        if o.status != ObjectStatus::Indexed {
            continue;
        }
        let id = crate::store::keys::object_id(&o.source, &o.key);
        let derived = o.source == crate::source::derived::DERIVED_SOURCE;
        if !policy.holds_out(&o.families) && !derived {
            continue;
        }
        for (_, _, h, meta) in view.object_places(&id)? {
            if let Some(g) = policy.group_of(&o.source, &o.key, &o.families, meta.session) {
                groups.entry(g).or_default().insert(h);
            }
            // A derived row is linked to the rows it was made from (not a holdout group).
            for input in crate::parse::derived::inputs_of(&meta) {
                if stored.contains_key(&input) {
                    sets.union(h, input);
                }
            }
        }
    }
    let mut grouped: BTreeSet<Hash128> = BTreeSet::new();
    for members in groups.values() {
        let mut it = members.iter();
        if let Some(&first) = it.next() {
            grouped.insert(first);
            for &m in it {
                grouped.insert(m);
                sets.union(first, m);
            }
        }
    }
    // Candidate pairs: rows sharing a permuted prefix, within the Hamming distance.
    let pairs = candidate_pairs(&view.fingerprints(policy)?, policy);
    let mut shingles: HashMap<Hash128, std::rc::Rc<Vec<u64>>> = HashMap::new();
    let mut load = |h: Hash128| -> Result<std::rc::Rc<Vec<u64>>> {
        if let Some(s) = shingles.get(&h) {
            return Ok(s.clone());
        }
        let s = std::rc::Rc::new(view.shingles(h)?);
        shingles.insert(h, s.clone());
        Ok(s)
    };
    let mut near_duplicate_pairs = 0u64;
    let mut cross_split_pairs = 0u64;
    let mut cross_split_examples = Vec::new();
    for (&(a, b), &d) in &pairs {
        let split_a = stored.get(&a).map(|x| x.split);
        let split_b = stored.get(&b).map(|x| x.split);
        // A pair needs its texts checked only when the answer can matter.
        if sets.find(a) == sets.find(b) && split_a == split_b {
            continue;
        }
        let Some(sim) = policy.judge(d, &load(a)?, &load(b)?) else {
            continue;
        };
        near_duplicate_pairs += 1;
        sets.union(a, b);
        if let (Some(sa), Some(sb)) = (split_a, split_b) {
            if sa != sb {
                cross_split_pairs += 1;
                if cross_split_examples.len() < EXAMPLES {
                    cross_split_examples.push(CrossSplitPair {
                        a: a.to_hex(),
                        b: b.to_hex(),
                        split_a: sa,
                        split_b: sb,
                        hamming: d,
                        similarity: sim,
                    });
                }
            }
        }
    }
    // Compare every row with the recomputation.
    let mut components: BTreeMap<Hash128, (u64, bool)> = BTreeMap::new();
    let rows: Vec<Hash128> = stored.keys().copied().collect();
    for &h in &rows {
        let root = sets.find(h);
        let c = components.entry(root).or_default();
        c.0 += 1;
        c.1 |= grouped.contains(&h);
    }
    let mut disagreements = 0u64;
    let mut disagreement_examples = Vec::new();
    for &h in &rows {
        let root = sets.find(h);
        let (_, holdout) = components[&root];
        let expected = policy.split_of(root, holdout);
        let s = stored[&h];
        if s.cluster != root || s.split != expected {
            disagreements += 1;
            if disagreement_examples.len() < EXAMPLES {
                disagreement_examples.push(Disagreement {
                    content_hash: h.to_hex(),
                    stored_cluster: s.cluster.to_hex(),
                    stored_split: s.split,
                    expected_cluster: root.to_hex(),
                    expected_split: expected,
                });
            }
        }
    }
    let multi: Vec<&(u64, bool)> = components.values().filter(|c| c.0 > 1).collect();
    Ok(LeakageGate {
        passed: false,
        cross_split_pairs,
        cross_split_examples,
        disagreements,
        disagreement_examples,
        settings_current: true,
        near_duplicate_pairs,
        clusters: multi.len() as u64,
        rows_in_clusters: multi.iter().map(|c| c.0).sum(),
        holdout_groups: groups.len() as u64,
        candidate_pairs: pairs.len() as u64,
    })
}

fn report(view: &ReadView, assignments: &BTreeMap<Hash128, Assignment>) -> Result<Report> {
    let mut r = Report::default();
    view.for_each_row(|h, row| {
        r.by_pii_status
            .entry(row.pii.status)
            .or_default()
            .add(row.tokens);
        for (k, n) in &row.pii.kinds {
            *r.pii_kinds.entry(*k).or_default() += u64::from(*n);
        }
        // Excluded rows are audited above and never exported: the training figures leave them out.
        if row.pii.status == PiiStatus::Excluded {
            return Ok(());
        }
        let split = assignments.get(&h).map_or(Split::Train, |a| a.split);
        r.total.add(row.tokens);
        r.by_family
            .entry(row.primary_family.clone())
            .or_default()
            .add(row.tokens);
        r.by_split.entry(split).or_default().add(row.tokens);
        r.by_phase
            .entry(row.kind.phase().to_string())
            .or_default()
            .add(row.tokens);
        r.by_family_split
            .entry(row.primary_family.clone())
            .or_default()
            .entry(split)
            .or_default()
            .add(row.tokens);
        Ok(())
    })?;
    Ok(r)
}

/// The verification as a Markdown document.
pub fn markdown(v: &Verification) -> String {
    let mut out = String::new();
    let verdict = |p: bool| if p { "PASS" } else { "FAIL" };
    let _ = writeln!(out, "# idx verify: {}\n", verdict(v.passed));
    let c = &v.gates.coverage;
    let _ = writeln!(out, "## Coverage gate: {}\n", verdict(c.passed));
    let _ = writeln!(
        out,
        "| family | required | status | rows | tokens | objects | next action |"
    );
    let _ = writeln!(out, "|---|---|---|---:|---:|---:|---|");
    for f in &c.families {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} |",
            if f.derived_rows > 0 {
                format!("{} (derived: {} rows)", f.family, f.derived_rows)
            } else {
                f.family.clone()
            },
            if f.required { "yes" } else { "no" },
            f.status.as_str(),
            f.rows,
            f.tokens,
            f.objects,
            f.next_action.replace('|', "\\|")
        );
    }
    let l = &v.gates.leakage;
    let leakage_verdict = if l.settings_current {
        verdict(l.passed)
    } else {
        "STALE (settings changed: run `idx ingest` to recompute)"
    };
    let _ = writeln!(out, "\n## Leakage gate: {leakage_verdict}\n");
    let _ = writeln!(
        out,
        "- near-duplicate pairs across splits: {}\n- rows whose stored cluster/split differs from the recomputation: {}\n- index built with the current settings: {}\n- near-duplicate pairs confirmed: {} (of {} candidates); clusters of 2+: {} holding {} rows; holdout groups: {}",
        l.cross_split_pairs,
        l.disagreements,
        if l.settings_current { "yes" } else { "no (run `idx ingest` to recompute)" },
        l.near_duplicate_pairs,
        l.candidate_pairs,
        l.clusters,
        l.rows_in_clusters,
        l.holdout_groups
    );
    for p in &l.cross_split_examples {
        let _ = writeln!(
            out,
            "  - `{}` ({}) ~ `{}` ({}): hamming {}, jaccard {:.3}",
            p.a, p.split_a, p.b, p.split_b, p.hamming, p.similarity
        );
    }
    let st = &v.gates.structure;
    let _ = writeln!(out, "\n## Structure gate: {}\n", verdict(st.passed));
    let _ = writeln!(
        out,
        "Conversations held back from the export (a family fails above {:.0}%).\n\n| family | verdict | conversations | held back | checks | example |\n|---|---|---:|---:|---|---|",
        st.max_flawed_fraction * 100.0
    );
    for f in &st.families {
        let checks: Vec<String> = f.checks.iter().map(|(c, n)| format!("{c} {n}")).collect();
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} |",
            f.family,
            verdict(f.passed),
            f.rows,
            f.flawed,
            checks.join(", "),
            f.examples
                .first()
                .map_or(String::new(), |h| format!("`{h}`"))
        );
    }
    if !v.warnings.is_empty() {
        let _ = writeln!(out, "\n## Warnings\n");
        for w in &v.warnings {
            let _ = writeln!(out, "- {w}");
        }
    }
    let r = &v.report;
    let _ = writeln!(
        out,
        "\n## Report\n\n{} unique rows, {} tokens.\n",
        r.total.rows, r.total.tokens
    );
    let _ = writeln!(out, "| split | rows | tokens |\n|---|---:|---:|");
    for (s, n) in &r.by_split {
        let _ = writeln!(out, "| {s} | {} | {} |", n.rows, n.tokens);
    }
    let _ = writeln!(out, "\n| PII status | rows | tokens |\n|---|---:|---:|");
    for (s, n) in &r.by_pii_status {
        let _ = writeln!(out, "| {} | {} | {} |", s.as_str(), n.rows, n.tokens);
    }
    let _ = writeln!(out, "\n| phase | rows | tokens |\n|---|---:|---:|");
    for (p, n) in &r.by_phase {
        let _ = writeln!(out, "| {p} | {} | {} |", n.rows, n.tokens);
    }
    let _ = writeln!(
        out,
        "\n| family | rows | tokens | train | val | test |\n|---|---:|---:|---:|---:|---:|"
    );
    for (f, n) in &r.by_family {
        let per = r.by_family_split.get(f);
        let rows_in = |s: Split| per.and_then(|p| p.get(&s)).map_or(0, |c| c.rows);
        let _ = writeln!(
            out,
            "| {f} | {} | {} | {} | {} | {} |",
            n.rows,
            n.tokens,
            rows_in(Split::Train),
            rows_in(Split::Val),
            rows_in(Split::Test)
        );
    }
    out
}
