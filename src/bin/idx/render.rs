//! Rendering answers for people: the text forms of reports, status, plans and checks
//! (`--json` prints the same values as JSON instead).

use std::path::Path;
use std::process::ExitCode;

use anyhow::Result;
use idx::daemon::DaemonStatus;
use idx::ingest::IngestReport;
use idx::query;
use serde::Serialize;

use crate::args::Cli;
use crate::{gate_exit, unix_now};

pub(crate) fn print_json<T: Serialize>(value: &T) -> Result<()> {
    outln!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

pub(crate) fn print_check(cli: &Cli, report: &idx::check::CheckReport) -> Result<ExitCode> {
    if cli.json {
        print_json(report)?;
    } else {
        match report.integrity {
            Some(true) => outln!("redb integrity: ok"),
            Some(false) => outln!("redb integrity: FAILED (see the problems)"),
            None => outln!("redb integrity: skipped (another process is writing)"),
        }
        outln!(
            "consistency: {} objects, {} rows, {} places checked",
            report.objects_checked,
            report.rows_checked,
            report.places_checked
        );
        for p in &report.problems {
            outln!("  problem: {p}");
        }
        if report.more_problems > 0 {
            outln!("  … and {} more", report.more_problems);
        }
        outln!("{}", if report.passed { "ok" } else { "FAILED" });
    }
    Ok(gate_exit(report.passed))
}

#[derive(Serialize)]
pub(crate) struct StatusOut<'a> {
    #[serde(flatten)]
    pub(crate) status: &'a query::Status,
    /// The daemon serving this index, if one ever ran here.
    pub(crate) daemon: Option<&'a DaemonView>,
    /// With `--storage`: what the index costs on disk.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) storage: Option<&'a idx::index::Storage>,
}

pub(crate) fn print_storage(s: &idx::index::Storage) -> Result<()> {
    let mb = |b: u64| b as f64 / 1e6;
    let ratio = |b: u64| {
        if s.input_bytes == 0 {
            "-".to_string()
        } else {
            format!("{:.2}x", b as f64 / s.input_bytes as f64)
        }
    };
    let per_row = |b: u64| b.checked_div(s.unique_rows).unwrap_or(0);
    let total = s.redb_bytes + s.fulltext_bytes;
    outln!(
        "storage: {:.1} MB for {:.1} MB of input ({} of the input): redb {:.1} MB, full-text {:.1} MB; {} bytes per unique row",
        mb(total),
        mb(s.input_bytes),
        ratio(total),
        mb(s.redb_bytes),
        mb(s.fulltext_bytes),
        per_row(total)
    );
    outln!(
        "  {:<16} {:>10} {:>12} {:>12} {:>10}",
        "table",
        "entries",
        "stored MB",
        "pages MB",
        "B/row"
    );
    for t in &s.tables {
        outln!(
            "  {:<16} {:>10} {:>12.1} {:>12.1} {:>10}",
            t.table,
            t.entries,
            mb(t.stored_bytes),
            mb(t.page_bytes),
            per_row(t.page_bytes)
        );
    }
    Ok(())
}

#[derive(Serialize)]
pub(crate) struct DaemonView {
    pub(crate) alive: bool,
    #[serde(flatten)]
    pub(crate) status: DaemonStatus,
}

pub(crate) fn print_daemon(d: Option<&DaemonView>) -> Result<()> {
    let Some(d) = d else {
        outln!("daemon: none has run here (start one with `idx serve --watch DIR`)");
        return Ok(());
    };
    let s = &d.status;
    if !d.alive {
        outln!(
            "daemon: not running (last heartbeat {}s ago, pid {})",
            unix_now().saturating_sub(s.heartbeat_at),
            s.pid
        );
        return Ok(());
    }
    outln!(
        "daemon: alive (pid {}, {}, heartbeat {}s ago), queue {}, {} objects pending, lag {}s",
        s.pid,
        s.state,
        unix_now().saturating_sub(s.heartbeat_at),
        s.queue_depth,
        s.objects_pending,
        s.lag_seconds
    );
    outln!("  sources: {}", s.sources.join(", "));
    if let Some(e) = &s.last_error {
        outln!("  last error: {}: {}", e.object, e.error);
    }
    Ok(())
}

