//! S3 sources against a real S3 protocol server on loopback: a prefix ingested like a folder and
//! followed through additions, changes and deletions; an inventory in the original
//! `s3_manifest.json` shape; a forbidden object reported while the rest ingests; an export
//! uploaded to S3 with the manifest last.

use std::path::PathBuf;
use std::sync::atomic::Ordering;

use super::common::{chat, hashes_of, status_of, Fixture};
use super::s3server::S3Server;
use idx::config::Settings;
use idx::curriculum::Curriculum;
use idx::index::Index;
use idx::ingest::{ingest, IngestOptions, IngestReport};
use idx::source::s3::{S3Client, S3Url};

fn settings(server: &S3Server) -> Settings {
    let mut s = Settings::builtin();
    s.idx.s3 = server.config();
    s
}

fn run(f: &Fixture, server: &S3Server, sources: &[&str], inventory: Option<&str>) -> IngestReport {
    let mut index = Index::open_write(&f.index_dir).unwrap();
    let paths: Vec<PathBuf> = sources.iter().map(PathBuf::from).collect();
    let options = IngestOptions {
        inventory: inventory.map(str::to_string),
        ..Default::default()
    };
    ingest(&mut index, &settings(server), &paths, &options).unwrap()
}

fn lines(n: usize, tag: &str) -> String {
    (0..n)
        .map(|i| {
            chat(
                &format!("{tag} question {i}"),
                &format!("{tag} answer number {i}"),
            ) + "\n"
        })
        .collect()
}

#[test]
fn a_prefix_is_ingested_like_a_folder_and_followed() {
    let server = S3Server::start();
    server.bucket("pixel-data");
    server.put(
        "pixel-data",
        "datasets/sarcasm/a.jsonl",
        lines(5, "sarcasm"),
    );
    server.put("pixel-data", "datasets/cptsd/b.jsonl", lines(4, "cptsd"));
    server.put(
        "pixel-data",
        "datasets/cptsd/c.jsonl.gz",
        gzip(&lines(3, "gz")),
    );
    server.put("pixel-data", "datasets/README.md", "not data");
    server.put(
        "pixel-data",
        "elsewhere/x.jsonl",
        lines(2, "outside the prefix"),
    );
    let f = Fixture::new();
    let r = run(&f, &server, &["s3://pixel-data/datasets"], None);
    assert_eq!(
        (r.objects_new, r.objects_skipped, r.objects_failed),
        (3, 1, 0),
        "{r:?}"
    );
    assert_eq!(r.rows_added, 12);
    let s = status_of(&f.index_dir);
    assert_eq!(s.totals.unique_rows, 12);
    // The same objects from a local folder give the same rows.
    let local = Fixture::new();
    local.write("sarcasm/a.jsonl", lines(5, "sarcasm"));
    local.ingest();
    assert_eq!(
        hashes_of(&f.index_dir, "s3://pixel-data/datasets/sarcasm/a.jsonl"),
        hashes_of(&local.index_dir, "sarcasm/a.jsonl")
    );
    // Unchanged objects are not fetched again.
    let r = run(&f, &server, &["s3://pixel-data/datasets"], None);
    assert_eq!(
        (r.objects_unchanged, r.objects_new, r.objects_changed),
        (3, 0, 0),
        "{r:?}"
    );
    assert_eq!(r.bytes_read, 0);
    // Add, change, delete.
    server.put("pixel-data", "datasets/sarcasm/new.jsonl", lines(2, "new"));
    server.put("pixel-data", "datasets/cptsd/b.jsonl", lines(6, "cptsd v2"));
    server.delete("pixel-data", "datasets/sarcasm/a.jsonl");
    let r = run(&f, &server, &["s3://pixel-data/datasets"], None);
    assert_eq!(
        (
            r.objects_new,
            r.objects_changed,
            r.objects_deleted,
            r.objects_unchanged
        ),
        (1, 1, 1, 1),
        "{r:?}"
    );
    assert_eq!(status_of(&f.index_dir).totals.unique_rows, 2 + 6 + 3);
    assert!(hashes_of(&f.index_dir, "s3://pixel-data/datasets/sarcasm/a.jsonl").is_empty());
}

fn gzip(text: &str) -> Vec<u8> {
    use std::io::Write;
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(text.as_bytes()).unwrap();
    e.finish().unwrap()
}

