//! The house's rules that the compiler does not check, held against the source tree: storage is
//! reached only through `store`, and the pure stages know no storage.

use std::path::{Path, PathBuf};

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// A source file's code outside its unit tests.
fn code_of(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap();
    match text.find("#[cfg(test)]") {
        Some(i) => text[..i].to_string(),
        None => text,
    }
}

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// Invariant: only `store` opens redb tables (`error` maps redb's error types).
#[test]
fn only_the_store_opens_redb_tables() {
    let mut files = Vec::new();
    sources(&src(), &mut files);
    let root = src();
    let offenders: Vec<String> = files
        .iter()
        .filter(|p| {
            let rel = p.strip_prefix(&root).unwrap();
            !rel.starts_with("store") && rel != Path::new("error.rs")
        })
        .filter(|p| {
            let code = code_of(p);
            code.contains("redb::")
                || code.contains("open_table(")
                || code.contains("TableDefinition")
        })
        .map(|p| p.display().to_string())
        .collect();
    assert!(
        offenders.is_empty(),
        "redb used outside store: {offenders:?}"
    );
}

/// Invariant: the sources, parsing, normalisation, fingerprints, the near-duplicate policy and
/// the config touch no storage.
#[test]
fn the_pure_stages_know_no_storage() {
    let root = src();
    let mut files = Vec::new();
    for dir in ["source", "parse", "fingerprint", "neardup"] {
        sources(&root.join(dir), &mut files);
    }
    for file in ["normalize.rs", "config.rs", "repair.rs"] {
        files.push(root.join(file));
    }
    for p in &files {
        let code = code_of(p);
        for forbidden in [
            "crate::store",
            "crate::index",
            "crate::search",
            "redb::",
            "tantivy::",
        ] {
            assert!(
                !code.contains(forbidden),
                "{} uses {forbidden}",
                p.display()
            );
        }
    }
}

/// An index written by the format-2 idx (`testdata/index-v2`, from examples/data) is refused by
/// every command with what to do, and left at its version.
#[test]
fn an_index_of_an_older_format_is_refused_with_what_to_do() {
    let tmp = tempfile::tempdir().unwrap();
    let old = tmp.path().join("index-v2");
    super::common::copy_dir(
        &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/index-v2"),
        &old,
    );
    let data = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/data");
    for args in [
        vec!["status"],
        vec!["verify"],
        vec!["ingest", data.to_str().unwrap()],
        vec!["export", "--out", "out"],
    ] {
        let out = super::common::run_idx(&old, &args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} succeeded on a v2 index");
        assert!(
            stderr.contains(&format!(
                "format version 2, this idx reads version {}",
                idx::store::FORMAT_VERSION
            )) && stderr.contains("run `idx ingest`"),
            "{args:?}: {stderr}"
        );
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
    // `ingest` and `export` came after `status` and `verify`, and each saw version 2 still:
    // a refused writer converts nothing. Once more, after them all:
    let out = super::common::run_idx(&old, &["status"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("format version 2"));
}
