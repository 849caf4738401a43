//! `idx export signatures`: a shard's rows as the global job reads them — one Parquet file per
//! export (a *generation*) under `OUT/SHARD/`, beside `OUT/SHARD/shard.json` which lists the
//! generations and the settings they were made under. A full export is a *snapshot*; an
//! incremental one holds only the rows whose signature changed since the shard's previous
//! generations, and a `deleted` row for each row that is gone. The columns are documented in
//! `schema/signatures.md`; nothing in them depends on the order rows arrived in.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::builder::{
    BooleanBuilder, Int32Builder, Int64Builder, ListBuilder, StringBuilder,
};
use arrow_array::{ArrayRef, RecordBatch};
use serde::{Deserialize, Serialize};

use super::sketch::{sketch, BINS};
use super::{io_error, valid_shard_id};
use crate::config::Settings;
use crate::error::{Error, Result};
use crate::fingerprint::{fingerprint_text, shingle_set, Hash128};
use crate::neardup::{Fractions, Policy};
use crate::select::{select_local, SelectOptions};
use crate::store::{ReadView, RowRecord};

/// The signature format's version (`shard.json` and the Parquet metadata carry it). Version 2:
/// the sketches are of shingle hashes made from word hashes (`fingerprint::shingle_set`), which
/// version 1's sketches cannot be compared with.
pub const SIGNATURES_FORMAT_VERSION: u32 = 2;

/// Rows per Parquet record batch (and row group).
const BATCH_ROWS: usize = 65_536;

/// How to export signatures.
#[derive(Debug, Clone)]
pub struct SignatureOptions {
    /// The shard id (letters, digits, `.`, `_`, `-`).
    pub shard: String,
    /// The folder holding every shard's signatures (`OUT/SHARD/…`).
    pub out: PathBuf,
    /// Write only what changed since this shard's previous generations.
    pub incremental: bool,
}

/// One row's signature.
#[derive(Debug, Clone, PartialEq)]
struct Signature {
    hash: Hash128,
    variant: Hash128,
    simhash: u64,
    words: u32,
    tokens: u64,
    sketch: Option<Vec<u32>>,
    family: String,
    kind: &'static str,
    phase: &'static str,
    pii: &'static str,
    usable: bool,
    holdout_groups: Vec<Hash128>,
    cluster: Hash128,
    collapse_group: Hash128,
    places: u64,
}

impl Signature {
    /// A digest of every field: two generations hold the same signature for a row exactly
    /// when their digests agree.
    fn digest(&self) -> u64 {
        let mut h = xxhash_rust::xxh3::Xxh3::new();
        for x in [self.hash, self.variant, self.cluster, self.collapse_group] {
            h.update(&x.to_bytes());
        }
        h.update(&self.simhash.to_le_bytes());
        h.update(&self.words.to_le_bytes());
        h.update(&self.tokens.to_le_bytes());
        h.update(&self.places.to_le_bytes());
        h.update(&[u8::from(self.usable), u8::from(self.sketch.is_some())]);
        for v in self.sketch.iter().flatten() {
            h.update(&v.to_le_bytes());
        }
        for s in [self.family.as_str(), self.kind, self.phase, self.pii] {
            h.update(&(s.len() as u64).to_le_bytes());
            h.update(s.as_bytes());
        }
        h.update(&(self.holdout_groups.len() as u64).to_le_bytes());
        for g in &self.holdout_groups {
            h.update(&g.to_bytes());
        }
        h.digest()
    }
}

/// The settings a shard's signatures were made under: the global job refuses to join shards
/// whose settings differ.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SignatureSettings {
    pub hamming: u32,
    pub blocks: u32,
    pub jaccard: f64,
    pub min_words: u32,
    pub salt: String,
    pub fractions: Fractions,
    pub holdout_fractions: Fractions,
    /// Bins of the one-permutation MinHash sketch.
    pub sketch_bins: usize,
}

