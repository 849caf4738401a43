//! Test fixture: a temporary data folder and index directory, with helpers to write objects,
//! ingest and read the state back.

use std::path::{Path, PathBuf};

use idx::config::Settings;
use idx::families::Classifier;
use idx::index::Index;
use idx::ingest::{ingest, IngestOptions, IngestReport};
use idx::query::{self, Status};

pub struct Fixture {
    _tmp: tempfile::TempDir,
    pub data: PathBuf,
    pub index_dir: PathBuf,
    pub options: IngestOptions,
    pub settings: Settings,
}

impl Fixture {
    pub fn new() -> Self {
        let tmp = tempfile::tempdir().expect("tempdir");
        let data = tmp.path().join("data");
        std::fs::create_dir_all(&data).unwrap();
        let index_dir = tmp.path().join("index");
        Fixture {
            _tmp: tmp,
            data,
            index_dir,
            options: IngestOptions::default(),
            settings: Settings::builtin(),
        }
    }

    /// A second index over the same data folder.
    pub fn with_index(&self, name: &str) -> PathBuf {
        self.index_dir.with_file_name(name)
    }

    pub fn write(&self, rel: &str, content: impl AsRef<[u8]>) -> PathBuf {
        let p = self.data.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, content).unwrap();
        p
    }

    pub fn remove(&self, rel: &str) {
        std::fs::remove_file(self.data.join(rel)).unwrap();
    }

    pub fn ingest(&self) -> IngestReport {
        self.ingest_into(&self.index_dir, [&self.data])
    }

    pub fn ingest_into<P: AsRef<Path>>(
        &self,
        index_dir: &Path,
        paths: impl IntoIterator<Item = P>,
    ) -> IngestReport {
        let paths: Vec<PathBuf> = paths
            .into_iter()
            .map(|p| p.as_ref().to_path_buf())
            .collect();
        let mut index = Index::open_write(index_dir).expect("open index");
        ingest(&mut index, &self.settings, &paths, &self.options).expect("ingest")
    }

    pub fn status(&self) -> Status {
        status_of(&self.index_dir)
    }

    pub fn digest(&self) -> String {
        digest_of(&self.index_dir)
    }
}

pub fn status_of(index_dir: &Path) -> Status {
    let store = Index::open_store_read(index_dir).unwrap();
    query::status(&store.read().unwrap(), &Classifier::load(None).unwrap()).unwrap()
}

pub fn digest_of(index_dir: &Path) -> String {
    let store = Index::open_store_read(index_dir).unwrap();
    let view = store.read().unwrap();
    view.state_digest().unwrap()
}

/// The content hashes of one object's rows, in line order.
pub fn hashes_of(index_dir: &Path, key: &str) -> Vec<String> {
    let store = Index::open_store_read(index_dir).unwrap();
    let answers = query::source(&store.read().unwrap(), key).unwrap();
    answers
        .into_iter()
        .flat_map(|a| a.rows.into_iter().map(|r| r.content_hash))
        .collect()
}

pub fn row(index_dir: &Path, hash: &str) -> Option<query::RowAnswer> {
    let store = Index::open_store_read(index_dir).unwrap();
    let view = store.read().unwrap();
    let policy = query::effective_policy(&view, Settings::builtin().policy()).unwrap();
    query::row(&view, hash, &policy).unwrap()
}

pub fn chat(user: &str, assistant: &str) -> String {
    serde_json::json!({"messages": [
        {"role": "user", "content": user},
        {"role": "assistant", "content": assistant}
    ]})
    .to_string()
}

/// Run the `idx` binary on an index, from the folder holding it (so no project `configs/` is
/// picked up), without the environment's family or log settings.
pub fn run_idx(index_dir: &Path, args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_idx"))
        .arg("--data-dir")
        .arg(index_dir)
        .args(args)
        .env_remove("IDX_FAMILIES")
        .env_remove("RUST_LOG")
        // What a panic prints depends on it: tests see what a user without it sees.
        .env_remove("RUST_BACKTRACE")
        .current_dir(index_dir.parent().unwrap())
        .output()
        .expect("run idx")
}

/// The one JSON document a successful `idx ... --json` printed.
pub fn json_of(out: &std::process::Output) -> serde_json::Value {
    assert!(
        out.status.success(),
        "idx failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("stdout is one JSON document")
}

/// Copy a folder tree (files and folders; the tests' trees hold no links).
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}
