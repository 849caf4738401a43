//! Settings (`configs/idx.toml`): the typed config for near-duplicate detection, splits and
//! holdout groups, its validation, and the embedded default so idx runs with no files around
//! it. Nothing here reads the index; `neardup::Policy` turns these settings plus the families
//! config into what the store applies.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::families::Classifier;
use crate::neardup::Policy;
pub use crate::neardup::{Fractions, GroupBy};
use crate::parse::Mappings;
use crate::pii::{PiiConfig, Redactor};

/// Both config files, loaded: what every command that reads or writes rows needs.
#[derive(Debug)]
pub struct Settings {
    pub classifier: Classifier,
    pub idx: IdxConfig,
    /// Declared mappings (`configs/sources.toml`); the shipped ones unless replaced.
    pub mappings: Mappings,
    /// Derive recipes (`configs/derive.toml`); the shipped ones unless replaced.
    pub recipes: crate::recipes::Recipes,
}

impl Settings {
    /// Load both files; `None` gives the embedded default of that file.
    pub fn load(families: Option<&Path>, idx: Option<&Path>) -> Result<Settings> {
        Ok(Settings {
            classifier: Classifier::load(families)?,
            idx: IdxConfig::load(idx)?,
            mappings: Mappings::builtin(),
            recipes: crate::recipes::Recipes::builtin(),
        })
    }

    /// The built-in defaults of both files.
    pub fn builtin() -> Settings {
        Settings::load(None, None).expect("the embedded configs are valid")
    }

    /// The near-duplicate and split policy these settings define.
    pub fn policy(&self) -> Policy {
        self.idx.policy(&self.classifier)
    }

    /// XXH3-128 of the canonical form of `idx.toml`, recorded in export manifests.
    pub fn idx_digest(&self) -> String {
        let text = toml::to_string(&self.idx).unwrap_or_default();
        format!("{:032x}", xxhash_rust::xxh3::xxh3_128(text.as_bytes()))
    }

    /// The PII redactor these settings define.
    /// The compiled `[objects]` policy (validated when the config was loaded).
    pub fn keep(&self) -> crate::keep::Keep {
        crate::keep::Keep::new(&self.idx.objects).unwrap_or_default()
    }

    pub fn redactor(&self) -> Redactor {
        Redactor::new(&self.idx.pii)
    }

    /// Digest of everything that changes how an object's text is turned into rows (the PII
    /// settings and the revision of the reading code): objects read under another digest are
    /// read again.
    pub fn read_digest(&self) -> String {
        let text = format!(
            "revision {READ_REVISION}\nmappings {}\n{}",
            self.mappings.digest(),
            toml::to_string(&self.idx.pii).unwrap_or_default()
        );
        format!("{:032x}", xxhash_rust::xxh3::xxh3_128(text.as_bytes()))
    }
}

/// The revision of the code that turns an object's text into rows (parsing, repair, the PII
/// rules and name lists): raise it when a change there would give an object other rows, so
/// every index re-reads its objects on the next ingest. 2: names judged by word lists,
/// numbered placeholders.
const READ_REVISION: u32 = 2;

/// The default settings, as shipped in `configs/idx.toml`.
pub const DEFAULT_IDX_TOML: &str = include_str!("../configs/idx.toml");

const CONFIG_VERSION: u32 = 1;

/// Everything in `idx.toml`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct IdxConfig {
    pub version: u32,
    #[serde(default)]
    pub near_dup: NearDupConfig,
    #[serde(default)]
    pub splits: SplitConfig,
    #[serde(default)]
    pub holdout: HoldoutConfig,
    #[serde(default)]
    pub pii: PiiConfig,
    #[serde(default)]
    pub export: ExportConfig,
    #[serde(default)]
    pub structure: StructureConfig,
    #[serde(default)]
    pub distribution: DistributionConfig,
    #[serde(default)]
    pub decontamination: DecontaminationConfig,
    #[serde(default)]
    pub objects: crate::keep::ObjectsConfig,
    #[serde(default)]
    pub s3: S3Config,
    #[serde(default)]
    pub serve: ServeConfig,
}