pub(crate) fn print_plan(plan: &idx::curriculum::Plan) -> Result<()> {
    outln!(
        "curriculum {}: {}",
        plan.name,
        if plan.passed { "ok" } else { "ERRORS" }
    );
    for s in &plan.stages {
        outln!(
            "{:>2}. {} ({}) {}: {} rows, {} tokens (mix allows {}), val {} rows",
            s.order,
            s.id,
            s.phase.as_str(),
            s.title,
            s.rows,
            s.tokens,
            s.max_tokens,
            s.val_rows
        );
        for f in &s.families {
            outln!(
                "      {:<32} weight {:<6} draws {:>7} rows {:>10} tokens  (of {} rows, {} tokens)",
                f.family,
                f.weight,
                f.rows,
                f.tokens,
                f.available_rows,
                f.available_tokens
            );
        }
        if let Some(a) = &s.algorithm {
            outln!("      algorithm {}: {}", a.algorithm.as_str(), a.reason);
        }
    }
    for w in &plan.warnings {
        outln!("warning: {w}");
    }
    for e in &plan.errors {
        outln!("error: {e}");
    }
    Ok(())
}

pub(crate) fn print_verification(v: &idx::verify::Verification) -> Result<()> {
    let verdict = |p: bool| if p { "pass" } else { "FAIL" };
    let c = &v.gates.coverage;
    outln!("coverage: {}", verdict(c.passed));
    outln!(
        "  {:<30} {:>8} {:>9} {:>12}  next action",
        "family",
        "status",
        "rows",
        "tokens"
    );
    for f in &c.families {
        let mut mark = if f.required { "" } else { " (optional)" }.to_string();
        if f.derived_rows > 0 {
            mark.push_str(&format!(" (derived: {})", f.derived_rows));
        }
        outln!(
            "  {:<30} {:>8} {:>9} {:>12}  {}",
            format!("{}{mark}", f.family),
            f.status.as_str(),
            f.rows,
            f.tokens,
            f.next_action
        );
    }
    let l = &v.gates.leakage;
    if l.settings_current {
        outln!("leakage: {}", verdict(l.passed));
        outln!(
            "  {} near-duplicate pair(s) across splits, {} row(s) disagreeing with the recomputation",
            l.cross_split_pairs,
            l.disagreements
        );
    } else {
        // Not a leak: the stored clusters and splits were made under other settings, so the
        // comparison with a recomputation under these says nothing until they are recomputed.
        outln!("leakage: STALE — settings changed: run `idx ingest` to recompute");
        outln!(
            "  the near-duplicate, split or holdout settings (idx.toml, families.toml) differ from the ones the index was built with"
        );
    }
    for p in &l.cross_split_examples {
        outln!(
            "  leak: {} ({}) ~ {} ({}), hamming {}, jaccard {:.3}",
            p.a,
            p.split_a,
            p.b,
            p.split_b,
            p.hamming,
            p.similarity
        );
    }
    for d in &l.disagreement_examples {
        outln!(
            "  row {}: stored {} in cluster {}, expected {} in cluster {}",
            d.content_hash,
            d.stored_split,
            d.stored_cluster,
            d.expected_split,
            d.expected_cluster
        );
    }
    outln!(
        "  {} near-duplicate pairs, {} clusters of 2+ holding {} rows, {} holdout groups",
        l.near_duplicate_pairs,
        l.clusters,
        l.rows_in_clusters,
        l.holdout_groups
    );
    let st = &v.gates.structure;
    outln!(
        "structure: {} (a family fails above {:.0}% of its conversations held back)",
        verdict(st.passed),
        st.max_flawed_fraction * 100.0
    );
    for f in st.families.iter().filter(|f| f.flawed > 0) {
        let checks: Vec<String> = f.checks.iter().map(|(c, n)| format!("{c} {n}")).collect();
        outln!(
            "  {:<30} {:>5} {:>7} of {:>7} held back ({}), e.g. {}",
            f.family,
            verdict(f.passed),
            f.flawed,
            f.rows,
            checks.join(", "),
            f.examples.first().map(String::as_str).unwrap_or("")
        );
    }
    let d = &v.gates.distribution;
    outln!(
        "distribution: {} ({} families judged on split fractions, {} holdout families, {} share bounds)",
        verdict(d.passed),
        d.splits.iter().filter(|s| s.judged).count(),
        d.holdout_in_test.len(),
        d.shares.len()
    );
    for f in &d.failures {
        outln!("  {f}");
    }
    if let Some(m) = d.curriculum_mix.as_ref().filter(|m| !m.gate) {
        for s in &m.shortfalls {
            outln!("  curriculum mix (reported, not gated): {s}");
        }
    }
    for w in &v.warnings {
        outln!("warning: {w}");
    }
    let r = &v.report;
    outln!(
        "report: {} unique rows, {} tokens",
        r.total.rows,
        r.total.tokens
    );
    for (s, n) in &r.by_split {
        outln!(
            "  split {:<10} {:>9} rows {:>12} tokens",
            s.as_str(),
            n.rows,
            n.tokens
        );
    }
    for (p, n) in &r.by_phase {
        outln!(
            "  phase {:<10} {:>9} rows {:>12} tokens",
            p,
            n.rows,
            n.tokens
        );
    }
    outln!(
        "  {:<30} {:>9} {:>7} {:>7} {:>7} {:>7} {:>7}",
        "family lengths",
        "rows",
        "tok p50",
        "p90",
        "p99",
        "max",
        "turns50"
    );
    for (f, l) in &r.lengths {
        outln!(
            "  {:<30} {:>9} {:>7} {:>7} {:>7} {:>7} {:>7}",
            f,
            l.tokens.rows,
            l.tokens.p50,
            l.tokens.p90,
            l.tokens.p99,
            l.tokens.max,
            l.turns
                .as_ref()
                .map_or("-".to_string(), |t| t.p50.to_string())
        );
    }
    outln!("verify: {}", if v.passed { "passed" } else { "FAILED" });
    Ok(())
}

