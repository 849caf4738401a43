//! The training curriculum (`configs/curriculum.toml`): stages in training order — continued
//! pretraining, staged SFT, preference alignment — each routing dataset families with mixing
//! weights. This module owns the typed config and its static checks, and the *plan*: what each
//! stage would draw from an index snapshot (train-split rows only, so holdout and evaluation
//! rows never reach training), whether the mix is satisfiable, and which preference algorithm
//! the available data calls for, with the reason. `import` converts the original system's JSON
//! plan into this form. Writing the trainer files is the export's job.

pub mod import;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::families::Classifier;
use crate::fingerprint::Hash128;
use crate::model::RecordKind;
use crate::neardup::Split;
use crate::select::{SelectedRow, Selection};

/// The curriculum shipped in `configs/curriculum.toml`: the original system's plan.
pub const DEFAULT_CURRICULUM_TOML: &str = include_str!("../../configs/curriculum.toml");

const CURRICULUM_VERSION: u32 = 1;

/// Turns the pieces of a long session share by default (one user/assistant exchange).
pub const DEFAULT_OVERLAP_TURNS: u32 = 2;

/// Weights of a stage must add up to 1 within this.
const WEIGHT_TOLERANCE: f64 = 1e-6;

/// Everything in `curriculum.toml`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Curriculum {
    pub version: u32,
    pub name: String,
    /// Where the plan came from (e.g. the original JSON file and its version).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_model: Option<String>,
    /// Families the plan keeps for evaluation: they must be `holdout = true` in families.toml,
    /// so whole sessions are held out (only their train-split groups are ever routed).
    #[serde(default)]
    pub holdout_families: Vec<String>,
    /// The stages, in training order.
    #[serde(rename = "stage")]
    pub stages: Vec<Stage>,
}

/// One stage of training.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Stage {
    /// Unique, file-name safe (`[a-z0-9_]+`): names the stage's files.
    pub id: String,
    pub phase: Phase,
    #[serde(default)]
    pub title: String,
    #[serde(default)]
    pub purpose: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub epochs: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub learning_rate: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context_length: Option<u32>,
    /// A conversation longer than `context_length` is cut at turn boundaries into pieces;
    /// each piece after the first repeats at least this many turns of the one before (whole
    /// exchanges, from a user turn). Default 2: the last exchange.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub overlap_turns: Option<u32>,
    /// Tokens the stage should draw; unset: as many as the mix allows without repeating rows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens: Option<u64>,
    /// Preference stages: the algorithm for preference pairs (`dpo`, `orpo`, `simpo`), or
    /// `kto` (pairs are then split into labelled completions). Unpaired labels always use KTO.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub algorithm: Option<Algorithm>,
    /// Hyper-parameters per algorithm, carried into `curriculum.json` for the trainer.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub algorithm_options: BTreeMap<Algorithm, AlgorithmOptions>,
    /// Family → mixing weight (adding up to 1).
    pub weights: BTreeMap<String, f64>,
}

/// The three phases of training.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Continued pretraining on domain text.
    Pretraining,
    /// Supervised fine-tuning on conversations.
    Sft,
    /// Preference alignment.
    Preference,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Pretraining => "pretraining",
            Phase::Sft => "sft",
            Phase::Preference => "preference",
        }
    }

    /// Whether rows of `kind` can feed this phase: text and conversations feed pretraining (as
    /// plain text); conversations feed SFT (plain text is no conversation: as one assistant
    /// message it trains nothing and strict chat templates refuse it); preference pairs and KTO
    /// labels feed preference.
    pub fn accepts(self, kind: RecordKind) -> bool {
        let preference = matches!(kind, RecordKind::Preference | RecordKind::Kto);
        match self {
            Phase::Pretraining => !preference,
            Phase::Sft => !preference && kind != RecordKind::Text,
            Phase::Preference => preference,
        }
    }
}

/// Preference-alignment algorithms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Algorithm {
    Dpo,
    Orpo,
    Simpo,
    Kto,
}

