//! The command line's shape: every subcommand and option, as clap definitions. The help
//! texts are the user's manual; what runs is in `commands`.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use idx::ingest::IngestOptions;
use idx::parse::Limits;

/// idx turns JSON/JSONL training data into an indexed, de-duplicated, traceable dataset.
///
/// Every row gets a content hash, a SimHash and its provenance (object, version, line) in an
/// embedded redb database; the text goes into a tantivy full-text index rebuilt from redb at will.
#[derive(Parser, Debug)]
#[command(
    name = "idx",
    version,
    about,
    long_about,
    after_long_help = "Examples:\n  idx ingest examples/data                 index a folder (again: only changes are read)\n  idx status --json                        counts per family, for scripts\n  idx query text \"can't sleep\" --limit 5   full-text search with file and line\n  idx query source datasets/a.jsonl        rows and rejections of one object\n  idx query hash 1f0c...                   one row and every place it occurs\n  idx verify                               the coverage and leakage gates (exit 4 on failure)\n  idx export --out out/dataset             shards, manifest and curriculum files\n  idx serve --watch drop/                  the daemon; `idx status` from another shell",
    next_help_heading = "Global options"
)]
pub(crate) struct Cli {
    /// Where the index lives (created on first ingest)
    #[arg(long, global = true, env = "IDX_DATA_DIR", default_value = ".idx")]
    pub(crate) data_dir: PathBuf,

    /// Family rules; default: ./configs/families.toml if present, else the built-in copy
    #[arg(long, global = true, env = "IDX_FAMILIES")]
    pub(crate) families: Option<PathBuf>,

    /// Near-duplicate, split and holdout settings; default: ./configs/idx.toml if present, else
    /// the built-in copy
    #[arg(long, global = true, env = "IDX_CONFIG")]
    pub(crate) config: Option<PathBuf>,

    /// Declared mappings for record shapes idx does not detect; default: ./configs/sources.toml
    /// if present, else the built-in copy
    #[arg(long, global = true, env = "IDX_SOURCES")]
    pub(crate) sources: Option<PathBuf>,

    /// Derive recipes (preference pairs from ranked answers or KTO labels); default:
    /// ./configs/derive.toml if present, else the built-in copy
    #[arg(long, global = true, env = "IDX_DERIVE")]
    pub(crate) derive: Option<PathBuf>,

    /// The training curriculum; default: ./configs/curriculum.toml if present, else the built-in
    /// copy (the original system's plan)
    #[arg(long, global = true, env = "IDX_CURRICULUM")]
    pub(crate) curriculum: Option<PathBuf>,

    /// S3-compatible endpoint URL (overrides [s3] endpoint and AWS_ENDPOINT_URL)
    #[arg(long, global = true, value_name = "URL")]
    pub(crate) s3_endpoint: Option<String>,

    /// Path-style S3 addressing (endpoint/bucket/key), as most S3-compatible stores need
    #[arg(long, global = true)]
    pub(crate) s3_path_style: bool,

    /// Print one JSON document on stdout instead of text
    #[arg(long, global = true)]
    pub(crate) json: bool,

    /// Logs as JSON lines (for log collectors) instead of text
    #[arg(long, global = true)]
    pub(crate) log_json: bool,

    /// Log more (-v info, -vv debug); RUST_LOG overrides
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub(crate) verbose: u8,

    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Subcommand, Debug)]