pub(crate) fn print_ingest(r: &IngestReport) -> Result<()> {
    outln!(
        "objects: {} scanned, {} new, {} changed, {} unchanged, {} deleted, {} skipped, {} failed",
        r.objects_scanned,
        r.objects_new,
        r.objects_changed,
        r.objects_unchanged,
        r.objects_deleted,
        r.objects_skipped,
        r.objects_failed
    );
    outln!(
        "rows: {} added, {} removed, {} rejected; {} encoding repairs",
        r.rows_added,
        r.rows_removed,
        r.rejected_rows,
        r.repairs.total()
    );
    for rej in &r.rejections {
        outln!("  rejected {}:{}: {}", rej.key, rej.line, rej.reason);
    }
    if r.rejected_rows > r.rejections.len() as u64 {
        outln!(
            "  … and {} more (see `idx status` and `idx query source KEY`)",
            r.rejected_rows - r.rejections.len() as u64
        );
    }
    for f in &r.failures {
        outln!("  failed {}: {}", f.key, f.error);
    }
    for s in &r.skipped {
        outln!("  skipped {}: {}", s.key, s.reason);
    }
    if r.objects_skipped > r.skipped.len() as u64 && !r.skipped.is_empty() {
        outln!(
            "  … {} skipped in all (see `idx status`)",
            r.objects_skipped
        );
    }
    for f in &r.scan_errors {
        outln!("  unreadable {}: {}", f.key, f.error);
    }
    for w in &r.warnings {
        outln!("warning: {w}");
    }
    let mb = r.bytes_read as f64 / 1e6;
    outln!(
        "read {:.1} MB in {:.2} s ({:.1} MB/s), {} commit(s)",
        mb,
        r.seconds,
        if r.seconds > 0.0 { mb / r.seconds } else { 0.0 },
        r.commits
    );
    if let Some(c) = &r.compaction {
        outln!(
            "compacted the index file: {:.1} MB -> {:.1} MB in {:.2} s",
            c.bytes_before as f64 / 1e6,
            c.bytes_after as f64 / 1e6,
            c.seconds
        );
    }
    Ok(())
}

pub(crate) fn print_status(s: &query::Status, data_dir: &Path) -> Result<()> {
    outln!("index: {}", data_dir.display());
    outln!(
        "objects: {} ({} indexed, {} skipped, {} failed)",
        s.totals.objects,
        s.totals.objects_indexed,
        s.totals.objects_skipped,
        s.totals.objects_failed
    );
    outln!(
        "rows: {} ({} unique), {} rejected, {} tokens",
        s.totals.rows,
        s.totals.unique_rows,
        s.totals.rejected_rows,
        s.totals.tokens
    );
    outln!(
        "pii: {} unique rows redacted, {} excluded (kept for audit, never exported)",
        s.totals.pii_redacted_rows,
        s.totals.pii_excluded_rows
    );
    outln!(
        "structure: {} unique rows fail a check (held back from exports; `idx verify` lists them), {} same-role turns merged",
        s.totals.flawed_rows,
        s.totals.merged_turns
    );
    outln!(
        "{:<32} {:>10} {:>10} {:>12} {:>8}",
        "family",
        "rows",
        "unique",
        "tokens",
        "flawed"
    );
    for (name, f) in &s.families {
        let derived = s
            .derived
            .get(name)
            .map(|d| format!("  (derived: {} rows)", d.rows))
            .unwrap_or_default();
        outln!(
            "{:<32} {:>10} {:>10} {:>12} {:>8}{}",
            name,
            f.rows,
            f.unique_rows,
            f.tokens,
            f.flawed_rows,
            derived
        );
    }
    if !s.unassigned_objects.is_empty() {
        outln!("unassigned objects (no family rule matched):");
        for k in &s.unassigned_objects {
            outln!("  {k}");
        }
    }
    if !s.skipped_objects.is_empty() {
        outln!("skipped objects: {}", s.skipped_objects.len());
        for o in s.skipped_objects.iter().take(10) {
            outln!("  {}: {}", o.key, o.reason);
        }
    }
    for o in &s.failed_objects {
        outln!("failed {}: {}", o.key, o.reason);
    }
    if s.repairs.total() > 0 {
        let r = &s.repairs;
        outln!(
            "encoding repairs: {} mojibake runs, {} control characters, {} documents decoded",
            r.mojibake,
            r.controls,
            r.decoded
        );
        for (family, r) in &s.repairs_by_family {
            outln!(
                "  {family}: {} mojibake, {} controls, {} decoded",
                r.mojibake,
                r.controls,
                r.decoded
            );
        }
    }
    for (k, n) in &s.objects_with_rejections {
        outln!("rejections: {k}: {n} line(s)");
    }
    if !s.mappings.is_empty() {
        let read: Vec<String> = s
            .mappings
            .iter()
            .map(|(m, n)| format!("{m} ({n} object(s))"))
            .collect();
        outln!("read through mappings: {}", read.join(", "));
    }
    Ok(())
}

