//! `idx serve`: the always-on service. It owns the index for writing and keeps it current with
//! its sources — local folders watched with `notify` (plus a periodic rescan, since events can be
//! lost) and S3 prefixes polled on an interval — by running the incremental ingest on whichever
//! sources changed. A tokio runtime carries the signal handlers and the timers; one writer thread
//! runs ingests (whose own pipeline reads, parses and fingerprints on worker threads joined by
//! bounded channels). Sources waiting for the writer are a set, not a queue: a burst of events
//! marks a folder dirty once. Every few seconds the daemon writes `daemon.json` next to the index
//! (heartbeat, state, queue, pending objects, last error, lag), which `idx status` reads from
//! another process. The binary hands in the shutdown future (SIGINT/SIGTERM): the daemon stops
//! taking work, commits what was read and returns. The daemon supervises its writer: a writer
//! that dies (a panic, an error it cannot retry) puts `state: failed` with the error in
//! `daemon.json` and makes `serve` return an error, so the process exits non-zero and its
//! supervisor (systemd) restarts it; a restart resumes from the committed state. File I/O stays
//! off the async loop (`spawn_blocking`).

use std::collections::BTreeMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use tracing::{error, info, warn};

use crate::config::Settings;
use crate::error::{Error, Result};
use crate::index::Index;
use crate::ingest::{ingest, IngestOptions};
use crate::source::SourceArg;

/// The name the daemon's queue gives an inventory that is its own source (no S3 prefix given:
/// the inventory's bucket is listed).
const INVENTORY_SOURCE: &str = "inventory";

/// The status file the daemon keeps in the data directory.
pub const STATUS_FILE: &str = "daemon.json";

/// A daemon whose heartbeat is older than this is reported as not alive.
pub const HEARTBEAT_STALE: Duration = Duration::from_secs(15);

/// What to serve.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// Local folders to watch.
    pub watch: Vec<PathBuf>,
    /// `s3://bucket/prefix` sources to poll.
    pub s3: Vec<String>,
    /// An inventory for the S3 sources (file or s3:// URL).
    pub inventory: Option<String>,
    /// Every local folder is rescanned this often even without events.
    pub rescan: Duration,
    /// S3 sources are listed this often.
    pub poll: Duration,
    /// Events are gathered this long before a folder is ingested.
    pub debounce: Duration,
    /// How often `daemon.json` is rewritten.
    pub heartbeat: Duration,
    pub ingest: IngestOptions,
}

impl Default for ServeOptions {
    fn default() -> Self {
        ServeOptions {
            watch: Vec::new(),
            s3: Vec::new(),
            inventory: None,
            rescan: Duration::from_secs(60),
            poll: Duration::from_secs(300),
            debounce: Duration::from_millis(300),
            heartbeat: Duration::from_secs(2),
            ingest: IngestOptions::default(),
        }
    }
}

/// `daemon.json`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DaemonStatus {
    pub pid: u32,
    /// Unix seconds.
    pub started_at: u64,
    pub heartbeat_at: u64,
    /// `starting`, `idle`, `ingesting`, `stopping`, `stopped`, or `failed` (the writer died:
    /// `last_error` says why, and the process exits non-zero).
    pub state: String,
    /// Sources waiting for the writer.
    pub queue_depth: usize,
    /// Objects the running ingest still has to read.
    pub objects_pending: u64,
    pub sources: Vec<String>,
    /// The newest error: an object that failed, or an ingest that failed.
    pub last_error: Option<LastError>,
    /// Seconds since the oldest change not yet indexed (0 when caught up).
    pub lag_seconds: u64,
    pub ingests: u64,
    /// Rows added and removed since the daemon started.
    pub rows_added: u64,
    pub rows_removed: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LastError {
    /// The object (key) or source it is about.
    pub object: String,
    pub error: String,
    pub at: u64,
}

impl DaemonStatus {
    /// Read a data directory's status file, if a daemon ever ran there.
    pub fn read(data_dir: &Path) -> Option<DaemonStatus> {
        let text = std::fs::read_to_string(data_dir.join(STATUS_FILE)).ok()?;
        serde_json::from_str(&text).ok()
    }

