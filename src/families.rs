//! Family rules (`configs/families.toml`): the typed config, its validation, and classification
//! of an object key into a primary family plus family tags, or into "not training data". The
//! default config is embedded in the binary so idx runs with no files around it. Nothing here
//! reads the index.

use std::path::Path;

use globset::{Glob, GlobBuilder, GlobMatcher};
use serde::{Deserialize, Serialize};
use unicode_normalization::UnicodeNormalization;

use crate::error::{Error, Result};

/// The family of objects no rule matches.
pub const UNASSIGNED: &str = "unassigned";

/// The default config, as shipped in `configs/families.toml`.
pub const DEFAULT_FAMILIES_TOML: &str = include_str!("../configs/families.toml");

const CONFIG_VERSION: u32 = 1;

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FamiliesConfig {
    pub version: u32,
    #[serde(default)]
    pub exclude: Exclude,
    #[serde(default, rename = "family")]
    pub families: Vec<Family>,
    #[serde(default, rename = "rule")]
    pub rules: Vec<Rule>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Exclude {
    #[serde(default)]
    pub globs: Vec<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Family {
    pub name: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub required: bool,
    #[serde(default = "one")]
    pub min_rows: u64,
    #[serde(default)]
    pub holdout: bool,
    /// A reason the family may be missing without failing the coverage gate.
    #[serde(default)]
    pub waiver: Option<String>,
    /// The licence its rows are exported under (`license_tag`); "unspecified" when not given.
    #[serde(default)]
    pub license: Option<String>,
}

fn one() -> u64 {
    1
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    pub family: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub globs: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub prefixes: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub keywords: Vec<String>,
}

/// How one object key is classified.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Classification {
    /// Training data: the primary family and every family tag (sorted, primary included).
    Data { primary: String, tags: Vec<String> },
    /// Not training data (README, notebook, upload leftovers...): the matching pattern.
    NotData { reason: String },
}

struct CompiledRule {
    family: String,
    globs: Vec<GlobMatcher>,
    prefixes: Vec<String>,
    keywords: Vec<String>,
}

/// A validated config, compiled for matching.
pub struct Classifier {
    config: FamiliesConfig,
    digest: String,
    exclude: Vec<(String, GlobMatcher)>,
    rules: Vec<CompiledRule>,
}

impl std::fmt::Debug for Classifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Classifier")
            .field("digest", &self.digest)
            .finish_non_exhaustive()
    }
}

/// A key glob as every config compiles it: case-insensitive, `*` never crossing a `/`.
pub(crate) fn compile_glob(pattern: &str) -> std::result::Result<GlobMatcher, globset::Error> {
    let glob: Glob = GlobBuilder::new(&pattern.to_lowercase())
        .case_insensitive(true)
        .literal_separator(true)
        .build()?;
    Ok(glob.compile_matcher())
}

/// Lowercased NFKC form of a key, the form every rule is matched against.
fn match_form(key: &str) -> String {
    key.nfkc().collect::<String>().to_lowercase()
}

impl Classifier {
    /// Load a config file; `None` gives the embedded default.
    pub fn load(path: Option<&Path>) -> Result<Self> {
        let (text, origin) =
            crate::config_file::config_text(path, DEFAULT_FAMILIES_TOML, "families.toml")?;
        Self::from_toml(&text, &origin)
    }

