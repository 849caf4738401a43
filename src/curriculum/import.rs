//! `idx curriculum import FILE.json`: the original system's curriculum JSON into
//! `curriculum.toml`, so its users keep their plan.
//!
//! Two shapes are read, alone or together: the *phases* shape (`phases: [{name, datasets:
//! [s3 prefixes], stages: [{stage, name, datasets, weight}]}]`), whose dataset prefixes are mapped
//! to families with the family rules; and the *keyed* shape (`phase_a_pretraining`,
//! `phase_b_sft_curriculum.stages.*` with per-family weights, `phase_c_preference_alignment`
//! with its algorithm options, `validation.test_holdout_families`, `training_order`), which wins
//! where both say something. The original file holds a complete phases document followed by a
//! keyed document whose beginning was lost; such a tail is salvaged — its complete sections are
//! kept — and every such repair is reported with its line.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::{Algorithm, AlgorithmOptions, Curriculum, Phase, Stage, CURRICULUM_VERSION};
use crate::error::{Error, Result};
use crate::families::{Classification, Classifier};

/// The converted plan and what the conversion had to guess or leave out.
#[derive(Debug, Clone)]
pub struct Imported {
    pub curriculum: Curriculum,
    pub notes: Vec<String>,
}

impl Imported {
    /// The TOML file, with a header saying where it came from and what to check.
    pub fn to_toml(&self) -> String {
        let mut out = String::from(
            "# idx training curriculum (see `idx curriculum --help`), imported by\n\
             # `idx curriculum import`. Stages run in file order; each routes families\n\
             # (configs/families.toml) with mixing weights that add up to 1.\n",
        );
        for n in &self.notes {
            out.push_str(&format!("# NOTE: {n}\n"));
        }
        out.push('\n');
        out.push_str(&toml::to_string(&self.curriculum).unwrap_or_default());
        out
    }
}

/// Convert `text` (the JSON file named `origin`).
pub fn import(text: &str, origin: &str, classifier: &Classifier) -> Result<Imported> {
    let err = |message: String| Error::Config {
        path: origin.to_string(),
        message,
    };
    let mut notes = Vec::new();
    let (docs, salvage_note) = documents(text).map_err(err)?;
    notes.extend(salvage_note);
    let mut phases_doc: Option<&Map<String, Value>> = None;
    let mut keyed: Map<String, Value> = Map::new();
    for doc in &docs {
        let Some(obj) = doc.as_object() else {
            return Err(err("the curriculum is not a JSON object".to_string()));
        };
        if obj.contains_key("phases") && phases_doc.is_none() {
            phases_doc = Some(obj);
        }
        for (k, v) in obj {
            if k.starts_with("phase_") || k == "validation" || k == "training_order" || k == "_lost"
            {
                keyed.insert(k.clone(), v.clone());
            }
        }
    }
    let mut c = Curriculum {
        version: CURRICULUM_VERSION,
        name: String::new(),
        origin: None,
        base_model: None,
        holdout_families: Vec::new(),
        stages: Vec::new(),
    };
    if let Some(p) = phases_doc {
        c.name = str_of(p, "training_flow").unwrap_or_default();
        c.base_model = str_of(p, "base_model");
        let version = str_of(p, "curriculum_version").unwrap_or_default();
        c.origin = Some(format!("{origin} (curriculum_version {version})"));
    }
    if c.name.is_empty() {
        c.name = "imported".to_string();
    }
    if c.origin.is_none() {
        c.origin = Some(origin.to_string());
    }
    let from_phases = phases_doc
        .map(|p| phase_stages(p, classifier, &mut notes))
        .unwrap_or_default();
    let from_keyed = keyed_stages(&keyed, &mut notes);
    c.stages = merge(from_phases, from_keyed, &mut notes);
    if let Some(h) = keyed
        .get("validation")
        .and_then(|v| v.get("test_holdout_families"))
        .and_then(Value::as_array)
    {
        c.holdout_families = h
            .iter()
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect();
    }
    let known: Vec<&str> = classifier
        .config()
        .families
        .iter()
        .map(|f| f.name.as_str())
        .collect();
    // Dataset names of the original that are not families here are mapped by the family
    // rules (as if they were a folder of that name); weights landing on one family add up.
    let map = |name: &str| -> Option<String> {
        if known.contains(&name) {
            return Some(name.to_string());
        }
        match classifier.classify(&format!("{name}/data.jsonl")) {
            Classification::Data { primary, .. } if known.contains(&primary.as_str()) => {
                Some(primary)
            }
            _ => None,
        }
    };
    for s in &mut c.stages {
        let mut mapped: BTreeMap<String, f64> = BTreeMap::new();
        for (f, w) in std::mem::take(&mut s.weights) {
            match map(&f) {
                Some(to) => {
                    if to != f {
                        notes.push(format!(
                            "stage `{}`: `{f}` is not a family here; the family rules put it in \
                             `{to}`",
                            s.id
                        ));
                    }
                    *mapped.entry(to).or_default() += w;
                }
                None => {
                    notes.push(format!(
                        "stage `{}` routes `{f}`, which is not a family here and no family rule \
                         matches it: rename it to one of the families in configs/families.toml",
                        s.id
                    ));
                    *mapped.entry(f).or_default() += w;
                }
            }
        }
        // Sums like 0.4 + 0.2 are kept to a readable precision.
        s.weights = mapped
            .into_iter()
            .map(|(f, w)| (f, (w * 1e9).round() / 1e9))
            .collect();
    }
    let mut holdout = Vec::new();
    for f in std::mem::take(&mut c.holdout_families) {
        match map(&f) {
            Some(to) => {
                if to != f {
                    notes.push(format!(
                        "holdout family `{f}` is not a family here; the family rules put it in `{to}`"
                    ));
                }
                if !holdout.contains(&to) {
                    holdout.push(to);
                }
            }
            None => notes.push(format!(
                "holdout family `{f}` is not a family here and no family rule matches it: left out"
            )),
        }
    }
    c.holdout_families = holdout;
    for s in &c.stages {
        let sum: f64 = s.weights.values().sum();
        if (sum - 1.0).abs() > 1e-6 && !s.weights.is_empty() {
            notes.push(format!(
                "stage `{}`: weights add up to {sum}, not 1: fix them before use",
                s.id
            ));
        }
    }
    if c.stages.is_empty() {
        return Err(err(
            "no stages found (expected `phases` or `phase_*` sections)".to_string(),
        ));
    }
    Ok(Imported {
        curriculum: c,
        notes,
    })
}