    /// Whether the daemon is running: a fresh heartbeat, and (where /proc exists) its process.
    pub fn alive(&self) -> bool {
        let fresh = unix_now().saturating_sub(self.heartbeat_at) <= HEARTBEAT_STALE.as_secs();
        let proc_dir = Path::new("/proc");
        let running = !proc_dir.exists() || proc_dir.join(self.pid.to_string()).exists();
        fresh && running && self.state != "stopped" && self.state != "failed"
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Sources waiting for the writer, each with when it first became dirty.
#[derive(Default)]
struct Queue {
    dirty: BTreeMap<String, Instant>,
    stopping: bool,
}

struct Shared {
    queue: Mutex<Queue>,
    wake: Condvar,
    status: Mutex<DaemonStatus>,
    stop: Arc<AtomicBool>,
    /// Objects the running ingest planned and finished.
    planned: Arc<AtomicU64>,
    done: Arc<AtomicU64>,
    ingest_started: Mutex<Option<Instant>>,
}

impl Shared {
    fn mark(&self, source: &str) {
        let mut q = self.queue.lock().expect("queue lock");
        q.dirty
            .entry(source.to_string())
            .or_insert_with(Instant::now);
        self.wake.notify_all();
    }

    fn write_status(&self, data_dir: &Path) {
        let mut s = self.status.lock().expect("status lock").clone();
        {
            let q = self.queue.lock().expect("queue lock");
            s.queue_depth = q.dirty.len();
            let oldest_dirty = q.dirty.values().min().copied();
            let running = *self.ingest_started.lock().expect("ingest lock");
            let oldest = match (oldest_dirty, running) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            s.lag_seconds = oldest.map_or(0, |t| t.elapsed().as_secs());
        }
        let planned = self.planned.load(Ordering::SeqCst);
        let done = self.done.load(Ordering::SeqCst);
        s.objects_pending = if s.state == "ingesting" {
            planned.saturating_sub(done)
        } else {
            0
        };
        s.heartbeat_at = unix_now();
        if let Ok(text) = serde_json::to_string_pretty(&s) {
            let tmp = data_dir.join(format!(".{STATUS_FILE}.tmp"));
            if std::fs::write(&tmp, text).is_ok() {
                let _ = std::fs::rename(&tmp, data_dir.join(STATUS_FILE));
            }
        }
    }

    fn set_state(&self, state: &str) {
        self.status.lock().expect("status lock").state = state.to_string();
    }
}

/// Run the daemon until `shutdown` completes (the binary passes SIGINT/SIGTERM), or until its
/// writer dies (then `daemon.json` says `failed` and the error is returned).
pub fn serve(
    data_dir: &Path,
    settings: Settings,
    options: ServeOptions,
    shutdown: impl Future<Output = ()>,
) -> Result<()> {
    if options.watch.is_empty() && options.s3.is_empty() && options.inventory.is_none() {
        return Err(Error::Config {
            path: "idx serve".to_string(),
            message: "nothing to serve: give --watch DIR, --s3 s3://bucket/prefix, or list them in [serve] of idx.toml".to_string(),
        });
    }
    let mut index = Index::open_write(data_dir)?;
    let mut locals: Vec<(PathBuf, String)> = Vec::new();
    for dir in &options.watch {
        let abs = std::fs::canonicalize(dir).map_err(|source| Error::Io {
            path: dir.clone(),
            source,
        })?;
        let key = abs.display().to_string();
        locals.push((abs, key));
    }
    let mut remote: Vec<String> = options.s3.clone();
    if remote.is_empty() && options.inventory.is_some() {
        remote.push(String::new()); // the inventory's own bucket
    }
    let sources: Vec<String> = locals
        .iter()
        .map(|(_, k)| k.clone())
        .chain(remote.iter().map(|r| {
            if r.is_empty() {
                INVENTORY_SOURCE.to_string()
            } else {
                r.clone()
            }
        }))
        .collect();
    let stop = Arc::new(AtomicBool::new(false));
    let shared = Arc::new(Shared {
        queue: Mutex::new(Queue::default()),
        wake: Condvar::new(),
        status: Mutex::new(DaemonStatus {
            pid: std::process::id(),
            started_at: unix_now(),
            heartbeat_at: unix_now(),
            state: "starting".to_string(),
            sources: sources.clone(),
            ..DaemonStatus::default()
        }),
        stop: stop.clone(),
        planned: Arc::new(AtomicU64::new(0)),
        done: Arc::new(AtomicU64::new(0)),
        ingest_started: Mutex::new(None),
    });
    // Everything is dirty at start: a restart after a crash converges to the sources.
    for s in &sources {
        shared.mark(s);
    }
    shared.write_status(data_dir);

    // Folder events → dirty marks.
    let watcher = watch(&locals, data_dir, shared.clone())?;

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::Config {
            path: "idx serve".to_string(),
            message: format!("cannot start the runtime: {e}"),
        })?;
    // The writer reports how it ended, whether it returned or panicked.
    let (ended_tx, mut ended_rx) = tokio::sync::oneshot::channel::<Result<()>>();
    let writer = {
        let shared = shared.clone();
        let dir = data_dir.to_path_buf();
        let locals = locals.clone();
        let options = options.clone();
        std::thread::Builder::new()
            .name("idx-writer".to_string())
            .spawn(move || {
                let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    writer_loop(&mut index, &settings, &locals, &options, &shared, &dir)
                }));
                // Close the database before anyone hears that the writer ended, so a clean
                // stop leaves a clean file.
                drop(index);
                let ended = run.unwrap_or_else(|panic| {
                    Err(Error::Invariant(format!(
                        "the writer thread panicked: {}",
                        crate::pii::bounded_excerpt(&crate::error::panic_message(panic.as_ref()))
                    )))
                });
                let _ = ended_tx.send(ended);
            })
            .map_err(|source| Error::Io {
                path: data_dir.to_path_buf(),
                source,
            })?
    };
    info!(sources = ?sources, "idx serve: running");
    let status_now = |shared: &Arc<Shared>| {
        let shared = shared.clone();
        let dir = data_dir.to_path_buf();
        tokio::task::spawn_blocking(move || shared.write_status(&dir))
    };
    let outcome: Result<()> = runtime.block_on(async {
        let mut heartbeat = tokio::time::interval(options.heartbeat);
        let mut rescan = tokio::time::interval(options.rescan);
        let mut poll = tokio::time::interval(options.poll);
        rescan.tick().await;
        poll.tick().await;
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                _ = &mut shutdown => { info!("shutdown requested: stopping"); break; }
                ended = &mut ended_rx => {
                    // The writer only returns when asked to stop: anything else is a death.
                    let error = match ended {
                        Ok(Err(e)) => e,
                        Ok(Ok(())) => Error::Invariant("the writer stopped on its own".to_string()),
                        Err(_) => Error::Invariant("the writer vanished without a word".to_string()),
                    };
                    return Err(error);
                }
                _ = heartbeat.tick() => { let _ = status_now(&shared).await; }
                _ = rescan.tick() => {
                    for (_, key) in &locals { shared.mark(key); }
                }
                _ = poll.tick() => {
                    for r in &remote { shared.mark(if r.is_empty() { INVENTORY_SOURCE } else { r }); }
                }
            }
        }
        // Stop taking work; the writer commits what its ingest has read and returns.
        stop.store(true, Ordering::SeqCst);
        shared.set_state("stopping");
        {
            let mut q = shared.queue.lock().expect("queue lock");
            q.stopping = true;
            shared.wake.notify_all();
        }
        let _ = status_now(&shared).await;
        match ended_rx.await {
            Ok(ended) => ended,
            Err(_) => Err(Error::Invariant("the writer vanished without a word".to_string())),
        }
    });
    drop(watcher);
    // It has reported already; this only waits for its last instructions (on a failure, the
    // report came from inside the thread, which ends right after).
    let _ = writer.join();
    match &outcome {
        Ok(()) => {
            shared.set_state("stopped");
            info!("idx serve: stopped");
        }
        Err(e) => {
            error!(error = %e, "idx serve: the writer died; exiting so the supervisor restarts the daemon");
            let mut status = shared.status.lock().expect("status lock");
            status.state = "failed".to_string();
            status.last_error = Some(LastError {
                object: "writer".to_string(),
                error: e.to_string(),
                at: unix_now(),
            });
        }
    }
    shared.write_status(data_dir);
    outcome
}

