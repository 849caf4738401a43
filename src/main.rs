//! The `idx` command line: parses arguments, opens the index, calls the library and renders the
//! answer as text or (`--json`) as one JSON document on stdout. Errors go to stderr with their
//! cause chain and a non-zero exit code (1 failure, 2 usage, 3 not found, 4 a gate failed).

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};
use serde::Serialize;

use idx::config::Settings;
use idx::curriculum::Curriculum;
use idx::daemon::{DaemonStatus, ServeOptions};
use idx::index::Index;
use idx::ingest::{IngestOptions, IngestReport};
use idx::parse::Limits;
use idx::query;

/// `println!` that returns an error instead of panicking when stdout is gone (`idx … | head`);
/// `main` turns a broken pipe into a quiet exit 0.
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        writeln!(std::io::stdout().lock(), $($arg)*)?
    }};
}

/// `print!` with the same treatment as [`outln!`].
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        write!(std::io::stdout().lock(), $($arg)*)?
    }};
}

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
    after_long_help = "Examples:\n  idx ingest examples/data                 index a folder (again: only changes are read)\n  idx status --json                        counts per family, for scripts\n  idx query text \"can't sleep\" --limit 5   full-text search with file and line\n  idx query source datasets/a.jsonl        rows and rejections of one object\n  idx query hash 1f0c...                   one row and every place it occurs\n  idx verify                               the coverage and leakage gates (exit 4 on failure)\n  idx export --out out/dataset             shards, manifest and curriculum files\n  idx serve --watch drop/                  the daemon; `idx status` from another shell"
)]
struct Cli {
    /// Where the index lives (created on first ingest)
    #[arg(long, global = true, env = "IDX_DATA_DIR", default_value = ".idx")]
    data_dir: PathBuf,

    /// Family rules; default: ./configs/families.toml if present, else the built-in copy
    #[arg(long, global = true, env = "IDX_FAMILIES")]
    families: Option<PathBuf>,

    /// Near-duplicate, split and holdout settings; default: ./configs/idx.toml if present, else
    /// the built-in copy
    #[arg(long, global = true, env = "IDX_CONFIG")]
    config: Option<PathBuf>,

    /// The training curriculum; default: ./configs/curriculum.toml if present, else the built-in
    /// copy (the original system's plan)
    #[arg(long, global = true, env = "IDX_CURRICULUM")]
    curriculum: Option<PathBuf>,

    /// S3-compatible endpoint URL (overrides [s3] endpoint and AWS_ENDPOINT_URL)
    #[arg(long, global = true, value_name = "URL")]
    s3_endpoint: Option<String>,

    /// Path-style S3 addressing (endpoint/bucket/key), as most S3-compatible stores need
    #[arg(long, global = true)]
    s3_path_style: bool,

    /// Print one JSON document on stdout instead of text
    #[arg(long, global = true)]
    json: bool,

    /// Logs as JSON lines (for log collectors) instead of text
    #[arg(long, global = true)]
    log_json: bool,