    /// Parse and validate a config; `origin` names it in errors.
    pub fn from_toml(text: &str, origin: &str) -> Result<Self> {
        let err = |message: String| Error::Config {
            path: origin.to_string(),
            message,
        };
        let config: FamiliesConfig = toml::from_str(text).map_err(|e| err(e.to_string()))?;
        if config.version != CONFIG_VERSION {
            return Err(err(format!(
                "`version` is {}, this idx reads version {CONFIG_VERSION}",
                config.version
            )));
        }
        let mut names = std::collections::BTreeSet::new();
        for (i, f) in config.families.iter().enumerate() {
            let valid = !f.name.is_empty()
                && f.name
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
            if !valid {
                return Err(err(format!(
                    "family[{i}].name `{}` must be lowercase letters, digits and `_`",
                    f.name
                )));
            }
            if f.name == UNASSIGNED {
                return Err(err(format!("family[{i}].name `{UNASSIGNED}` is reserved")));
            }
            if !names.insert(f.name.clone()) {
                return Err(err(format!(
                    "family[{i}].name `{}` is defined twice",
                    f.name
                )));
            }
        }
        let mut rules = Vec::with_capacity(config.rules.len());
        for (i, r) in config.rules.iter().enumerate() {
            if !names.contains(&r.family) {
                return Err(err(format!(
                    "rule[{i}].family `{}` is not a defined family",
                    r.family
                )));
            }
            if r.globs.is_empty() && r.prefixes.is_empty() && r.keywords.is_empty() {
                return Err(err(format!(
                    "rule[{i}] (family `{}`) needs globs, prefixes or keywords",
                    r.family
                )));
            }
            let mut globs = Vec::with_capacity(r.globs.len());
            for g in &r.globs {
                globs
                    .push(compile_glob(g).map_err(|e| err(format!("rule[{i}].globs `{g}`: {e}")))?);
            }
            rules.push(CompiledRule {
                family: r.family.clone(),
                globs,
                prefixes: r.prefixes.iter().map(|p| match_form(p)).collect(),
                keywords: r.keywords.iter().map(|k| match_form(k)).collect(),
            });
        }
        let mut exclude = Vec::with_capacity(config.exclude.globs.len());
        for g in &config.exclude.globs {
            exclude.push((
                g.clone(),
                compile_glob(g).map_err(|e| err(format!("exclude.globs `{g}`: {e}")))?,
            ));
        }
        let digest = format!("{:032x}", xxhash_rust::xxh3::xxh3_128(text.as_bytes()));
        Ok(Classifier {
            config,
            digest,
            exclude,
            rules,
        })
    }

    pub fn config(&self) -> &FamiliesConfig {
        &self.config
    }

    /// XXH3-128 of the config text, recorded with the index.
    pub fn digest(&self) -> &str {
        &self.digest
    }

