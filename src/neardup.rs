//! Near-duplicate and split policy, as pure functions: the permuted SimHash block tables
//! (Manku, Jain & Das Sarma, WWW 2007), the pair test (Hamming distance proposes, Jaccard of word
//! 3-shingle sets decides), holdout group keys, and the split of a cluster. The store applies this
//! policy incrementally (`store::clusters`); `verify` applies it again from scratch, in memory,
//! to check the incremental state. Nothing here touches storage.

use std::collections::{BTreeSet, HashMap};

use serde::{Deserialize, Serialize};

use crate::config::{Fractions, GroupBy, IdxConfig};
use crate::families::Classifier;
use crate::fingerprint::{jaccard, Hash128};
use crate::store::keys;

/// The three splits, in their on-disk order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Split {
    Train,
    Val,
    Test,
}

impl Split {
    pub const ALL: [Split; 3] = [Split::Train, Split::Val, Split::Test];

    pub fn as_str(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Val => "val",
            Split::Test => "test",
        }
    }

    pub fn to_byte(self) -> u8 {
        self as u8
    }

    pub fn from_byte(b: u8) -> Option<Split> {
        Split::ALL.get(b as usize).copied()
    }
}

impl std::fmt::Display for Split {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Everything that decides edges, clusters and splits. Stored with the index: when it changes,
/// the clusters are recomputed once.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Policy {
    pub hamming: u32,
    pub blocks: u32,
    pub jaccard: f64,
    pub min_words: u32,
    pub fractions: Fractions,
    pub holdout_fractions: Fractions,
    pub salt: String,
    pub group_by: GroupBy,
    /// Families whose rows are split by whole groups.
    pub holdout_families: BTreeSet<String>,
}

impl Policy {
    pub fn new(config: &IdxConfig, classifier: &Classifier) -> Policy {
        Policy {
            hamming: config.near_dup.hamming,
            blocks: config.near_dup.blocks,
            jaccard: config.near_dup.jaccard,
            min_words: config.near_dup.min_words,
            fractions: config.splits.fractions(),
            holdout_fractions: config.holdout.fractions(),
            salt: config.splits.salt.clone(),
            group_by: config.holdout.group,
            holdout_families: classifier
                .config()
                .families
                .iter()
                .filter(|f| f.holdout)
                .map(|f| f.name.clone())
                .collect(),
        }
    }

    /// The permuted block tables of this policy.
    pub fn tables(&self) -> BlockTables {
        BlockTables::new(self.blocks, self.hamming)
    }

    /// Whether a row with this many words is matched by SimHash + Jaccard; shorter rows are too
    /// short for a stable fingerprint and match by exact content hash only.
    pub fn fingerprintable(&self, words: u32) -> bool {
        words >= self.min_words
    }

    /// The split of a cluster identified by its smallest content hash.
    pub fn split_of(&self, cluster: Hash128, holdout: bool) -> Split {
        let mut h = xxhash_rust::xxh3::Xxh3::new();
        h.update(self.salt.as_bytes());
        h.update(&[0]);
        h.update(&cluster.to_bytes());
        // 53 bits give an exactly representable uniform value in [0, 1).
        let u = (h.digest() >> 11) as f64 / (1u64 << 53) as f64;
        let f = if holdout {
            self.holdout_fractions
        } else {
            self.fractions
        };
        if u < f.train {
            Split::Train
        } else if u < f.train + f.val {
            Split::Val
        } else {
            Split::Test
        }
    }

    /// The holdout group of an object tagged with `families`, if any of them is a holdout family.
    pub fn group_of(&self, object_id: &str, families: &[String]) -> Option<Hash128> {
        if !families.iter().any(|f| self.holdout_families.contains(f)) {
            return None;
        }
        let group = match self.group_by {
            GroupBy::Object => object_id.to_string(),
            GroupBy::Directory => {
                let (source, key) = keys::split_object_id(object_id);
                let dir = key.rsplit_once('/').map_or("", |(d, _)| d);
                keys::object_id(source, dir)
            }
        };
        Some(Hash128(xxhash_rust::xxh3::xxh3_128(group.as_bytes())))
    }

    /// Decide a proposed pair of fingerprintable rows: `Some(similarity)` when their SimHashes
    /// are within `hamming` bits and their shingle sets within the Jaccard threshold.
    pub fn judge(&self, hamming: u32, a: &[u64], b: &[u64]) -> Option<f64> {
        if hamming > self.hamming {
            return None;
        }
        let sim = jaccard(a, b);
        (sim >= self.jaccard).then_some(sim)
    }
}

