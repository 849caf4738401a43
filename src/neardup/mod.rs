//! Near-duplicate and split policy, as pure functions: the permuted SimHash block tables
//! (Manku, Jain & Das Sarma, WWW 2007), the pair test (Hamming distance proposes, Jaccard of word
//! 3-shingle sets decides), holdout group keys, and the split of a cluster. The store applies this
//! policy incrementally (`store::clusters`); `verify` applies it again from scratch, in memory,
//! to check the incremental state. Nothing here touches storage. The in-memory joins that find
//! every close pair at once are in `join`.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use crate::fingerprint::{Hash128, ShingleSummary, Shingles};

mod join;

pub use join::{all_pairs, pairs_with, rows_in_pairs};

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

/// Split fractions.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Fractions {
    pub train: f64,
    pub val: f64,
    pub test: f64,
}

/// How rows of holdout families are grouped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum GroupBy {
    /// The source object (file or S3 object).
    Object,
    /// The folder (key prefix) holding the object.
    Directory,
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

    /// The holdout group of the object `key` of `source`, tagged with `families`, if any of
    /// them is a holdout family: the hash of its source and its key (or, grouped by directory,
    /// its folder).
    pub fn group_of(
        &self,
        source: &str,
        key: &str,
        families: &[String],
        session: Option<u64>,
    ) -> Option<Hash128> {
        if !self.holds_out(families) {
            return None;
        }
        let scope = match self.group_by {
            GroupBy::Object => key,
            GroupBy::Directory => key.rsplit_once('/').map_or("", |(d, _)| d),
        };
        let mut h = xxhash_rust::xxh3::Xxh3::new();
        h.update(source.as_bytes());
        h.update(&[0]);
        h.update(scope.as_bytes());
        // A declared session splits the object (or directory) into groups; without one the
        // group is the scope alone, as before sessions existed.
        if let Some(session) = session {
            h.update(&[0]);
            h.update(key.as_bytes());
            h.update(&session.to_le_bytes());
        }
        Some(Hash128(h.digest128()))
    }

    /// Whether rows tagged `families` are split by holdout group.
    pub fn holds_out(&self, families: &[String]) -> bool {
        families.iter().any(|f| self.holdout_families.contains(f))
    }

    /// Decide a proposed pair of fingerprintable rows: `Some(similarity)` when their SimHashes
    /// are within `hamming` bits and their shingle sets within the Jaccard threshold.
    pub fn judge(&self, hamming: u32, a: &Shingles, b: &Shingles) -> Option<f64> {
        if hamming > self.hamming {
            return None;
        }
        a.similar_at_least(b, self.jaccard)
    }

    /// Whether [`Policy::judge`] may accept a pair, from the sets' bucket counts alone (the
    /// test it starts with): `false` only when it would not.
    pub fn may_judge_sets(&self, hamming: u32, a: &Shingles, b: &Shingles) -> bool {
        hamming <= self.hamming && a.may_reach(b, self.jaccard)
    }

    /// Whether [`Policy::judge`] may accept a pair, from the sets' summaries: `false` only when
    /// it would not.
    pub fn may_judge(&self, hamming: u32, a: &ShingleSummary, b: &ShingleSummary) -> bool {
        hamming <= self.hamming && a.may_reach(b, self.jaccard)
    }
}

