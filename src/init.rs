//! `idx init`: starter configs for a folder or prefix of unknown layout. It scans the source,
//! reads a sample of every object the way ingest would, and proposes: families (the built-in
//! rules where keys match them, otherwise one family per top-level folder), a curriculum that
//! routes only those families (text to continued pretraining, conversations to SFT, preference
//! data to alignment, by the record kinds it saw), and a `sources.toml` holding the shipped
//! mappings plus a commented entry for every object it could not read, with what it saw there.
//! Nothing is indexed; the files are returned as text for the caller to write.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;

use serde::Serialize;

use crate::config::Settings;
use crate::curriculum::{Algorithm, Curriculum, Phase, Stage};
use crate::error::Result;
use crate::families::{Classification, FamiliesConfig, Family, Rule, UNASSIGNED};
use crate::model::RecordKind;
use crate::parse::{self, Item, Limits};
use crate::source::{FoundObject, Source};

/// JSON Lines objects are sampled from their first bytes only (a drop folder can hold GBs).
const SAMPLE_BYTES: u64 = 4 << 20;

/// What `idx init` found and proposes.
#[derive(Debug, Clone, Serialize)]
pub struct InitPlan {
    pub source: String,
    pub objects: u64,
    /// Objects that are not training data (READMEs, notebooks...).
    pub not_data: u64,
    pub families: Vec<InitFamily>,
    /// Objects of which no sampled record could be read.
    pub unreadable: Vec<Unreadable>,
    /// The proposed files, by name (`families.toml`, `curriculum.toml`, `sources.toml`).
    #[serde(skip)]
    pub files: BTreeMap<&'static str, String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct InitFamily {
    pub name: String,
    /// `builtin` (the shipped rules matched) or `folder`.
    pub from: &'static str,
    pub objects: u64,
    /// Records read in the sample, by kind.
    pub kinds: BTreeMap<&'static str, u64>,
    /// Sampled conversations failing a structure check.
    pub flawed: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Unreadable {
    pub key: String,
    pub family: String,
    /// Why: the format, or the first rejection (which names the fields it saw).
    pub reason: String,
    /// Sampled records rejected.
    pub rejected: u64,
}

#[derive(Default)]
struct Sample {
    kinds: BTreeMap<RecordKind, u64>,
    rejected: u64,
    first_rejection: Option<String>,
    flawed: u64,
}

/// Scan `source`, sample its objects and propose configs. `settings` give the built-in rules,
/// limits come from `limits`; `spool` is where a remote object is fetched to.
pub fn init(
    source: &dyn Source,
    settings: &Settings,
    limits: Limits,
    spool: &std::path::Path,
) -> Result<InitPlan> {
    let found = source.scan()?;
    let builtin = settings.classifier.config();
    let mut plan = InitPlan {
        source: source.describe(),
        objects: 0,
        not_data: 0,
        families: Vec::new(),
        unreadable: Vec::new(),
        files: BTreeMap::new(),
    };
    let mut families: BTreeMap<String, (InitFamily, BTreeMap<RecordKind, u64>)> = BTreeMap::new();
    let mut folders: BTreeSet<String> = BTreeSet::new();
    let mut top_level: BTreeSet<String> = BTreeSet::new();
    for object in &found.scan.objects {
        plan.objects += 1;
        let (family, from) = match settings.classifier.classify(&object.key) {
            Classification::NotData { .. } => {
                plan.not_data += 1;
                continue;
            }
            Classification::Data { primary, .. } if primary != UNASSIGNED => (primary, "builtin"),
            Classification::Data { .. } => {
                let (family, folder) = folder_family(&object.key);
                match folder {
                    Some(folder) => folders.insert(folder),
                    None => top_level.insert(object.key.clone()),
                };
                (family, "folder")
            }
        };
        let sample = sample(source, object, settings, limits, spool);
        let entry = families.entry(family.clone()).or_insert_with(|| {
            (
                InitFamily {
                    name: family.clone(),
                    from,
                    objects: 0,
                    kinds: BTreeMap::new(),
                    flawed: 0,
                },
                BTreeMap::new(),
            )
        });
        entry.0.objects += 1;
        entry.0.flawed += sample.flawed;
        for (k, n) in &sample.kinds {
            *entry.1.entry(*k).or_default() += n;
        }
        if sample.kinds.is_empty() {
            plan.unreadable.push(Unreadable {
                key: object.key.clone(),
                family: family.clone(),
                reason: sample
                    .first_rejection
                    .unwrap_or_else(|| "no records".to_string()),
                rejected: sample.rejected,
            });
        }
    }
    for (_, (mut f, kinds)) in families {
        f.kinds = kinds.iter().map(|(k, n)| (k.as_str(), *n)).collect();
        plan.families.push(f);
    }
    plan.files.insert(
        "families.toml",
        families_toml(&plan, builtin, &folders, &top_level),
    );
    plan.files.insert("curriculum.toml", curriculum_toml(&plan));
    plan.files.insert("sources.toml", sources_toml(&plan));
    plan.files.insert("idx.toml", idx_toml(&plan));
    Ok(plan)
}

/// The family of a key no built-in rule matches: its top-level folder's, or `data` for objects
/// at the top level; with that folder.
fn folder_family(key: &str) -> (String, Option<String>) {
    match key.split_once('/') {
        Some((folder, _)) => (folder_family_name(folder), Some(folder.to_string())),
        None => ("data".to_string(), None),
    }
}

/// A folder's name as a family name: lower case, `_` for anything but ASCII letters and digits
/// (`data` when nothing is left).
fn folder_family_name(folder: &str) -> String {
    let name: String = folder
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect();
    if name.trim_matches('_').is_empty() {
        "data".to_string()
    } else {
        name
    }
}

fn sample(
    source: &dyn Source,
    object: &FoundObject,
    settings: &Settings,
    limits: Limits,
    spool: &std::path::Path,
) -> Sample {
    let mut s = Sample::default();
    let mapping = settings.mappings.for_key(&object.key);
    let Some((format, gzip)) = parse::file_format(&object.key, mapping.as_deref()) else {
        s.first_rejection = Some(
            "a format idx does not read by its extension: declare `format` in a mapping"
                .to_string(),
        );
        return s;
    };
    let file = match source.open(object, spool) {
        Ok(f) => f,
        Err(e) => {
            s.first_rejection = Some(e);
            return s;
        }
    };
    let mut sink = |item: Item| match item {
        Item::Record(r) => {
            *s.kinds.entry(r.conversation.kind).or_default() += 1;
            s.flawed += u64::from(!crate::structure::flaws(&r.conversation).is_empty());
        }
        Item::Rejected(r) => {
            s.rejected += 1;
            if s.first_rejection.is_none() {
                s.first_rejection = Some(format!("line {}: {}", r.line, r.reason));
            }
        }
    };
    if format == parse::FileFormat::Jsonl && !gzip {
        // Only the first bytes: a line cut at the end is not held against the object.
        parse::read_object_mapped(
            file.take(SAMPLE_BYTES),
            format,
            gzip,
            limits,
            mapping.as_deref(),
            &mut sink,
        );
    } else {
        parse::read_file_mapped(file, format, gzip, limits, mapping.as_deref(), &mut sink);
    }
    s
}

fn families_toml(
    plan: &InitPlan,
    builtin: &FamiliesConfig,
    folders: &BTreeSet<String>,
    top_level: &BTreeSet<String>,
) -> String {
    let used: BTreeSet<&str> = plan.families.iter().map(|f| f.name.as_str()).collect();
    let mut config = FamiliesConfig {
        version: builtin.version,
        exclude: builtin.exclude.clone(),
        families: Vec::new(),
        rules: Vec::new(),
    };
    for f in &plan.families {
        // A family nothing could be read of yet is optional until its mapping is declared.
        let readable = !f.kinds.is_empty();
        let mut family = match builtin.families.iter().find(|b| b.name == f.name) {
            Some(b) => Family {
                waiver: None,
                ..b.clone()
            },
            None => Family {
                name: f.name.clone(),
                description: format!("the {} object(s) of this folder", f.objects),
                required: true,
                min_rows: 1,
                holdout: false,
                waiver: None,
                license: None,
            },
        };
        if !readable {
            family.required = false;
            family.description = format!(
                "{} (nothing readable yet: declare a mapping in sources.toml, then make it required)",
                family.description
            );
        }
        config.families.push(family);
    }
    // The built-in rules of the families in use first (init classified by them first), then
    // one rule per folder, then the top-level files.
    for r in &builtin.rules {
        if used.contains(r.family.as_str()) {
            config.rules.push(r.clone());
        }
    }
    for folder in folders {
        config.rules.push(Rule {
            family: folder_family_name(folder),
            globs: vec![format!("{}/**", glob_escape(folder))],
            prefixes: Vec::new(),
            keywords: Vec::new(),
        });
    }
    if !top_level.is_empty() {
        config.rules.push(Rule {
            family: "data".to_string(),
            globs: top_level.iter().map(|k| glob_escape(k)).collect(),
            prefixes: Vec::new(),
            keywords: Vec::new(),
        });
    }
    let body = toml::to_string(&config).unwrap_or_default();
    format!(
        "# Families of {} as `idx init` found them: the built-in rules where keys matched them,\n\
         # otherwise one family per top-level folder. Edit freely: rename families, mark\n\
         # `holdout = true` for data that must stay out of training as whole groups, add a\n\
         # `license`, or a `waiver` for a family that may be missing.\n{body}",
        plan.source
    )
}

fn glob_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '{' | '}' | '\\') {
            out.push('[');
            out.push(c);
            out.push(']');
        } else {
            out.push(c);
        }
    }
    out
}