    /// Log more (-v info, -vv debug); RUST_LOG overrides
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Index folders, files or s3://bucket/prefix incrementally: new and changed objects are
    /// read, unchanged ones skipped, objects gone from a scanned folder or prefix dropped
    Ingest(IngestArgs),
    /// Counts of objects, rows, rejections and tokens, per family
    Status,
    /// Look rows up by hash, by source object or by text
    #[command(subcommand)]
    Query(QueryCommand),
    /// Rebuild the full-text index from redb (never needed for correctness; redb is the truth)
    Reindex,
    /// Check that the index is whole: redb's integrity check (skipped while another process
    /// writes), then idx's own tables — counters against a recount, every place pointing at a
    /// stored row, every row's cluster and split as recomputed — and that the full-text index
    /// opens. Exits 0 when all is well, 4 when something is wrong (listed)
    Check,
    /// Recover an index left by a crash or kill -9 (readers refuse such a file and never write
    /// to it): redb repairs itself, the full-text index catches up with redb. Every writing
    /// command (ingest, serve) does the same on its own
    Recover,
    /// Run the gates: coverage (every required family has its minimum of indexed rows, or a
    /// waiver) and leakage (recomputed from scratch: no near-duplicate pair across splits, stored
    /// clusters and splits as they should be), plus a report of rows and tokens by family,
    /// split and phase. Exits 0 when every gate passes, 4 when one fails
    Verify(VerifyArgs),
    /// PII detection: try the redactor on text, or measure it against labelled text
    #[command(subcommand)]
    Pii(PiiCommand),
    /// Compile the dataset from one consistent snapshot of the index: ChatML JSONL shards per
    /// split and family (data/SPLIT/FAMILY-NNNNN.chatml.jsonl), final.chatml.jsonl with every
    /// split, provenance.jsonl, the curriculum's trainer files (curriculum/), and manifest.json
    /// (sha256, rows and tokens of every file), written last. The same index state always gives
    /// byte-identical files. `idx export verify MANIFEST` checks an export
    Export(ExportCommand),
    /// Run as a service: keep the index current with watched folders (file events plus a
    /// periodic rescan) and polled S3 prefixes, while other shells query it (`idx status`
    /// shows the daemon). SIGINT/SIGTERM commit what was read and exit 0. Sources come from
    /// [serve] in idx.toml plus these flags
    Serve(ServeArgs),
    /// Check the training curriculum against the index and show what each stage would draw
    /// (rows and tokens per family, the preference algorithm and why); exits 4 on errors.
    /// `idx curriculum import FILE.json` converts the original system's plan
    Curriculum(CurriculumCommand),
}

#[derive(Args, Debug)]
struct ServeArgs {
    /// A local folder to watch (repeatable)
    #[arg(long = "watch", value_name = "DIR")]
    watch: Vec<PathBuf>,
    /// An S3 prefix to poll (repeatable)
    #[arg(long = "s3", value_name = "S3_URL")]
    s3: Vec<String>,
    /// An S3 inventory for the S3 sources (file or s3:// URL)
    #[arg(long, value_name = "FILE|S3_URL")]
    manifest: Option<String>,
    /// Rescan every folder this often, in seconds, even without events
    #[arg(long)]
    rescan_seconds: Option<u64>,
    /// List the S3 sources this often, in seconds
    #[arg(long)]
    poll_seconds: Option<u64>,
    /// Input bytes per redb write transaction
    #[arg(long, default_value_t = IngestOptions::default().batch_bytes)]
    batch_bytes: u64,
}

#[derive(Args, Debug)]
#[command(args_conflicts_with_subcommands = true)]
struct ExportCommand {
    #[command(subcommand)]
    command: Option<ExportSub>,
    #[command(flatten)]
    args: ExportArgs,
}

#[derive(Subcommand, Debug)]
enum ExportSub {
    /// Re-read every file a manifest lists: presence, bytes, sha256, rows, tokens and the line
    /// schema; report files in the folder the manifest does not list and paths that leave it;
    /// exits 4 naming every problem
    Verify {
        /// The export's manifest.json
        manifest: PathBuf,
        /// The manifest's own sha256 as `idx export` printed it: fail unless it matches
        #[arg(long, value_name = "HEX")]
        sha256: Option<String>,
    },
}

#[derive(Args, Debug)]
struct ExportArgs {
    /// The folder to write (created; must be empty or hold a previous idx export, which is
    /// replaced), or s3://bucket/prefix (built locally, then uploaded with the manifest last)
    #[arg(long, value_name = "DIR|S3_URL")]
    out: Option<PathBuf>,
    /// A previous export's manifest.json: the new manifest lists the rows that moved split
    #[arg(long, value_name = "MANIFEST")]
    previous: Option<PathBuf>,
    /// Shard size limit in bytes (default: [export] shard_bytes in idx.toml, 256 MiB)
    #[arg(long)]
    shard_bytes: Option<u64>,
    /// Export every member of a near-duplicate group, not just its representative
    #[arg(long)]
    keep_near_duplicates: bool,
    /// Export even when a gate fails (recorded in the manifest)
    #[arg(long)]
    allow_failing_gates: bool,
}

#[derive(Args, Debug)]
#[command(args_conflicts_with_subcommands = true)]
struct CurriculumCommand {
    #[command(subcommand)]
    command: Option<CurriculumSub>,
}