impl SignatureSettings {
    fn of(policy: &Policy) -> SignatureSettings {
        SignatureSettings {
            hamming: policy.hamming,
            blocks: policy.blocks,
            jaccard: policy.jaccard,
            min_words: policy.min_words,
            salt: policy.salt.clone(),
            fractions: policy.fractions,
            holdout_fractions: policy.holdout_fractions,
            sketch_bins: BINS,
        }
    }
}

/// One generation of a shard's signatures.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Generation {
    pub generation: u64,
    /// The file, relative to the shard's folder.
    pub file: String,
    pub sha256: String,
    /// A full snapshot (every row) or the changes since the previous generation.
    pub snapshot: bool,
    /// Rows written (deletions included).
    pub rows: u64,
    pub deleted: u64,
    /// The shard's state digest (without imported assignments) this generation describes.
    pub state_digest: String,
}

/// `OUT/SHARD/shard.json`: what the job reads before the Parquet files.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShardFile {
    pub format: String,
    pub format_version: u32,
    pub shard: String,
    pub settings: SignatureSettings,
    pub generations: Vec<Generation>,
}

/// What `idx export signatures` wrote.
#[derive(Debug, Clone, Serialize)]
pub struct SignatureSummary {
    pub shard: String,
    pub folder: String,
    pub file: String,
    pub generation: u64,
    pub snapshot: bool,
    /// Rows of the shard now.
    pub rows: u64,
    /// Rows written to this generation (changed or new), deletions aside.
    pub written: u64,
    pub deleted: u64,
    pub bytes: u64,
    pub sha256: String,
    pub state_digest: String,
}

/// Export the signatures of the snapshot `view` as shard `options.shard`.
pub fn export_signatures(
    view: &ReadView,
    settings: &Settings,
    options: &SignatureOptions,
    progress: &mut dyn FnMut(&str),
) -> Result<SignatureSummary> {
    valid_shard_id(&options.shard)?;
    let policy = settings.policy();
    if view.policy()?.is_some_and(|stored| stored != policy) {
        return Err(Error::Scale(
            "the index was built with other near-duplicate, split or holdout settings than the \
             current config; run `idx ingest` to apply them first"
                .into(),
        ));
    }
    let folder = options.out.join(&options.shard);
    let shard_json = folder.join("shard.json");
    let mut shard_file = match read_shard_file(&shard_json)? {
        Some(f) => f,
        None => ShardFile {
            format: "idx-signatures".into(),
            format_version: SIGNATURES_FORMAT_VERSION,
            shard: options.shard.clone(),
            settings: SignatureSettings::of(&policy),
            generations: Vec::new(),
        },
    };
    if shard_file.shard != options.shard {
        return Err(Error::Scale(format!(
            "{} belongs to shard {:?}, not {:?}",
            shard_json.display(),
            shard_file.shard,
            options.shard
        )));
    }
    let current = SignatureSettings::of(&policy);
    let incremental = options.incremental && !shard_file.generations.is_empty();
    if incremental && shard_file.settings != current {
        return Err(Error::Scale(format!(
            "the settings changed since {}'s previous generations: export a full snapshot \
             (without --incremental)",
            options.shard
        )));
    }
    shard_file.settings = current;

    let state_digest = view.local_state_digest()?;
    let mut previous = if incremental {
        progress("reading the previous generations");
        previous_state(&folder, &shard_file)?
    } else {
        BTreeMap::new()
    };
    let generation = shard_file
        .generations
        .last()
        .map_or(1, |g| g.generation + 1);
    let name = format!("gen-{generation:06}.parquet");
    std::fs::create_dir_all(&folder).map_err(|e| io_error(&folder, e))?;
    let path = folder.join(&name);
    progress(&format!(
        "sketching every row's shingles into {}",
        path.display()
    ));
    let meta = GenerationMeta {
        shard: &options.shard,
        generation,
        snapshot: !incremental,
        state_digest: &state_digest,
    };
    // Rows are read, sketched and written a batch at a time: only the previous generations'
    // digests are held for the whole run.
    let mut out = GenerationWriter::create(&path, &meta)?;
    let (mut rows, mut written) = (0u64, 0u64);
    for_each_signature_batch(view, settings, &policy, |batch| {
        rows += batch.len() as u64;
        let changed: Vec<Entry<'_>> = batch
            .iter()
            .map(|s| (s, s.digest()))
            .filter(|(s, digest)| previous.remove(&s.hash) != Some(*digest))
            .map(|(s, digest)| Entry::Row(s, digest))
            .collect();
        written += changed.len() as u64;
        out.write(&changed)
    })?;
    // What is left of the previous state is gone from the shard.
    let deleted: Vec<Entry<'_>> = previous.keys().map(|h| Entry::Deleted(*h)).collect();
    for part in deleted.chunks(BATCH_ROWS) {
        out.write(part)?;
    }
    out.finish()?;
    let deleted = deleted.len() as u64;
    let (bytes, sha256) = super::file_sha256(&path)?;
    shard_file.generations.push(Generation {
        generation,
        file: name.clone(),
        sha256: sha256.clone(),
        snapshot: !incremental,
        rows: written + deleted,
        deleted,
        state_digest: state_digest.clone(),
    });
    super::write_json_atomically(&shard_json, &shard_file)?;
    Ok(SignatureSummary {
        shard: options.shard.clone(),
        folder: folder.display().to_string(),
        file: path.display().to_string(),
        generation,
        snapshot: !incremental,
        rows,
        written,
        deleted,
        bytes,
        sha256,
        state_digest,
    })
}

