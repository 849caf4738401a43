//! Derived datasets: rows idx makes from the rows it has, by the recipes in
//! `configs/derive.toml` (`recipes`) — preference pairs from ranked answers, pairs from KTO
//! labels. A run reads one committed state of the index, computes every recipe's output as a
//! pure function of its input rows (content, first place's attributes; never their split or the
//! order they arrived in), writes it as idx's own objects under `DATA_DIR/derived/RECIPE/`
//! (a file rewritten only when its bytes change), then ingests that folder as the source
//! `idx-derived:`. So derived rows are rows like any other — hashed, fingerprinted, redacted,
//! near-duplicate checked, searchable, counted and exported — and incremental for free: a group
//! whose inputs changed is one changed object, a group whose inputs vanished a deleted one. Each
//! derived place names its recipe and input hashes (`parse::derived`); the cluster tables link a
//! derived row to its inputs, so it is in their split. Inputs are never rows a recipe derived.

mod generate;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::config::Settings;
use crate::error::{Error, Result};
use crate::fingerprint::Hash128;
use crate::index::Index;
use crate::ingest::{IngestOptions, IngestReport};
use crate::model::{Conversation, Message, RecordKind};
use crate::parse::derived::DerivedLine;
pub use crate::recipes::{Kind, Recipe, Recipes, Select};
use crate::source::derived::DERIVED_SOURCE;
use crate::store::{ObjectStatus, ReadView};

/// What one recipe made.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RecipeReport {
    pub name: String,
    pub kind: Option<Kind>,
    pub family: String,
    /// Rows the selection gave it.
    pub inputs: u64,
    /// Groups (rank_pairs) or prompts (label_pairs) that gave at least one row.
    pub groups: u64,
    /// Rows made.
    pub rows: u64,
    /// Why inputs gave nothing, counted.
    pub skipped: BTreeMap<String, u64>,
    /// `generate`: rows sent to the generator, and rows whose output was cached.
    pub sent: u64,
    pub cached: u64,
    /// `generate`: what went wrong (a failed or timed-out run with its stderr, unreadable
    /// output lines); what was made before stands and the inputs are sent again next time.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub failures: Vec<String>,
}

/// What a derive run did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct DeriveReport {
    pub recipes: Vec<RecipeReport>,
    /// Derived objects written (new or changed), left as they were, and removed.
    pub files_written: u64,
    pub files_unchanged: u64,
    pub files_removed: u64,
    /// The ingest of the derived objects (none when there was nothing to do).
    pub ingest: Option<IngestReport>,
}

/// An input row: its hash and the attributes of the place it was first seen at.
#[derive(Clone)]
struct Input {
    hash: Hash128,
    attributes: Vec<(String, String)>,
}

/// The digest of the recipes of the last complete run, kept beside the derived folder.
fn digest_path(index: &Index) -> PathBuf {
    index.data_dir.join("derived.digest")
}

/// Whether a run after an ingest has anything to do: the rows changed (`rows_changed`) or the
/// recipes did since the last run, and there are recipes, or derived objects to clean up.
pub fn needed(index: &Index, settings: &Settings, rows_changed: bool) -> Result<bool> {
    let same_recipes = std::fs::read_to_string(digest_path(index))
        .is_ok_and(|d| d.trim() == settings.recipes.digest());
    if !rows_changed && same_recipes {
        return Ok(false);
    }
    if !settings.recipes.derive.is_empty() || index.data_dir.join("derived").exists() {
        return Ok(true);
    }
    Ok(!index
        .store
        .read()?
        .objects_under(DERIVED_SOURCE)?
        .is_empty())
}

