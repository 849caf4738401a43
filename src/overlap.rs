//! Which objects hold the same rows: for each indexed object, the share of its rows (distinct
//! content hashes) also found in other objects, and which — so a consolidated file that
//! repeats others ("unified.jsonl holds 100% of priority_1 and priority_2") is visible before
//! it is compiled twice. Read from one snapshot; behind `idx query overlap` and the
//! contained-object report of `idx verify`.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::error::{Error, Result};
use crate::fingerprint::Hash128;
use crate::store::{keys, ObjectStatus, ReadView};

/// How many other objects an answer names per object.
const OTHERS: usize = 10;

#[derive(Debug, Clone, Serialize)]
pub struct ObjectOverlap {
    pub source: String,
    pub key: String,
    pub family: String,
    /// Distinct rows (content hashes) in the object.
    pub rows: u64,
    /// Of them, rows some other object also holds.
    pub shared_rows: u64,
    pub share: f64,
    /// Every row of it is in other objects.
    pub contained: bool,
    /// Marked redundant in `[objects] redundant` (idx.toml).
    pub redundant: bool,
    /// The objects sharing the most rows with it, most first.
    pub others: Vec<OtherObject>,
}

#[derive(Debug, Clone, Serialize)]
pub struct OtherObject {
    pub source: String,
    pub key: String,
    /// Rows the two objects share.
    pub rows: u64,
    /// Of this object's rows.
    pub share: f64,
    /// Of the other object's rows.
    pub share_of_other: f64,
}

/// Overlap of every indexed object with rows (`key: Some`: only the objects with that key or
/// full `source\0key` id; an error naming it when none has). `redundant` says whether a key is
/// marked redundant.
pub fn overlap(
    view: &ReadView,
    key: Option<&str>,
    redundant: &dyn Fn(&str) -> bool,
) -> Result<Vec<ObjectOverlap>> {
    let objects: Vec<_> = view
        .objects()?
        .into_iter()
        .filter(|o| o.status == ObjectStatus::Indexed && o.rows > 0)
        .collect();
    // Each object's distinct rows, and each row's objects (indices into `objects`).
    let mut rows_of: Vec<Vec<Hash128>> = Vec::with_capacity(objects.len());
    let mut holders: crate::fingerprint::Hash128Map<Vec<u32>> = Default::default();
    for (i, o) in objects.iter().enumerate() {
        let mut rows: Vec<Hash128> = view
            .object_places(&keys::object_id(&o.source, &o.key))?
            .into_iter()
            .map(|(_, _, h, _)| h)
            .collect();
        rows.sort_unstable();
        rows.dedup();
        for &h in &rows {
            holders.entry(h).or_default().push(i as u32);
        }
        rows_of.push(rows);
    }
    let wanted = |o: &crate::store::ObjectRecord| match key {
        None => true,
        Some(k) => {
            o.key == k || keys::object_id(&o.source, &o.key) == k || {
                let (s, kk) = keys::split_object_id(k);
                o.source == s && o.key == kk
            }
        }
    };
    let mut out = Vec::new();
    for (i, o) in objects.iter().enumerate().filter(|(_, o)| wanted(o)) {
        let rows = &rows_of[i];
        let mut shared = 0u64;
        let mut with: BTreeMap<u32, u64> = BTreeMap::new();
        for h in rows {
            let others = &holders[h];
            if others.len() > 1 {
                shared += 1;
                for &j in others.iter().filter(|&&j| j as usize != i) {
                    *with.entry(j).or_default() += 1;
                }
            }
        }
        let mut ranked: Vec<(u32, u64)> = with.into_iter().collect();
        ranked.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        let n = rows.len() as u64;
        out.push(ObjectOverlap {
            source: o.source.clone(),
            key: o.key.clone(),
            family: o.primary_family.clone(),
            rows: n,
            shared_rows: shared,
            share: shared as f64 / n.max(1) as f64,
            contained: n > 0 && shared == n,
            redundant: redundant(&o.key),
            others: ranked
                .into_iter()
                .take(OTHERS)
                .map(|(j, k)| {
                    let other = &objects[j as usize];
                    OtherObject {
                        source: other.source.clone(),
                        key: other.key.clone(),
                        rows: k,
                        share: k as f64 / n.max(1) as f64,
                        share_of_other: k as f64 / rows_of[j as usize].len().max(1) as f64,
                    }
                })
                .collect(),
        });
    }
    if out.is_empty() {
        if let Some(k) = key {
            return Err(Error::Query(format!(
                "no indexed object with rows has the key {k} (see `idx status`)"
            )));
        }
    }
    Ok(out)
}
