//! The `idx` command line: parses arguments, opens the index, calls the library and renders the
//! answer as text or (`--json`) as one JSON document on stdout. Errors go to stderr with their
//! cause chain and a non-zero exit code (1 failure, 2 usage, 3 not found, 4 a gate failed).
//!
//! Files: `args` (the clap definitions), `commands` (what each subcommand does), `render` (text
//! output); this file holds `main`, the panic hook, logging, settings and the dispatch.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Result;
use clap::Parser;
use idx::config::Settings;
use idx::daemon::DaemonStatus;
use idx::index::Index;
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

mod args;
mod commands;
mod export;
mod queries;
mod render;
mod scale;

use args::{Cli, Command};
use commands::{check, curriculum, ingest, init, pii, serve, verify};
use export::export;
use queries::run_query;
use render::{print_daemon, print_json, print_status, print_storage, DaemonView, StatusOut};

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
    // Colour only on a terminal: logs sent to a file or a pipe stay plain text.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
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
    s.mappings =
        idx::parse::Mappings::load(config_path(cli.sources.as_deref(), "configs/sources.toml"))?;
    s.recipes =
        idx::derive::Recipes::load(config_path(cli.derive.as_deref(), "configs/derive.toml"))?;
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

fn run(cli: &Cli) -> Result<ExitCode> {
    match &cli.command {
        Command::Init(args) => init(cli, args),
        Command::Ingest(args) => ingest(cli, args),
        Command::Derive(args) => commands::derive(cli, args),
        Command::Status(args) => {
            let settings = settings(cli)?;
            let store = Index::open_store_read(&cli.data_dir)?;
            let view = store.read()?;
            let status = query::status(&view, &settings.classifier)?;
            let daemon = DaemonStatus::read(&cli.data_dir).map(|d| DaemonView {
                alive: d.alive(),
                status: d,
            });
            let storage = if args.storage {
                Some(idx::index::Storage::measure(&cli.data_dir, &view)?)
            } else {
                None
            };
            if cli.json {
                print_json(&StatusOut {
                    status: &status,
                    daemon: daemon.as_ref(),
                    storage: storage.as_ref(),
                })?;
            } else {
                print_status(&status, &cli.data_dir)?;
                print_daemon(daemon.as_ref())?;
                if let Some(storage) = &storage {
                    print_storage(storage)?;
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Query(q) => run_query(cli, q),
        Command::Verify(args) => verify(cli, args),
        Command::Decontaminate(args) => commands::decontaminate(cli, args),
        Command::Pii(p) => pii(cli, p),
        Command::Export(e) => export(cli, e),
        Command::Import(i) => scale::import(cli, i),
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

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