impl Algorithm {
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::Dpo => "dpo",
            Algorithm::Orpo => "orpo",
            Algorithm::Simpo => "simpo",
            Algorithm::Kto => "kto",
        }
    }

    /// Whether it trains on (prompt, chosen, rejected) pairs.
    pub fn uses_pairs(self) -> bool {
        !matches!(self, Algorithm::Kto)
    }
}

/// Hyper-parameters of one algorithm.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AlgorithmOptions {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub learning_rate: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub beta: Option<f64>,
    /// SimPO's target reward margin (TRL's and axolotl's `simpo_gamma`; 0.5 when unset).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gamma: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

impl Curriculum {
    /// `path`, or the built-in default when `None`.
    pub fn load(path: Option<&Path>) -> Result<Curriculum> {
        let (text, origin) =
            crate::config_file::config_text(path, DEFAULT_CURRICULUM_TOML, "curriculum.toml")?;
        Self::from_toml(&text, &origin)
    }

    /// Parse and check the file on its own (weights, ids, algorithms); `origin` names it in
    /// errors. Checks against the families and the index are `plan`'s.
    pub fn from_toml(text: &str, origin: &str) -> Result<Curriculum> {
        let c: Curriculum = toml::from_str(text).map_err(|e| Error::Config {
            path: origin.to_string(),
            message: e.to_string(),
        })?;
        let problems = c.static_errors();
        if !problems.is_empty() {
            return Err(Error::Config {
                path: origin.to_string(),
                message: problems.join("; "),
            });
        }
        Ok(c)
    }