pub(crate) enum Command {
    /// Starter configs for your own data: scan a folder (or s3://bucket/prefix), read a sample
    /// of every object, and write families.toml (the built-in rules where keys match them,
    /// else one family per top-level folder), curriculum.toml (routing only those families),
    /// sources.toml (the shipped mappings plus a commented entry for every object idx could
    /// not read) and idx.toml into --config-dir, where idx looks for them by default. Nothing
    /// is indexed
    Init(InitArgs),
    /// Index folders, files or s3://bucket/prefix incrementally: new and changed objects are
    /// read, unchanged ones skipped, objects gone from a scanned folder or prefix dropped
    Ingest(IngestArgs),
    /// Run the derive recipes (configs/derive.toml) on the index as it is, and index what they
    /// make: rows like any other, in the family each recipe names, linked to the rows they came
    /// from (same split) and traceable to them (`idx query hash`). `idx ingest` and the daemon
    /// run them after every read; this runs them by hand
    Derive(DeriveArgs),
    /// Counts of objects, rows, rejections and tokens, per family
    Status(StatusArgs),
    /// Look rows up by hash, by source object or by text
    #[command(subcommand)]
    Query(QueryCommand),
    /// Rebuild the full-text index from redb (never needed for correctness; redb is the truth)
    Reindex,
    /// Check that the index is whole: redb's integrity check (skipped while another process
    /// writes), then idx's own tables — counters against a recount, every place pointing at a
    /// stored row, every row's cluster and split as recomputed — and that the full-text index
    /// opens. Exits 0 when all is well, 4 when something is wrong (listed)
    Check,
    /// Recover an index left by a crash or kill -9 (readers refuse such a file and never write
    /// to it): redb repairs itself, the full-text index catches up with redb. Every writing
    /// command (ingest, serve) does the same on its own
    Recover,
    /// Run the gates: coverage (every required family has its minimum of indexed rows, or a
    /// waiver), leakage (recomputed from scratch: no near-duplicate pair across splits, stored
    /// clusters and splits as they should be), structure (conversations a trainer cannot use)
    /// and distribution (split fractions, holdout families in test, phase shares, the
    /// curriculum mix), plus a report of rows, tokens, lengths and turns by family, split and
    /// phase. Exits 0 when every gate passes, 4 when one fails
    Verify(VerifyArgs),
    /// Check the rows against benchmark sets: `--against FILE|DIR|s3://…` reads a benchmark
    /// (JSONL, Parquet, CSV… through the declared mappings) and keeps its exact word n-grams;
    /// every row is checked, and new rows after each ingest. The export excludes, quarantines
    /// or reports matching rows ([decontamination] in idx.toml); `idx query contamination`
    /// lists them. Without options: bring the checks up to date and summarise
    Decontaminate(DecontaminateArgs),
    /// PII detection: try the redactor on text, or measure it against labelled text
    #[command(subcommand)]
    Pii(PiiCommand),
    /// Compile the dataset from one consistent snapshot of the index: ChatML JSONL shards per
    /// split and family (data/SPLIT/FAMILY-NNNNN.chatml.jsonl), final.chatml.jsonl with every
    /// split, provenance.jsonl, the curriculum's trainer files (curriculum/), and manifest.json
    /// (sha256, rows and tokens of every file), written last. The same index state always gives
    /// byte-identical files. `idx export verify MANIFEST` checks an export
    Export(ExportCommand),
    /// Run as a service: keep the index current with watched folders (file events plus a
    /// periodic rescan) and polled S3 prefixes, while other shells query it (`idx status`
    /// shows the daemon). SIGINT/SIGTERM commit what was read and exit 0. Sources come from
    /// [serve] in idx.toml plus these flags
    Serve(ServeArgs),
    /// Past one machine (docs/SCALE.md): make the global job's assignment table the authority
    /// for this shard's rows in clusters that span shards
    #[command(subcommand)]
    Import(ImportCommand),
    /// Check the training curriculum against the index and show what each stage would draw
    /// (rows and tokens per family, the preference algorithm and why); exits 4 on errors.
    /// `idx curriculum import FILE.json` converts the original system's plan
    Curriculum(CurriculumCommand),
}

#[derive(Args, Debug)]
pub(crate) struct StatusArgs {
    /// Also what the index costs on disk: the redb file, the full-text index, and per redb
    /// table its entries, stored bytes and pages, against the input's size and per unique row
    #[arg(long)]
    pub(crate) storage: bool,
}