/// Read `shard.json`, if the shard has exported before.
pub fn read_shard_file(path: &Path) -> Result<Option<ShardFile>> {
    match std::fs::read(path) {
        Ok(bytes) => {
            let f: ShardFile = serde_json::from_slice(&bytes)
                .map_err(|e| Error::Scale(format!("{}: {e}", path.display())))?;
            if f.format_version != SIGNATURES_FORMAT_VERSION {
                return Err(Error::Scale(format!(
                    "{} is signature format {}, this idx writes {}",
                    path.display(),
                    f.format_version,
                    SIGNATURES_FORMAT_VERSION
                )));
            }
            Ok(Some(f))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_error(path, e)),
    }
}

/// A row's representative variant hash and its sketch (None: too short to match by sketch).
type Sketched = (Hash128, Option<Vec<u32>>);

/// Visit every row's signature, in hash order, a batch of [`BATCH_ROWS`] at a time.
fn for_each_signature_batch(
    view: &ReadView,
    settings: &Settings,
    policy: &Policy,
    mut f: impl FnMut(&[Signature]) -> Result<()>,
) -> Result<()> {
    // The dataset as an export of this shard alone would select it: which rows are usable and
    // the near-duplicate group each stands in (always computed, whatever the export collapses).
    let verdicts = crate::decontaminate::verdicts(view, settings)?;
    let keep = settings.keep();
    let selection = select_local(
        view,
        policy,
        &SelectOptions {
            collapse: true,
            withheld: &verdicts.withheld(),
            keep: &keep,
        },
    )?;
    let mut usable: BTreeMap<Hash128, Hash128> =
        selection.rows.iter().map(|r| (r.hash, r.hash)).collect();
    let mut family: BTreeMap<Hash128, String> = selection
        .rows
        .iter()
        .map(|r| (r.hash, r.primary_family.clone()))
        .collect();
    for (rep, others) in &selection.collapsed {
        for o in others {
            usable.insert(*o, *rep);
        }
    }
    drop(selection);
    let clusters = view.cluster_entries()?;
    let mut groups = view.holdout_memberships()?;
    let mut pending: Vec<(Hash128, RowRecord)> = Vec::with_capacity(BATCH_ROWS);
    let mut flush = |pending: &mut Vec<(Hash128, RowRecord)>| -> Result<()> {
        let sketches = sketch_rows(view, policy, pending)?;
        let batch: Vec<Signature> = pending
            .drain(..)
            .zip(sketches)
            .map(|((h, r), (variant, sk))| {
                let group = usable.get(&h).copied();
                Signature {
                    hash: h,
                    variant,
                    simhash: r.simhash,
                    words: r.words,
                    tokens: r.tokens,
                    sketch: sk,
                    family: family.remove(&h).unwrap_or(r.primary_family),
                    kind: r.kind.as_str(),
                    phase: r.kind.phase(),
                    pii: r.pii.status.as_str(),
                    usable: group.is_some(),
                    holdout_groups: groups.remove(&h).unwrap_or_default(),
                    cluster: clusters.get(&h).map_or(h, |a| a.cluster),
                    collapse_group: group.unwrap_or(h),
                    places: r.places,
                }
            })
            .collect();
        f(&batch)
    };
    view.for_each_row(|h, r| {
        pending.push((h, r));
        if pending.len() == BATCH_ROWS {
            flush(&mut pending)?;
        }
        Ok(())
    })?;
    if !pending.is_empty() {
        flush(&mut pending)?;
    }
    Ok(())
}