/// Every JSON document in the text: the first complete one, then a salvaged tail if the text
/// goes on (a later document whose beginning was lost).
fn documents(text: &str) -> std::result::Result<(Vec<Value>, Option<String>), String> {
    let mut stream = serde_json::Deserializer::from_str(text).into_iter::<Value>();
    let first = match stream.next() {
        Some(Ok(v)) => v,
        Some(Err(e)) => return Err(format!("invalid JSON: {e}")),
        None => return Err("empty file".to_string()),
    };
    let offset = stream.byte_offset();
    let rest = &text[offset..];
    if rest.trim().is_empty() {
        return Ok((vec![first], None));
    }
    let start = offset + (rest.len() - rest.trim_start().len());
    let line = text[..start].matches('\n').count() + 1;
    match salvage(rest) {
        Some((tail, lost)) => {
            let note = format!(
                "line {line}: the text goes on after the first JSON document with a fragment \
                 whose first {lost} opening bracket(s) are missing; its complete sections were \
                 recovered: {}",
                tail.as_object()
                    .map(|o| o
                        .keys()
                        .filter(|k| !k.starts_with('_'))
                        .cloned()
                        .collect::<Vec<_>>()
                        .join(", "))
                    .unwrap_or_default()
            );
            Ok((vec![first, tail], Some(note)))
        }
        None => Err(format!(
            "line {line}: unexpected text after the JSON document, and it could not be read as \
             the tail of another one"
        )),
    }
}