#[test]
fn an_inventory_says_what_exists_and_the_listing_cross_checks_it() {
    let server = S3Server::start();
    server.bucket("pixel-data");
    server.put("pixel-data", "datasets/sarcasm/a.jsonl", lines(3, "a"));
    server.put("pixel-data", "datasets/cptsd/b.jsonl", lines(2, "b"));
    server.put(
        "pixel-data",
        "datasets/cptsd/extra.jsonl",
        lines(1, "extra"),
    );
    let object = |key: &str| serde_json::json!({"key": key, "size": 1, "size_formatted": "", "last_modified": "2025-12-01T00:00:00+00:00", "etag": "x"});
    let inventory = serde_json::json!({
        "bucket": "pixel-data",
        "endpoint": "https://s3.example.net",
        "total_objects": 3,
        "categories": {
            "gdrive": {"processed": {"sarcasm": {"count": 1, "objects": [object("datasets/sarcasm/a.jsonl")]}}},
            "acquired": {"count": 2, "objects": [object("datasets/cptsd/b.jsonl"), object("datasets/cptsd/gone.jsonl")]}
        }
    });
    let f = Fixture::new();
    let file = f.write("inventory/s3_manifest.json", inventory.to_string());
    let r = run(&f, &server, &[], Some(file.to_str().unwrap()));
    assert_eq!(r.objects_new, 3, "{r:?}");
    assert_eq!(r.objects_failed, 1);
    assert_eq!(r.failures[0].key, "datasets/cptsd/gone.jsonl");
    assert!(r.failures[0].error.contains("absent from the bucket"));
    assert!(
        r.warnings
            .iter()
            .any(|w| w.contains("1 objects under s3://pixel-data are not in the inventory")),
        "{:?}",
        r.warnings
    );
    // The missing object is recorded as failed, so its family is not `present` by it.
    let s = status_of(&f.index_dir);
    assert_eq!(s.totals.objects_failed, 1);
    // The inventory itself can live in S3, and applies to a prefix.
    server.put(
        "pixel-data",
        "inventory/s3_manifest.json",
        inventory.to_string(),
    );
    let g = Fixture::new();
    let r = run(
        &g,
        &server,
        &["s3://pixel-data/datasets/cptsd"],
        Some("s3://pixel-data/inventory/s3_manifest.json"),
    );
    assert_eq!((r.objects_new, r.objects_failed), (2, 1), "{r:?}");
    // A broken inventory is an error naming it.
    let bad = f.write("inventory/bad.json", "{\"objects\": [{\"key\": \"a\"}]}");
    let mut index = Index::open_write(&f.index_dir).unwrap();
    let options = IngestOptions {
        inventory: Some(bad.to_str().unwrap().to_string()),
        ..Default::default()
    };
    let err = ingest(&mut index, &settings(&server), &[], &options).unwrap_err();
    assert!(
        err.to_string().contains("bad.json") && err.to_string().contains("`size` is missing"),
        "{err}"
    );
}

#[test]
fn a_forbidden_object_is_reported_while_the_rest_ingests() {
    let server = S3Server::start();
    server.bucket("data");
    server.put("data", "sarcasm/ok.jsonl", lines(3, "ok"));
    server.put("data", "sarcasm/forbidden.jsonl", lines(2, "secret"));
    let f = Fixture::new();
    let r = run(&f, &server, &["s3://data"], None);
    assert_eq!((r.objects_new, r.objects_failed), (1, 1), "{r:?}");
    let failure = &r.failures[0];
    assert_eq!(failure.key, "sarcasm/forbidden.jsonl");
    assert!(
        failure.error.contains("s3://data/sarcasm/forbidden.jsonl")
            && failure.error.contains("403"),
        "{}",
        failure.error
    );
    // Retried on the next run: once allowed, it is indexed.
    server.deny.store(false, Ordering::SeqCst);
    let r = run(&f, &server, &["s3://data"], None);
    assert_eq!(
        (r.objects_new, r.objects_unchanged, r.objects_failed),
        (1, 1, 0),
        "{r:?}"
    );
    assert_eq!(status_of(&f.index_dir).totals.unique_rows, 5);
    // A bucket that does not exist is a clear error.
    let mut index = Index::open_write(&f.index_dir).unwrap();
    let err = ingest(
        &mut index,
        &settings(&server),
        &[PathBuf::from("s3://nope/x")],
        &IngestOptions::default(),
    )
    .unwrap_err();
    assert!(err.to_string().contains("s3://nope/x"), "{err}");
    assert_eq!(err.kind(), idx::error::ErrorKind::NotFound, "{err}");
    assert!(!err.is_retryable());
}