/// The representative variant and sketch of each row, decoded and sketched by a worker per
/// core, each over a contiguous part.
fn sketch_rows(
    view: &ReadView,
    policy: &Policy,
    rows: &[(Hash128, RowRecord)],
) -> Result<Vec<Sketched>> {
    crate::parallel::map_items(rows, 2, |(h, r)| {
        let (variant, text) = view
            .representative_variant(*h)?
            .ok_or_else(|| Error::Codec {
                table: "variants",
                message: format!("row {h} has no stored text"),
            })?;
        let sk = if policy.fingerprintable(r.words) {
            sketch(&shingle_set(&fingerprint_text(&text.conversation)))
        } else {
            None
        };
        Ok((variant, sk))
    })
}

/// The effective state of a shard's generations: row → signature digest (the latest snapshot,
/// then every later generation's changes and deletions in order).
fn previous_state(folder: &Path, shard: &ShardFile) -> Result<BTreeMap<Hash128, u64>> {
    let start = shard
        .generations
        .iter()
        .rposition(|g| g.snapshot)
        .ok_or_else(|| {
            Error::Scale(format!(
                "{} lists no snapshot generation",
                folder.join("shard.json").display()
            ))
        })?;
    let mut state = BTreeMap::new();
    for g in &shard.generations[start..] {
        let path = folder.join(&g.file);
        let (_, sha) = super::file_sha256(&path)?;
        if sha != g.sha256 {
            return Err(Error::Scale(format!(
                "{} does not match the sha256 shard.json lists for it: export a full snapshot \
                 (without --incremental)",
                path.display()
            )));
        }
        for (hash, digest, deleted) in read_digests(&path)? {
            if deleted {
                state.remove(&hash);
            } else {
                state.insert(hash, digest);
            }
        }
    }
    Ok(state)
}

/// (content hash, record digest, deleted) of every row of a signature file.
fn read_digests(path: &Path) -> Result<Vec<(Hash128, u64, bool)>> {
    use arrow_array::cast::AsArray;
    use arrow_array::types::Int64Type;
    let file = File::open(path).map_err(|e| io_error(path, e))?;
    let bad = |m: String| Error::Scale(format!("{}: {m}", path.display()));
    let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
        .and_then(|b| b.build())
        .map_err(|e| bad(e.to_string()))?;
    let mut out = Vec::new();
    for batch in reader {
        let batch = batch.map_err(|e| bad(e.to_string()))?;
        let column = |name: &str| {
            batch
                .column_by_name(name)
                .cloned()
                .ok_or_else(|| bad(format!("no column {name}")))
        };
        let hashes = column("content_hash")?;
        let digests = column("record_digest")?;
        let deleted = column("deleted")?;
        let (Some(hashes), Some(digests), Some(deleted)) = (
            hashes.as_string_opt::<i32>(),
            digests.as_primitive_opt::<Int64Type>(),
            deleted.as_boolean_opt(),
        ) else {
            return Err(bad("unexpected column types".into()));
        };
        for i in 0..batch.num_rows() {
            let h = Hash128::from_hex(hashes.value(i))
                .ok_or_else(|| bad(format!("row {i}: content_hash is not 32 hex digits")))?;
            out.push((h, digests.value(i) as u64, deleted.value(i)));
        }
    }
    Ok(out)
}

