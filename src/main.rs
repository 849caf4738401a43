//! The `idx` command line: parses arguments, opens the index, calls the library and renders the
//! answer as text or (`--json`) as one JSON document on stdout. Errors go to stderr with their
//! cause chain and a non-zero exit code (1 failure, 2 usage, 3 not found).

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};
use serde::Serialize;

use idx::families::Classifier;
use idx::index::Index;
use idx::ingest::{IngestOptions, IngestReport};
use idx::parse::Limits;
use idx::query;

/// idx turns JSON/JSONL training data into an indexed, de-duplicated, traceable dataset.
///
/// Every row gets a content hash, a SimHash and its provenance (object, version, line) in an
/// embedded redb database; the text goes into a tantivy full-text index rebuilt from redb at will.
#[derive(Parser, Debug)]
#[command(
    name = "idx",
    version,
    about,
    long_about,
    after_long_help = "Examples:\n  idx ingest examples/data                 index a folder (again: only changes are read)\n  idx status --json                        counts per family, for scripts\n  idx query text \"can't sleep\" --limit 5   full-text search with file and line\n  idx query source datasets/a.jsonl        rows and rejections of one object\n  idx query hash 1f0c...                   one row and every place it occurs"
)]
struct Cli {
    /// Where the index lives (created on first ingest)
    #[arg(long, global = true, env = "IDX_DATA_DIR", default_value = ".idx")]
    data_dir: PathBuf,

    /// Family rules; default: ./configs/families.toml if present, else the built-in copy
    #[arg(long, global = true, env = "IDX_FAMILIES")]
    families: Option<PathBuf>,

    /// Print one JSON document on stdout instead of text
    #[arg(long, global = true)]
    json: bool,

    /// Log more (-v info, -vv debug); RUST_LOG overrides
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Index folders or files incrementally: new and changed objects are read, unchanged ones
    /// skipped, objects gone from a scanned folder dropped
    Ingest(IngestArgs),
    /// Counts of objects, rows, rejections and tokens, per family
    Status,
    /// Look rows up by hash, by source object or by text
    #[command(subcommand)]
    Query(QueryCommand),
    /// Rebuild the full-text index from redb (never needed for correctness; redb is the truth)
    Reindex,
}

#[derive(Args, Debug)]
struct IngestArgs {
    /// Folders (walked recursively) or single files
    #[arg(required = true)]
    paths: Vec<PathBuf>,

    /// Reject JSONL lines longer than this many bytes (they are never held in memory)
    #[arg(long, default_value_t = Limits::default().max_line_bytes)]
    max_line_bytes: usize,

    /// Reject .json/.txt objects larger than this many bytes (they are read whole)
    #[arg(long, default_value_t = Limits::default().max_document_bytes)]
    max_document_bytes: usize,

    /// Input bytes per redb write transaction
    #[arg(long, default_value_t = IngestOptions::default().batch_bytes)]
    batch_bytes: u64,

    /// Never draw the progress line (it is drawn only when stderr is a terminal)
    #[arg(long)]
    no_progress: bool,
}