#[derive(Subcommand, Debug)]
enum CurriculumSub {
    /// Convert a curriculum JSON file of the original system into curriculum TOML (stdout, or
    /// --out FILE); what had to be guessed or repaired is printed to stderr and kept as notes
    Import {
        /// The JSON file (e.g. training_curriculum_2025.json)
        file: PathBuf,
        /// Write the TOML here instead of stdout
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
}

#[derive(Subcommand, Debug)]
enum PiiCommand {
    /// Redact TEXT (or every line of stdin) with the configured [pii] settings and show what
    /// was found
    Check {
        /// The text; without it, each line of stdin is checked
        text: Option<String>,
    },
    /// Precision and recall per PII kind on the generated labelled set and on labelled JSON
    /// Lines files ({"text": "...", "pii": [{"kind": "name", "value": "Sarah"}]}), e.g.
    /// testdata/pii/casual_chat_labelled.jsonl
    Eval {
        /// Labelled files to score besides the generated set
        #[arg(long = "labels", value_name = "FILE")]
        labels: Vec<PathBuf>,
        /// Positives per kind in the generated set
        #[arg(long, default_value_t = 200)]
        per_kind: usize,
    },
}

#[derive(Args, Debug)]
struct VerifyArgs {
    /// Also write the result as a Markdown document to this file
    #[arg(long, value_name = "FILE")]
    markdown: Option<PathBuf>,
}

#[derive(Args, Debug)]
struct IngestArgs {
    /// Folders (walked recursively), single files, or s3://bucket/prefix
    paths: Vec<PathBuf>,

    /// An S3 inventory (the original s3_manifest.json shape, or a plain list of {key, size,
    /// last_modified, etag}), as a file or s3://bucket/key: it says which objects exist; the
    /// bucket listing cross-checks it. Alone, its `bucket` is the source
    #[arg(long, value_name = "FILE|S3_URL")]
    manifest: Option<String>,

    /// Reject JSONL lines longer than this many bytes (they are never held in memory)
    #[arg(long, default_value_t = Limits::default().max_line_bytes)]
    max_line_bytes: usize,

    /// Reject .json/.txt objects larger than this many bytes (they are read whole)
    #[arg(long, default_value_t = Limits::default().max_document_bytes)]
    max_document_bytes: usize,

    /// Stop reading a .gz object whose output grows past this many times the compressed bytes
    /// read (a decompression bomb); ordinary text expands 3-10 times
    #[arg(long, default_value_t = Limits::default().max_gzip_ratio)]
    max_gzip_ratio: u64,

    /// Input bytes per redb write transaction
    #[arg(long, default_value_t = IngestOptions::default().batch_bytes)]
    batch_bytes: u64,

    /// Fingerprint worker threads (default: one per core)
    #[arg(long)]
    workers: Option<usize>,

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
    /// A row's near-duplicates: Hamming distance, Jaccard similarity, split and places
    Near {
        /// The row's content hash (32 hexadecimal digits)
        hex: String,
    },
    /// Rows whose split changed (clusters merged or split, settings changed), oldest first
    Moves {
        /// Only moves made by commits after this one (see `idx status`: commits)
        #[arg(long, default_value_t = 0)]
        since: u64,
    },
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
    init_logging(
        cli.verbose,
        matches!(cli.command, Command::Serve(_)),
        cli.log_json,
    );
    install_panic_hook();
    // A panic that reaches here is a bug in idx or in a dependency meeting a damaged file (redb
    // reports some corruption by panicking): an error with a way forward, never exit 101.
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run(&cli)));
    match outcome {
        Ok(Ok(code)) => code,
        // The reader of our output went away (`idx query source BIG | head`): not an error.
        Ok(Err(e)) if is_broken_pipe(&e) => ExitCode::SUCCESS,
        Ok(Err(e)) => {
            eprintln!("idx: error: {e:#}");
            ExitCode::from(1)
        }
        Err(_) => {
            let what = last_panic().unwrap_or_else(|| "unknown".to_string());
            eprintln!(
                "idx: error: internal error ({what}); if the index may be damaged, run `idx check` — a damaged index is rebuilt by ingesting its sources into a fresh --data-dir"
            );
            ExitCode::from(1)
        }
    }
}

/// The last panic's message and place, for `main` to report.
fn last_panic() -> Option<String> {
    LAST_PANIC.lock().ok().and_then(|p| p.clone())
}

static LAST_PANIC: std::sync::Mutex<Option<String>> = std::sync::Mutex::new(None);