#[test]
fn an_export_is_uploaded_with_its_manifest_last() {
    let server = S3Server::start();
    server.bucket("exports");
    let f = Fixture::new();
    super::export::populate(&f);
    f.ingest();
    let client = S3Client::connect(&server.config()).unwrap();
    let url = S3Url::parse("s3://exports/run-1").unwrap();
    let store = Index::open_store_read(&f.index_dir).unwrap();
    let view = store.read().unwrap();
    let mut options = super::export::options();
    options.shard_bytes = 200 * 1024;
    let staging = f.index_dir.with_file_name("staging");
    let summary = idx::export::export_to_s3(
        &view,
        &f.settings,
        &Curriculum::load(None).unwrap(),
        &idx::export::S3Target {
            url: &url,
            client: &client,
            staging: &staging,
        },
        &options,
        &mut |_| {},
    )
    .unwrap();
    assert_eq!(summary.manifest, "s3://exports/run-1/manifest.json");
    assert!(!staging.exists(), "the staging folder is removed");
    // The uploaded objects are byte for byte the local export, and verify.
    let local = f.index_dir.with_file_name("local");
    super::export::export_index(&f.index_dir, &f.settings, &local, &options);
    let manifest = server.read("exports", "run-1/manifest.json");
    assert_eq!(
        manifest,
        std::fs::read(local.join("manifest.json")).unwrap()
    );
    let m = idx::export::Manifest::read(&local.join("manifest.json")).unwrap();
    for file in m.shards.iter().map(|s| &s.file).chain(m.files.iter()) {
        assert_eq!(
            server.read("exports", &format!("run-1/{}", file.path)),
            std::fs::read(local.join(&file.path)).unwrap(),
            "{}",
            file.path
        );
    }
}

#[test]
fn large_files_go_up_in_multipart_parts() {
    let server = S3Server::start();
    server.bucket("exports");
    let mut config = server.config();
    config.multipart_bytes = 5 << 20;
    let client = S3Client::connect(&config).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("big.jsonl");
    let mut rng = idx::rng::Rng(0x0BAD_CAFE_0000_0001);
    let body: Vec<u8> = (0..(11 << 20) + 12_345)
        .map(|_| b'a' + (rng.next() % 26) as u8)
        .collect();
    std::fs::write(&path, &body).unwrap();
    client.upload(&path, "exports", "big/big.jsonl").unwrap();
    assert!(server.read("exports", "big/big.jsonl") == body);
    // No multipart leftovers in the store.
    let leftovers: Vec<_> = std::fs::read_dir(&server.root)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with(".upload"))
        .collect();
    assert!(leftovers.is_empty());
}

/// Regression: with an inventory, a failed ListObjectsV2 made the scan go by the inventory alone
/// while still claiming the whole prefix, so objects newer than the inventory were deleted.
#[test]
fn a_denied_listing_never_deletes_what_the_inventory_does_not_list() {
    let server = S3Server::start();
    server.bucket("pixel-data");
    server.put("pixel-data", "datasets/sarcasm/a.jsonl", lines(3, "a"));
    server.put(
        "pixel-data",
        "datasets/sarcasm/newer.jsonl",
        lines(2, "newer"),
    );
    let object = |key: &str| serde_json::json!({"key": key, "size": 1, "last_modified": "2025-12-01T00:00:00+00:00", "etag": "x"});
    let inventory = serde_json::json!({
        "bucket": "pixel-data",
        "objects": [object("datasets/sarcasm/a.jsonl")]
    });
    let f = Fixture::new();
    let file = f.write("inventory/s3_manifest.json", inventory.to_string());
    let inv = Some(file.to_str().unwrap());
    let r = run(&f, &server, &["s3://pixel-data/datasets"], inv);
    assert_eq!(r.objects_new, 2, "{r:?}");
    let before = hashes_of(&f.index_dir, "sarcasm/a.jsonl");

    // Credentials without ListBucket: the inventory's keys are scanned, nothing else deleted.
    server.deny_list.store(true, Ordering::SeqCst);
    // (The inventory's own version of a.jsonl differs from the listing's: it is read again.)
    let r = run(&f, &server, &["s3://pixel-data/datasets"], inv);
    assert_eq!(r.objects_deleted, 0, "{r:?}");
    assert!(
        r.warnings
            .iter()
            .any(|w| w.contains("going by the inventory alone")),
        "{:?}",
        r.warnings
    );
    assert_eq!(hashes_of(&f.index_dir, "sarcasm/newer.jsonl").len(), 2);
    assert_eq!(hashes_of(&f.index_dir, "sarcasm/a.jsonl"), before);

    // Without an inventory, a failed listing changes nothing and says so; with another source
    // beside it, that source is still indexed.
    f.write("local/sarcasm/l.jsonl", lines(1, "local"));
    let r = run(
        &f,
        &server,
        &[
            "s3://pixel-data/datasets",
            f.data.join("local").to_str().unwrap(),
        ],
        None,
    );
    assert_eq!((r.objects_deleted, r.rows_removed), (0, 0), "{r:?}");
    assert_eq!(r.objects_new, 1, "{r:?}");
    assert!(
        r.scan_errors[0].key == "s3://pixel-data/datasets"
            && r.scan_errors[0].error.contains("403"),
        "{:?}",
        r.scan_errors
    );
    assert_eq!(hashes_of(&f.index_dir, "sarcasm/a.jsonl").len(), 3);
    assert_eq!(hashes_of(&f.index_dir, "sarcasm/newer.jsonl").len(), 2);
}