#[derive(Args, Debug)]
pub(crate) struct DecontaminateArgs {
    /// A benchmark set to load (a file, a folder, or s3://bucket/prefix); replaces a set of
    /// the same name
    #[arg(long, value_name = "PATH|S3_URL")]
    pub(crate) against: Option<PathBuf>,
    /// The benchmark's name (default: the file or folder name without extensions)
    #[arg(long, requires = "against")]
    pub(crate) name: Option<String>,
    /// Forget a benchmark set by name
    #[arg(long, value_name = "NAME", conflicts_with = "against")]
    pub(crate) remove: Option<String>,
    /// Also check the index's own val and test rows against train at n-gram level (a report:
    /// what near-duplicate detection does not call a duplicate)
    #[arg(long)]
    pub(crate) splits: bool,
}

#[derive(Args, Debug)]
pub(crate) struct InitArgs {
    /// The folder (or s3://bucket/prefix) holding your data
    pub(crate) source: PathBuf,
    /// Where to write families.toml, curriculum.toml, sources.toml and idx.toml (./configs is where every
    /// idx command run from this directory looks for them)
    #[arg(long, default_value = "configs")]
    pub(crate) config_dir: PathBuf,
    /// Overwrite config files that exist
    #[arg(long)]
    pub(crate) force: bool,
}

#[derive(Args, Debug)]
pub(crate) struct ServeArgs {
    /// A local folder to watch (repeatable)
    #[arg(long = "watch", value_name = "DIR")]
    pub(crate) watch: Vec<PathBuf>,
    /// An S3 prefix to poll (repeatable)
    #[arg(long = "s3", value_name = "S3_URL")]
    pub(crate) s3: Vec<String>,
    /// An S3 inventory for the S3 sources (file or s3:// URL)
    #[arg(long, value_name = "FILE|S3_URL")]
    pub(crate) manifest: Option<String>,
    /// Rescan every folder this often, in seconds, even without events
    #[arg(long)]
    pub(crate) rescan_seconds: Option<u64>,
    /// List the S3 sources this often, in seconds
    #[arg(long)]
    pub(crate) poll_seconds: Option<u64>,
    /// Input bytes per redb write transaction
    #[arg(long, default_value_t = IngestOptions::default().batch_bytes)]
    pub(crate) batch_bytes: u64,
}

#[derive(Args, Debug)]
#[command(args_conflicts_with_subcommands = true)]
pub(crate) struct ExportCommand {
    #[command(subcommand)]
    pub(crate) command: Option<ExportSub>,
    #[command(flatten)]
    pub(crate) args: ExportArgs,
}

#[derive(Subcommand, Debug)]
pub(crate) enum ExportSub {
    /// Past one machine (docs/SCALE.md): write this shard's row signatures (content hash,
    /// SimHash, a MinHash sketch of the word 3-shingles, family, holdout groups, its own
    /// cluster and near-duplicate group) as one Parquet generation under OUT/SHARD/, listed in
    /// OUT/SHARD/shard.json, for the global Spark job (scale/idx_global.py)
    Signatures {
        /// This index's shard id (letters, digits, '.', '_', '-'); remembered for `idx import
        /// assignments`
        #[arg(long)]
        shard: String,
        /// The folder holding every shard's signatures, or s3://bucket/prefix (written through
        /// a staging folder in the data directory; shard.json uploaded last)
        #[arg(long, value_name = "DIR|S3_URL")]
        out: PathBuf,
        /// Write only the rows whose signature changed since this shard's previous generations
        /// (and a deletion for each row gone); a full snapshot when there is none
        #[arg(long)]
        incremental: bool,
    },
    /// Join the exports of every shard (each made after `idx import assignments` of one table)
    /// into one dataset: OUT/manifest.json lists every shard's files relative to OUT, the
    /// table's digest and the summed totals. Every shard export is verified first, and a row
    /// exported by two shards is an error
    Merge {
        /// Each shard export's manifest.json (every one inside OUT)
        #[arg(required = true)]
        manifests: Vec<PathBuf>,
        /// The folder holding the shard exports; the merged manifest.json is written here
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        /// The assignment table the shards must have followed
        #[arg(long, value_name = "PATH")]
        assignments: Option<PathBuf>,
    },
    /// Re-read every file a manifest lists: presence, bytes, sha256, rows, tokens and the line
    /// schema; report files in the folder the manifest does not list and paths that leave it;
    /// exits 4 naming every problem
    Verify {
        /// The export's manifest.json
        manifest: PathBuf,
        /// The manifest's own sha256 as `idx export` printed it: fail unless it matches
        #[arg(long, value_name = "HEX")]
        sha256: Option<String>,
    },
}