/// The permuted tables: 64 bits cut into `blocks` contiguous blocks, one table per block whose
/// permutation puts that block's bits first. Two fingerprints within `hamming` bits differ in at
/// most `radius = hamming / blocks` bits in at least one block (pigeonhole: otherwise every block
/// holds `radius + 1` differences, `blocks * (radius + 1) > hamming` in all). So a lookup probes,
/// in each table, the prefixes within `radius` bits of the fingerprint's own — one range scan
/// each — and finds every candidate. Radius 0 is the classic scheme of Manku et al.; radius 1
/// reaches twice the distance with the same tables, trading inserts for probes.
#[derive(Debug, Clone)]
pub struct BlockTables {
    /// (shift, width) of each block, most significant first.
    blocks: Vec<(u32, u32)>,
    /// Bit flips (within a block prefix) each lookup probes, the empty flip first.
    flips: Vec<Vec<u64>>,
    /// Differing bits a probe allows within a block.
    radius: u32,
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
        let radius = (hamming as usize) / b;
        let flips = spec
            .iter()
            .map(|&(_, width)| {
                let mut masks = Vec::new();
                for r in 0..=radius.min(width as usize) {
                    for bits in combinations(width as usize, r) {
                        masks.push(bits.iter().fold(0u64, |m, &i| m | 1u64 << i));
                    }
                }
                masks
            })
            .collect();
        BlockTables {
            blocks: spec,
            flips,
            radius: radius as u32,
        }
    }

    /// The first table whose probes find `y` from `x` (and `x` from `y`): the one that reports
    /// the pair when every table proposes its pairs, so that each is reported once.
    pub fn first_table(&self, x: u64, y: u64) -> Option<usize> {
        let diff = x ^ y;
        self.blocks.iter().position(|&(shift, width)| {
            let mask = if width == 64 {
                u64::MAX
            } else {
                (1u64 << width) - 1
            };
            ((diff >> shift) & mask).count_ones() <= self.radius
        })
    }

    /// Number of tables (one per block).
    pub fn len(&self) -> usize {
        self.blocks.len()
    }

    pub fn is_empty(&self) -> bool {
        self.blocks.is_empty()
    }

    /// Range scans one lookup makes, over all tables.
    pub fn probes(&self) -> usize {
        self.flips.iter().map(Vec::len).sum()
    }

    /// The fingerprint with table `t`'s block moved to the front (the other blocks keep their
    /// order): a bijection, so the stored value identifies the fingerprint.
    pub fn permute(&self, t: usize, x: u64) -> u64 {
        let (shift, width) = self.blocks[t];
        if width == 64 {
            return x;
        }
        let block = (x >> shift) & ((1u64 << width) - 1);
        let below = x & ((1u64 << shift) - 1);
        let above = if shift + width == 64 {
            0
        } else {
            x >> (shift + width)
        };
        (block << (64 - width)) | (above << shift) | below
    }

    /// The inclusive ranges of permuted values whose table-`t` prefix is within the probe radius
    /// of `x`'s, its own prefix first.
    pub fn ranges(&self, t: usize, x: u64) -> impl Iterator<Item = (u64, u64)> + '_ {
        let width = self.blocks[t].1;
        let p = self.permute(t, x);
        let low_bits = 64 - width;
        let low_mask = if low_bits == 0 {
            0
        } else {
            (1u64 << low_bits) - 1
        };
        let prefix = if low_bits == 64 { 0 } else { p >> low_bits };
        self.flips[t].iter().map(move |&flip| {
            let q = prefix ^ flip;
            let lo = if low_bits == 64 { 0 } else { q << low_bits };
            (lo, lo | low_mask)
        })
    }

    /// The prefix of `x` in table `t` (the key of its bucket).
    pub fn bucket(&self, t: usize, x: u64) -> u64 {
        self.ranges(t, x).next().map_or(0, |r| r.0)
    }

    /// The bucket of a value already permuted for table `t`: its prefix, low bits cleared.
    pub fn bucket_of_permuted(&self, t: usize, permuted: u64) -> u64 {
        let low_bits = 64 - self.blocks[t].1;
        if low_bits == 64 {
            0
        } else {
            permuted >> low_bits << low_bits
        }
    }
}

/// Union-find over content hashes whose set roots are their smallest member (so a root is a
/// cluster id). Hashes enter on first sight.
#[derive(Debug, Default)]
pub struct UnionFind {
    parent: crate::fingerprint::Hash128Map<Hash128>,
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

/// Union-find over the indices `0..n` of a pair list's entries: what a pass over candidate pairs
/// asks first ("already joined?"), answered from one array instead of hash lookups. A pair it
/// has joined is joined in the pass's [`UnionFind`] too; it knows nothing of joins made there
/// otherwise (stored clusters, holdout groups), so "not joined" here means "ask there".
#[derive(Debug)]
pub struct IndexSets {
    parent: Vec<u32>,
}

impl IndexSets {
    pub fn new(n: usize) -> IndexSets {
        IndexSets {
            parent: (0..n as u32).collect(),
        }
    }

    /// The root of `x`'s set (path halving).
    pub fn find(&mut self, mut x: u32) -> u32 {
        while self.parent[x as usize] != x {
            let grand = self.parent[self.parent[x as usize] as usize];
            self.parent[x as usize] = grand;
            x = grand;
        }
        x
    }

    /// Whether `a` and `b` are in one set.
    pub fn joined(&mut self, a: u32, b: u32) -> bool {
        self.find(a) == self.find(b)
    }