#[test]
fn server_errors_on_downloads_are_retried_by_the_sdk_and_the_rest_ingests() {
    let server = S3Server::start();
    server.bucket("data");
    server.put("data", "sarcasm/a.jsonl", lines(3, "a"));
    server.put("data", "sarcasm/b.jsonl", lines(2, "b"));
    // One 500 per object: the SDK's retry (max_attempts 2) absorbs each.
    server.fail_gets.store(1, Ordering::SeqCst);
    let f = Fixture::new();
    let r = run(&f, &server, &["s3://data"], None);
    assert_eq!((r.objects_new, r.objects_failed), (2, 0), "{r:?}");
    // More 500s than attempts: that object fails with its key and status, the next is indexed,
    // and the failed one is indexed by the next run.
    server.put("data", "sarcasm/c.jsonl", lines(1, "c"));
    server.put("data", "sarcasm/d.jsonl", lines(1, "d"));
    server.fail_gets.store(2, Ordering::SeqCst);
    let r = run(&f, &server, &["s3://data"], None);
    assert_eq!((r.objects_new, r.objects_failed), (1, 1), "{r:?}");
    assert!(
        r.failures[0].error.contains("s3://data/sarcasm/c.jsonl")
            && r.failures[0].error.contains("500"),
        "{:?}",
        r.failures
    );
    let r = run(&f, &server, &["s3://data"], None);
    assert_eq!((r.objects_new, r.objects_failed), (1, 0), "{r:?}");
    assert_eq!(status_of(&f.index_dir).totals.unique_rows, 7);
}

#[test]
fn a_connection_dropped_mid_body_is_fetched_again_and_never_half_indexed() {
    let server = S3Server::start();
    server.bucket("data");
    server.put("data", "sarcasm/a.jsonl", lines(40, "a"));
    server.put("data", "sarcasm/b.jsonl", lines(30, "b"));
    // One broken download: fetched again, both objects whole.
    server.cut_bodies.store(1, Ordering::SeqCst);
    let f = Fixture::new();
    let r = run(&f, &server, &["s3://data"], None);
    assert_eq!((r.objects_new, r.objects_failed), (2, 0), "{r:?}");
    assert_eq!(
        server.cut_bodies.load(Ordering::SeqCst),
        0,
        "the cut happened"
    );
    assert_eq!(hashes_of(&f.index_dir, "sarcasm/a.jsonl").len(), 40);
    assert_eq!(hashes_of(&f.index_dir, "sarcasm/b.jsonl").len(), 30);
    // A connection that breaks on every attempt: the object fails whole (its old rows kept),
    // with the reason, and the next run indexes the new version.
    server.put("data", "sarcasm/a.jsonl", lines(45, "a2"));
    server.cut_bodies.store(3, Ordering::SeqCst);
    let r = run(&f, &server, &["s3://data"], None);
    assert_eq!((r.objects_changed, r.objects_failed), (0, 1), "{r:?}");
    assert!(
        r.failures[0].error.contains("connection lost"),
        "{:?}",
        r.failures
    );
    assert_eq!(hashes_of(&f.index_dir, "sarcasm/a.jsonl").len(), 40);
    let r = run(&f, &server, &["s3://data"], None);
    assert_eq!((r.objects_changed, r.objects_failed), (1, 0), "{r:?}");
    assert_eq!(hashes_of(&f.index_dir, "sarcasm/a.jsonl").len(), 45);
}