/// `[serve]`: what `idx serve` keeps current (its flags add to these lists).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServeConfig {
    /// Local folders to watch.
    pub watch: Vec<String>,
    /// `s3://bucket/prefix` sources to poll.
    pub s3: Vec<String>,
    /// An S3 inventory (file or s3:// URL) for the S3 sources.
    pub inventory: Option<String>,
    /// Full rescan of every folder, in seconds (a safety net: events can be lost).
    pub rescan_seconds: u64,
    /// S3 listing interval, in seconds.
    pub poll_seconds: u64,
}

impl Default for ServeConfig {
    fn default() -> Self {
        ServeConfig {
            watch: Vec::new(),
            s3: Vec::new(),
            inventory: None,
            rescan_seconds: 60,
            poll_seconds: 300,
        }
    }
}

/// `[s3]`: how to reach S3 or an S3-compatible endpoint. Unset fields come from the standard AWS
/// chain (environment, profiles); `--s3-endpoint` and `--s3-path-style` override these.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct S3Config {
    /// e.g. `https://s3.gra.io.cloud.ovh.net` or `http://127.0.0.1:9000`.
    pub endpoint: Option<String>,
    /// Path-style addressing (`endpoint/bucket/key`), which most S3-compatible stores need.
    pub path_style: bool,
    pub region: Option<String>,
    /// A named profile of ~/.aws/config.
    pub profile: Option<String>,
    /// Attempts per request (and per download) on 5xx, throttling and timeouts.
    pub max_attempts: u32,
    /// Uploads larger than this go in multipart parts of this size (at least 5 MiB).
    pub multipart_bytes: u64,
    /// Static credentials for programmatic use (tests); never read from or written to a file.
    #[serde(skip)]
    pub credentials: Option<(String, String)>,
}

impl Default for S3Config {
    fn default() -> Self {
        S3Config {
            endpoint: None,
            path_style: false,
            region: None,
            profile: None,
            max_attempts: 4,
            multipart_bytes: 64 * 1024 * 1024,
            credentials: None,
        }
    }
}

/// `[export]`: how `idx export` lays out the dataset.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ExportConfig {
    /// A shard is closed before it would exceed this many bytes.
    pub shard_bytes: u64,
    /// Export each near-duplicate group once, through its representative.
    pub collapse_near_duplicates: bool,
}

impl Default for ExportConfig {
    fn default() -> Self {
        ExportConfig {
            shard_bytes: 256 * 1024 * 1024,
            collapse_near_duplicates: true,
        }
    }
}

/// `[structure]`: the structure gate of `idx verify` (see [`crate::structure`]).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct StructureConfig {
    /// A family fails the gate when more than this fraction of its unique conversation rows
    /// fail a structure check (those rows are held back from the export either way).
    pub max_flawed_fraction: f64,
}

impl Default for StructureConfig {
    fn default() -> Self {
        StructureConfig {
            max_flawed_fraction: 0.10,
        }
    }
}

/// `[decontamination]`: checking rows against benchmark sets (`idx decontaminate`).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct DecontaminationConfig {
    /// Words per n-gram.
    pub ngram: u32,
    /// An n-gram found in more benchmark items than this is boilerplate ("Answer with the
    /// letter only") and never matches.
    pub max_items_per_ngram: u32,
    /// What an export does with a row that shares an n-gram with a benchmark.
    pub action: ContaminationAction,
    /// A row counts as contaminated when at least this share of its n-grams matched (0: any).
    pub min_share: f64,
}

impl Default for DecontaminationConfig {
    fn default() -> Self {
        DecontaminationConfig {
            ngram: 13,
            max_items_per_ngram: 10,
            action: ContaminationAction::Exclude,
            min_share: 0.0,
        }
    }
}

