//! Fail points: named places in the pipeline where a test can make idx fail on purpose — a
//! worker that panics on one row, a reader that panics in the middle of an object, a process
//! that dies between the redb and the tantivy commit, a disk that refuses a commit, a daemon
//! writer that dies. They are armed only by the `IDX_FAILPOINTS` environment variable
//! (`name=argument`, separated by `;`), read once per process, so the crash tests can drive the
//! real binary; unarmed, each point costs one lookup in an empty list. Nothing here is used for
//! anything but testing how idx survives failures.

use std::sync::LazyLock;

/// The environment variable that arms fail points.
pub const ENV: &str = "IDX_FAILPOINTS";

/// Panic while preparing (redacting, fingerprinting) a row whose text contains the argument.
pub const PREPARE_PANIC: &str = "prepare-panic";
/// Panic while reading an object whose key contains the argument, after `@N` records
/// (`key-part@N`; default after the first record).
pub const READ_PANIC: &str = "read-panic";
/// Abort the process right after the Nth redb commit of a run, before the full-text commit.
pub const ABORT_AFTER_COMMIT: &str = "abort-after-commit";
/// Fail the Nth redb commit of a run as a full disk would.
pub const COMMIT_ERROR: &str = "commit-error";
/// Panic in the daemon's writer thread when it starts its Nth ingest.
pub const DAEMON_WRITER_PANIC: &str = "daemon-writer-panic";

static ARMED: LazyLock<Vec<(String, String)>> = LazyLock::new(|| {
    std::env::var(ENV)
        .unwrap_or_default()
        .split(';')
        .filter_map(|p| {
            let (name, arg) = p.split_once('=').unwrap_or((p, ""));
            let name = name.trim();
            (!name.is_empty()).then(|| (name.to_string(), arg.trim().to_string()))
        })
        .collect()
});

/// The argument of an armed fail point.
pub fn armed(name: &str) -> Option<&'static str> {
    ARMED
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, arg)| arg.as_str())
}

/// A counting fail point: true when the point is armed for the `n`th occurrence (counted from 1
/// by the caller; an argument that is not a number means the first).
pub fn at(name: &str, n: u64) -> bool {
    armed(name).is_some_and(|arg| arg.parse::<u64>().unwrap_or(1) == n)
}