/// What every row of a generation carries besides its signature.
struct GenerationMeta<'a> {
    shard: &'a str,
    generation: u64,
    snapshot: bool,
    state_digest: &'a str,
}

/// One generation's Parquet file, written a record batch at a time under a temporary name
/// and renamed when finished.
struct GenerationWriter<'a> {
    path: PathBuf,
    tmp: PathBuf,
    meta: &'a GenerationMeta<'a>,
    writer: parquet::arrow::ArrowWriter<File>,
}

impl<'a> GenerationWriter<'a> {
    fn create(path: &Path, meta: &'a GenerationMeta<'a>) -> Result<GenerationWriter<'a>> {
        let tmp = path.with_extension("parquet.tmp");
        let file = File::create(&tmp).map_err(|e| io_error(&tmp, e))?;
        let kv = |k: &str, v: String| parquet::file::metadata::KeyValue::new(k.to_string(), v);
        let props = parquet::file::properties::WriterProperties::builder()
            .set_compression(parquet::basic::Compression::ZSTD(
                parquet::basic::ZstdLevel::default(),
            ))
            .set_max_row_group_row_count(Some(BATCH_ROWS))
            .set_key_value_metadata(Some(vec![
                kv("idx.format", "idx-signatures".into()),
                kv("idx.format_version", SIGNATURES_FORMAT_VERSION.to_string()),
                kv("idx.shard", meta.shard.to_string()),
                kv("idx.state_digest", meta.state_digest.to_string()),
            ]))
            .build();
        // The schema is that of any batch, an empty one included.
        let schema = batch_of(meta, &[])
            .map_err(|e| Error::Scale(format!("{}: {e}", path.display())))?
            .schema();
        let writer = parquet::arrow::ArrowWriter::try_new(file, schema, Some(props))
            .map_err(|e| Error::Scale(format!("{}: {e}", path.display())))?;
        Ok(GenerationWriter {
            path: path.to_path_buf(),
            tmp,
            meta,
            writer,
        })
    }

    fn write(&mut self, entries: &[Entry<'_>]) -> Result<()> {
        if entries.is_empty() {
            return Ok(());
        }
        let bad = |e: parquet::errors::ParquetError| {
            Error::Scale(format!("{}: {e}", self.path.display()))
        };
        let batch = batch_of(self.meta, entries).map_err(bad)?;
        self.writer.write(&batch).map_err(bad)
    }

    fn finish(self) -> Result<()> {
        let file = self
            .writer
            .into_inner()
            .map_err(|e| Error::Scale(format!("{}: {e}", self.path.display())))?;
        file.sync_all().map_err(|e| io_error(&self.tmp, e))?;
        std::fs::rename(&self.tmp, &self.path).map_err(|e| io_error(&self.path, e))
    }
}

enum Entry<'a> {
    /// A signature and its record digest.
    Row(&'a Signature, u64),
    Deleted(Hash128),
}

