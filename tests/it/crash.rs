//! A `kill -9` in the middle of an ingest loses nothing committed and leaves an index that a
//! re-run brings to exactly the state of one uninterrupted ingest.

use std::process::Command;
use std::time::Duration;

use super::common::{chat, digest_of, status_of, Fixture};

#[test]
fn kill_9_during_ingest_then_rerun_converges_to_the_one_shot_state() {
    let f = Fixture::new();
    for file in 0..40 {
        let body: String = (0..400)
            .map(|i| {
                format!(
                    "{}\n",
                    chat(
                        &format!(
                            "file {file} line {i}: I keep worrying about things {}",
                            i % 37
                        ),
                        "Tell me more about what the worry feels like."
                    )
                )
            })
            .collect();
        f.write(&format!("drop/part_{file:02}.jsonl"), body);
    }
    let killed_dir = f.with_index("killed");
    let mut child = Command::new(env!("CARGO_BIN_EXE_idx"))
        .arg("--data-dir")
        .arg(&killed_dir)
        .args(["ingest", "--batch-bytes", "20000"])
        .arg(&f.data)
        .spawn()
        .unwrap();
    // Kill once at least one batch is committed, while the run is still going.
    let db = killed_dir.join("index.redb");
    let mut waited = Duration::ZERO;
    while waited < Duration::from_secs(60) {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        if db.exists() && std::fs::metadata(&db).map(|m| m.len()).unwrap_or(0) > 200_000 {
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
        waited += Duration::from_millis(5);
    }
    let still_running = child.try_wait().unwrap().is_none();
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        still_running,
        "the ingest finished before it could be killed; grow the corpus"
    );

    // Readers refuse the unclean file (they never write), naming the way out; `idx recover`
    // repairs it; it is consistent, and a re-run completes it.
    let out = super::common::run_idx(&killed_dir, &["status"]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("idx recover"), "{stderr}");
    let out = super::common::run_idx(&killed_dir, &["recover"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let partial = status_of(&killed_dir);
    assert!(partial.totals.rows < 16_000, "{:?}", partial.totals);
    f.ingest_into(&killed_dir, [&f.data]);

    let one_shot = f.with_index("one-shot");
    f.ingest_into(&one_shot, [&f.data]);
    assert_eq!(digest_of(&killed_dir), digest_of(&one_shot));
    assert_eq!(status_of(&killed_dir).totals.rows, 16_000);
}