/// Watch every local folder; an event under a folder marks it dirty.
fn watch(
    locals: &[(PathBuf, String)],
    data_dir: &Path,
    shared: Arc<Shared>,
) -> Result<Option<notify::RecommendedWatcher>> {
    let data_dir = std::fs::canonicalize(data_dir).unwrap_or_else(|_| data_dir.to_path_buf());
    use notify::Watcher;
    if locals.is_empty() {
        return Ok(None);
    }
    let roots: Vec<(PathBuf, String)> = locals.to_vec();
    let handler = move |event: notify::Result<notify::Event>| match event {
        // Reads (the ingest's own) change nothing; the index's own files are not sources.
        Ok(event) if matches!(event.kind, notify::EventKind::Access(_)) => {}
        Ok(event) => {
            for (root, key) in &roots {
                if event
                    .paths
                    .iter()
                    .any(|p| p.starts_with(root) && !p.starts_with(&data_dir))
                {
                    shared.mark(key);
                }
            }
        }
        Err(e) => warn!(error = %e, "folder watch error (the periodic rescan covers it)"),
    };
    let mut watcher = notify::recommended_watcher(handler).map_err(|e| Error::Config {
        path: "idx serve".to_string(),
        message: format!("cannot watch folders: {e}"),
    })?;
    for (root, _) in locals {
        watcher
            .watch(root, notify::RecursiveMode::Recursive)
            .map_err(|e| Error::Config {
                path: root.display().to_string(),
                message: format!("cannot watch: {e}"),
            })?;
    }
    Ok(Some(watcher))
}