    pub fn union(&mut self, a: u32, b: u32) {
        let (ra, rb) = (self.find(a), self.find(b));
        if ra != rb {
            self.parent[ra.max(rb) as usize] = ra.min(rb);
        }
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

    pub(super) fn xorshift(seed: &mut u64) -> u64 {
        *seed ^= *seed << 13;
        *seed ^= *seed >> 7;
        *seed ^= *seed << 17;
        *seed
    }

    #[test]
    fn permutations_are_bijections_and_tables_find_every_close_pair() {
        for (blocks, hamming) in [(4, 3), (4, 6), (4, 7), (5, 4), (3, 8), (1, 0), (7, 2)] {
            let t = BlockTables::new(blocks, hamming);
            assert_eq!(t.len(), blocks as usize);
            let mut seed = 0x1234_5678_9abc_def1u64;
            for _ in 0..2000 {
                let x = xorshift(&mut seed);
                // Table 0 stores the SimHash itself (the stored tables have no value column).
                assert_eq!(t.permute(0, x), x);
                for i in 0..t.len() {
                    assert_eq!(t.permute(i, x).count_ones(), x.count_ones());
                    let y = xorshift(&mut seed);
                    assert_eq!(t.permute(i, x) == t.permute(i, y), x == y);
                    // The stored tables measure distance between permuted values.
                    assert_eq!(
                        (t.permute(i, x) ^ t.permute(i, y)).count_ones(),
                        (x ^ y).count_ones()
                    );
                }
                // A neighbour within `hamming` bits is in range of at least one table.
                let mut y = x;
                for _ in 0..hamming {
                    y ^= 1 << (xorshift(&mut seed) % 64);
                }
                assert!(
                    (0..t.len()).any(|i| {
                        t.ranges(i, x)
                            .any(|(lo, hi)| (lo..=hi).contains(&t.permute(i, y)))
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

    proptest::proptest! {
        /// Index sets join exactly what the hash union-find joins, under any sequence of unions.
        #[test]
        fn index_sets_agree_with_the_union_find(
            unions in proptest::collection::vec((0u32..40, 0u32..40), 0..80),
            asks in proptest::collection::vec((0u32..40, 0u32..40), 1..40),
        ) {
            let mut dense = IndexSets::new(40);
            let mut u = UnionFind::default();
            for &(a, b) in &unions {
                dense.union(a, b);
                u.union(Hash128(a.into()), Hash128(b.into()));
            }
            for &(a, b) in &asks {
                let hashed = u.find(Hash128(a.into())) == u.find(Hash128(b.into()));
                proptest::prop_assert_eq!(dense.joined(a, b), hashed);
            }
        }
    }

    #[test]
    fn combinations_are_complete() {
        assert_eq!(combinations(4, 1).len(), 4);
        assert_eq!(combinations(5, 2).len(), 10);
        assert_eq!(combinations(3, 3), vec![vec![0, 1, 2]]);
    }

    pub(super) fn policy() -> Policy {
        let classifier = crate::families::Classifier::load(None).unwrap();
        crate::config::IdxConfig::load(None)
            .unwrap()
            .policy(&classifier)
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
        let (source, key, other) = ("file:///d", "a/b/c.jsonl", "a/b/d.jsonl");
        assert!(p.group_of(source, key, &["cptsd".into()], None).is_none());
        let g = p.group_of(source, key, &["cptsd".into(), "sarcasm".into()], None);
        // The group of an object is the hash of its id (source \0 key): stored groups keep it.
        let id = crate::store::keys::object_id(source, key);
        assert_eq!(g, Some(Hash128(xxhash_rust::xxh3::xxh3_128(id.as_bytes()))));
        assert_ne!(p.group_of(source, other, &["sarcasm".into()], None), g);
        let mut by_dir = p.clone();
        by_dir.group_by = GroupBy::Directory;
        assert_eq!(
            by_dir.group_of(source, key, &["sarcasm".into()], None),
            by_dir.group_of(source, other, &["sarcasm".into()], None)
        );
    }

    #[test]
    fn pairs_need_both_tests() {
        let p = policy();
        let set = |n: u64| Shingles::from_set((0..n).collect());
        let (a, b, c) = (set(10), set(9), set(5));
        assert_eq!(p.judge(2, &a, &b), Some(0.9));
        assert_eq!(p.judge(p.hamming + 1, &a, &b), None);
        assert_eq!(p.judge(0, &a, &c), None);
    }
}
