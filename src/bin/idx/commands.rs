//! What each subcommand does: open the index or the settings it needs, call the library, and
//! hand the answer to `render` (or print it as JSON).

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use idx::curriculum::Curriculum;
use idx::daemon::ServeOptions;
use idx::index::Index;
use idx::ingest::IngestOptions;
use idx::parse::Limits;
use idx::query;

use crate::args::{
    Cli, CurriculumCommand, CurriculumSub, DecontaminateArgs, DeriveArgs, IngestArgs, InitArgs,
    PiiCommand, ServeArgs, VerifyArgs,
};
use crate::render::{
    print_check, print_derive, print_ingest, print_json, print_plan, print_refresh,
    print_verification,
};
use crate::{config_path, gate_exit, last_panic, require_index, settings};

/// `idx check`: redb's integrity check around the library's consistency check, plus whether the
/// full-text index opens.
pub(crate) fn check(cli: &Cli) -> Result<ExitCode> {
    let settings = settings(cli)?;
    let db = require_index(cli)?;
    // redb's own check needs the write lock; while another process writes, it is skipped.
    let (store, integrity) = match idx::store::Store::open_write(&db) {
        Ok(mut store) => {
            // redb reports some damage by panicking: that is a failed check.
            let checked =
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| store.check_integrity()));
            match checked {
                Ok(Ok(ok)) => (store, Some(ok)),
                Ok(Err(e)) => anyhow::bail!("redb's integrity check could not run: {e:#}"),
                Err(_) => {
                    let what = last_panic().unwrap_or_default();
                    let report = idx::check::CheckReport::damaged(format!(
                        "the database file is damaged: redb's integrity check failed ({what}); restore a backup, or ingest the sources into a fresh --data-dir"
                    ));
                    return print_check(cli, &report);
                }
            }
        }
        Err(e) if e.kind() == idx::error::ErrorKind::Busy => {
            (Index::open_store_read(&cli.data_dir)?, None)
        }
        Err(e) => return Err(e.into()),
    };
    let view = store.read()?;
    let mut report = idx::check::check(&view, &settings, integrity)?;
    match idx::search::SearchIndex::open(&cli.data_dir.join(idx::index::TEXT_DIR), false) {
        Ok(search) => {
            let behind = view.seq()?.saturating_sub(search.committed_seq()?);
            if behind > 0 {
                eprintln!("idx: note: the full-text index is {behind} commits behind (the next writer catches it up)");
            }
        }
        Err(e) => report.add_problem(format!(
            "the full-text index cannot be opened ({e:#}); the next writer (`idx ingest`, `idx serve`, `idx reindex`) rebuilds it from redb"
        )),
    }
    print_check(cli, &report)
}