/// The one writer: wait for dirty sources, gather events for the debounce time, ingest them.
fn writer_loop(
    index: &mut Index,
    settings: &Settings,
    locals: &[(PathBuf, String)],
    options: &ServeOptions,
    shared: &Shared,
    data_dir: &Path,
) -> Result<()> {
    let mut ingests_started = 0u64;
    loop {
        {
            let mut q = shared.queue.lock().expect("queue lock");
            while q.dirty.is_empty() && !q.stopping {
                shared.set_state("idle");
                q = shared.wake.wait(q).expect("queue lock");
            }
            if q.stopping {
                return Ok(());
            }
        }
        std::thread::sleep(options.debounce);
        let batch: Vec<String> = {
            let mut q = shared.queue.lock().expect("queue lock");
            if q.stopping {
                return Ok(());
            }
            let started = q.dirty.values().min().copied();
            *shared.ingest_started.lock().expect("ingest lock") = started;
            std::mem::take(&mut q.dirty).into_keys().collect()
        };
        shared.set_state("ingesting");
        shared.write_status(data_dir);
        let mut paths: Vec<PathBuf> = Vec::new();
        for source in &batch {
            if let Some((abs, _)) = locals.iter().find(|(_, k)| k == source) {
                paths.push(abs.clone());
            } else if source != INVENTORY_SOURCE {
                paths.push(PathBuf::from(source));
            }
        }
        let mut ingest_options = options.ingest.clone();
        ingest_options.stop = Some(shared.stop.clone());
        // The inventory concerns the S3 sources only: a folder's event does not list the bucket.
        let remote_dirty = batch.iter().any(|s| {
            s == INVENTORY_SOURCE || SourceArg::parse(Path::new(s)).is_ok_and(|a| a.is_remote())
        });
        ingest_options.inventory = options.inventory.clone().filter(|_| remote_dirty);
        ingest_options.counters = Some((shared.planned.clone(), shared.done.clone()));
        shared.planned.store(0, Ordering::SeqCst);
        shared.done.store(0, Ordering::SeqCst);
        ingests_started += 1;
        if crate::failpoint::at(crate::failpoint::DAEMON_WRITER_PANIC, ingests_started) {
            panic!("fail point {}", crate::failpoint::DAEMON_WRITER_PANIC);
        }
        let result = ingest(index, settings, &paths, &ingest_options);
        *shared.ingest_started.lock().expect("ingest lock") = None;
        let mut status = shared.status.lock().expect("status lock");
        status.ingests += 1;
        let mut rows_changed = false;
        match result {
            Ok(report) => {
                rows_changed =
                    report.objects_new + report.objects_changed + report.objects_deleted > 0;
                status.rows_added += report.rows_added;
                status.rows_removed += report.rows_removed;
                if let Some(f) = report.failures.last().or(report.scan_errors.last()) {
                    status.last_error = Some(LastError {
                        object: f.key.clone(),
                        error: f.error.clone(),
                        at: unix_now(),
                    });
                }
                info!(
                    sources = batch.len(),
                    new = report.objects_new,
                    changed = report.objects_changed,
                    deleted = report.objects_deleted,
                    failed = report.objects_failed,
                    rows_added = report.rows_added,
                    rows_removed = report.rows_removed,
                    "ingest done"
                );
            }
            Err(e) => {
                error!(error = %e, sources = ?batch, "ingest failed; retried on the next change or rescan");
                status.last_error = Some(LastError {
                    object: batch.join(", "),
                    error: e.to_string(),
                    at: unix_now(),
                });
            }
        }
        drop(status);
        // The derive recipes follow what was read (`derive`): their rows are indexed by the
        // same writer, before the next batch.
        if !shared.stop.load(Ordering::SeqCst) {
            derive_after_ingest(index, settings, &ingest_options, rows_changed, shared);
        }
        // New rows are checked against the benchmark sets before the next batch.
        if rows_changed && !shared.stop.load(Ordering::SeqCst) {
            match crate::decontaminate::refresh(&index.store, settings) {
                Ok(r) if r.checked + r.removed > 0 => info!(
                    checked = r.checked,
                    matched = r.matched,
                    removed = r.removed,
                    "decontamination checks updated"
                ),
                Ok(_) => {}
                Err(e) => {
                    warn!(error = %e, "decontamination checks failed; retried after the next ingest");
                    shared.status.lock().expect("status lock").last_error = Some(LastError {
                        object: "decontamination".to_string(),
                        error: e.to_string(),
                        at: unix_now(),
                    });
                }
            }
        }
        if shared.stop.load(Ordering::SeqCst) {
            return Ok(());
        }
        shared.set_state("idle");
        shared.write_status(data_dir);
    }
}