/// What an export does with a contaminated row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ContaminationAction {
    /// Keep it; `idx query contamination` and the manifest report it.
    Report,
    /// Leave it (and the near-duplicates it stands for) out of every export file.
    Exclude,
    /// Leave it out of the dataset and write it to `quarantine/contaminated.chatml.jsonl`.
    Quarantine,
}

impl ContaminationAction {
    pub fn as_str(self) -> &'static str {
        match self {
            ContaminationAction::Report => "report",
            ContaminationAction::Exclude => "exclude",
            ContaminationAction::Quarantine => "quarantine",
        }
    }
}

/// `[distribution]`: the distribution gate of `idx verify` (see [`crate::verify`]).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct DistributionConfig {
    /// How far (absolute) a family's share of rows in a split may stray from the configured
    /// fraction, on top of three standard errors of a random split of its clusters.
    pub split_tolerance: f64,
    /// Families with fewer clusters (holdout groups included) are not judged on split fractions.
    pub min_units: u64,
    /// Every holdout family with at least `min_units` groups must have rows in test.
    pub holdout_in_test: bool,
    /// A curriculum stage whose mix the index cannot supply fails the gate (else it is reported).
    pub curriculum_mix: bool,
    /// Bounds on a family's share of one phase's tokens.
    pub share: Vec<ShareBound>,
}

impl Default for DistributionConfig {
    fn default() -> Self {
        DistributionConfig {
            split_tolerance: 0.05,
            min_units: 20,
            holdout_in_test: true,
            curriculum_mix: false,
            share: Vec::new(),
        }
    }
}

/// `[[distribution.share]]`: a family's (primary family's) share of a phase's tokens.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ShareBound {
    /// `pretraining`, `sft` or `preference`.
    pub phase: String,
    pub family: String,
    #[serde(default)]
    pub min: f64,
    #[serde(default = "one")]
    pub max: f64,
}

fn one() -> f64 {
    1.0
}

/// `[near_dup]`: candidate search and verification.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct NearDupConfig {
    pub hamming: u32,
    pub blocks: u32,
    pub jaccard: f64,
    pub min_words: u32,
}

impl Default for NearDupConfig {
    fn default() -> Self {
        NearDupConfig {
            hamming: 6,
            blocks: 4,
            jaccard: 0.8,
            min_words: 24,
        }
    }
}

/// `[splits]`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct SplitConfig {
    pub train: f64,
    pub val: f64,
    pub test: f64,
    pub salt: String,
}

impl Default for SplitConfig {
    fn default() -> Self {
        SplitConfig {
            train: 0.90,
            val: 0.05,
            test: 0.05,
            salt: "idx-splits-v1".to_string(),
        }
    }
}

/// `[holdout]`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct HoldoutConfig {
    pub group: GroupBy,
    pub train: f64,
    pub val: f64,
    pub test: f64,
}

impl Default for HoldoutConfig {
    fn default() -> Self {
        HoldoutConfig {
            group: GroupBy::Object,
            train: 0.80,
            val: 0.10,
            test: 0.10,
        }
    }
}

impl SplitConfig {
    pub fn fractions(&self) -> Fractions {
        Fractions {
            train: self.train,
            val: self.val,
            test: self.test,
        }
    }
}

impl HoldoutConfig {
    pub fn fractions(&self) -> Fractions {
        Fractions {
            train: self.train,
            val: self.val,
            test: self.test,
        }
    }
}

/// Range scans one near-duplicate lookup makes: per block, every prefix within
/// `hamming / blocks` flipped bits of the fingerprint's own.
pub fn probe_count(blocks: u32, hamming: u32) -> u64 {
    let b = blocks.max(1) as u64;
    let radius = hamming as u64 / b;
    (0..b)
        .map(|i| {
            let width = 64 / b + u64::from(i < 64 % b);
            (0..=radius.min(width))
                .map(|r| (0..r).fold(1u64, |acc, j| acc * (width - j) / (j + 1)))
                .sum::<u64>()
        })
        .sum()
}

/// The most range scans one lookup may make.
pub const MAX_PROBES: u64 = 1024;