/// Read a JSON fragment missing its opening brackets: count the closers without an opener, open
/// that many placeholder containers in front, and parse. The result is the outermost object with
/// the placeholders (`_lost_N`) removed, except that the innermost lost section, if its name can
/// be inferred later, is returned under `_lost`.
fn salvage(rest: &str) -> Option<(Value, usize)> {
    let mut depth = 0i64;
    let mut min = 0i64;
    let mut closers = Vec::new();
    let mut in_string = false;
    let mut escaped = false;
    for c in rest.chars() {
        if in_string {
            match (escaped, c) {
                (true, _) => escaped = false,
                (false, '\\') => escaped = true,
                (false, '"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match c {
            '"' => in_string = true,
            '{' | '[' => depth += 1,
            '}' | ']' => {
                depth -= 1;
                if depth < min {
                    min = depth;
                    closers.push(c);
                }
            }
            _ => {}
        }
    }
    if closers.is_empty() || depth != min {
        return None;
    }
    // Outermost first; each object gets a placeholder key for the next level.
    let mut prefix = String::new();
    for (level, c) in closers.iter().rev().enumerate() {
        let innermost = level + 1 == closers.len();
        match (c, innermost) {
            ('}', false) => prefix.push_str(&format!("{{\"_lost_{level}\": ")),
            (']', false) => prefix.push('['),
            ('}', true) => prefix.push('{'),
            _ => prefix.push('['),
        }
    }
    let body = rest.trim_start().trim_start_matches(',');
    let value: Value = serde_json::from_str(&format!("{prefix}{body}")).ok()?;
    let mut obj = value.as_object()?.clone();
    // The section that was cut: the placeholder holding the deepest complete object.
    let lost = obj.remove("_lost_0");
    if let Some(Value::Object(mut l)) = lost {
        l.retain(|k, _| !k.starts_with("_lost_"));
        obj.insert("_lost".to_string(), Value::Object(l));
    }
    Some((Value::Object(obj), closers.len()))
}

fn str_of(o: &Map<String, Value>, k: &str) -> Option<String> {
    o.get(k).and_then(Value::as_str).map(str::to_string)
}

/// A stage id from a free-text name: lowercase words joined by `_`.
fn slug(s: &str) -> String {
    let mut out = String::new();
    for w in s
        .split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|w| !w.is_empty())
    {
        if !out.is_empty() {
            out.push('_');
        }
        out.push_str(&w.to_ascii_lowercase());
    }
    out
}

fn new_stage(id: String, phase: Phase) -> Stage {
    Stage {
        id,
        phase,
        title: String::new(),
        purpose: String::new(),
        epochs: None,
        learning_rate: None,
        context_length: None,
        overlap_turns: None,
        tokens: None,
        algorithm: None,
        algorithm_options: BTreeMap::new(),
        weights: BTreeMap::new(),
    }
}

/// The family an S3 prefix's objects fall in, by the family rules.
fn family_of_prefix(prefix: &str, classifier: &Classifier) -> Option<String> {
    let key = prefix
        .strip_prefix("s3://")
        .and_then(|p| p.split_once('/').map(|(_, k)| k))
        .unwrap_or(prefix);
    let probe = format!("{}/data.jsonl", key.trim_end_matches('/'));
    match classifier.classify(&probe) {
        Classification::Data { primary, .. } if primary != "unassigned" => Some(primary),
        _ => None,
    }
}

/// Equal weights over the families of a list of dataset prefixes.
fn prefix_weights(
    datasets: Option<&Value>,
    stage: &str,
    classifier: &Classifier,
    notes: &mut Vec<String>,
) -> BTreeMap<String, f64> {
    let mut families: Vec<String> = Vec::new();
    for d in datasets
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
    {
        match family_of_prefix(d, classifier) {
            Some(f) => {
                if !families.contains(&f) {
                    families.push(f);
                }
            }
            None => notes.push(format!(
                "stage `{stage}`: no family rule matches dataset `{d}`; left out"
            )),
        }
    }
    let n = families.len() as f64;
    families.into_iter().map(|f| (f, 1.0 / n)).collect()
}

/// Stages from the `phases` array shape.
fn phase_stages(
    p: &Map<String, Value>,
    classifier: &Classifier,
    notes: &mut Vec<String>,
) -> Vec<Stage> {
    let mut out = Vec::new();
    for (i, phase) in p
        .get("phases")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
    {
        let name = phase.get("name").and_then(Value::as_str).unwrap_or("");
        let description = phase
            .get("description")
            .and_then(Value::as_str)
            .unwrap_or("");
        if let Some(stages) = phase.get("stages").and_then(Value::as_array) {
            for s in stages {
                let title = s.get("name").and_then(Value::as_str).unwrap_or("");
                let n = s.get("stage").and_then(Value::as_u64).unwrap_or(0);
                let id = format!("stage{n}_{}", slug(title));
                let mut st = new_stage(id.clone(), Phase::Sft);
                st.title = title.to_string();
                st.purpose = s
                    .get("description")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string();
                st.context_length = s
                    .get("max_length")
                    .and_then(Value::as_u64)
                    .map(|x| x as u32);
                st.weights = prefix_weights(s.get("datasets"), &id, classifier, notes);
                out.push(st);
            }
            continue;
        }
        let lower = name.to_ascii_lowercase();
        let phase_kind = if lower.contains("preference") || phase.get("algorithms").is_some() {
            Phase::Preference
        } else if lower.contains("pretrain") || i == 0 {
            Phase::Pretraining
        } else {
            Phase::Sft
        };
        let id = match phase_kind {
            Phase::Pretraining => "phase_a_pretraining".to_string(),
            Phase::Preference => "phase_c_preference_alignment".to_string(),
            Phase::Sft => slug(name),
        };
        let mut st = new_stage(id.clone(), phase_kind);
        st.title = name.to_string();
        st.purpose = description.to_string();
        st.weights = prefix_weights(phase.get("datasets"), &id, classifier, notes);
        if let Some(first) = phase
            .get("algorithms")
            .and_then(Value::as_array)
            .and_then(|a| a.first())
            .and_then(Value::as_str)
        {
            st.algorithm = algorithm(first);
        }
        out.push(st);
    }
    out
}

fn algorithm(s: &str) -> Option<Algorithm> {
    match s.to_ascii_lowercase().as_str() {
        "dpo" => Some(Algorithm::Dpo),
        "orpo" => Some(Algorithm::Orpo),
        "simpo" => Some(Algorithm::Simpo),
        "kto" => Some(Algorithm::Kto),
        _ => None,
    }
}

/// Stages from the keyed shape, in `training_order` (or key order without one).
fn keyed_stages(k: &Map<String, Value>, notes: &mut Vec<String>) -> Vec<Stage> {
    let mut order: Vec<String> = k
        .get("training_order")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    if order.is_empty() {
        for (name, v) in k {
            if name == "phase_b_sft_curriculum" {
                if let Some(stages) = v.get("stages").and_then(Value::as_object) {
                    order.extend(stages.keys().map(|s| format!("{name}.{s}")));
                }
            } else if name.starts_with("phase_") {
                order.push(name.clone());
            }
        }
    }
    let mut out = Vec::new();
    // The salvaged remains of a cut section stand for the first section that is missing.
    let mut lost = k.get("_lost");
    for entry in &order {
        let (section, sub) = entry.split_once('.').unwrap_or((entry.as_str(), ""));
        let value = if sub.is_empty() {
            k.get(section).or_else(|| lost.take())
        } else {
            k.get(section)
                .and_then(|v| v.get("stages"))
                .and_then(|v| v.get(sub))
        };
        let Some(v) = value.and_then(Value::as_object) else {
            notes.push(format!(
                "training_order names `{entry}`, which is not in the file"
            ));
            continue;
        };
        if !k.contains_key(section) {
            notes.push(format!(
                "`{section}` lost its beginning in the file: what survived of it was used"
            ));
        }
        let phase = if section.starts_with("phase_a") {
            Phase::Pretraining
        } else if section.starts_with("phase_c") {
            Phase::Preference
        } else {
            Phase::Sft
        };
        let id = if sub.is_empty() { section } else { sub };
        let mut st = new_stage(id.to_string(), phase);
        st.purpose = str_of(v, "purpose").unwrap_or_default();
        let params = v.get("training_params").and_then(Value::as_object);
        let num = |key: &str| {
            v.get(key)
                .or_else(|| params.and_then(|p| p.get(key)))
                .and_then(Value::as_f64)
        };
        st.epochs = num("epochs").map(|x| x as u32);
        st.learning_rate = num("learning_rate");
        st.context_length = num("context_length").map(|x| x as u32);
        if let Some(d) = v.get("datasets").and_then(Value::as_object) {
            st.weights = d
                .iter()
                .filter_map(|(f, w)| w.as_f64().map(|w| (f.clone(), w)))
                .collect();
        }
        if phase == Phase::Preference {
            st.algorithm = v
                .get("algorithm")
                .and_then(Value::as_str)
                .and_then(algorithm);
            if let Some(opts) = v.get("algorithm_options").and_then(Value::as_object) {
                for (name, o) in opts {
                    if let Some(a) = algorithm(name) {
                        st.algorithm_options.insert(
                            a,
                            AlgorithmOptions {
                                learning_rate: o.get("learning_rate").and_then(Value::as_f64),
                                beta: o.get("beta").and_then(Value::as_f64),
                                gamma: o.get("gamma").and_then(Value::as_f64),
                                description: o
                                    .get("description")
                                    .and_then(Value::as_str)
                                    .map(str::to_string),
                            },
                        );
                    }
                }
            }
        }
        out.push(st);
    }
    out
}

/// Keyed stages win; the phases shape fills in titles and the routes the keyed one lost, by
/// position within each phase.
fn merge(phases: Vec<Stage>, keyed: Vec<Stage>, notes: &mut Vec<String>) -> Vec<Stage> {
    if keyed.is_empty() {
        return phases;
    }
    if phases.is_empty() {
        return keyed;
    }
    let mut by_phase: BTreeMap<Phase, Vec<Stage>> = BTreeMap::new();
    for s in phases {
        by_phase.entry(s.phase).or_default().push(s);
    }
    let mut seen: BTreeMap<Phase, usize> = BTreeMap::new();
    keyed
        .into_iter()
        .map(|mut k| {
            let i = seen.entry(k.phase).or_default();
            if let Some(p) = by_phase.get(&k.phase).and_then(|v| v.get(*i)) {
                if k.title.is_empty() {
                    k.title = p.title.clone();
                }
                if k.purpose.is_empty() {
                    k.purpose = p.purpose.clone();
                }
                if k.weights.is_empty() && !p.weights.is_empty() {
                    notes.push(format!(
                        "stage `{}`: routes taken from the phases section (dataset prefixes \
                         mapped by the family rules, equal weights)",
                        k.id
                    ));
                    k.weights = p.weights.clone();
                }
                if k.context_length.is_none() {
                    k.context_length = p.context_length;
                }
            }
            *i += 1;
            k
        })
        .collect()
}