/// Run the derive recipes after an ingest when something changed; a failure is logged and
/// shown as the daemon's last error, and retried after the next ingest.
fn derive_after_ingest(
    index: &mut Index,
    settings: &Settings,
    options: &IngestOptions,
    rows_changed: bool,
    shared: &Shared,
) {
    let outcome = crate::derive::needed(index, settings, rows_changed).and_then(|needed| {
        if needed {
            crate::derive::run(index, settings, None, options).map(Some)
        } else {
            Ok(None)
        }
    });
    match outcome {
        Ok(Some(report)) => {
            let added = report.ingest.as_ref().map_or(0, |i| i.rows_added);
            let removed = report.ingest.as_ref().map_or(0, |i| i.rows_removed);
            let mut status = shared.status.lock().expect("status lock");
            status.rows_added += added;
            status.rows_removed += removed;
            info!(
                recipes = report.recipes.len(),
                written = report.files_written,
                removed_objects = report.files_removed,
                rows_added = added,
                rows_removed = removed,
                "derive done"
            );
        }
        Ok(None) => {}
        Err(e) => {
            error!(error = %e, "derive failed; retried after the next ingest");
            shared.status.lock().expect("status lock").last_error = Some(LastError {
                object: crate::source::derived::DERIVED_SOURCE.to_string(),
                error: e.to_string(),
                at: unix_now(),
            });
        }
    }
}