fn curriculum_toml(plan: &InitPlan) -> String {
    // A family goes to the phase most of its sampled records feed.
    let mut by_phase: BTreeMap<Phase, Vec<(&str, u64)>> = BTreeMap::new();
    let mut pairs = false;
    for f in &plan.families {
        let mut per_phase: BTreeMap<Phase, u64> = BTreeMap::new();
        for (kind, n) in &f.kinds {
            let phase = match *kind {
                "text" => Phase::Pretraining,
                "preference" => {
                    pairs = true;
                    Phase::Preference
                }
                "kto" => Phase::Preference,
                _ => Phase::Sft,
            };
            *per_phase.entry(phase).or_default() += n;
        }
        if let Some((phase, n)) = per_phase.into_iter().max_by_key(|(_, n)| *n) {
            by_phase
                .entry(phase)
                .or_default()
                .push((f.name.as_str(), n));
        }
    }
    let holdout: Vec<String> = Vec::new();
    let mut stages = Vec::new();
    for (phase, members) in by_phase {
        let total: u64 = members.iter().map(|(_, n)| n).sum();
        let mut weights = BTreeMap::new();
        let mut left = 1.0f64;
        for (i, (family, n)) in members.iter().enumerate() {
            // Weights follow the sampled sizes, rounded; the last takes what is left so they
            // add up to 1.
            let w = if i + 1 == members.len() {
                (left * 1e4).round() / 1e4
            } else {
                ((*n as f64 / total as f64) * 1e4).round() / 1e4
            };
            left -= w;
            weights.insert(family.to_string(), w.max(1e-4));
        }
        let (id, title) = match phase {
            Phase::Pretraining => (
                "continued_pretraining",
                "Continued pretraining on domain text",
            ),
            Phase::Sft => ("sft", "Supervised fine-tuning on conversations"),
            Phase::Preference => ("preference_alignment", "Preference alignment"),
        };
        stages.push(Stage {
            id: id.to_string(),
            phase,
            title: title.to_string(),
            purpose: String::new(),
            epochs: Some(1),
            learning_rate: None,
            context_length: None,
            overlap_turns: None,
            tokens: None,
            algorithm: (phase == Phase::Preference).then_some(if pairs {
                Algorithm::Dpo
            } else {
                Algorithm::Kto
            }),
            algorithm_options: BTreeMap::new(),
            weights,
        });
    }
    let curriculum = Curriculum {
        version: 1,
        name: "starter".to_string(),
        origin: Some(format!("idx init {}", plan.source)),
        base_model: None,
        holdout_families: holdout,
        stages,
    };
    let body = toml::to_string(&curriculum).unwrap_or_default();
    format!(
        "# A starter curriculum written by `idx init`: one stage per training phase the data\n\
         # feeds, routing only families that exist, weighted by the records sampled. See\n\
         # `idx curriculum --help`.\n{body}"
    )
}