/// Panics are caught where they can be isolated (a row, an object, the daemon's writer) and
/// reported there; the hook only records them and prints one line with the place (never the
/// message on stderr unasked: it can quote input text), or the full report with
/// `RUST_BACKTRACE=1`.
fn install_panic_hook() {
    let verbose = std::env::var_os("RUST_BACKTRACE").is_some_and(|v| v != "0");
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let message = idx::error::panic_message(info.payload());
        let place = info
            .location()
            .map(|l| format!("{}:{}", l.file(), l.line()))
            .unwrap_or_default();
        if let Ok(mut last) = LAST_PANIC.lock() {
            *last = Some(format!(
                "{} at {place}",
                idx::pii::bounded_excerpt(&message)
            ));
        }
        if verbose {
            default(info);
        } else {
            eprintln!("idx: a bug was caught at {place} (RUST_BACKTRACE=1 shows the details)");
        }
    }));
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

/// Logs go to stderr: warnings by default (info for `idx serve`, one line per object), more with
/// -v; `--log-json` makes them JSON lines.
fn init_logging(verbose: u8, serving: bool, json: bool) {
    let default = match (verbose, serving) {
        (0, false) => "warn",
        (0, true) | (1, _) => "info",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

/// The explicit path, else the project-local file when present, else `None` (built-in copy).
fn config_path<'a>(explicit: Option<&'a Path>, local: &'static str) -> Option<&'a Path> {
    let local = Path::new(local);
    match explicit {
        Some(p) => Some(p),
        None if local.exists() => Some(local),
        None => None,
    }
}

fn settings(cli: &Cli) -> Result<Settings> {
    let mut s = Settings::load(
        config_path(cli.families.as_deref(), "configs/families.toml"),
        config_path(cli.config.as_deref(), "configs/idx.toml"),
    )?;
    if let Some(e) = &cli.s3_endpoint {
        s.idx.s3.endpoint = Some(e.clone());
    }
    if cli.s3_path_style {
        s.idx.s3.path_style = true;
    }
    Ok(s)
}

/// Exit code of a command that checks something: 0 when it passed, 4 when it failed.
fn gate_exit(passed: bool) -> ExitCode {
    if passed {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(4)
    }
}

fn print_json<T: Serialize>(value: &T) -> Result<()> {
    outln!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

fn run(cli: &Cli) -> Result<ExitCode> {
    match &cli.command {
        Command::Ingest(args) => ingest(cli, args),
        Command::Status => {
            let settings = settings(cli)?;
            let store = Index::open_store_read(&cli.data_dir)?;
            let status = query::status(&store.read()?, &settings.classifier)?;
            let daemon = DaemonStatus::read(&cli.data_dir).map(|d| DaemonView {
                alive: d.alive(),
                status: d,
            });
            if cli.json {
                print_json(&StatusOut {
                    status: &status,
                    daemon: daemon.as_ref(),
                })?;
            } else {
                print_status(&status, &cli.data_dir)?;
                print_daemon(daemon.as_ref())?;
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Query(q) => run_query(cli, q),
        Command::Verify(args) => verify(cli, args),
        Command::Pii(p) => pii(cli, p),
        Command::Export(e) => export(cli, e),
        Command::Serve(s) => serve(cli, s),
        Command::Curriculum(c) => curriculum(cli, c),
        Command::Check => check(cli),
        Command::Recover => {
            require_index(cli)?;
            let index = Index::open_write(&cli.data_dir)?;
            let seq = index.store.read()?.seq()?;
            if cli.json {
                print_json(&serde_json::json!({
                    "seq": seq,
                    "full_text": format!("{:?}", index.catchup),
                }))?;
            } else {
                outln!(
                    "index recovered at commit {seq}; full-text index: {:?}",
                    index.catchup
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Reindex => {
            let mut index = Index::open_write(&cli.data_dir)?;
            let rows = index.search.rebuild(&index.store.read()?)?;
            if cli.json {
                print_json(&serde_json::json!({ "rows": rows }))?;
            } else {
                outln!("full-text index rebuilt: {rows} rows");
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// The index's database file; an error naming the folder when there is none.
fn require_index(cli: &Cli) -> Result<PathBuf> {
    let db = cli.data_dir.join(idx::index::DB_FILE);
    if !db.exists() {
        anyhow::bail!(idx::Error::NoIndex(cli.data_dir.clone()));
    }
    Ok(db)
}

/// `idx check`: redb's integrity check around the library's consistency check, plus whether the
/// full-text index opens.
fn check(cli: &Cli) -> Result<ExitCode> {
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

fn print_check(cli: &Cli, report: &idx::check::CheckReport) -> Result<ExitCode> {
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

fn verify(cli: &Cli, args: &VerifyArgs) -> Result<ExitCode> {
    let settings = settings(cli)?;
    let store = Index::open_store_read(&cli.data_dir)?;
    let v = idx::verify::verify(&store.read()?, &settings)?;
    if let Some(path) = &args.markdown {
        std::fs::write(path, idx::verify::markdown(&v))
            .with_context(|| format!("writing {}", path.display()))?;
    }
    if cli.json {
        print_json(&v)?;
    } else {
        print_verification(&v)?;
    }
    Ok(gate_exit(v.passed))
}

#[derive(Serialize)]
struct StatusOut<'a> {
    #[serde(flatten)]
    status: &'a query::Status,
    /// The daemon serving this index, if one ever ran here.
    daemon: Option<&'a DaemonView>,
}

#[derive(Serialize)]
struct DaemonView {
    alive: bool,
    #[serde(flatten)]
    status: DaemonStatus,
}

fn print_daemon(d: Option<&DaemonView>) -> Result<()> {
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

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn serve(cli: &Cli, args: &ServeArgs) -> Result<ExitCode> {
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
async fn shutdown_signal() {
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

fn load_curriculum(cli: &Cli) -> Result<Curriculum> {
    Ok(Curriculum::load(config_path(
        cli.curriculum.as_deref(),
        "configs/curriculum.toml",
    ))?)
}

fn export(cli: &Cli, command: &ExportCommand) -> Result<ExitCode> {
    if let Some(ExportSub::Verify { manifest, sha256 }) = &command.command {
        let check = idx::export::verify_export(manifest, sha256.as_deref())?;
        if cli.json {
            print_json(&check)?;
        } else if check.passed {
            outln!(
                "{}: ok ({} files, {} lines checked)",
                check.manifest,
                check.files_checked,
                check.rows_checked
            );
        } else {
            outln!("{}: FAILED", check.manifest);
            for p in &check.problems {
                outln!("  {p}");
            }
        }
        return Ok(gate_exit(check.passed));
    }
    let args = &command.args;
    let Some(out) = &args.out else {
        eprintln!("idx: error: `idx export` needs --out DIR (or `idx export verify MANIFEST`)");
        return Ok(ExitCode::from(2));
    };
    let settings = settings(cli)?;
    let curriculum = load_curriculum(cli)?;
    let store = Index::open_store_read(&cli.data_dir)?;
    let view = store.read()?;
    let options = idx::export::ExportOptions {
        shard_bytes: args.shard_bytes.unwrap_or(settings.idx.export.shard_bytes),
        collapse_near_duplicates: settings.idx.export.collapse_near_duplicates
            && !args.keep_near_duplicates,
        previous: args.previous.clone(),
        allow_failing_gates: args.allow_failing_gates,
    };
    let quiet = cli.json || !std::io::stderr().is_terminal();
    let mut progress = |msg: &str| {
        if !quiet {
            eprintln!("idx export: {msg}");
        }
    };
    let target = out.to_string_lossy();
    let result = if target.starts_with("s3://") {
        let url = idx::source::s3::S3Url::parse(&target)?;
        let client = idx::source::s3::S3Client::connect(&settings.idx.s3)?;
        let staging = cli.data_dir.join("export-staging");
        let target = idx::export::S3Target {
            url: &url,
            client: &client,
            staging: &staging,
        };
        idx::export::export_to_s3(
            &view,
            &settings,
            &curriculum,
            &target,
            &options,
            &mut progress,
        )
    } else {
        idx::export::export(&view, &settings, &curriculum, out, &options, &mut progress)
    };
    let summary = match result {
        Ok(s) => s,
        Err(e @ idx::error::Error::GatesFailed(_)) => {
            eprintln!("idx: error: {e}");
            return Ok(gate_exit(false));
        }
        Err(e) => return Err(e.into()),
    };
    if cli.json {
        print_json(&summary)?;
    } else {
        outln!(
            "exported {} rows ({} tokens) in {} shards, {} bytes, to {}",
            summary.rows,
            summary.tokens,
            summary.shards,
            summary.bytes,
            summary.out
        );
        outln!(
            "  {} near-duplicates collapsed, {} rows excluded for PII, gates {}",
            summary.near_duplicates_collapsed,
            summary.pii_excluded,
            if summary.gates_passed {
                "passed"
            } else {
                "FAILED (exported anyway)"
            }
        );
        if let Some(m) = summary.moved_since_previous {
            outln!("  {m} rows moved split since the previous export");
        }
        for w in &summary.curriculum.warnings {
            outln!("  curriculum warning: {w}");
        }
        outln!(
            "manifest: {} (sha256 {}; pin it: idx export verify {} --sha256 {})",
            summary.manifest,
            summary.manifest_sha256,
            summary.manifest,
            summary.manifest_sha256
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn curriculum(cli: &Cli, command: &CurriculumCommand) -> Result<ExitCode> {
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
    let selection =
        idx::export::select(&view, &policy, settings.idx.export.collapse_near_duplicates)?;
    let plan = idx::curriculum::plan(&curriculum, &settings.classifier, &selection);
    if cli.json {
        print_json(&plan)?;
    } else {
        print_plan(&plan)?;
    }
    Ok(gate_exit(plan.passed))
}

fn print_plan(plan: &idx::curriculum::Plan) -> Result<()> {
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

fn pii(cli: &Cli, command: &PiiCommand) -> Result<ExitCode> {
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

fn print_verification(v: &idx::verify::Verification) -> Result<()> {
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
        let mark = if f.required { "" } else { " (optional)" };
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
    outln!("leakage: {}", verdict(l.passed));
    outln!(
        "  {} near-duplicate pair(s) across splits, {} row(s) disagreeing with the recomputation",
        l.cross_split_pairs,
        l.disagreements
    );
    if !l.settings_current {
        outln!("  the settings changed since the last ingest: run `idx ingest` to recompute");
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
    outln!("verify: {}", if v.passed { "passed" } else { "FAILED" });
    Ok(())
}

fn ingest(cli: &Cli, args: &IngestArgs) -> Result<ExitCode> {
    if args.paths.is_empty() && args.manifest.is_none() {
        eprintln!(
            "idx: error: `idx ingest` needs a folder, file or s3://bucket/prefix (or --manifest)"
        );
        return Ok(ExitCode::from(2));
    }
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
        ..IngestOptions::default()
    };
    let report = idx::ingest::ingest(&mut index, &settings, &args.paths, &options)?;
    if cli.json {
        print_json(&report)?;
    } else {
        print_ingest(&report)?;
    }
    Ok(ExitCode::SUCCESS)
}

fn print_ingest(r: &IngestReport) -> Result<()> {
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
    Ok(())
}

fn print_status(s: &query::Status, data_dir: &Path) -> Result<()> {
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
        "{:<32} {:>10} {:>10} {:>12}",
        "family",
        "rows",
        "unique",
        "tokens"
    );
    for (name, f) in &s.families {
        outln!(
            "{:<32} {:>10} {:>10} {:>12}",
            name,
            f.rows,
            f.unique_rows,
            f.tokens
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
    Ok(())
}

fn run_query(cli: &Cli, q: &QueryCommand) -> Result<ExitCode> {
    match q {
        QueryCommand::Hash { hex } => {
            let store = Index::open_store_read(&cli.data_dir)?;
            let view = store.read()?;
            let policy = query::effective_policy(&view, settings(cli)?.policy())?;
            match query::row(&view, hex, &policy)? {
                None => {
                    eprintln!("idx: no row with content hash {hex}");
                    Ok(ExitCode::from(3))
                }
                Some(row) if cli.json => {
                    print_json(&row)?;
                    Ok(ExitCode::SUCCESS)
                }
                Some(row) => {
                    outln!(
                        "{} ({}, family {}, {} tokens, split {}, phase {}, pii {})",
                        row.content_hash,
                        row.kind,
                        row.family,
                        row.tokens,
                        row.split,
                        row.phase,
                        row.pii_status
                    );
                    if !row.pii_kinds.is_empty() {
                        let kinds: Vec<String> = row
                            .pii_kinds
                            .iter()
                            .map(|(kind, n)| format!("{kind} ×{n}"))
                            .collect();
                        outln!("  pii found (redacted in the text): {}", kinds.join(", "));
                    }
                    for m in &row.messages {
                        outln!("  [{}] {}", m.role.as_str(), m.content);
                    }
                    if let Some(rejected) = &row.rejected {
                        for m in rejected {
                            outln!("  [rejected {}] {}", m.role.as_str(), m.content);
                        }
                    }
                    if let Some(label) = row.label {
                        outln!("  label: {label}");
                    }
                    outln!("sources:");
                    for s in &row.sources {
                        outln!("  {}/{}:{}", s.source, s.key, s.line);
                    }
                    Ok(ExitCode::SUCCESS)
                }
            }
        }
        QueryCommand::Near { hex } => {
            let store = Index::open_store_read(&cli.data_dir)?;
            let view = store.read()?;
            let policy = query::effective_policy(&view, settings(cli)?.policy())?;
            match query::near(&view, hex, &policy)? {
                None => {
                    eprintln!("idx: no row with content hash {hex}");
                    Ok(ExitCode::from(3))
                }
                Some(a) if cli.json => {
                    print_json(&a)?;
                    Ok(ExitCode::SUCCESS)
                }
                Some(a) => {
                    outln!(
                        "{} (split {}, cluster {} of {} row(s))",
                        a.content_hash,
                        a.split,
                        a.cluster,
                        a.cluster_size
                    );
                    if !a.fingerprinted {
                        outln!("  too short for near-duplicate matching: exact duplicates only");
                    } else if a.neighbours.is_empty() {
                        outln!("  no near-duplicates");
                    }
                    for n in &a.neighbours {
                        outln!(
                            "  {}  hamming {:>2}  jaccard {:.3}  {}",
                            n.content_hash,
                            n.hamming,
                            n.similarity,
                            n.split
                        );
                        for s in &n.sources {
                            outln!("      {}/{}:{}", s.source, s.key, s.line);
                        }
                    }
                    Ok(ExitCode::SUCCESS)
                }
            }
        }
        QueryCommand::Moves { since } => {
            let store = Index::open_store_read(&cli.data_dir)?;
            let moves = query::moves(&store.read()?, *since)?;
            if cli.json {
                print_json(&moves)?;
            } else if moves.is_empty() {
                outln!("no split moves");
            } else {
                for m in &moves {
                    outln!(
                        "commit {:>6}  {}  {} -> {}",
                        m.seq,
                        m.content_hash,
                        m.from,
                        m.to
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        QueryCommand::Source { key } => {
            let store = Index::open_store_read(&cli.data_dir)?;
            let redactor = settings(cli)?.redactor();
            let answers = query::source_public(&store.read()?, key, &redactor)?;
            if answers.is_empty() {
                eprintln!("idx: no object with key {key}");
                return Ok(ExitCode::from(3));
            }
            if cli.json {
                print_json(&answers)?;
            } else {
                for a in &answers {
                    outln!(
                        "{}/{} ({}, family {}, {} rows, {} rejected)",
                        a.source,
                        a.key,
                        a.status,
                        a.family,
                        a.rows.len(),
                        a.rejected
                    );
                    if let Some(reason) = &a.reason {
                        outln!("  {reason}");
                    }
                    for r in &a.rows {
                        outln!("  line {:>6}  {}", r.line, r.content_hash);
                    }
                    for r in &a.rejections {
                        outln!("  line {:>6}  rejected: {}", r.line, r.reason);
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
            let (store, search, lag) = Index::open_read(&cli.data_dir)?;
            if lag > 0 {
                eprintln!(
                    "idx: note: the full-text index is {lag} commits behind the database; recent rows may be missing from these hits until the next `idx ingest` (or the daemon) catches it up"
                );
            }
            let hits = query::text(&store.read()?, &search, q, family.as_deref(), *limit)?;
            if cli.json {
                print_json(&hits)?;
            } else if hits.is_empty() {
                outln!("no hits");
            } else {
                for h in &hits {
                    outln!("{}  {}  {}:{}", h.content_hash, h.family, h.key, h.line);
                    outln!("    {}", h.snippet);
                }
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}