pub(crate) fn print_derive(r: &idx::derive::DeriveReport) -> Result<()> {
    for recipe in &r.recipes {
        let skipped: Vec<String> = recipe
            .skipped
            .iter()
            .map(|(why, n)| format!("{n} {why}"))
            .collect();
        outln!(
            "derive {}: {} input rows, {} rows made in {} groups (family {}){}",
            recipe.name,
            recipe.inputs,
            recipe.rows,
            recipe.groups,
            recipe.family,
            if skipped.is_empty() {
                String::new()
            } else {
                format!("; skipped: {}", skipped.join(", "))
            }
        );
        if recipe.kind == Some(idx::derive::Kind::Generate) {
            outln!(
                "  generator: {} rows sent, {} cached",
                recipe.sent,
                recipe.cached
            );
        }
        for failure in &recipe.failures {
            outln!("  failed: {failure}");
        }
    }
    outln!(
        "derived objects: {} written, {} unchanged, {} removed",
        r.files_written,
        r.files_unchanged,
        r.files_removed
    );
    if let Some(i) = &r.ingest {
        outln!(
            "derived rows: {} added, {} removed; {} rejected",
            i.rows_added,
            i.rows_removed,
            i.rejected_rows
        );
    }
    Ok(())
}

pub(crate) fn print_refresh(r: &idx::decontaminate::RefreshReport) -> Result<()> {
    if r.benchmarks == 0 {
        outln!("decontamination: no benchmark loaded (`idx decontaminate --against PATH`)");
    } else {
        outln!(
            "decontamination: {} rows checked against {} benchmark(s), {} matching, {} checks of deleted rows dropped ({:.2}s)",
            r.checked,
            r.benchmarks,
            r.matched,
            r.removed,
            r.seconds
        );
    }
    Ok(())
}

pub(crate) fn print_contamination(a: &idx::decontaminate::ContaminationAnswer) -> Result<()> {
    if a.benchmarks.is_empty() {
        outln!("no benchmark loaded (`idx decontaminate --against PATH`)");
        return Ok(());
    }
    outln!(
        "{} rows match a benchmark (action: {}){}",
        a.rows,
        a.action,
        if a.unchecked > 0 {
            format!(
                "; {} rows not checked yet: run `idx decontaminate`",
                a.unchecked
            )
        } else {
            String::new()
        }
    );
    for (b, n) in &a.rows_by_benchmark {
        outln!("  {b}: {n} rows");
    }
    for m in &a.matches {
        outln!(
            "{}  {:.0}% of its n-grams{}  {}",
            m.content_hash,
            m.share * 100.0,
            if m.contaminated {
                ""
            } else {
                " (below min_share)"
            },
            m.place.as_deref().unwrap_or("")
        );
        for h in &m.hits {
            outln!(
                "    {} {}  message {} bytes {}..{} ({} n-grams): {}",
                h.benchmark,
                h.item,
                h.message,
                h.start,
                h.end,
                h.ngrams,
                h.text
            );
        }
    }
    Ok(())
}

pub(crate) fn print_overlap(objects: &[idx::overlap::ObjectOverlap]) -> Result<()> {
    if objects.is_empty() {
        outln!("no object shares rows with another");
    }
    for o in objects {
        outln!(
            "{}  {} rows, {} ({:.1}%) also elsewhere{}{}",
            o.key,
            o.rows,
            o.shared_rows,
            o.share * 100.0,
            if o.contained { ", contained" } else { "" },
            if o.redundant {
                ", marked redundant"
            } else {
                ""
            }
        );
        for x in &o.others {
            outln!(
                "    {} rows with {} ({:.1}% of this, {:.1}% of that)",
                x.rows,
                x.key,
                x.share * 100.0,
                x.share_of_other * 100.0
            );
        }
    }
    Ok(())
}