impl IdxConfig {
    /// The near-duplicate and split policy these settings and the families' holdout flags make.
    pub fn policy(&self, classifier: &Classifier) -> Policy {
        Policy {
            hamming: self.near_dup.hamming,
            blocks: self.near_dup.blocks,
            jaccard: self.near_dup.jaccard,
            min_words: self.near_dup.min_words,
            fractions: self.splits.fractions(),
            holdout_fractions: self.holdout.fractions(),
            salt: self.splits.salt.clone(),
            group_by: self.holdout.group,
            holdout_families: classifier
                .config()
                .families
                .iter()
                .filter(|f| f.holdout)
                .map(|f| f.name.clone())
                .collect(),
        }
    }

    /// Load a config file; `None` gives the embedded default.
    pub fn load(path: Option<&Path>) -> Result<Self> {
        let (text, origin) = crate::config_file::config_text(path, DEFAULT_IDX_TOML, "idx.toml")?;
        Self::from_toml(&text, &origin)
    }

    /// Parse and validate; `origin` names the file in errors.
    pub fn from_toml(text: &str, origin: &str) -> Result<Self> {
        let config: IdxConfig = toml::from_str(text).map_err(|e| Error::Config {
            path: origin.to_string(),
            message: e.to_string(),
        })?;
        config.validate().map_err(|message| Error::Config {
            path: origin.to_string(),
            message,
        })?;
        Ok(config)
    }

    /// Check every value; the message names the bad key.
    pub fn validate(&self) -> std::result::Result<(), String> {
        if self.version != CONFIG_VERSION {
            return Err(format!(
                "`version` is {}, this idx reads version {CONFIG_VERSION}",
                self.version
            ));
        }
        if self.s3.multipart_bytes < 5 << 20 {
            return Err(format!(
                "`s3.multipart_bytes` is {}, S3 needs parts of at least 5 MiB (5242880)",
                self.s3.multipart_bytes
            ));
        }
        let f = self.structure.max_flawed_fraction;
        if !(0.0..=1.0).contains(&f) {
            return Err(format!(
                "`structure.max_flawed_fraction` is {f}, it must be between 0 and 1"
            ));
        }
        if self.export.shard_bytes < 4096 {
            return Err(format!(
                "`export.shard_bytes` is {}, at least 4096 is needed",
                self.export.shard_bytes
            ));
        }
        let nd = &self.near_dup;
        if nd.blocks == 0 || nd.blocks > 64 {
            return Err(format!(
                "`near_dup.blocks` is {}, it must be 1 to 64",
                nd.blocks
            ));
        }
        if nd.hamming > 32 {
            return Err(format!(
                "`near_dup.hamming` is {}, at most 32 (half the SimHash) makes sense",
                nd.hamming
            ));
        }
        let probes = probe_count(nd.blocks, nd.hamming);
        if probes > MAX_PROBES {
            return Err(format!(
                "`near_dup.hamming` {} over {} blocks needs {probes} range scans per lookup; at most {MAX_PROBES} are allowed (use more blocks)",
                nd.hamming, nd.blocks
            ));
        }
        if !(nd.jaccard > 0.0 && nd.jaccard <= 1.0) {
            return Err(format!(
                "`near_dup.jaccard` is {}, it must be in (0, 1]",
                nd.jaccard
            ));
        }
        if self.pii.max_detections == 0 {
            return Err("`pii.max_detections` is 0: every row with PII would be excluded; use `exclude_kinds` for that".into());
        }
        crate::keep::Keep::new(&self.objects)?;
        let dc = &self.decontamination;
        if !(1..=64).contains(&dc.ngram) {
            return Err(format!(
                "`decontamination.ngram` is {}, it must be 1 to 64 words",
                dc.ngram
            ));
        }
        if dc.max_items_per_ngram == 0 {
            return Err("`decontamination.max_items_per_ngram` is 0: nothing would match".into());
        }
        if !(0.0..=1.0).contains(&dc.min_share) {
            return Err(format!(
                "`decontamination.min_share` is {}, it must be between 0 and 1",
                dc.min_share
            ));
        }
        let d = &self.distribution;
        if !(0.0..=1.0).contains(&d.split_tolerance) {
            return Err(format!(
                "`distribution.split_tolerance` is {}, it must be between 0 and 1",
                d.split_tolerance
            ));
        }
        for (i, b) in d.share.iter().enumerate() {
            if !["pretraining", "sft", "preference"].contains(&b.phase.as_str()) {
                return Err(format!(
                    "`distribution.share` entry {} has phase `{}`; phases are pretraining, sft and preference",
                    i + 1,
                    b.phase
                ));
            }
            if !(0.0..=1.0).contains(&b.min) || !(0.0..=1.0).contains(&b.max) || b.min > b.max {
                return Err(format!(
                    "`distribution.share` entry {} (`{}` in {}): min {} and max {} must be in [0, 1] with min <= max",
                    i + 1,
                    b.family,
                    b.phase,
                    b.min,
                    b.max
                ));
            }
        }
        check_fractions("splits", self.splits.fractions())?;
        check_fractions("holdout", self.holdout.fractions())?;
        Ok(())
    }
}

