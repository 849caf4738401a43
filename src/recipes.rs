//! The derive recipes in `configs/derive.toml` (run by [`crate::derive`]): what each reads (a
//! selection of rows) and what it makes, typed and checked. A config like the others, below the
//! pipeline: a file with no `[[derive]]` entry derives nothing.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::model::RecordKind;

/// The shipped recipes (`configs/derive.toml`).
pub const DEFAULT_DERIVE_TOML: &str = include_str!("../configs/derive.toml");

/// Every recipe of a derive config, in file order.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Recipes {
    #[serde(default)]
    pub derive: Vec<Recipe>,
}

/// What a recipe makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// Preference pairs from rows grouped by an attribute and ranked by a score.
    RankPairs,
    /// Preference pairs from KTO rows with the same prompt and opposite labels.
    LabelPairs,
    /// Rows an external command makes from each selected row (`generate`).
    Generate,
}

/// One `[[derive]]` entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Recipe {
    /// Names its folder (`derived/NAME/`) and its rows' `recipe` attribute: `[a-z0-9_-]+`.
    pub name: String,
    pub kind: Kind,
    /// The family of the rows it makes.
    pub family: String,
    #[serde(default)]
    pub select: Select,
    /// `rank_pairs`: the attribute whose value groups rows (one prompt's answers).
    pub group_by: Option<String>,
    /// `rank_pairs`: the numeric attribute ranking a group's rows (higher is better).
    pub score: Option<String>,
    /// `rank_pairs`: a rejected answer scores at least this much below the chosen one.
    #[serde(default = "default_margin")]
    pub margin: f64,
    /// Pairs per group (`rank_pairs`) or per prompt (`label_pairs`).
    #[serde(default = "default_max_pairs")]
    pub max_pairs: u32,
    /// `generate`: the command and its arguments (no shell), run from the current directory.
    #[serde(default)]
    pub command: Vec<String>,
    /// `generate`: more files whose bytes are part of the generator digest (a prompt file, a
    /// model config); files named on the command line always are.
    #[serde(default)]
    pub files: Vec<String>,
    /// `generate`: seconds before a run of the command is stopped and counted as failed.
    #[serde(default = "default_timeout")]
    pub timeout_seconds: u64,
}

fn default_timeout() -> u64 {
    300
}

fn default_margin() -> f64 {
    1.0
}

fn default_max_pairs() -> u32 {
    3
}

/// Which rows a recipe reads. Every condition given must hold; rows other recipes derived are
/// never inputs (no recipe feeds on its own output).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Select {
    /// Rows tagged with any of these families (all families when empty).
    #[serde(default)]
    pub families: Vec<String>,
    /// Rows read through any of these `sources.toml` mappings (any when empty).
    #[serde(default)]
    pub mappings: Vec<String>,
    /// Rows of these kinds (all when empty).
    #[serde(default)]
    pub kinds: Vec<RecordKind>,
    /// Rows whose (first place's) attribute has this value, compared as text.
    #[serde(default)]
    pub attributes: BTreeMap<String, String>,
    /// Rows the full-text index matches for this query (`idx query text` syntax).
    pub query: Option<String>,
}

impl Recipes {
    /// `path`, or the built-in copy when `None`.
    pub fn load(path: Option<&Path>) -> Result<Recipes> {
        let (text, origin) =
            crate::config_file::config_text(path, DEFAULT_DERIVE_TOML, "derive.toml")?;
        Self::from_toml(&text, &origin)
    }

    pub fn builtin() -> Recipes {
        Self::load(None).expect("the embedded derive.toml is valid")
    }

    /// Parse and check; `origin` names the file in errors.
    pub fn from_toml(text: &str, origin: &str) -> Result<Recipes> {
        let err = |message: String| Error::Config {
            path: origin.to_string(),
            message,
        };
        let r: Recipes = toml::from_str(text).map_err(|e| err(e.to_string()))?;
        let mut seen = std::collections::BTreeSet::new();
        for (i, recipe) in r.derive.iter().enumerate() {
            let at = format!("[[derive]] #{} `{}`", i + 1, recipe.name);
            let valid_name = !recipe.name.is_empty()
                && recipe.name.bytes().all(|b| {
                    b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-'
                });
            if !valid_name {
                return Err(err(format!("{at}: a name is [a-z0-9_-]+")));
            }
            if !seen.insert(recipe.name.as_str()) {
                return Err(err(format!("{at}: the name is used twice")));
            }
            if recipe.family.trim().is_empty() {
                return Err(err(format!("{at}: `family` names the family of its rows")));
            }
            if recipe.kind == Kind::RankPairs
                && (recipe.group_by.is_none() || recipe.score.is_none())
            {
                return Err(err(format!(
                    "{at}: rank_pairs needs `group_by` (the attribute grouping a prompt's answers) and `score` (the attribute ranking them)"
                )));
            }
            if recipe.kind == Kind::Generate && recipe.command.is_empty() {
                return Err(err(format!(
                    "{at}: generate needs `command`, e.g. [\"python3\", \"gen.py\"]"
                )));
            }
            if recipe.timeout_seconds == 0 {
                return Err(err(format!("{at}: `timeout_seconds` is at least 1")));
            }
            if !recipe.margin.is_finite() || recipe.margin < 0.0 {
                return Err(err(format!("{at}: `margin` is a number ≥ 0")));
            }
            if recipe.max_pairs == 0 {
                return Err(err(format!("{at}: `max_pairs` is at least 1")));
            }
        }
        Ok(r)
    }

    pub fn get(&self, name: &str) -> Option<&Recipe> {
        self.derive.iter().find(|r| r.name == name)
    }

    /// The family of a derived object's rows, from its key (`RECIPE/…`).
    pub fn family_of_key(&self, key: &str) -> Option<&str> {
        let recipe = key.split('/').next()?;
        self.get(recipe).map(|r| r.family.as_str())
    }

    /// A digest of the recipes: a changed recipe re-derives.
    pub fn digest(&self) -> String {
        let text = serde_json::to_string(self).unwrap_or_default();
        format!("{:016x}", xxhash_rust::xxh3::xxh3_64(text.as_bytes()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_recipes_load() {
        let r = Recipes::builtin();
        assert!(!r.derive.is_empty());
    }

    #[test]
    fn mistakes_are_named() {
        let bad = |t: &str| Recipes::from_toml(t, "d.toml").unwrap_err().to_string();
        let e =
            bad("[[derive]]\nname = \"p\"\nkind = \"rank_pairs\"\nfamily = \"dpo_preference\"\n");
        assert!(e.contains("d.toml") && e.contains("group_by"), "{e}");
        let e = bad("[[derive]]\nname = \"Bad Name\"\nkind = \"label_pairs\"\nfamily = \"f\"\n");
        assert!(e.contains("[a-z0-9_-]+"), "{e}");
        let two = "[[derive]]\nname = \"a\"\nkind = \"label_pairs\"\nfamily = \"f\"\n";
        let e = bad(&format!("{two}{two}"));
        assert!(e.contains("used twice"), "{e}");
        let e = bad("[[derive]]\nname = \"a\"\nkind = \"magic\"\nfamily = \"f\"\n");
        assert!(e.contains("magic"), "{e}");
        let e = bad(
            "[[derive]]\nname = \"a\"\nkind = \"label_pairs\"\nfamily = \"f\"\nmax_pairs = 0\n",
        );
        assert!(e.contains("max_pairs"), "{e}");
    }
}