#[derive(Args, Debug)]
pub(crate) struct ExportArgs {
    /// The folder to write (created; must be empty or hold a previous idx export, which is
    /// replaced), or s3://bucket/prefix (built locally, then uploaded with the manifest last)
    #[arg(long, value_name = "DIR|S3_URL")]
    pub(crate) out: Option<PathBuf>,
    /// A previous export's manifest.json: the new manifest lists the rows that moved split
    #[arg(long, value_name = "MANIFEST")]
    pub(crate) previous: Option<PathBuf>,
    /// Shard size limit in bytes (default: [export] shard_bytes in idx.toml, 256 MiB)
    #[arg(long)]
    pub(crate) shard_bytes: Option<u64>,
    /// Export every member of a near-duplicate group, not just its representative
    #[arg(long)]
    pub(crate) keep_near_duplicates: bool,
    /// Export even when a gate fails (recorded in the manifest)
    #[arg(long)]
    pub(crate) allow_failing_gates: bool,
}

#[derive(Args, Debug)]
#[command(args_conflicts_with_subcommands = true)]
pub(crate) struct CurriculumCommand {
    #[command(subcommand)]
    pub(crate) command: Option<CurriculumSub>,
}

#[derive(Subcommand, Debug)]
pub(crate) enum CurriculumSub {
    /// Convert a curriculum JSON file of the original system into curriculum TOML (stdout, or
    /// --out FILE); what had to be guessed or repaired is printed to stderr and kept as notes
    Import {
        /// The JSON file (e.g. training_curriculum_2025.json)
        file: PathBuf,
        /// Write the TOML here instead of stdout
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
}

#[derive(Subcommand, Debug)]
pub(crate) enum PiiCommand {
    /// Redact TEXT (or every line of stdin) with the configured [pii] settings and show what
    /// was found
    Check {
        /// The text; without it, each line of stdin is checked
        text: Option<String>,
    },
    /// Precision and recall per PII kind on the generated labelled set and on labelled JSON
    /// Lines files ({"text": "...", "pii": [{"kind": "name", "value": "Sarah"}]}), e.g.
    /// testdata/pii/casual_chat_labelled.jsonl
    Eval {
        /// Labelled files to score besides the generated set
        #[arg(long = "labels", value_name = "FILE")]
        labels: Vec<PathBuf>,
        /// Positives per kind in the generated set
        #[arg(long, default_value_t = 200)]
        per_kind: usize,
    },
}

#[derive(Args, Debug)]
pub(crate) struct VerifyArgs {
    /// Also write the result as a Markdown document to this file
    #[arg(long, value_name = "FILE")]
    pub(crate) markdown: Option<PathBuf>,
    /// Also write a self-contained HTML report with charts to this file (no script, no
    /// network: open it in any browser; `idx export` writes the same as report.html)
    #[arg(long, value_name = "FILE")]
    pub(crate) html: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub(crate) struct IngestArgs {
    /// Folders (walked recursively), single files, or s3://bucket/prefix
    #[arg(required_unless_present = "manifest")]
    pub(crate) paths: Vec<PathBuf>,

    /// An S3 inventory (the original s3_manifest.json shape, or a plain list of {key, size,
    /// last_modified, etag}), as a file or s3://bucket/key: it says which objects exist; the
    /// bucket listing cross-checks it. Alone, its `bucket` is the source
    #[arg(long, value_name = "FILE|S3_URL")]
    pub(crate) manifest: Option<String>,

    /// Reject JSONL lines longer than this many bytes (they are never held in memory)
    #[arg(long, default_value_t = Limits::default().max_line_bytes)]
    pub(crate) max_line_bytes: usize,

    /// Reject .json/.txt objects larger than this many bytes (they are read whole)
    #[arg(long, default_value_t = Limits::default().max_document_bytes)]
    pub(crate) max_document_bytes: usize,

    /// Stop reading a .gz object whose output grows past this many times the compressed bytes
    /// read (a decompression bomb); ordinary text expands 3-10 times
    #[arg(long, default_value_t = Limits::default().max_gzip_ratio)]
    pub(crate) max_gzip_ratio: u64,

    /// Input bytes per redb write transaction
    #[arg(long, default_value_t = IngestOptions::default().batch_bytes)]
    pub(crate) batch_bytes: u64,

    /// Fingerprint worker threads (default: one per core)
    #[arg(long)]
    pub(crate) workers: Option<usize>,

    /// Do not compact the index file afterwards. By default a run of several commits that grew
    /// it by a quarter gives its free pages back (after a first large ingest about half the
    /// file; 13.6 s for a 4.3 GB file at 1.37M rows); a one-commit change leaves them for the
    /// next change to reuse
    #[arg(long)]
    pub(crate) no_compact: bool,

    /// Never draw the progress line (it is drawn only when stderr is a terminal)
    #[arg(long)]
    pub(crate) no_progress: bool,

    /// Do not run the derive recipes after reading (`idx derive` runs them later)
    #[arg(long)]
    pub(crate) no_derive: bool,
}

#[derive(Args, Debug)]
pub(crate) struct DeriveArgs {
    /// Run only this recipe (its name in derive.toml)
    #[arg(long, value_name = "NAME")]
    pub(crate) recipe: Option<String>,
}

#[derive(Subcommand, Debug)]
pub(crate) enum QueryCommand {
    /// A row by content hash: its conversation and every place it occurs
    Hash {
        /// 32 hexadecimal digits
        hex: String,
    },
    /// The rows indexed from one object (its key, or its full `file:///…/key` URI)
    Source { key: String },
    /// A row's near-duplicates: Hamming distance, Jaccard similarity, split and places
    Near {
        /// The row's content hash (32 hexadecimal digits)
        hex: String,
    },
    /// Rows whose split changed (clusters merged or split, settings changed), oldest first
    Moves {
        /// Only moves made by commits after this one (see `idx status`: commits)
        #[arg(long, default_value_t = 0)]
        since: u64,
    },
    /// Rows sharing an n-gram run with a benchmark (`idx decontaminate`): the benchmark item,
    /// the message and span, the share matched, and where the row came from
    Contamination {
        /// Only matches of this benchmark
        #[arg(long)]
        benchmark: Option<String>,
        /// At most this many rows listed (the counts cover all)
        #[arg(long, default_value_t = 20)]
        limit: usize,
    },
    /// Which objects hold the same rows: per object, the share of its rows also found in
    /// other objects and which (a consolidated file that repeats others shows as contained)
    Overlap {
        /// Only this object (its key, or its full `file:///…/key` URI); default: every object
        key: Option<String>,
        /// Only objects sharing at least this share of their rows (0 to 1)
        #[arg(long, default_value_t = 0.0)]
        min_share: f64,
    },
    /// Full-text search over row text
    Text {
        /// tantivy query syntax: words, "phrases", AND/OR/NOT, -excluded
        query: String,
        /// Only rows carrying this family tag
        #[arg(long)]
        family: Option<String>,
        /// At most this many hits
        #[arg(long, default_value_t = 10)]
        limit: usize,
    },
}

#[derive(Subcommand, Debug)]
pub(crate) enum ImportCommand {
    /// Import the assignment table scale/idx_global.py wrote (its folder of Parquet parts with
    /// _idx.json, or one part): rows of this shard in clusters spanning shards take their
    /// global cluster's split, and go out only where the table says this shard's copy stands
    /// for its near-duplicate group. Replaces any previous import; `idx verify` checks the
    /// rows against it
    Assignments {
        /// The assignments folder (or one .parquet file beside _idx.json), or the s3:// prefix
        /// the job wrote it to
        path: PathBuf,
        /// The shard id (default: the one `idx export signatures` recorded)
        #[arg(long)]
        shard: Option<String>,
        /// Import even when the shard changed since the signatures the table was made from
        #[arg(long)]
        allow_stale: bool,
    },
}