/// Run the recipes (all, or the one named) against the committed index, and ingest what they
/// made.
pub fn run(
    index: &mut Index,
    settings: &Settings,
    only: Option<&str>,
    options: &IngestOptions,
) -> Result<DeriveReport> {
    let recipes = &settings.recipes;
    if let Some(name) = only {
        if recipes.get(name).is_none() {
            return Err(Error::Query(format!(
                "no recipe `{name}` (recipes: {})",
                recipes
                    .derive
                    .iter()
                    .map(|r| r.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
    }
    let dir = index.data_dir.join("derived");
    let mut report = DeriveReport::default();
    {
        let view = index.store.read()?;
        let mut objects = Objects::new(&view)?;
        for recipe in &recipes.derive {
            if only.is_some_and(|n| n != recipe.name) {
                continue;
            }
            let mut inputs = objects.inputs(&recipe.select)?;
            if let Some(q) = &recipe.select.query {
                let matching = index.search.matching(q)?;
                inputs.retain(|i| matching.contains(&i.hash));
            }
            let folder = dir.join(&recipe.name);
            let (files, r) = make(&view, recipe, &inputs, &folder)?;
            report.recipes.push(r);
            sync_folder(&folder, &files, &mut report)?;
        }
    }
    if only.is_none() && dir.is_dir() {
        // Folders of recipes the config no longer has.
        for entry in read_dir(&dir)? {
            let name = entry.file_name().to_string_lossy().into_owned();
            if recipes.get(&name).is_none() {
                report.files_removed += count_files(&entry.path());
                std::fs::remove_dir_all(entry.path()).map_err(|source| Error::Io {
                    path: entry.path(),
                    source,
                })?;
            }
        }
    }
    let stored = !index
        .store
        .read()?
        .objects_under(DERIVED_SOURCE)?
        .is_empty();
    if dir.is_dir() || stored {
        let paths = [PathBuf::from(DERIVED_SOURCE)];
        report.ingest = Some(crate::ingest::ingest(index, settings, &paths, options)?);
    }
    if only.is_none() {
        let path = digest_path(index);
        std::fs::write(&path, recipes.digest()).map_err(|source| Error::Io { path, source })?;
    }
    Ok(report)
}

fn read_dir(dir: &Path) -> Result<Vec<std::fs::DirEntry>> {
    let io = |source| Error::Io {
        path: dir.to_path_buf(),
        source,
    };
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).map_err(io)? {
        out.push(e.map_err(io)?);
    }
    out.sort_by_key(|e| e.file_name());
    Ok(out)
}

fn count_files(dir: &Path) -> u64 {
    std::fs::read_dir(dir).map_or(0, |d| d.count() as u64)
}

/// Make `dir` hold exactly `files` (name → bytes): write what is new or changed (to a temporary
/// name, then renamed), leave equal files untouched (their mtime says "unchanged" to the
/// ingest), remove the rest.
fn sync_folder(
    dir: &Path,
    files: &BTreeMap<String, Vec<u8>>,
    report: &mut DeriveReport,
) -> Result<()> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| Error::Io { path, source }
    };
    if files.is_empty() && !dir.exists() {
        return Ok(());
    }
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    for entry in read_dir(dir)? {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !files.contains_key(&name) {
            std::fs::remove_file(entry.path()).map_err(io(&entry.path()))?;
            report.files_removed += 1;
        }
    }
    for (name, bytes) in files {
        let path = dir.join(name);
        if std::fs::read(&path).is_ok_and(|old| &old == bytes) {
            report.files_unchanged += 1;
            continue;
        }
        let tmp = dir.join(format!(".{name}.tmp"));
        std::fs::write(&tmp, bytes).map_err(io(&tmp))?;
        std::fs::rename(&tmp, &path).map_err(io(&path))?;
        report.files_written += 1;
    }
    Ok(())
}

/// The places of the objects outside the derived source, read once per run and shared by the
/// recipes: per object (in source, key order) its families, mapping and places.
struct Objects<'v> {
    view: &'v ReadView,
    objects: Vec<crate::store::ObjectRecord>,
    places: BTreeMap<String, Vec<Input>>,
}

impl<'v> Objects<'v> {
    fn new(view: &'v ReadView) -> Result<Objects<'v>> {
        let mut objects = view.objects()?;
        objects.retain(|o| o.source != DERIVED_SOURCE && o.status == ObjectStatus::Indexed);
        objects.sort_by(|a, b| (&a.source, &a.key).cmp(&(&b.source, &b.key)));
        Ok(Objects {
            view,
            objects,
            places: BTreeMap::new(),
        })
    }

    /// The rows of the objects a selection admits (by family, mapping and the classes of their
    /// places: every place of a row is of the row's content class), each with the first
    /// of its places among them (in source, key, line order, so the same rows give the same
    /// inputs whatever order they arrived in).
    fn inputs(&mut self, select: &Select) -> Result<Vec<Input>> {
        let mut seen: BTreeSet<Hash128> = BTreeSet::new();
        let mut out = Vec::new();
        let wanted_classes = select.kinds.iter().fold(0, |m, k| m | k.class_bit());
        for o in &self.objects {
            let families_ok = select.families.is_empty()
                || o.families.iter().any(|f| select.families.contains(f));
            let mapping_ok = select.mappings.is_empty()
                || o.mapping
                    .as_ref()
                    .is_some_and(|m| select.mappings.contains(m));
            if !families_ok || !mapping_ok {
                continue;
            }
            let id = crate::store::keys::object_id(&o.source, &o.key);
            // By kind: an object holding no row of a wanted kind's class is passed over
            // without reading its rows (`make` checks each row's own kind).
            if !select.kinds.is_empty() && self.view.object_classes(&id)? & wanted_classes == 0 {
                continue;
            }
            if !self.places.contains_key(&id) {
                let places = self
                    .view
                    .object_places(&id)?
                    .into_iter()
                    .map(|(_, _, hash, meta)| Input {
                        hash,
                        attributes: meta.attributes,
                    })
                    .collect();
                self.places.insert(id.clone(), places);
            }
            for input in &self.places[&id] {
                if seen.insert(input.hash) {
                    out.push(input.clone());
                }
            }
        }
        Ok(out)
    }
}

/// An attribute's value as text: a JSON string's content, anything else as JSON.
fn attribute<'a>(input: &'a Input, name: &str) -> Option<std::borrow::Cow<'a, str>> {
    let (_, raw) = input.attributes.iter().find(|(k, _)| k == name)?;
    Some(match serde_json::from_str::<serde_json::Value>(raw) {
        Ok(serde_json::Value::String(s)) => s.into(),
        _ => raw.as_str().into(),
    })
}