pub(crate) fn init(cli: &Cli, args: &InitArgs) -> Result<ExitCode> {
    let settings = settings(cli)?;
    let names = [
        "families.toml",
        "curriculum.toml",
        "sources.toml",
        "idx.toml",
    ];
    if !args.force {
        if let Some(existing) = names
            .iter()
            .map(|n| args.config_dir.join(n))
            .find(|p| p.exists())
        {
            anyhow::bail!(
                "{} exists: idx init does not overwrite configs (--force to replace them, or --config-dir elsewhere)",
                existing.display()
            );
        }
    }
    let source = idx::source::open(
        idx::source::SourceArg::parse(&args.source)?,
        &settings.idx.s3,
        Some(cli.data_dir.clone()),
    )?;
    let spool = tempfile_dir(&cli.data_dir)?;
    let plan = idx::init::init(source.as_ref(), &settings, Limits::default(), &spool)?;
    let _ = std::fs::remove_dir_all(&spool);
    std::fs::create_dir_all(&args.config_dir)
        .with_context(|| format!("creating {}", args.config_dir.display()))?;
    for (name, text) in &plan.files {
        let path = args.config_dir.join(name);
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    }
    if cli.json {
        print_json(&plan)?;
        return Ok(ExitCode::SUCCESS);
    }
    outln!(
        "{}: {} objects, {} not training data",
        plan.source,
        plan.objects,
        plan.not_data
    );
    outln!(
        "{:<32} {:>8} {:>8}  sampled records",
        "family",
        "from",
        "objects"
    );
    for f in &plan.families {
        let kinds: Vec<String> = f.kinds.iter().map(|(k, n)| format!("{k} {n}")).collect();
        let flawed = if f.flawed > 0 {
            format!(" ({} fail a structure check)", f.flawed)
        } else {
            String::new()
        };
        outln!(
            "{:<32} {:>8} {:>8}  {}{flawed}",
            f.name,
            f.from,
            f.objects,
            if kinds.is_empty() {
                "none readable".to_string()
            } else {
                kinds.join(", ")
            }
        );
    }
    for u in &plan.unreadable {
        outln!("cannot read {}: {}", u.key, u.reason);
    }
    for name in names {
        outln!("wrote {}", args.config_dir.join(name).display());
    }
    if !plan.unreadable.is_empty() {
        outln!(
            "{} object(s) need a mapping: see the commented entries at the end of {}",
            plan.unreadable.len(),
            args.config_dir.join("sources.toml").display()
        );
    }
    outln!(
        "next: idx ingest {0}   then   idx verify   and   idx export --out dataset",
        args.source.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// A fresh folder for fetching remote objects, beside the index.
fn tempfile_dir(data_dir: &std::path::Path) -> Result<PathBuf> {
    let dir = data_dir
        .parent()
        .unwrap_or(std::path::Path::new("."))
        .join(format!(".idx-init-{}", std::process::id()));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(dir)
}

pub(crate) fn verify(cli: &Cli, args: &VerifyArgs) -> Result<ExitCode> {
    let settings = settings(cli)?;
    let store = Index::open_store_read(&cli.data_dir)?;
    let curriculum = load_curriculum(cli)?;
    let v = idx::verify::verify(&store.read()?, &settings, Some(&curriculum))?;
    if let Some(path) = &args.markdown {
        std::fs::write(path, idx::verify::markdown(&v))
            .with_context(|| format!("writing {}", path.display()))?;
    }
    if let Some(path) = &args.html {
        std::fs::write(path, idx::verify::html(&v, "idx verify", None))
            .with_context(|| format!("writing {}", path.display()))?;
    }
    if cli.json {
        print_json(&v)?;
    } else {
        print_verification(&v)?;
    }
    Ok(gate_exit(v.passed))
}

pub(crate) fn serve(cli: &Cli, args: &ServeArgs) -> Result<ExitCode> {
    let settings = settings(cli)?;
    let config = &settings.idx.serve;
    let mut options = ServeOptions {
        watch: config.watch.iter().map(PathBuf::from).collect(),
        s3: config.s3.clone(),
        inventory: args.manifest.clone().or_else(|| config.inventory.clone()),
        rescan: std::time::Duration::from_secs(
            args.rescan_seconds.unwrap_or(config.rescan_seconds).max(1),
        ),
        poll: std::time::Duration::from_secs(
            args.poll_seconds.unwrap_or(config.poll_seconds).max(1),
        ),
        ..ServeOptions::default()
    };
    options.ingest.batch_bytes = args.batch_bytes.max(1);
    options.watch.extend(args.watch.iter().cloned());
    options.s3.extend(args.s3.iter().cloned());
    std::fs::create_dir_all(&cli.data_dir)
        .with_context(|| format!("creating {}", cli.data_dir.display()))?;
    idx::daemon::serve(&cli.data_dir, settings, options, shutdown_signal())?;
    Ok(ExitCode::SUCCESS)
}

/// Completes at the first SIGINT or SIGTERM; from then on, a second SIGINT exits at once
/// (what was committed stays committed; what was being read is read again next time).
pub(crate) async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).ok();
    let terminated = async {
        match term.as_mut() {
            Some(t) => {
                t.recv().await;
            }
            None => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {
            tracing::info!("SIGINT: stopping (a second SIGINT exits at once)");
        }
        _ = terminated => tracing::info!("SIGTERM: stopping"),
    }
    tokio::spawn(async {
        if tokio::signal::ctrl_c().await.is_ok() {
            eprintln!("idx serve: second SIGINT, exiting now");
            std::process::exit(130);
        }
    });
}

pub(crate) fn load_curriculum(cli: &Cli) -> Result<Curriculum> {
    Ok(Curriculum::load(config_path(
        cli.curriculum.as_deref(),
        "configs/curriculum.toml",
    ))?)
}

pub(crate) fn curriculum(cli: &Cli, command: &CurriculumCommand) -> Result<ExitCode> {
    let settings = settings(cli)?;
    if let Some(CurriculumSub::Import { file, out }) = &command.command {
        let text =
            std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
        let imported = idx::curriculum::import::import(
            &text,
            &file.display().to_string(),
            &settings.classifier,
        )?;
        for n in &imported.notes {
            eprintln!("idx curriculum import: {n}");
        }
        let toml = imported.to_toml();
        match out {
            Some(path) => {
                std::fs::write(path, &toml)
                    .with_context(|| format!("writing {}", path.display()))?;
                eprintln!(
                    "idx curriculum import: {} stages written to {}",
                    imported.curriculum.stages.len(),
                    path.display()
                );
            }
            None => out!("{toml}"),
        }
        return Ok(ExitCode::SUCCESS);
    }
    let curriculum = load_curriculum(cli)?;
    let store = Index::open_store_read(&cli.data_dir)?;
    let view = store.read()?;
    let policy = query::effective_policy(&view, settings.policy())?;
    let selection = idx::export::select(
        &view,
        &policy,
        &idx::select::SelectOptions {
            collapse: settings.idx.export.collapse_near_duplicates,
            withheld: &idx::decontaminate::verdicts(&view, &settings)?.withheld(),
            keep: &settings.keep(),
        },
    )?;
    let plan = idx::curriculum::plan(&curriculum, &settings.classifier, &selection);
    if cli.json {
        print_json(&plan)?;
    } else {
        print_plan(&plan)?;
    }
    Ok(gate_exit(plan.passed))
}

pub(crate) fn pii(cli: &Cli, command: &PiiCommand) -> Result<ExitCode> {
    let redactor = settings(cli)?.redactor();
    match command {
        PiiCommand::Check { text } => {
            let lines: Vec<String> = match text {
                Some(t) => vec![t.clone()],
                None => std::io::stdin().lines().collect::<Result<_, _>>()?,
            };
            let mut answers = Vec::new();
            for line in &lines {
                let (redacted, found) = redactor.redact(line);
                let detections: Vec<serde_json::Value> = found
                    .values
                    .iter()
                    .map(|(k, v)| serde_json::json!({"kind": k, "value": v}))
                    .collect();
                if cli.json {
                    answers.push(serde_json::json!({
                        "text": line, "redacted": redacted, "detections": detections
                    }));
                } else {
                    outln!("{redacted}");
                    for (k, v) in &found.values {
                        outln!("  {k}: {v}");
                    }
                }
            }
            if cli.json {
                print_json(&answers)?;
            }
            Ok(ExitCode::SUCCESS)
        }
        PiiCommand::Eval { labels, per_kind } => {
            use idx::pii::eval;
            let mut reports = vec![eval::evaluate(
                &redactor,
                "generated",
                &eval::generated(*per_kind),
            )];
            for path in labels {
                let samples = eval::load(path)?;
                reports.push(eval::evaluate(
                    &redactor,
                    &path.display().to_string(),
                    &samples,
                ));
            }
            if cli.json {
                print_json(&reports)?;
                return Ok(ExitCode::SUCCESS);
            }
            for r in &reports {
                outln!(
                    "{} ({} texts): precision {:.4}, recall {:.4}",
                    r.set,
                    r.samples,
                    r.precision,
                    r.recall
                );
                outln!(
                    "  {:<14} {:>8} {:>8} {:>8} {:>9} {:>9}",
                    "kind",
                    "labels",
                    "found",
                    "correct",
                    "precision",
                    "recall"
                );
                for (kind, k) in &r.by_kind {
                    outln!(
                        "  {:<14} {:>8} {:>8} {:>8} {:>9.4} {:>9.4}",
                        kind.as_str(),
                        k.expected,
                        k.detected,
                        k.correct,
                        k.precision,
                        k.recall
                    );
                }
                for m in &r.misses {
                    outln!("  missed {m}");
                }
                for f in &r.false_alarms {
                    outln!("  false alarm {f}");
                }
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

pub(crate) fn ingest(cli: &Cli, args: &IngestArgs) -> Result<ExitCode> {
    let settings = settings(cli)?;
    let mut index = Index::open_write(&cli.data_dir)
        .with_context(|| format!("opening the index in {}", cli.data_dir.display()))?;
    let options = IngestOptions {
        limits: Limits {
            max_line_bytes: args.max_line_bytes,
            max_document_bytes: args.max_document_bytes,
            max_gzip_ratio: args.max_gzip_ratio.max(1),
        },
        batch_bytes: args.batch_bytes.max(1),
        progress: !args.no_progress && !cli.json && std::io::stderr().is_terminal(),
        inventory: args.manifest.clone(),
        workers: args.workers.unwrap_or(IngestOptions::default().workers),
        compact_min_free_bytes: if args.no_compact {
            u64::MAX
        } else {
            IngestOptions::default().compact_min_free_bytes
        },
        ..IngestOptions::default()
    };
    let report = idx::ingest::ingest(&mut index, &settings, &args.paths, &options)?;
    let changed = report.objects_new + report.objects_changed + report.objects_deleted > 0;
    let derive = if !args.no_derive && idx::derive::needed(&index, &settings, changed)? {
        Some(idx::derive::run(&mut index, &settings, None, &options)?)
    } else {
        None
    };
    let decontamination = idx::decontaminate::refresh(&index.store, &settings)?;
    if cli.json {
        print_json(&IngestOutput {
            ingest: &report,
            derive: derive.as_ref(),
            decontamination: (decontamination.benchmarks > 0).then_some(&decontamination),
        })?;
    } else {
        print_ingest(&report)?;
        if let Some(d) = &derive {
            print_derive(d)?;
        }
        if decontamination.benchmarks > 0 {
            print_refresh(&decontamination)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `idx ingest --json`: the ingest report, and what the derive recipes did after it.
#[derive(serde::Serialize)]
struct IngestOutput<'a> {
    #[serde(flatten)]
    ingest: &'a idx::ingest::IngestReport,
    #[serde(skip_serializing_if = "Option::is_none")]
    derive: Option<&'a idx::derive::DeriveReport>,
    /// The rows checked against the benchmark sets after it (absent without a benchmark).
    #[serde(skip_serializing_if = "Option::is_none")]
    decontamination: Option<&'a idx::decontaminate::RefreshReport>,
}

pub(crate) fn decontaminate(cli: &Cli, args: &DecontaminateArgs) -> Result<ExitCode> {
    let settings = settings(cli)?;
    let index = Index::open_write(&cli.data_dir)
        .with_context(|| format!("opening the index in {}", cli.data_dir.display()))?;
    let mut out = serde_json::Map::new();
    if let Some(path) = &args.against {
        let loaded = idx::decontaminate::load(
            &index,
            &settings,
            path,
            args.name.as_deref(),
            Limits::default(),
        )?;
        if !cli.json {
            let b = &loaded.benchmark;
            outln!(
                "benchmark {}: {} items ({} too short for a {}-word n-gram), {} distinct n-grams, {} objects, {} records rejected",
                b.name,
                b.items,
                b.short_items,
                b.n,
                b.ngrams,
                b.objects,
                b.rejected
            );
            for r in &b.rejections {
                outln!("  rejected: {r}");
            }
            print_refresh(&loaded.refresh)?;
        }
        out.insert("loaded".into(), serde_json::to_value(&loaded)?);
    } else if let Some(name) = &args.remove {
        let refresh = idx::decontaminate::remove(&index, &settings, name)?;
        if !cli.json {
            outln!("benchmark {name} removed");
            print_refresh(&refresh)?;
        }
        out.insert("removed".into(), serde_json::to_value(&refresh)?);
    } else {
        let refresh = idx::decontaminate::refresh(&index.store, &settings)?;
        if !cli.json {
            print_refresh(&refresh)?;
        }
        out.insert("refresh".into(), serde_json::to_value(&refresh)?);
    }
    let view = index.store.read()?;
    let summary = idx::decontaminate::query(&view, &settings, None, 0)?;
    if !cli.json {
        for b in &summary.benchmarks {
            outln!(
                "  {:<24} {:>8} items  {:>8} rows matching   ({})",
                b.name,
                b.items,
                summary.rows_by_benchmark.get(&b.name).copied().unwrap_or(0),
                b.origin
            );
        }
        outln!(
            "{} rows match a benchmark; the export will {} them (`idx query contamination` lists them)",
            summary.rows,
            summary.action
        );
    }
    out.insert("summary".into(), serde_json::to_value(&summary)?);
    if args.splits {
        let overlap = idx::decontaminate::split_overlap(&view, &settings)?;
        if !cli.json {
            outln!(
                "splits: {} train rows; {}-word n-grams shared with train:",
                overlap.train_rows,
                overlap.ngram
            );
            for (split, n) in &overlap.checked {
                outln!(
                    "  {split}: {} of {n} rows",
                    overlap.matched.get(split).copied().unwrap_or(0)
                );
            }
            for e in &overlap.examples {
                outln!(
                    "  {} ({}) shares {:.0}% of its n-grams with train row {}",
                    e.content_hash,
                    e.split,
                    e.share * 100.0,
                    e.train_row
                );
            }
        }
        out.insert("splits".into(), serde_json::to_value(&overlap)?);
    }
    if cli.json {
        print_json(&out)?;
    }
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn derive(cli: &Cli, args: &DeriveArgs) -> Result<ExitCode> {
    let settings = settings(cli)?;
    let mut index = Index::open_write(&cli.data_dir)
        .with_context(|| format!("opening the index in {}", cli.data_dir.display()))?;
    let options = IngestOptions {
        progress: !cli.json && std::io::stderr().is_terminal(),
        ..IngestOptions::default()
    };
    let report = idx::derive::run(&mut index, &settings, args.recipe.as_deref(), &options)?;
    if cli.json {
        print_json(&report)?;
    } else {
        print_derive(&report)?;
    }
    Ok(ExitCode::SUCCESS)
}