    /// Problems visible in the file alone.
    pub fn static_errors(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.version != CURRICULUM_VERSION {
            out.push(format!(
                "version {} is not supported (this idx reads version {CURRICULUM_VERSION})",
                self.version
            ));
        }
        if self.stages.is_empty() {
            out.push("no [[stage]]".to_string());
        }
        let mut ids = BTreeSet::new();
        for s in &self.stages {
            if s.id.is_empty()
                || !s
                    .id
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
            {
                out.push(format!(
                    "stage id `{}` must be lowercase letters, digits and `_`",
                    s.id
                ));
            }
            if !ids.insert(s.id.as_str()) {
                out.push(format!("stage id `{}` is used twice", s.id));
            }
            if s.weights.is_empty() {
                out.push(format!("stage `{}` routes no family (empty weights)", s.id));
            }
            for (f, w) in &s.weights {
                if !(w.is_finite() && *w > 0.0 && *w <= 1.0) {
                    out.push(format!(
                        "stage `{}`: weight of `{f}` is {w}; weights are in (0, 1]",
                        s.id
                    ));
                }
            }
            let sum: f64 = s.weights.values().sum();
            if !s.weights.is_empty() && (sum - 1.0).abs() > WEIGHT_TOLERANCE {
                out.push(format!(
                    "stage `{}`: weights add up to {sum:.6}, not 1 ({})",
                    s.id,
                    s.weights
                        .iter()
                        .map(|(f, w)| format!("{f} {w}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            }
            if s.phase != Phase::Preference
                && (s.algorithm.is_some() || !s.algorithm_options.is_empty())
            {
                out.push(format!(
                    "stage `{}` is {} but names a preference algorithm",
                    s.id,
                    s.phase.as_str()
                ));
            }
        }
        out
    }

    /// XXH3-128 of the canonical TOML form, recorded in export manifests.
    pub fn digest(&self) -> String {
        let text = toml::to_string(self).unwrap_or_default();
        format!("{:032x}", xxhash_rust::xxh3::xxh3_128(text.as_bytes()))
    }
}

/// What the curriculum would draw from an index snapshot.
#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    pub name: String,
    /// The model the curriculum trains (carried into the trainer configs).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub base_model: Option<String>,
    /// No errors (warnings allowed).
    pub passed: bool,
    pub errors: Vec<String>,
    pub warnings: Vec<String>,
    pub stages: Vec<StagePlan>,
}

/// One stage's draw.
#[derive(Debug, Clone, Serialize)]
pub struct StagePlan {
    /// 1-based position in training order.
    pub order: usize,
    pub id: String,
    pub phase: Phase,
    pub title: String,
    pub purpose: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub epochs: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub learning_rate: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub context_length: Option<u32>,
    /// Turns of overlap between the pieces of a long session.
    pub overlap_turns: u32,
    /// Requested tokens, when the stage sets them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target_tokens: Option<u64>,
    /// The largest draw the mix allows without repeating a row.
    pub max_tokens: u64,
    pub families: Vec<FamilyDraw>,
    /// Drawn train rows and tokens (each row once, even when it carries two routed families).
    pub rows: u64,
    pub tokens: u64,
    /// Val-split rows of the routed families (the stage's evaluation file).
    pub val_rows: u64,
    pub val_tokens: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub algorithm: Option<AlgorithmChoice>,
    /// Rows drawn for training, in file order.
    #[serde(skip)]
    pub train: Vec<Hash128>,
    /// Val rows, in file order.
    #[serde(skip)]
    pub val: Vec<Hash128>,
}

/// What a stage draws from one family.
#[derive(Debug, Clone, Serialize)]
pub struct FamilyDraw {
    pub family: String,
    pub weight: f64,
    /// Train-split rows of the family that suit the stage's phase.
    pub available_rows: u64,
    pub available_tokens: u64,
    pub rows: u64,
    pub tokens: u64,
    /// The share of the stage's tokens it actually got.
    pub effective_weight: f64,
}

/// The preference algorithm chosen for a stage, and why.
#[derive(Debug, Clone, Serialize)]
pub struct AlgorithmChoice {
    pub algorithm: Algorithm,
    pub reason: String,
    pub pairs: u64,
    pub unpaired: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub options: Option<AlgorithmOptions>,
}

/// Order rows within a stage's draw: a salted hash of the stage id and the row, so stages
/// drawing from one family do not all take the same rows, and nothing depends on arrival order.
fn draw_key(stage: &str, h: Hash128) -> u64 {
    let mut x = xxhash_rust::xxh3::Xxh3::new();
    x.update(stage.as_bytes());
    x.update(&[0]);
    x.update(&h.to_bytes());
    x.digest()
}

/// Plan every stage against the exportable rows of a snapshot.
pub fn plan(curriculum: &Curriculum, classifier: &Classifier, selection: &Selection) -> Plan {
    let errors = curriculum.static_errors();
    let mut warnings = Vec::new();
    let families: BTreeMap<&str, bool> = classifier
        .config()
        .families
        .iter()
        .map(|f| (f.name.as_str(), f.holdout))
        .collect();
    for f in &curriculum.holdout_families {
        match families.get(f.as_str()) {
            // A curriculum written for other families (the shipped one, on a user's own
            // folder) still exports: what it names and the index lacks is said, not fatal.
            None => warnings.push(format!(
                "holdout family `{f}` is not a family in the families config: ignored"
            )),
            Some(false) => warnings.push(format!(
                "holdout family `{f}` is not `holdout = true` in the families config: its \
                 sessions are split row by row, not held out whole"
            )),
            Some(true) => {}
        }
    }
    let mut stages = Vec::new();
    for (i, stage) in curriculum.stages.iter().enumerate() {
        for f in stage.weights.keys() {
            if !families.contains_key(f.as_str()) {
                warnings.push(format!(
                    "stage `{}` routes `{f}`, which is not a family in the families config: \
                     it draws nothing",
                    stage.id
                ));
            }
        }
        stages.push(plan_stage(i + 1, stage, selection, &mut warnings));
    }
    Plan {
        name: curriculum.name.clone(),
        base_model: curriculum.base_model.clone(),
        passed: errors.is_empty(),
        errors,
        warnings,
        stages,
    }
}

fn plan_stage(
    order: usize,
    stage: &Stage,
    selection: &Selection,
    warnings: &mut Vec<String>,
) -> StagePlan {
    // Candidate rows per routed family, in draw order.
    let suits = |r: &SelectedRow| stage.phase.accepts(r.kind);
    let mut available: BTreeMap<&str, Vec<&SelectedRow>> = BTreeMap::new();
    let mut val: BTreeSet<(u64, Hash128)> = BTreeSet::new();
    let mut val_tokens = 0u64;
    for r in selection.rows.iter().filter(|r| suits(r)) {
        let routed: Vec<&str> = r
            .families
            .iter()
            .map(String::as_str)
            .filter(|f| stage.weights.contains_key(*f))
            .collect();
        if routed.is_empty() {
            continue;
        }
        match r.split {
            Split::Train => {
                for f in routed {
                    available.entry(f).or_default().push(r);
                }
            }
            Split::Val => {
                if val.insert((draw_key(&stage.id, r.hash), r.hash)) {
                    val_tokens += r.tokens;
                }
            }
            Split::Test => {}
        }
    }
    // A preference stage's algorithm follows the shape of the data its families offer; rows
    // of a shape it cannot use are not drawn.
    let algorithm = if stage.phase == Phase::Preference {
        let mut shapes: BTreeMap<Hash128, RecordKind> = BTreeMap::new();
        for r in available.values().flatten() {
            shapes.insert(r.hash, r.kind);
        }
        let choice = choose_algorithm(stage, shapes.values().copied(), warnings);
        let pairs_only = choice.as_ref().is_some_and(|c| c.algorithm.uses_pairs());
        if pairs_only {
            for rows in available.values_mut() {
                rows.retain(|r| r.kind == RecordKind::Preference);
            }
            val.retain(|(_, h)| {
                selection
                    .get(*h)
                    .is_some_and(|r| r.kind == RecordKind::Preference)
            });
            val_tokens = val
                .iter()
                .filter_map(|(_, h)| selection.get(*h))
                .map(|r| r.tokens)
                .sum();
        }
        choice
    } else {
        None
    };
    for rows in available.values_mut() {
        rows.sort_by_key(|r| (draw_key(&stage.id, r.hash), r.hash));
    }
    let tokens_of = |f: &str| -> u64 {
        available
            .get(f)
            .map_or(0, |rows| rows.iter().map(|r| r.tokens).sum())
    };
    // The largest total the weights allow: each family supplies `weight * total` tokens.
    let mut max_tokens = f64::INFINITY;
    for (f, &w) in &stage.weights {
        let t = tokens_of(f);
        if t == 0 {
            warnings.push(format!(
                "stage `{}`: family `{f}` has no train-split {} rows; its weight {w} cannot be met",
                stage.id,
                stage.phase.as_str()
            ));
            continue;
        }
        max_tokens = max_tokens.min(t as f64 / w);
    }
    if !max_tokens.is_finite() {
        max_tokens = 0.0;
    }
    let budget = match stage.tokens {
        Some(target) if (target as f64) > max_tokens => {
            let limit = stage
                .weights
                .iter()
                .filter(|(f, _)| tokens_of(f) > 0)
                .min_by(|a, b| {
                    (tokens_of(a.0) as f64 / a.1).total_cmp(&(tokens_of(b.0) as f64 / b.1))
                })
                .map(|(f, w)| format!(" (`{f}` limits it: {} tokens for weight {w})", tokens_of(f)))
                .unwrap_or_default();
            warnings.push(format!(
                "stage `{}` asks for {target} tokens but its mix allows {} without repeating \
                 rows{limit}",
                stage.id, max_tokens as u64
            ));
            max_tokens
        }
        Some(target) => target as f64,
        None => max_tokens,
    };
    let mut taken: BTreeSet<Hash128> = BTreeSet::new();
    let mut train = Vec::new();
    let mut draws = Vec::new();
    for (f, &w) in &stage.weights {
        let quota = w * budget;
        let rows = available.get(f.as_str()).map(Vec::as_slice).unwrap_or(&[]);
        let mut got = (0u64, 0u64);
        for r in rows {
            let (now, next) = (got.1 as f64, (got.1 + r.tokens) as f64);
            // Stop at the quota, or where one more row would overshoot it by more than it helps.
            if now >= quota - 0.5 || next - quota > quota - now {
                break;
            }
            if !taken.insert(r.hash) {
                continue;
            }
            train.push((draw_key(&stage.id, r.hash), r.hash));
            got.0 += 1;
            got.1 += r.tokens;
        }
        draws.push(FamilyDraw {
            family: f.clone(),
            weight: w,
            available_rows: rows.len() as u64,
            available_tokens: tokens_of(f),
            rows: got.0,
            tokens: got.1,
            effective_weight: 0.0,
        });
    }
    let tokens: u64 = draws.iter().map(|d| d.tokens).sum();
    for d in &mut draws {
        d.effective_weight = if tokens == 0 {
            0.0
        } else {
            d.tokens as f64 / tokens as f64
        };
    }
    train.sort();
    let train: Vec<Hash128> = train.into_iter().map(|(_, h)| h).collect();
    StagePlan {
        order,
        id: stage.id.clone(),
        phase: stage.phase,
        title: stage.title.clone(),
        purpose: stage.purpose.clone(),
        epochs: stage.epochs,
        learning_rate: stage.learning_rate,
        context_length: stage.context_length,
        overlap_turns: stage.overlap_turns.unwrap_or(DEFAULT_OVERLAP_TURNS),
        target_tokens: stage.tokens,
        max_tokens: max_tokens as u64,
        families: draws,
        rows: train.len() as u64,
        tokens,
        val_rows: val.len() as u64,
        val_tokens,
        algorithm,
        train,
        val: val.into_iter().map(|(_, h)| h).collect(),
    }
}

/// Where a plan falls short of its curriculum: a routed family with no train rows the stage
/// can use, or a stage asking for more tokens than its mix can supply without repeating rows.
pub fn shortfalls(curriculum: &Curriculum, plan: &Plan) -> Vec<String> {
    let mut out = Vec::new();
    for (stage, planned) in curriculum.stages.iter().zip(&plan.stages) {
        for d in planned.families.iter().filter(|d| d.weight > 0.0) {
            if d.available_tokens == 0 {
                out.push(format!(
                    "stage `{}`: family `{}` (weight {}) has no train-split {} rows",
                    stage.id,
                    d.family,
                    d.weight,
                    stage.phase.as_str()
                ));
            }
        }
        if let Some(target) = stage.tokens {
            if target > planned.max_tokens {
                out.push(format!(
                    "stage `{}` asks for {target} tokens; its mix supplies {} without repeating rows",
                    stage.id, planned.max_tokens
                ));
            }
        }
    }
    out
}

/// Pairs call for a pair algorithm (the configured one, ORPO by default); unpaired labels for
/// KTO; a stage configured for KTO turns pairs into two labelled completions.
fn choose_algorithm(
    stage: &Stage,
    kinds: impl Iterator<Item = RecordKind>,
    warnings: &mut Vec<String>,
) -> Option<AlgorithmChoice> {
    let mut pairs = 0u64;
    let mut unpaired = 0u64;
    for kind in kinds {
        match kind {
            RecordKind::Preference => pairs += 1,
            RecordKind::Kto => unpaired += 1,
            _ => {}
        }
    }
    let configured = stage.algorithm.unwrap_or(Algorithm::Orpo);
    let (algorithm, reason) = if pairs > 0 && configured.uses_pairs() {
        if unpaired > 0 {
            warnings.push(format!(
                "stage `{}`: {unpaired} unpaired (KTO) rows are not used by {}",
                stage.id,
                configured.as_str()
            ));
        }
        (
            configured,
            format!(
                "{pairs} preference pairs (prompt, chosen, rejected) are available and {} is \
                 the configured pair algorithm",
                configured.as_str()
            ),
        )
    } else if configured == Algorithm::Kto && pairs + unpaired > 0 {
        (
            Algorithm::Kto,
            format!(
                "kto is configured: {unpaired} labelled completions, plus {pairs} pairs split \
                 into a desirable and an undesirable completion each"
            ),
        )
    } else if unpaired > 0 {
        if stage.algorithm.is_some_and(Algorithm::uses_pairs) {
            warnings.push(format!(
                "stage `{}`: {} needs preference pairs and there are none; using kto",
                stage.id,
                configured.as_str()
            ));
        }
        (
            Algorithm::Kto,
            format!(
                "no preference pairs, {unpaired} completions with a desirable/undesirable \
                 label: KTO trains on unpaired labels"
            ),
        )
    } else {
        warnings.push(format!(
            "stage `{}` has no preference data to train on",
            stage.id
        ));
        return None;
    };
    Some(AlgorithmChoice {
        algorithm,
        reason,
        pairs,
        unpaired,
        options: stage.algorithm_options.get(&algorithm).cloned(),
    })
}