/// Whether an input has every attribute value the selection asks for.
fn selected(select: &Select, input: &Input) -> bool {
    select
        .attributes
        .iter()
        .all(|(k, v)| attribute(input, k).is_some_and(|a| a == v.as_str()))
}

/// A selected row with its conversation.
struct Row<'a> {
    input: &'a Input,
    conversation: Conversation,
}

/// A group's file name: the hash of what groups it (never the value itself, which may be
/// anything a source holds).
fn group_file(value: &str) -> String {
    format!(
        "{:016x}.jsonl",
        xxhash_rust::xxh3::xxh3_64(value.as_bytes())
    )
}

/// One recipe's objects (file name → bytes) and report.
fn make(
    view: &ReadView,
    recipe: &Recipe,
    inputs: &[Input],
    folder: &Path,
) -> Result<(BTreeMap<String, Vec<u8>>, RecipeReport)> {
    let mut report = RecipeReport {
        name: recipe.name.clone(),
        kind: Some(recipe.kind),
        family: recipe.family.clone(),
        ..RecipeReport::default()
    };
    let mut rows: Vec<Row<'_>> = Vec::new();
    for input in inputs.iter().filter(|i| selected(&recipe.select, i)) {
        if !recipe.select.kinds.is_empty() {
            // The row's kind from its record, before its text is read.
            let kind = view.row(input.hash)?.map(|r| r.kind);
            if !kind.is_some_and(|k| recipe.select.kinds.contains(&k)) {
                continue;
            }
        }
        let Some(v) = view.representative(input.hash)? else {
            continue;
        };
        rows.push(Row {
            input,
            conversation: v.conversation,
        });
    }
    report.inputs = rows.len() as u64;

    let mut skip = |why: &str| *report.skipped.entry(why.to_string()).or_default() += 1;
    // Group → lines, in the order the recipe makes them.
    let mut groups: BTreeMap<String, Vec<DerivedLine>> = BTreeMap::new();
    match recipe.kind {
        Kind::Generate => {
            // One object per input row, made by the external command (`generate`).
            let files = generate::make(recipe, &rows, folder, &mut report)?;
            report.groups = files.values().filter(|b| !b.is_empty()).count() as u64;
            report.rows = files
                .values()
                .map(|b| b.iter().filter(|&&c| c == b'\n').count() as u64)
                .sum();
            return Ok((files, report));
        }
        Kind::RankPairs => {
            let by = recipe.group_by.as_deref().unwrap_or_default();
            let score_of = recipe.score.as_deref().unwrap_or_default();
            let mut grouped: BTreeMap<String, Vec<(f64, &Row<'_>)>> = BTreeMap::new();
            for row in &rows {
                let Some(group) = attribute(row.input, by) else {
                    skip("no group attribute");
                    continue;
                };
                let Some(score) = attribute(row.input, score_of)
                    .and_then(|s| s.trim().parse::<f64>().ok())
                    .filter(|s| s.is_finite())
                else {
                    skip("no numeric score");
                    continue;
                };
                if row.conversation.prompt_and_answer().is_none() {
                    skip("no answer after a user turn");
                    continue;
                }
                grouped
                    .entry(group.into_owned())
                    .or_default()
                    .push((score, row));
            }
            for (group, mut members) in grouped {
                // Best first: highest score, ties by hash.
                members.sort_by(|a, b| {
                    b.0.total_cmp(&a.0)
                        .then(a.1.input.hash.cmp(&b.1.input.hash))
                });
                let (best_score, best) = members[0];
                let Some((prompt, _)) = best.conversation.prompt_and_answer() else {
                    continue;
                };
                // Rejected: a margin below the best, same prompt, lowest scores first.
                let mut rest: Vec<&(f64, &Row<'_>)> = members[1..]
                    .iter()
                    .filter(|(s, _)| *s <= best_score - recipe.margin)
                    .collect();
                rest.sort_by(|a, b| {
                    a.0.total_cmp(&b.0)
                        .then(a.1.input.hash.cmp(&b.1.input.hash))
                });
                let mut lines = Vec::new();
                for (_, other) in rest {
                    if lines.len() as u32 >= recipe.max_pairs {
                        skip("over max_pairs");
                        continue;
                    }
                    let Some((other_prompt, answer)) = other.conversation.prompt_and_answer()
                    else {
                        continue;
                    };
                    if other_prompt != prompt {
                        skip("another prompt in the group");
                        continue;
                    }
                    lines.push(pair(
                        recipe,
                        &best.conversation,
                        answer,
                        [best.input.hash, other.input.hash],
                    ));
                }
                if lines.is_empty() {
                    skip("group without a pair");
                } else {
                    groups.insert(group, lines);
                }
            }
        }

        Kind::LabelPairs => {
            // Prompt → (desirable, undesirable) rows.
            type Sides<'r> = (Vec<&'r Row<'r>>, Vec<&'r Row<'r>>);
            let mut by_prompt: BTreeMap<String, Sides<'_>> = BTreeMap::new();
            for row in &rows {
                let (Some(label), Some((prompt, _))) =
                    (row.conversation.label, row.conversation.prompt_and_answer())
                else {
                    skip("not a labelled answer");
                    continue;
                };
                let key = serde_json::to_string(prompt).unwrap_or_default();
                let sides = by_prompt.entry(key).or_default();
                if label {
                    sides.0.push(row);
                } else {
                    sides.1.push(row);
                }
            }
            for (prompt, (mut good, mut bad)) in by_prompt {
                if good.is_empty() || bad.is_empty() {
                    skip("prompt without both labels");
                    continue;
                }
                good.sort_by_key(|r| r.input.hash);
                bad.sort_by_key(|r| r.input.hash);
                let mut lines = Vec::new();
                'pairs: for g in &good {
                    for b in &bad {
                        if lines.len() as u32 >= recipe.max_pairs {
                            break 'pairs;
                        }
                        let Some((_, answer)) = b.conversation.prompt_and_answer() else {
                            continue;
                        };
                        lines.push(pair(
                            recipe,
                            &g.conversation,
                            answer,
                            [g.input.hash, b.input.hash],
                        ));
                    }
                }
                groups.insert(prompt, lines);
            }
        }
    }
    let mut files = BTreeMap::new();
    for (group, lines) in groups {
        report.groups += 1;
        report.rows += lines.len() as u64;
        let mut bytes = Vec::new();
        for line in &lines {
            serde_json::to_writer(&mut bytes, line).map_err(|e| Error::Query(e.to_string()))?;
            bytes.push(b'\n');
        }
        files.insert(group_file(&group), bytes);
    }
    Ok((files, report))
}

/// A pair: the chosen conversation as it is (a KTO label dropped), the rejected answer.
fn pair(
    recipe: &Recipe,
    chosen: &Conversation,
    rejected: &Message,
    inputs: [Hash128; 2],
) -> DerivedLine {
    DerivedLine {
        conversation: Conversation {
            kind: RecordKind::Preference,
            messages: chosen.messages.clone(),
            rejected: Some(vec![rejected.clone()]),
            label: None,
        },
        recipe: recipe.name.clone(),
        inputs: inputs.iter().map(|h| h.to_hex()).collect(),
        generator: None,
    }
}