/// Parquet and Arrow objects under a prefix are read like local files (spooled, then read by
/// row group), and `idx init` proposes configs for the prefix.
#[test]
fn columnar_objects_and_init_work_on_a_prefix() {
    use super::own_data::{arrow_stream_of, batch_of, parquet_of};
    let server = S3Server::start();
    server.bucket("own");
    let qa = batch_of(
        r#"{"question": "How do I ask for help at work?", "answer": "Name one task and one person."}
{"question": "Why do Sundays feel heavy?", "answer": "Endings and Mondays meet there."}
{"question": "Can I skip the gym guilt-free?", "answer": "Rest is part of training."}
"#,
    );
    server.put("own", "drop/forum/answers.parquet", parquet_of(&qa, 2));
    let chats = batch_of(
        r#"{"messages": [{"role": "user", "content": "I keep procrastinating."}, {"role": "assistant", "content": "What is the smallest first step?"}]}
"#,
    );
    server.put(
        "own",
        "drop/hf/data-00000-of-00001.arrow",
        arrow_stream_of(&chats),
    );

    let s = settings(&server);
    let source = idx::source::open(
        idx::source::SourceArg::parse(std::path::Path::new("s3://own/drop")).unwrap(),
        &s.idx.s3,
        None,
    )
    .unwrap();
    let spool = tempfile::tempdir().unwrap();
    let plan = idx::init::init(
        source.as_ref(),
        &s,
        idx::parse::Limits::default(),
        spool.path(),
    )
    .unwrap();
    let families: Vec<(&str, u64)> = plan
        .families
        .iter()
        .map(|f| (f.name.as_str(), f.kinds.values().sum()))
        .collect();
    assert_eq!(families, [("forum", 3), ("hf", 1)]);
    assert!(plan.unreadable.is_empty());
    assert!(plan.files["families.toml"].contains("globs = [\"forum/**\"]"));

    let f = Fixture::new();
    let r = run(&f, &server, &["s3://own/drop"], None);
    assert_eq!(
        (r.rows_added, r.rejected_rows),
        (4, 0),
        "{:?}",
        r.rejections
    );
    assert_eq!(hashes_of(&f.index_dir, "forum/answers.parquet").len(), 3);
}

#[test]
fn signatures_go_to_s3_and_assignments_come_from_it() {
    use super::clusters::base;
    use idx::scale::{export_signatures_to_s3, import_assignments_from_s3, SignatureOptions};
    let server = S3Server::start();
    server.bucket("scale");
    let f = Fixture::new();
    let (a, b) = (base(1), base(2));
    f.write("chats.jsonl", format!("{}\n{}\n", a.line(), b.line()));
    f.ingest();
    let client = S3Client::connect(&server.config()).unwrap();
    let url = S3Url::parse("s3://scale/signatures").unwrap();
    let staging = f.index_dir.with_file_name("staging");
    let export = |incremental: bool| {
        let store = Index::open_store_read(&f.index_dir).unwrap();
        let options = SignatureOptions {
            shard: "s1".into(),
            out: PathBuf::new(),
            incremental,
        };
        export_signatures_to_s3(
            &store.read().unwrap(),
            &f.settings,
            &options,
            &client,
            &url,
            &staging,
            &mut |_| {},
        )
        .unwrap()
    };
    idx::scale::claim_shard(&Index::open_write(&f.index_dir).unwrap().store, "s1").unwrap();
    let first = export(false);
    assert_eq!((first.generation, first.written), (1, 2));
    assert_eq!(first.file, "s3://scale/signatures/s1/gen-000001.parquet");
    assert!(!staging.exists(), "the staging folder is removed");
    // The next incremental generation reads the previous one back from S3: nothing changed.
    let second = export(true);
    assert_eq!(
        (second.generation, second.written, second.deleted),
        (2, 0, 0)
    );
    let shard: serde_json::Value =
        serde_json::from_slice(&server.read("scale", "signatures/s1/shard.json")).unwrap();
    assert_eq!(shard["generations"].as_array().unwrap().len(), 2);
    assert!(!server
        .read("scale", "signatures/s1/gen-000002.parquet")
        .is_empty());

    // An assignment table on S3, as the job writes it, is fetched and imported.
    let local = f.index_dir.with_file_name("table");
    super::scale::write_table(
        &local,
        &[("s1", &first.state_digest)],
        &[("s1", a.hash(), b.hash().min(a.hash()), true, a.hash())],
    );
    for name in ["part-0.parquet", "_idx.json"] {
        server.put(
            "scale",
            &format!("job/assignments/{name}"),
            std::fs::read(local.join(name)).unwrap(),
        );
    }
    let index = Index::open_write(&f.index_dir).unwrap();
    let summary = import_assignments_from_s3(
        &index.store,
        &client,
        &S3Url::parse("s3://scale/job/assignments").unwrap(),
        &staging,
        None,
        false,
    )
    .unwrap();
    assert_eq!((summary.shard.as_str(), summary.imported), ("s1", 1));
    assert!(!staging.exists());
}