#[derive(Subcommand, Debug)]
enum QueryCommand {
    /// A row by content hash: its conversation and every place it occurs
    Hash {
        /// 32 hexadecimal digits
        hex: String,
    },
    /// The rows indexed from one object (its key, or its full `file:///…/key` URI)
    Source { key: String },
    /// Full-text search over row text
    Text {
        /// tantivy query syntax: words, "phrases", AND/OR/NOT, -excluded
        query: String,
        /// Only rows carrying this family tag
        #[arg(long)]
        family: Option<String>,
        /// At most this many hits
        #[arg(long, default_value_t = 10)]
        limit: usize,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.verbose);
    match run(&cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("idx: error: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn init_logging(verbose: u8) {
    let default = match verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

fn classifier(cli: &Cli) -> Result<Classifier> {
    let local = Path::new("configs/families.toml");
    let path = match &cli.families {
        Some(p) => Some(p.as_path()),
        None if local.exists() => Some(local),
        None => None,
    };
    Ok(Classifier::load(path)?)
}

fn print_json<T: Serialize>(value: &T) -> Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

fn run(cli: &Cli) -> Result<ExitCode> {
    match &cli.command {
        Command::Ingest(args) => ingest(cli, args),
        Command::Status => {
            let classifier = classifier(cli)?;
            let store = Index::open_store_read(&cli.data_dir)?;
            let status = query::status(&store.read()?, &classifier)?;
            if cli.json {
                print_json(&status)?;
            } else {
                print_status(&status, &cli.data_dir);
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Query(q) => run_query(cli, q),
        Command::Reindex => {
            let mut index = Index::open_write(&cli.data_dir)?;
            let rows = index.search.rebuild(&index.store.read()?)?;
            if cli.json {
                print_json(&serde_json::json!({ "rows": rows }))?;
            } else {
                println!("full-text index rebuilt: {rows} rows");
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn ingest(cli: &Cli, args: &IngestArgs) -> Result<ExitCode> {
    let classifier = classifier(cli)?;
    let mut index = Index::open_write(&cli.data_dir)
        .with_context(|| format!("opening the index in {}", cli.data_dir.display()))?;
    let options = IngestOptions {
        limits: Limits {
            max_line_bytes: args.max_line_bytes,
            max_document_bytes: args.max_document_bytes,
        },
        batch_bytes: args.batch_bytes.max(1),
        progress: !args.no_progress && !cli.json && std::io::stderr().is_terminal(),
    };
    let report = idx::ingest::ingest(&mut index, &classifier, &args.paths, &options)?;
    if cli.json {
        print_json(&report)?;
    } else {
        print_ingest(&report);
    }
    Ok(ExitCode::SUCCESS)
}

fn print_ingest(r: &IngestReport) {
    println!(
        "objects: {} scanned, {} new, {} changed, {} unchanged, {} deleted, {} skipped, {} failed",
        r.objects_scanned,
        r.objects_new,
        r.objects_changed,
        r.objects_unchanged,
        r.objects_deleted,
        r.objects_skipped,
        r.objects_failed
    );
    println!(
        "rows: {} added, {} removed, {} rejected; {} encoding repairs",
        r.rows_added,
        r.rows_removed,
        r.rejected_rows,
        r.repairs.total()
    );
    for rej in &r.rejections {
        println!("  rejected {}:{}: {}", rej.key, rej.line, rej.reason);
    }
    if r.rejected_rows > r.rejections.len() as u64 {
        println!(
            "  … and {} more (see `idx status` and `idx query source KEY`)",
            r.rejected_rows - r.rejections.len() as u64
        );
    }
    for f in &r.failures {
        println!("  failed {}: {}", f.key, f.error);
    }
    for f in &r.scan_errors {
        println!("  unreadable {}: {}", f.key, f.error);
    }
    for w in &r.warnings {
        println!("warning: {w}");
    }
    let mb = r.bytes_read as f64 / 1e6;
    println!(
        "read {:.1} MB in {:.2} s ({:.1} MB/s), {} commit(s)",
        mb,
        r.seconds,
        if r.seconds > 0.0 { mb / r.seconds } else { 0.0 },
        r.commits
    );
}

fn print_status(s: &query::Status, data_dir: &Path) {
    println!("index: {}", data_dir.display());
    println!(
        "objects: {} ({} indexed, {} skipped, {} failed)",
        s.totals.objects,
        s.totals.objects_indexed,
        s.totals.objects_skipped,
        s.totals.objects_failed
    );
    println!(
        "rows: {} ({} unique), {} rejected, {} tokens",
        s.totals.rows, s.totals.unique_rows, s.totals.rejected_rows, s.totals.tokens
    );
    println!(
        "{:<32} {:>10} {:>10} {:>12}",
        "family", "rows", "unique", "tokens"
    );
    for (name, f) in &s.families {
        println!(
            "{:<32} {:>10} {:>10} {:>12}",
            name, f.rows, f.unique_rows, f.tokens
        );
    }
    if !s.unassigned_objects.is_empty() {
        println!("unassigned objects (no family rule matched):");
        for k in &s.unassigned_objects {
            println!("  {k}");
        }
    }
    if !s.skipped_objects.is_empty() {
        println!("skipped objects: {}", s.skipped_objects.len());
        for o in s.skipped_objects.iter().take(10) {
            println!("  {}: {}", o.key, o.reason);
        }
    }
    for o in &s.failed_objects {
        println!("failed {}: {}", o.key, o.reason);
    }
    if s.repairs.total() > 0 {
        let r = &s.repairs;
        println!(
            "encoding repairs: {} mojibake runs, {} control characters, {} documents decoded",
            r.mojibake, r.controls, r.decoded
        );
        for (family, r) in &s.repairs_by_family {
            println!(
                "  {family}: {} mojibake, {} controls, {} decoded",
                r.mojibake, r.controls, r.decoded
            );
        }
    }
    for (k, n) in &s.objects_with_rejections {
        println!("rejections: {k}: {n} line(s)");
    }
}

fn run_query(cli: &Cli, q: &QueryCommand) -> Result<ExitCode> {
    match q {
        QueryCommand::Hash { hex } => {
            let store = Index::open_store_read(&cli.data_dir)?;
            match query::row(&store.read()?, hex)? {
                None => {
                    eprintln!("idx: no row with content hash {hex}");
                    Ok(ExitCode::from(3))
                }
                Some(row) if cli.json => {
                    print_json(&row)?;
                    Ok(ExitCode::SUCCESS)
                }
                Some(row) => {
                    println!(
                        "{} ({}, family {}, {} tokens)",
                        row.content_hash, row.kind, row.family, row.tokens
                    );
                    for m in &row.messages {
                        println!("  [{}] {}", m.role.as_str(), m.content);
                    }
                    if let Some(rejected) = &row.rejected {
                        for m in rejected {
                            println!("  [rejected {}] {}", m.role.as_str(), m.content);
                        }
                    }
                    if let Some(label) = row.label {
                        println!("  label: {label}");
                    }
                    println!("sources:");
                    for s in &row.sources {
                        println!("  {}/{}:{}", s.source, s.key, s.line);
                    }
                    Ok(ExitCode::SUCCESS)
                }
            }
        }
        QueryCommand::Source { key } => {
            let store = Index::open_store_read(&cli.data_dir)?;
            let answers = query::source(&store.read()?, key)?;
            if answers.is_empty() {
                eprintln!("idx: no object with key {key}");
                return Ok(ExitCode::from(3));
            }
            if cli.json {
                print_json(&answers)?;
            } else {
                for a in &answers {
                    println!(
                        "{}/{} ({}, family {}, {} rows, {} rejected)",
                        a.source,
                        a.key,
                        a.status,
                        a.family,
                        a.rows.len(),
                        a.rejected
                    );
                    if let Some(reason) = &a.reason {
                        println!("  {reason}");
                    }
                    for r in &a.rows {
                        println!("  line {:>6}  {}", r.line, r.content_hash);
                    }
                    for r in &a.rejections {
                        println!("  line {:>6}  rejected: {}", r.line, r.reason);
                    }
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        QueryCommand::Text {
            query: q,
            family,
            limit,
        } => {
            let (store, search) = Index::open_read(&cli.data_dir)?;
            let hits = query::text(&store.read()?, &search, q, family.as_deref(), *limit)?;
            if cli.json {
                print_json(&hits)?;
            } else if hits.is_empty() {
                println!("no hits");
            } else {
                for h in &hits {
                    println!("{}  {}  {}:{}", h.content_hash, h.family, h.key, h.line);
                    println!("    {}", h.snippet);
                }
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}