/// The permuted tables: 64 bits cut into `blocks` contiguous blocks; one table per choice of
/// `blocks - hamming` blocks, whose bits lead that table's permutation. Two fingerprints within
/// `hamming` bits agree exactly on at least `blocks - hamming` blocks (pigeonhole), so they share
/// the leading bits of at least one table: a range scan per table finds every candidate.
#[derive(Debug, Clone)]
pub struct BlockTables {
    /// (shift, width) of each block, most significant first.
    blocks: Vec<(u32, u32)>,
    /// Per table: the block order of its permutation and the width of its exact-match prefix.
    tables: Vec<(Vec<usize>, u32)>,
}

impl BlockTables {
    pub fn new(blocks: u32, hamming: u32) -> BlockTables {
        let b = blocks.clamp(1, 64) as usize;
        let base = 64 / b as u32;
        let extra = 64 % b as u32;
        let mut spec = Vec::with_capacity(b);
        let mut top = 64u32;
        for i in 0..b as u32 {
            let width = base + u32::from(i < extra);
            top -= width;
            spec.push((top, width));
        }
        let keep = b - (hamming as usize).min(b - 1);
        let mut tables = Vec::new();
        for chosen in combinations(b, keep) {
            let prefix: u32 = chosen.iter().map(|&i| spec[i].1).sum();
            let mut order = chosen.clone();
            order.extend((0..b).filter(|i| !chosen.contains(i)));
            tables.push((order, prefix));
        }
        BlockTables {
            blocks: spec,
            tables,
        }
    }

    pub fn len(&self) -> usize {
        self.tables.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tables.is_empty()
    }

    /// The fingerprint with table `t`'s blocks moved to the front.
    pub fn permute(&self, t: usize, x: u64) -> u64 {
        let mut out = 0u64;
        for &i in &self.tables[t].0 {
            let (shift, width) = self.blocks[i];
            let mask = if width == 64 {
                u64::MAX
            } else {
                (1u64 << width) - 1
            };
            out = if width == 64 { 0 } else { out << width } | ((x >> shift) & mask);
        }
        out
    }

    /// The inclusive range of permuted values sharing table `t`'s prefix with `x`.
    pub fn range(&self, t: usize, x: u64) -> (u64, u64) {
        let p = self.permute(t, x);
        let width = self.tables[t].1;
        if width >= 64 {
            return (p, p);
        }
        let low_bits = 64 - width;
        let low_mask = if low_bits == 64 {
            u64::MAX
        } else {
            (1u64 << low_bits) - 1
        };
        (p & !low_mask, p | low_mask)
    }
}

/// Union-find over content hashes whose set roots are their smallest member (so a root is a
/// cluster id). Hashes enter on first sight.
#[derive(Debug, Default)]
pub struct UnionFind {
    parent: HashMap<Hash128, Hash128>,
}

impl UnionFind {
    pub fn contains(&self, x: Hash128) -> bool {
        self.parent.contains_key(&x)
    }

    /// The root of `x`'s set (adding `x` alone when unseen).
    pub fn find(&mut self, x: Hash128) -> Hash128 {
        let mut root = x;
        while let Some(&p) = self.parent.get(&root) {
            if p == root {
                break;
            }
            root = p;
        }
        self.parent.entry(x).or_insert(x);
        let mut cur = x;
        while cur != root {
            let next = self.parent.get(&cur).copied().unwrap_or(root);
            self.parent.insert(cur, root);
            cur = next;
        }
        root
    }

    pub fn union(&mut self, a: Hash128, b: Hash128) {
        let (ra, rb) = (self.find(a), self.find(b));
        if ra != rb {
            let (lo, hi) = if ra < rb { (ra, rb) } else { (rb, ra) };
            self.parent.insert(hi, lo);
        }
    }

    /// Every member seen, in no particular order.
    pub fn members(&self) -> Vec<Hash128> {
        self.parent.keys().copied().collect()
    }
}