fn check_fractions(section: &str, f: Fractions) -> std::result::Result<(), String> {
    for (name, v) in [("train", f.train), ("val", f.val), ("test", f.test)] {
        if !(0.0..=1.0).contains(&v) {
            return Err(format!("`{section}.{name}` is {v}, it must be in [0, 1]"));
        }
    }
    let sum = f.train + f.val + f.test;
    if (sum - 1.0).abs() > 1e-6 {
        return Err(format!(
            "`{section}.train + val + test` is {sum}, it must be 1"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_config_is_the_default() {
        let c = IdxConfig::load(None).unwrap();
        assert_eq!(c.near_dup, NearDupConfig::default());
        assert_eq!(c.splits, SplitConfig::default());
        assert_eq!(c.holdout, HoldoutConfig::default());
        assert_eq!(c.pii, PiiConfig::default());
        let minimal = IdxConfig::from_toml("version = 1", "t").unwrap();
        assert_eq!(minimal, c);
    }

    #[test]
    fn bad_values_name_their_key() {
        let cases = [
            ("version = 2", "`version`"),
            (
                "version = 1\n[near_dup]\nhamming = 40",
                "`near_dup.hamming`",
            ),
            (
                "version = 1\n[near_dup]\nhamming = 12\nblocks = 4",
                "range scans",
            ),
            ("version = 1\n[near_dup]\nblocks = 0", "`near_dup.blocks`"),
            (
                "version = 1\n[near_dup]\njaccard = 1.5",
                "`near_dup.jaccard`",
            ),
            (
                "version = 1\n[splits]\ntrain = 0.5",
                "`splits.train + val + test`",
            ),
            ("version = 1\n[holdout]\nval = -0.1", "`holdout.val`"),
            (
                "version = 1\n[pii]\nexclude_kinds = [\"passport\"]",
                "unknown variant",
            ),
            (
                "version = 1\n[pii]\nmax_detections = 0",
                "`pii.max_detections`",
            ),
            (
                "version = 1\n[holdout]\ngroup = \"speaker\"",
                "unknown variant",
            ),
            ("version = 1\n[near_dup]\nk = 3", "unknown field"),
        ];
        for (text, expected) in cases {
            let err = IdxConfig::from_toml(text, "idx.toml")
                .unwrap_err()
                .to_string();
            assert!(err.contains(expected), "{text}: {err}");
            assert!(err.starts_with("config idx.toml:"), "{err}");
        }
    }

    #[test]
    fn probe_counts() {
        assert_eq!(probe_count(4, 3), 4);
        assert_eq!(probe_count(4, 6), 4 * 17);
        assert_eq!(probe_count(4, 8), 4 * (1 + 16 + 120));
        assert_eq!(probe_count(5, 4), 5);
        assert_eq!(
            probe_count(4, 7) as usize,
            crate::neardup::BlockTables::new(4, 7).probes()
        );
    }
}
