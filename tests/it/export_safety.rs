//! The export writes and deletes only inside its folder, never through a symbolic link; an
//! interrupted export can be run again and completes, while the export it replaces stays usable
//! until the new one is swapped in; `idx export verify` reports what the manifest does not list,
//! refuses paths that leave the folder, and checks a pinned manifest sha256. Regressions named
//! after what broke.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use super::common::{json_of, run_idx, Fixture};
use super::export::{export_index, options, populate};
use idx::export::verify_export;

fn exported(f: &Fixture, name: &str) -> std::path::PathBuf {
    let out = f.index_dir.with_file_name(name);
    export_index(&f.index_dir, &f.settings, &out, &options());
    out
}

fn try_export(f: &Fixture, out: &Path) -> Result<(), String> {
    let store = idx::index::Index::open_store_read(&f.index_dir).unwrap();
    let view = store.read().unwrap();
    idx::export::export(
        &view,
        &f.settings,
        &idx::curriculum::Curriculum::load(None).unwrap(),
        out,
        &options(),
        &mut |_| {},
    )
    .map(|_| ())
    .map_err(|e| e.to_string())
}

#[test]
fn a_symlink_inside_the_export_is_never_written_or_deleted_through() {
    let f = Fixture::new();
    populate(&f);
    f.ingest();
    let out = exported(&f, "out");
    let outside = f.index_dir.with_file_name("outside");
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::write(outside.join("secret.txt"), "keep me").unwrap();
    // The reported case: a manifest entry `link/secret.txt` with `link` → another folder.
    std::os::unix::fs::symlink(&outside, out.join("link")).unwrap();
    let manifest = out.join("manifest.json");
    let text = std::fs::read_to_string(&manifest).unwrap();
    std::fs::write(
        &manifest,
        text.replacen(
            "\"path\": \"provenance.jsonl\"",
            "\"path\": \"link/secret.txt\"",
            1,
        ),
    )
    .unwrap();
    let err = try_export(&f, &out).unwrap_err();
    assert!(err.contains("link (a symbolic link)"), "{err}");
    assert_eq!(
        std::fs::read_to_string(outside.join("secret.txt")).unwrap(),
        "keep me"
    );
    assert_eq!(
        std::fs::read_dir(&outside).unwrap().count(),
        1,
        "nothing written outside"
    );

    // A `data` folder that is a link: refused, nothing written where it points.
    let out2 = exported(&f, "out2");
    std::fs::remove_dir_all(out2.join("data")).unwrap();
    std::os::unix::fs::symlink(&outside, out2.join("data")).unwrap();
    assert!(try_export(&f, &out2).is_err());
    assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 1);

    // The export folder itself a link: refused, its target untouched.
    let linked = f.index_dir.with_file_name("linked");
    std::os::unix::fs::symlink(&outside, &linked).unwrap();
    let err = try_export(&f, &linked).unwrap_err();
    assert!(err.contains("symbolic link"), "{err}");
    assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 1);
}

#[test]
fn an_interrupted_export_can_be_run_again_and_the_old_one_stays_usable() {
    let f = Fixture::new();
    populate(&f);
    f.ingest();
    let out = exported(&f, "out");
    let manifest = out.join("manifest.json");
    let first = std::fs::read(&manifest).unwrap();
    // What a crash leaves: a half-written staging folder beside the export.
    let staging = f.index_dir.with_file_name(".out.idx-staging");
    std::fs::create_dir_all(staging.join("data/train")).unwrap();
    std::fs::write(staging.join("data/train/half.jsonl"), "{\"trunc").unwrap();
    assert!(
        verify_export(&manifest, None).unwrap().passed,
        "old export still whole"
    );
    try_export(&f, &out).unwrap();
    assert!(!staging.exists());
    assert!(verify_export(&manifest, None).unwrap().passed);
    assert_eq!(
        std::fs::read(&manifest).unwrap(),
        first,
        "same state, same bytes"
    );

    // A crash between moving the old export aside and moving the new one in.
    let aside = f.index_dir.with_file_name(".out.idx-replaced");
    std::fs::rename(&out, &aside).unwrap();
    try_export(&f, &out).unwrap();
    assert!(!aside.exists());
    assert!(verify_export(&manifest, None).unwrap().passed);

    // Real kills at several points of a real export: the folder is always absent or a whole
    // export, and a re-run completes.
    for (i, delay) in [5u64, 20, 60, 150].into_iter().enumerate() {
        let target = f.index_dir.with_file_name(format!("killed-{i}"));
        let mut child = Command::new(env!("CARGO_BIN_EXE_idx"))
            .arg("--data-dir")
            .arg(&f.index_dir)
            .args(["export", "--allow-failing-gates", "--out"])
            .arg(&target)
            .current_dir(f.index_dir.parent().unwrap())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(delay));
        let _ = child.kill();
        child.wait().unwrap();
        if target.exists() {
            assert!(
                verify_export(&target.join("manifest.json"), None)
                    .unwrap()
                    .passed
            );
        }
        let out = run_idx(
            &f.index_dir,
            &[
                "export",
                "--allow-failing-gates",
                "--out",
                target.to_str().unwrap(),
                "--json",
            ],
        );
        json_of(&out);
        assert!(
            verify_export(&target.join("manifest.json"), None)
                .unwrap()
                .passed
        );
    }
}

#[test]
fn export_verify_reports_unlisted_files_paths_outside_and_a_wrong_pin() {
    let f = Fixture::new();
    populate(&f);
    f.ingest();
    let out = exported(&f, "out");
    let manifest = out.join("manifest.json");
    let summary = json_of(&run_idx(
        &f.index_dir,
        &[
            "export",
            "--allow-failing-gates",
            "--out",
            out.to_str().unwrap(),
            "--json",
        ],
    ));
    let pin = summary["manifest_sha256"].as_str().unwrap().to_string();
    let ok = run_idx(
        &f.index_dir,
        &[
            "export",
            "verify",
            manifest.to_str().unwrap(),
            "--sha256",
            &pin,
        ],
    );
    assert_eq!(
        ok.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&ok.stdout)
    );
    let wrong = run_idx(
        &f.index_dir,
        &[
            "export",
            "verify",
            manifest.to_str().unwrap(),
            "--sha256",
            &"0".repeat(64),
        ],
    );
    assert_eq!(wrong.status.code(), Some(4));
    assert!(String::from_utf8_lossy(&wrong.stdout).contains("not the pinned"));

    // An extra shard a trainer globbing data/ would read.
    std::fs::write(out.join("data/train/extra-00000.chatml.jsonl"), "{}\n").unwrap();
    let check = verify_export(&manifest, None).unwrap();
    assert!(!check.passed);
    assert!(
        check
            .problems
            .iter()
            .any(|p| p.starts_with("data/train/extra-00000.chatml.jsonl")),
        "{:?}",
        check.problems
    );
    std::fs::remove_file(out.join("data/train/extra-00000.chatml.jsonl")).unwrap();

    // A manifest path that leaves the folder is named and never read.
    let text = std::fs::read_to_string(&manifest).unwrap();
    std::fs::write(
        &manifest,
        text.replacen(
            "\"path\": \"provenance.jsonl\"",
            "\"path\": \"../../etc/hostname\"",
            1,
        ),
    )
    .unwrap();
    let check = verify_export(&manifest, None).unwrap();
    assert!(
        check
            .problems
            .iter()
            .any(|p| p.contains("../../etc/hostname: not a path inside the export")),
        "{:?}",
        check.problems
    );
}
