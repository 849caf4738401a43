//! The progress line on stderr, and the counters a watcher (the daemon) reads.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A single progress line on stderr, redrawn at most a few times a second.
pub(super) struct Progress {
    pub(super) enabled: bool,
    pub(super) objects: usize,
    pub(super) total_bytes: u64,
    pub(super) done_objects: usize,
    pub(super) done_bytes: u64,
    pub(super) started: Instant,
    pub(super) last: Instant,
    pub(super) counters: Option<(Arc<AtomicU64>, Arc<AtomicU64>)>,
}

impl Progress {
    pub(super) fn new(
        enabled: bool,
        objects: usize,
        total_bytes: u64,
        counters: Option<(Arc<AtomicU64>, Arc<AtomicU64>)>,
    ) -> Self {
        let now = Instant::now();
        if let Some((planned, done)) = &counters {
            planned.store(objects as u64, Ordering::SeqCst);
            done.store(0, Ordering::SeqCst);
        }
        Progress {
            enabled,
            objects,
            total_bytes,
            done_objects: 0,
            done_bytes: 0,
            started: now,
            last: now - Duration::from_secs(1),
            counters,
        }
    }

    pub(super) fn object_done(&mut self, bytes: u64) {
        self.done_objects += 1;
        self.done_bytes += bytes;
        if let Some((_, done)) = &self.counters {
            done.fetch_add(1, Ordering::SeqCst);
        }
        if self.enabled && self.last.elapsed() >= Duration::from_millis(200) {
            self.last = Instant::now();
            self.draw();
        }
    }

    pub(super) fn draw(&self) {
        let secs = self.started.elapsed().as_secs_f64().max(1e-6);
        eprint!(
            "\ringest: {}/{} objects, {:.1}/{:.1} MB, {:.1} MB/s   ",
            self.done_objects,
            self.objects,
            self.done_bytes as f64 / 1e6,
            self.total_bytes as f64 / 1e6,
            self.done_bytes as f64 / 1e6 / secs
        );
    }

    pub(super) fn finish(&self) {
        if self.enabled && self.objects > 0 {
            self.draw();
            eprintln!();
        }
    }
}