/// Every `k`-subset of `0..n`, in lexicographic order.
fn combinations(n: usize, k: usize) -> Vec<Vec<usize>> {
    let mut out = Vec::new();
    let mut current: Vec<usize> = (0..k).collect();
    if k > n {
        return out;
    }
    loop {
        out.push(current.clone());
        let Some(i) = (0..k).rev().find(|&i| current[i] < n - k + i) else {
            return out;
        };
        current[i] += 1;
        for j in i + 1..k {
            current[j] = current[j - 1] + 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn xorshift(seed: &mut u64) -> u64 {
        *seed ^= *seed << 13;
        *seed ^= *seed >> 7;
        *seed ^= *seed << 17;
        *seed
    }

    #[test]
    fn permutations_are_bijections_and_tables_find_every_close_pair() {
        for (blocks, hamming) in [(4, 3), (5, 4), (6, 3), (7, 2), (3, 0)] {
            let t = BlockTables::new(blocks, hamming);
            assert_eq!(
                t.len() as u64,
                crate::config::table_count(blocks, hamming),
                "{blocks}/{hamming}"
            );
            let mut seed = 0x1234_5678_9abc_def1u64;
            for _ in 0..2000 {
                let x = xorshift(&mut seed);
                for i in 0..t.len() {
                    assert_eq!(t.permute(i, x).count_ones(), x.count_ones());
                }
                // A neighbour within `hamming` bits is in range of at least one table.
                let mut y = x;
                for _ in 0..hamming {
                    y ^= 1 << (xorshift(&mut seed) % 64);
                }
                assert!(
                    (0..t.len()).any(|i| {
                        let (lo, hi) = t.range(i, x);
                        (lo..=hi).contains(&t.permute(i, y))
                    }),
                    "{blocks}/{hamming}: {x:016x} vs {y:016x}"
                );
            }
        }
    }

    #[test]
    fn union_find_roots_are_smallest_members() {
        let mut u = UnionFind::default();
        let h = |n: u128| Hash128(n);
        u.union(h(5), h(9));
        u.union(h(9), h(2));
        u.union(h(7), h(8));
        assert_eq!(u.find(h(5)), h(2));
        assert_eq!(u.find(h(9)), h(2));
        assert_eq!(u.find(h(8)), h(7));
        assert!(!u.contains(h(1)));
        assert_eq!(u.find(h(1)), h(1));
        assert_eq!(u.members().len(), 6);
    }

    #[test]
    fn combinations_are_complete() {
        assert_eq!(combinations(4, 1).len(), 4);
        assert_eq!(combinations(5, 2).len(), 10);
        assert_eq!(combinations(3, 3), vec![vec![0, 1, 2]]);
    }

    fn policy() -> Policy {
        let classifier = Classifier::load(None).unwrap();
        Policy::new(&IdxConfig::load(None).unwrap(), &classifier)
    }

    #[test]
    fn splits_follow_the_fractions_and_are_stable() {
        let p = policy();
        let mut counts = [0usize; 3];
        let mut seed = 99u64;
        for _ in 0..20_000 {
            let h =
                Hash128(u128::from(xorshift(&mut seed)) << 64 | u128::from(xorshift(&mut seed)));
            let s = p.split_of(h, false);
            assert_eq!(s, p.split_of(h, false));
            counts[s as usize] += 1;
        }
        let train = counts[0] as f64 / 20_000.0;
        assert!((train - 0.9).abs() < 0.01, "{counts:?}");
        assert!(counts[1] > 800 && counts[2] > 800, "{counts:?}");
    }

    #[test]
    fn groups_only_for_holdout_families() {
        let p = policy();
        let id = keys::object_id("file:///d", "a/b/c.jsonl");
        assert!(p.group_of(&id, &["cptsd".into()]).is_none());
        let g = p.group_of(&id, &["cptsd".into(), "sarcasm".into()]);
        assert!(g.is_some());
        let other = keys::object_id("file:///d", "a/b/d.jsonl");
        assert_ne!(p.group_of(&other, &["sarcasm".into()]), g);
        let mut by_dir = p.clone();
        by_dir.group_by = GroupBy::Directory;
        assert_eq!(
            by_dir.group_of(&id, &["sarcasm".into()]),
            by_dir.group_of(&other, &["sarcasm".into()])
        );
    }

    #[test]
    fn pairs_need_both_tests() {
        let p = policy();
        let a: Vec<u64> = (0..10).collect();
        let b: Vec<u64> = (0..9).collect();
        let c: Vec<u64> = (0..5).collect();
        assert_eq!(p.judge(2, &a, &b), Some(0.9));
        assert_eq!(p.judge(p.hamming + 1, &a, &b), None);
        assert_eq!(p.judge(0, &a, &c), None);
    }
}