/// The shipped `idx.toml`, with the structure gate's threshold raised to what the sample
/// showed (said in a comment) so that a first export goes through; the held-back rows stay
/// held back and counted.
fn idx_toml(plan: &InitPlan) -> String {
    let text = crate::config::DEFAULT_IDX_TOML.to_string();
    let default = crate::config::StructureConfig::default().max_flawed_fraction;
    let worst = plan
        .families
        .iter()
        .filter(|f| f.kinds.keys().any(|k| *k != "text"))
        .map(|f| {
            let conversations: u64 = f
                .kinds
                .iter()
                .filter(|(k, _)| **k != "text")
                .map(|(_, n)| n)
                .sum();
            (f.flawed as f64 / conversations.max(1) as f64, f)
        })
        .max_by(|a, b| a.0.total_cmp(&b.0));
    match worst {
        Some((fraction, f)) if fraction > default => {
            let raised = ((fraction * 20.0).ceil() / 20.0).min(1.0);
            text.replacen(
                &format!("max_flawed_fraction = {default:.2}"),
                &format!(
                    "# idx init: {} of the sampled conversations of `{}` fail a check ({:.0}%); they are\n\
                     # held back from exports either way. Lower this again once the data is fixed.\n\
                     max_flawed_fraction = {raised:.2}",
                    f.flawed,
                    f.name,
                    fraction * 100.0
                ),
                1,
            )
        }
        _ => text,
    }
}

fn sources_toml(plan: &InitPlan) -> String {
    let mut out = crate::parse::mapping::DEFAULT_SOURCES_TOML.to_string();
    if plan.unreadable.is_empty() {
        return out;
    }
    out.push_str(
        "\n# ---- Objects `idx init` could not read: declare how (uncomment and edit). ----\n",
    );
    for (i, u) in plan.unreadable.iter().enumerate() {
        out.push_str(&format!(
            "\n# {} (family `{}`): {} sampled record(s) rejected; {}\n# [[mapping]]\n# name = \"{}-{}\"\n# keys = [\"{}\"]\n# columns = {{ prompt = \"FIELD\", response = \"FIELD\" }}   # or messages = \"FIELD\" with tags\n",
            u.key,
            u.family,
            u.rejected,
            u.reason.replace('\n', " "),
            u.family,
            i + 1,
            glob_escape(&u.key).replace('"', "\\\"")
        ));
    }
    out
}
