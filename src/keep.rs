//! Which copy is kept: the `[objects]` settings of idx.toml as a read-time policy. A row's
//! *placement* — its primary family, its family tags and its primary place — is computed from
//! its places: places in redundant objects do not count (unless the row has no other place),
//! and the primary place is chosen by the keep policy (source priority or key order). The same
//! policy picks the representative of a near-duplicate group. Everything here is a function of
//! the set of places and rows, never of arrival order. With the defaults (nothing redundant,
//! no priority, `longest`) the stored primary family and tags are the placement.

use std::collections::{BTreeSet, HashMap};

use globset::GlobMatcher;

use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::families::compile_glob;
use crate::fingerprint::Hash128;
use crate::store::{ReadView, RowRecord};

/// `[objects]`: objects that repeat others, the source priority, and which copy of a
/// near-duplicate group an export keeps (compiled by [`Keep`]).
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ObjectsConfig {
    /// Globs over object keys: objects indexed and traceable whose places never count toward a
    /// family's rows or coverage and never give a row its primary family.
    pub redundant: Vec<String>,
    /// Globs over object keys, most trusted first: a row's primary place is its place in the
    /// first matching object (then key order) when `keep = "source_priority"`.
    pub priority: Vec<String>,
    pub keep: KeepPolicy,
}

/// Which row of a near-duplicate group stands for it, and which place is a row's primary one.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum KeepPolicy {
    /// The row with the most tokens (ties: the smallest content hash); primary place first in
    /// (source, key, line) order.
    #[default]
    Longest,
    /// The row whose primary place is in the highest-priority object (`priority`), then the
    /// longest; primary place by priority, then key.
    SourcePriority,
    /// The row whose primary place has the smallest key (then line); primary place by key.
    EarliestKey,
}

impl KeepPolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            KeepPolicy::Longest => "longest",
            KeepPolicy::SourcePriority => "source_priority",
            KeepPolicy::EarliestKey => "earliest_key",
        }
    }
}

/// The compiled `[objects]` settings.
#[derive(Debug, Clone, Default)]
pub struct Keep {
    redundant: Vec<GlobMatcher>,
    priority: Vec<GlobMatcher>,
    pub policy: KeepPolicy,
}

impl Keep {
    /// Compile the globs; the error names the bad one.
    pub fn new(config: &ObjectsConfig) -> std::result::Result<Keep, String> {
        let compile = |section: &str, globs: &[String]| {
            globs
                .iter()
                .map(|g| {
                    compile_glob(g).map_err(|e| format!("`objects.{section}` glob `{g}`: {e}"))
                })
                .collect::<std::result::Result<Vec<_>, String>>()
        };
        Ok(Keep {
            redundant: compile("redundant", &config.redundant)?,
            priority: compile("priority", &config.priority)?,
            policy: config.keep,
        })
    }

    /// Whether placements differ from what is stored on the rows.
    pub fn is_active(&self) -> bool {
        !self.redundant.is_empty() || self.policy != KeepPolicy::Longest
    }

    pub fn is_redundant(&self, key: &str) -> bool {
        self.redundant.iter().any(|g| g.is_match(key))
    }

    /// The priority rank of a key: the first matching glob, or after all of them.
    pub fn rank(&self, key: &str) -> usize {
        self.priority
            .iter()
            .position(|g| g.is_match(key))
            .unwrap_or(self.priority.len())
    }
}

/// Where a row counts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    pub primary_family: String,
    /// Family tags of its counted places, sorted.
    pub families: Vec<String>,
    /// The primary place (object key, line) the policy chose; `None` when the policy is
    /// inactive.
    pub place: Option<(String, u64)>,
    /// The priority rank of that place's object.
    pub rank: usize,
}

/// What a placement needs of an object.
#[derive(Debug, Clone)]
struct ObjectInfo {
    key: String,
    primary_family: String,
    families: Vec<String>,
    redundant: bool,
    rank: usize,
}

/// Computes placements over one snapshot, caching the objects it reads.
pub struct Resolver<'a> {
    view: &'a ReadView,
    keep: &'a Keep,
    objects: HashMap<String, Option<ObjectInfo>>,
}

impl<'a> Resolver<'a> {
    pub fn new(view: &'a ReadView, keep: &'a Keep) -> Resolver<'a> {
        Resolver {
            view,
            keep,
            objects: HashMap::new(),
        }
    }

    pub fn keep(&self) -> &Keep {
        self.keep
    }

    fn object(&mut self, id: &str) -> Result<Option<ObjectInfo>> {
        if let Some(o) = self.objects.get(id) {
            return Ok(o.clone());
        }
        let info = self.view.object(id)?.map(|o| ObjectInfo {
            redundant: self.keep.is_redundant(&o.key),
            rank: self.keep.rank(&o.key),
            key: o.key,
            primary_family: o.primary_family,
            families: o.families,
        });
        self.objects.insert(id.to_string(), info.clone());
        Ok(info)
    }

    /// A row's placement (`row` is its stored record). When the policy is inactive the stored
    /// primary family and tags are the placement and nothing is read: no place is looked up
    /// (`place` is `None`: the first place in (source, key, line) order).
    pub fn placement(&mut self, h: Hash128, row: &RowRecord) -> Result<Placement> {
        if !self.keep.is_active() {
            return Ok(Placement {
                primary_family: row.primary_family.clone(),
                families: row.families.iter().map(|(f, _)| f.clone()).collect(),
                place: None,
                rank: self.keep.priority.len(),
            });
        }
        let places = self.view.places(h)?;
        // (object, line) of every place, in (source, key, line) order.
        let mut all = Vec::with_capacity(places.len());
        for (id, line, _) in places {
            if let Some(o) = self.object(&id)? {
                all.push((o, line));
            }
        }
        let counted: Vec<&(ObjectInfo, u64)> = if all.iter().any(|(o, _)| !o.redundant) {
            all.iter().filter(|(o, _)| !o.redundant).collect()
        } else {
            all.iter().collect()
        };
        let primary = match self.keep.policy {
            KeepPolicy::Longest => counted.first().copied(),
            KeepPolicy::SourcePriority => counted
                .iter()
                .copied()
                .min_by(|a, b| (a.0.rank, &a.0.key, a.1).cmp(&(b.0.rank, &b.0.key, b.1))),
            KeepPolicy::EarliestKey => counted
                .iter()
                .copied()
                .min_by(|a, b| (&a.0.key, a.1).cmp(&(&b.0.key, b.1))),
        };
        let families: BTreeSet<String> = counted
            .iter()
            .flat_map(|(o, _)| o.families.iter().cloned())
            .collect();
        Ok(match primary {
            Some((o, line)) => Placement {
                primary_family: o.primary_family.clone(),
                families: families.into_iter().collect(),
                place: Some((o.key.clone(), *line)),
                rank: o.rank,
            },
            None => Placement {
                primary_family: row.primary_family.clone(),
                families: row.families.iter().map(|(f, _)| f.clone()).collect(),
                place: None,
                rank: self.keep.priority.len(),
            },
        })
    }
}