/// One record batch of a generation.
fn batch_of(
    meta: &GenerationMeta<'_>,
    entries: &[Entry<'_>],
) -> std::result::Result<RecordBatch, parquet::errors::ParquetError> {
    let n = entries.len();
    let mut shard = StringBuilder::with_capacity(n, n * meta.shard.len());
    let mut generation = Int64Builder::with_capacity(n);
    let mut snapshot = BooleanBuilder::with_capacity(n);
    let mut deleted = BooleanBuilder::with_capacity(n);
    let mut hash = StringBuilder::with_capacity(n, n * 32);
    let mut variant = StringBuilder::with_capacity(n, n * 32);
    let mut simhash = Int64Builder::with_capacity(n);
    let mut words = Int32Builder::with_capacity(n);
    let mut tokens = Int64Builder::with_capacity(n);
    let mut sketches = ListBuilder::new(Int32Builder::with_capacity(n * BINS));
    let mut family = StringBuilder::new();
    let mut kind = StringBuilder::new();
    let mut phase = StringBuilder::new();
    let mut pii = StringBuilder::new();
    let mut usable = BooleanBuilder::with_capacity(n);
    let mut groups = ListBuilder::new(StringBuilder::new());
    let mut cluster = StringBuilder::with_capacity(n, n * 32);
    let mut collapse_group = StringBuilder::with_capacity(n, n * 32);
    let mut places = Int64Builder::with_capacity(n);
    let mut digest = Int64Builder::with_capacity(n);
    let mut state = StringBuilder::with_capacity(n, n * 32);
    for e in entries {
        shard.append_value(meta.shard);
        generation.append_value(meta.generation as i64);
        snapshot.append_value(meta.snapshot);
        state.append_value(meta.state_digest);
        match e {
            Entry::Row(s, record_digest) => {
                deleted.append_value(false);
                hash.append_value(s.hash.to_hex());
                variant.append_value(s.variant.to_hex());
                simhash.append_value(s.simhash as i64);
                words.append_value(s.words as i32);
                tokens.append_value(s.tokens as i64);
                match &s.sketch {
                    Some(values) => {
                        sketches
                            .values()
                            .append_slice(&values.iter().map(|&v| v as i32).collect::<Vec<_>>());
                        sketches.append(true);
                    }
                    None => sketches.append(false),
                }
                family.append_value(&s.family);
                kind.append_value(s.kind);
                phase.append_value(s.phase);
                pii.append_value(s.pii);
                usable.append_value(s.usable);
                for g in &s.holdout_groups {
                    groups.values().append_value(g.to_hex());
                }
                groups.append(true);
                cluster.append_value(s.cluster.to_hex());
                collapse_group.append_value(s.collapse_group.to_hex());
                places.append_value(s.places as i64);
                digest.append_value(*record_digest as i64);
            }
            Entry::Deleted(h) => {
                deleted.append_value(true);
                hash.append_value(h.to_hex());
                variant.append_null();
                simhash.append_null();
                words.append_null();
                tokens.append_null();
                sketches.append(false);
                family.append_null();
                kind.append_null();
                phase.append_null();
                pii.append_null();
                usable.append_null();
                groups.append(false);
                cluster.append_null();
                collapse_group.append_null();
                places.append_null();
                digest.append_null();
            }
        }
    }
    let columns: Vec<(&str, ArrayRef)> = vec![
        ("shard", Arc::new(shard.finish())),
        ("generation", Arc::new(generation.finish())),
        ("snapshot", Arc::new(snapshot.finish())),
        ("deleted", Arc::new(deleted.finish())),
        ("content_hash", Arc::new(hash.finish())),
        ("variant", Arc::new(variant.finish())),
        ("simhash", Arc::new(simhash.finish())),
        ("words", Arc::new(words.finish())),
        ("tokens", Arc::new(tokens.finish())),
        ("sketch", Arc::new(sketches.finish())),
        ("family", Arc::new(family.finish())),
        ("kind", Arc::new(kind.finish())),
        ("phase", Arc::new(phase.finish())),
        ("pii", Arc::new(pii.finish())),
        ("usable", Arc::new(usable.finish())),
        ("holdout_groups", Arc::new(groups.finish())),
        ("cluster", Arc::new(cluster.finish())),
        ("collapse_group", Arc::new(collapse_group.finish())),
        ("places", Arc::new(places.finish())),
        ("record_digest", Arc::new(digest.finish())),
        ("state_digest", Arc::new(state.finish())),
    ];
    // Every column nullable: the schema must not depend on which rows a batch holds
    // (deletions leave all but four columns null).
    Ok(RecordBatch::try_from_iter_with_nullable(
        columns.into_iter().map(|(name, array)| (name, array, true)),
    )?)
}