    /// Classify an object key (relative to its source root, `/`-separated).
    pub fn classify(&self, key: &str) -> Classification {
        let form = match_form(key);
        for (pattern, glob) in &self.exclude {
            if glob.is_match(&form) {
                return Classification::NotData {
                    reason: format!("not training data (matches exclude `{pattern}`)"),
                };
            }
        }
        let mut primary: Option<&str> = None;
        let mut tags: Vec<String> = Vec::new();
        for rule in &self.rules {
            let located = (rule.globs.is_empty() && rule.prefixes.is_empty())
                || rule.globs.iter().any(|g| g.is_match(&form))
                || rule.prefixes.iter().any(|p| form.starts_with(p.as_str()));
            let keyed =
                rule.keywords.is_empty() || rule.keywords.iter().any(|k| form.contains(k.as_str()));
            if located && keyed {
                primary.get_or_insert(rule.family.as_str());
                tags.push(rule.family.clone());
            }
        }
        let primary = primary.unwrap_or(UNASSIGNED).to_string();
        if tags.is_empty() {
            tags.push(UNASSIGNED.to_string());
        }
        tags.sort();
        tags.dedup();
        Classification::Data { primary, tags }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(c: &Classifier, key: &str) -> (String, Vec<String>) {
        match c.classify(key) {
            Classification::Data { primary, tags } => (primary, tags),
            Classification::NotData { reason } => panic!("{key} excluded: {reason}"),
        }
    }

    #[test]
    fn default_config_is_valid_and_has_the_14_families() {
        let c = Classifier::load(None).unwrap();
        assert_eq!(c.config().families.len(), 14);
        assert!(c.config().families.iter().all(|f| f.required));
    }

    #[test]
    fn classifies_the_original_inventory_keys() {
        let c = Classifier::load(None).unwrap();
        let cases: &[(&str, &str, &[&str])] = &[
            (
                "datasets/gdrive/processed/edge_cases/synthetic.jsonl",
                "edge_case_synthetic",
                &["edge_case_generator", "edge_case_synthetic"],
            ),
            (
                "datasets/gdrive/tier3_edge_crisis/crisis_detection_conversations.jsonl",
                "edge_case_resulting_chats",
                &["edge_case_generator", "edge_case_resulting_chats"],
            ),
            (
                "datasets/gdrive/processed/professional_therapeutic/long_running_therapy.jsonl",
                "long_running_therapy",
                &["long_running_therapy", "mental_health_datasets"],
            ),
            (
                "datasets/consolidated/datasets/sarcasm_data.json",
                "sarcasm",
                &["sarcasm"],
            ),
            (
                "datasets/gdrive/tier4_voice_persona/Tim Fletcher/Realistic Recovery - Part 1⧸13 - Seven Levels of Change.txt",
                "video_transcripts",
                &["addiction", "cptsd", "video_transcripts", "voice_persona"],
            ),
            (
                "datasets/gdrive/tier4_voice_persona/Heidi Priebe/Complex PTSD： 10 Realistic Signs Of Healing.txt",
                "video_transcripts",
                &["cptsd", "video_transcripts", "voice_persona"],
            ),
            (
                "datasets/huggingface/huggingface/flammenai_character-roleplay-DPO.jsonl",
                "dpo_preference",
                &["dpo_preference", "roleplay_simulator"],
            ),
            (
                "datasets/training_v3/stage4_voice_persona/hieunguyenminh_roleplay.jsonl",
                "roleplay_simulator",
                &["roleplay_simulator", "voice_persona"],
            ),
            (
                "gdrive/raw/reddit/Suicide_Detection.csv",
                "safety_guardrails_annihilator",
                &["safety_guardrails_annihilator"],
            ),
            (
                "datasets/consolidated/datasets/research_datasets_filtered.json",
                "experimental",
                &["experimental"],
            ),
            (
                "acquired/academic_psychology_books/academic_psychology_books.jsonl",
                "mental_health_datasets",
                &["mental_health_datasets"],
            ),
        ];
        for (key, primary, tags) in cases {
            let (p, t) = data(&c, key);
            assert_eq!(&p, primary, "primary of {key}");
            assert_eq!(
                t,
                tags.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
                "tags of {key}"
            );
        }
    }

    #[test]
    fn non_data_objects_are_excluded() {
        let c = Classifier::load(None).unwrap();
        for key in [
            "datasets/consolidated/edge_cases/EDGE_CASE_INTEGRATION_PLAN.md",
            "datasets/consolidated/edge_cases/Edge_Case_Generation_Pipeline.ipynb",
            "datasets/gdrive/raw/Empathy-Mental-Health/Althoff academic license.docx",
            "datasets/gdrive/raw/reddit_mental_health/.Suicide_Detection.csv.terabox.uploading.cfg",
            "datasets/gdrive/raw/CoT_Reasoning_Mens_Mental_Health/README.md",
        ] {
            assert!(
                matches!(c.classify(key), Classification::NotData { .. }),
                "{key}"
            );
        }
    }

    #[test]
    fn unmatched_keys_are_unassigned() {
        let c = Classifier::load(None).unwrap();
        assert_eq!(
            data(&c, "misc/whatever.jsonl"),
            (UNASSIGNED.to_string(), vec![UNASSIGNED.to_string()])
        );
    }

    #[test]
    fn bad_configs_name_the_key() {
        let bad = [
            ("version = 2", "`version` is 2"),
            (
                "version = 1\n[[rule]]\nfamily = \"nope\"\nkeywords = [\"x\"]",
                "rule[0].family `nope`",
            ),
            (
                "version = 1\n[[family]]\nname = \"a\"\n[[rule]]\nfamily = \"a\"",
                "needs globs",
            ),
            (
                "version = 1\n[[family]]\nname = \"Bad Name\"",
                "family[0].name",
            ),
            ("version = 1\nunknown = 3", "unknown field"),
            (
                "version = 1\n[[family]]\nname = \"a\"\n[[rule]]\nfamily = \"a\"\nglobs = [\"[\"]",
                "rule[0].globs",
            ),
        ];
        for (text, expected) in bad {
            let e = Classifier::from_toml(text, "test.toml")
                .unwrap_err()
                .to_string();
            assert!(e.contains(expected), "{e} should contain {expected}");
            assert!(e.contains("test.toml"));
        }
    }
}
