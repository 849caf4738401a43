//! `idx serve` as a real child process: a file dropped into a watched folder becomes queryable
//! from another process within seconds; SIGTERM exits cleanly; `kill -9` during a large ingest
//! followed by a restart converges to the state of a one-shot `idx ingest`.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::common::{chat, digest_of, json_of as json, run_idx as idx, Fixture};

fn serve(data_dir: &Path, watch: &Path, extra: &[&str]) -> Child {
    serve_with(data_dir, watch, extra, None)
}

/// `idx serve` with fail points armed (see `idx::failpoint`), when given.
fn serve_with(data_dir: &Path, watch: &Path, extra: &[&str], failpoints: Option<&str>) -> Child {
    let mut command = Command::new(env!("CARGO_BIN_EXE_idx"));
    command
        .arg("--data-dir")
        .arg(data_dir)
        .arg("serve")
        .arg("--watch")
        .arg(watch)
        .args(extra)
        .env_remove("RUST_LOG")
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    if let Some(points) = failpoints {
        command.env(idx::failpoint::ENV, points);
    }
    command.spawn().expect("start idx serve")
}

/// Poll `check` until it holds or `limit` passes.
fn wait_for(limit: Duration, what: &str, mut check: impl FnMut() -> bool) {
    let start = Instant::now();
    while start.elapsed() < limit {
        if check() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("timed out after {limit:?} waiting for {what}");
}

fn daemon(data_dir: &Path) -> Option<serde_json::Value> {
    if !data_dir.join("index.redb").exists() {
        return None;
    }
    let out = idx(data_dir, &["status", "--json"]);
    if !out.status.success() {
        return None;
    }
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
    Some(v["daemon"].clone()).filter(|d| !d.is_null())
}

fn sigterm(child: &Child) {
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

fn wait_exit(child: &mut Child, limit: Duration) -> std::process::ExitStatus {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if start.elapsed() > limit {
            child.kill().ok();
            panic!("idx serve did not exit within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A daemon watching a folder of one row (rescans an hour apart), after its first ingest.
fn serving_one_row() -> (Fixture, Child) {
    let f = Fixture::new();
    f.write(
        "sarcasm/first.jsonl",
        chat("first words here", "first answer") + "\n",
    );
    let child = serve(&f.index_dir, &f.data, &["--rescan-seconds", "3600"]);
    wait_for(Duration::from_secs(30), "the daemon's first ingest", || {
        daemon(&f.index_dir).is_some_and(|d| {
            d["alive"] == true && d["state"] == "idle" && d["ingests"].as_u64() >= Some(1)
        })
    });
    (f, child)
}

#[test]
fn a_dropped_file_is_queryable_from_another_process_and_sigterm_exits_cleanly() {
    let (f, mut child) = serving_one_row();
    // Dropped while the daemon runs: found by another process's query, through file events
    // (the periodic rescan is an hour away).
    f.write(
        "sarcasm/dropped.jsonl",
        chat("an unmistakable phrase about quokkas", "Tell me more.") + "\n",
    );
    let start = Instant::now();
    wait_for(
        Duration::from_secs(20),
        "the dropped row in a text query",
        || {
            let out = idx(&f.index_dir, &["query", "text", "quokkas", "--json"]);
            out.status.success()
                && serde_json::from_slice::<serde_json::Value>(&out.stdout)
                    .is_ok_and(|v| v.as_array().is_some_and(|hits| !hits.is_empty()))
        },
    );
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "took {:?}",
        start.elapsed()
    );
    let status = json(&idx(&f.index_dir, &["status", "--json"]));
    assert_eq!(status["unique_rows"], 2);
    let d = &status["daemon"];
    assert_eq!(d["alive"], true);
    assert_eq!(d["pid"], child.id());
    assert!(
        d["queue_depth"].is_u64() && d["objects_pending"].is_u64() && d["lag_seconds"].is_u64()
    );
    sigterm(&child);
    let exit = wait_exit(&mut child, Duration::from_secs(10));
    assert!(exit.success(), "{exit:?}");
    let d = daemon(&f.index_dir).unwrap();
    assert_eq!(d["alive"], false);
    assert_eq!(d["state"], "stopped");
}

#[test]
fn kill_9_during_a_large_ingest_then_restart_converges_to_the_one_shot_state() {
    let f = Fixture::new();
    for file in 0..30 {
        let body: String = (0..400)
            .map(|i| {
                chat(
                    &format!("file {file} line {i}: worries about {}", i % 41),
                    "Tell me more.",
                ) + "\n"
            })
            .collect();
        f.write(&format!("drop/part_{file:02}.jsonl"), body);
    }
    let mut child = serve(&f.index_dir, &f.data, &["--batch-bytes", "20000"]);
    // Kill once some batches are committed, while the ingest still runs.
    wait_for(Duration::from_secs(60), "a partial ingest", || {
        let db = f.index_dir.join("index.redb");
        db.exists() && std::fs::metadata(&db).map(|m| m.len()).unwrap_or(0) > 200_000
    });
    child.kill().unwrap();
    child.wait().unwrap();
    // Readers refuse the unclean file until a writer recovers it.
    let refused = idx(&f.index_dir, &["status", "--json"]);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("idx recover"));
    json(&idx(&f.index_dir, &["recover", "--json"]));
    let partial = json(&idx(&f.index_dir, &["status", "--json"]));
    assert!(
        partial["rows"].as_u64().unwrap() < 12_000,
        "killed before the end"
    );
    assert_eq!(partial["daemon"]["alive"], false);
    // Restart: it converges.
    let mut child = serve(&f.index_dir, &f.data, &[]);
    wait_for(
        Duration::from_secs(120),
        "the restarted daemon to catch up",
        || {
            daemon(&f.index_dir).is_some_and(|d| {
                d["alive"] == true
                    && d["state"] == "idle"
                    && d["queue_depth"] == 0
                    && d["ingests"].as_u64() >= Some(1)
            })
        },
    );
    sigterm(&child);
    assert!(wait_exit(&mut child, Duration::from_secs(10)).success());
    let one_shot = f.with_index("one-shot");
    json(&idx(
        &one_shot,
        &["ingest", f.data.to_str().unwrap(), "--json"],
    ));
    // Everything but the daemon's record and the commit count (history, not state) agrees.
    let state = |dir: &Path| {
        let mut s = json(&idx(dir, &["status", "--json"]));
        let o = s.as_object_mut().unwrap();
        o.remove("daemon");
        o.remove("commits");
        s
    };
    let (a, b) = (state(&f.index_dir), state(&one_shot));
    assert_eq!(a["rows"], 12_000);
    assert_eq!(a, b);
    assert_eq!(digest_of(&f.index_dir), digest_of(&one_shot));
    // The same rows match a query (all of them: tantivy orders equal scores by its segment
    // layout, which depends on the commit history, so hits are compared as sets).
    let q = |dir: &Path| {
        let hits = json(&idx(
            dir,
            &["query", "text", "\"about 40\"", "--limit", "1000", "--json"],
        ));
        let mut found: Vec<String> = hits
            .as_array()
            .unwrap()
            .iter()
            .map(|h| format!("{} {} {}", h["content_hash"], h["key"], h["line"]))
            .collect();
        found.sort();
        found
    };
    let (qa, qb) = (q(&f.index_dir), q(&one_shot));
    assert!(qa.len() > 200, "{}", qa.len());
    assert_eq!(qa, qb);
}

#[test]
fn an_s3_prefix_is_polled_and_a_failed_object_is_the_last_error() {
    use super::s3server::{S3Server, ACCESS_KEY, SECRET_KEY};
    let server = S3Server::start();
    server.bucket("pixel");
    server.put(
        "pixel",
        "data/sarcasm/a.jsonl",
        chat("polled from s3", "yes") + "\n",
    );
    server.put(
        "pixel",
        "data/sarcasm/forbidden.jsonl",
        chat("hidden", "no") + "\n",
    );
    let f = Fixture::new();
    let mut child = Command::new(env!("CARGO_BIN_EXE_idx"))
        .arg("--data-dir")
        .arg(&f.index_dir)
        .args(["serve", "--s3", "s3://pixel/data", "--poll-seconds", "1"])
        .args(["--s3-endpoint", &server.endpoint, "--s3-path-style"])
        .env("AWS_ACCESS_KEY_ID", ACCESS_KEY)
        .env("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
        .env("AWS_REGION", "us-east-1")
        .env_remove("AWS_PROFILE")
        .env_remove("RUST_LOG")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for(
        Duration::from_secs(30),
        "the forbidden object as the last error",
        || {
            daemon(&f.index_dir).is_some_and(|d| {
                d["last_error"]["object"] == "sarcasm/forbidden.jsonl"
                    && d["last_error"]["error"]
                        .as_str()
                        .is_some_and(|e| e.contains("403"))
            })
        },
    );
    // A new object is picked up by the next poll.
    server.put(
        "pixel",
        "data/sarcasm/b.jsonl",
        chat("arrived later in the bucket", "ok") + "\n",
    );
    wait_for(Duration::from_secs(20), "the new S3 object", || {
        json(&idx(&f.index_dir, &["status", "--json"]))["unique_rows"] == 2
    });
    sigterm(&child);
    assert!(wait_exit(&mut child, Duration::from_secs(10)).success());
}

#[test]
fn a_poisoned_row_dropped_into_a_watched_folder_leaves_the_daemon_healthy() {
    let f = Fixture::new();
    f.write(
        "sarcasm/first.jsonl",
        chat("first words", "first answer") + "\n",
    );
    let mut child = serve_with(
        &f.index_dir,
        &f.data,
        &["--rescan-seconds", "3600"],
        Some("prepare-panic=POISON"),
    );
    wait_for(Duration::from_secs(30), "the first ingest", || {
        daemon(&f.index_dir).is_some_and(|d| d["ingests"].as_u64() >= Some(1))
    });
    f.write(
        "sarcasm/poisoned.jsonl",
        chat("a POISON row", "answer") + "\n" + &chat("a fine row", "a fine answer") + "\n",
    );
    f.write(
        "sarcasm/later.jsonl",
        chat("later words", "later answer") + "\n",
    );
    wait_for(Duration::from_secs(30), "both files indexed", || {
        let out = idx(&f.index_dir, &["status", "--json"]);
        out.status.success()
            && serde_json::from_slice::<serde_json::Value>(&out.stdout)
                .is_ok_and(|s| s["rows"] == 3 && s["rejected_rows"] == 1)
    });
    let d = daemon(&f.index_dir).unwrap();
    assert_eq!(d["alive"], true, "{d}");
    assert_ne!(d["state"], "failed", "{d}");
    let source = json(&idx(
        &f.index_dir,
        &["query", "source", "sarcasm/poisoned.jsonl", "--json"],
    ));
    let rejection = &source[0]["rejections"][0];
    assert_eq!(rejection["line"], 1, "{source}");
    sigterm(&child);
    assert!(wait_exit(&mut child, Duration::from_secs(10)).success());
}

#[test]
fn a_writer_that_dies_is_reported_failed_and_the_process_exits_non_zero() {
    let f = Fixture::new();
    f.write(
        "sarcasm/first.jsonl",
        chat("first words", "first answer") + "\n",
    );
    let mut child = serve_with(
        &f.index_dir,
        &f.data,
        &["--rescan-seconds", "3600"],
        Some("daemon-writer-panic=1"),
    );
    let exit = wait_exit(&mut child, Duration::from_secs(30));
    assert!(!exit.success(), "{exit:?}");
    let status: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(f.index_dir.join(idx::daemon::STATUS_FILE)).unwrap(),
    )
    .unwrap();
    assert_eq!(status["state"], "failed", "{status}");
    let error = status["last_error"]["error"].as_str().unwrap();
    assert!(error.contains("writer thread panicked"), "{error}");
    // `idx status` shows a daemon that is not alive, with the error.
    let d = daemon(&f.index_dir).unwrap();
    assert_eq!(d["alive"], false, "{d}");
    // A restart (what systemd does) resumes and indexes the folder.
    let mut child = serve(&f.index_dir, &f.data, &["--rescan-seconds", "3600"]);
    wait_for(
        Duration::from_secs(30),
        "the restarted daemon's ingest",
        || {
            let out = idx(&f.index_dir, &["status", "--json"]);
            out.status.success()
                && serde_json::from_slice::<serde_json::Value>(&out.stdout)
                    .is_ok_and(|s| s["rows"] == 1)
        },
    );
    sigterm(&child);
    assert!(wait_exit(&mut child, Duration::from_secs(10)).success());
}

#[test]
fn the_daemon_derives_after_reading_a_dropped_file() {
    let (f, mut child) = serving_one_row();
    // Ranked answers in counsel-chat's shape: the shipped recipe pairs the best against the rest.
    f.write(
        "forum/counsel_chat_drop.csv",
        "questionID,questionTitle,questionText,answerText,topic,upvotes\n\
         7,I feel stuck,Nothing moves.,Small steps count; pick one thing you can do today.,stuck,5\n\
         7,I feel stuck,Nothing moves.,Everyone feels stuck so it does not matter at all.,stuck,1\n",
    );
    wait_for(Duration::from_secs(30), "the derived pair", || {
        let out = idx(&f.index_dir, &["status", "--json"]);
        out.status.success()
            && serde_json::from_slice::<serde_json::Value>(&out.stdout)
                .is_ok_and(|s| s["unique_rows"] == 4)
    });
    let status = json(&idx(&f.index_dir, &["status", "--json"]));
    assert_eq!(status["families"]["dpo_preference"]["unique_rows"], 1);
    assert_eq!(status["derived"]["dpo_preference"]["rows"], 1, "{status}");
    sigterm(&child);
    assert!(wait_exit(&mut child, Duration::from_secs(10)).success());
}

#[test]
fn the_daemon_checks_dropped_rows_against_the_loaded_benchmarks() {
    let f = Fixture::new();
    f.write(
        "sarcasm/first.jsonl",
        chat("first words here", "first answer") + "\n",
    );
    let question = "Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May.";
    let bench = f.data.with_file_name("gsm8k.jsonl");
    std::fs::write(
        &bench,
        serde_json::json!({"question": question, "answer": "72"}).to_string() + "\n",
    )
    .unwrap();
    assert!(idx(&f.index_dir, &["ingest", f.data.to_str().unwrap()])
        .status
        .success());
    let loaded = idx(
        &f.index_dir,
        &["decontaminate", "--against", bench.to_str().unwrap()],
    );
    assert!(
        loaded.status.success(),
        "{}",
        String::from_utf8_lossy(&loaded.stderr)
    );
    let mut child = serve(&f.index_dir, &f.data, &["--rescan-seconds", "3600"]);
    wait_for(Duration::from_secs(30), "the daemon's first ingest", || {
        daemon(&f.index_dir).is_some_and(|d| d["alive"] == true && d["state"] == "idle")
    });
    f.write(
        "sarcasm/dropped.jsonl",
        chat(
            "homework",
            &format!("My worksheet says: {question} I am lost."),
        ) + "\n",
    );
    wait_for(Duration::from_secs(30), "the dropped row's check", || {
        let out = idx(&f.index_dir, &["query", "contamination", "--json"]);
        out.status.success()
            && serde_json::from_slice::<serde_json::Value>(&out.stdout)
                .is_ok_and(|a| a["rows"] == 1 && a["unchecked"] == 0)
    });
    let a = json(&idx(&f.index_dir, &["query", "contamination", "--json"]));
    assert_eq!(a["matches"][0]["hits"][0]["item"], "gsm8k.jsonl:1");
    assert!(a["matches"][0]["place"]
        .as_str()
        .unwrap()
        .ends_with("sarcasm/dropped.jsonl:1"));
    sigterm(&child);
    assert!(wait_exit(&mut child, Duration::from_secs(10)).success());
}
