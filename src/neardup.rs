//! Near-duplicate and split policy, as pure functions: the permuted SimHash block tables
//! (Manku, Jain & Das Sarma, WWW 2007), the pair test (Hamming distance proposes, Jaccard of word
//! 3-shingle sets decides), holdout group keys, and the split of a cluster. The store applies this
//! policy incrementally (`store::clusters`); `verify` applies it again from scratch, in memory,
//! to check the incremental state. Nothing here touches storage.

use std::collections::{BTreeSet, HashMap};

use serde::{Deserialize, Serialize};

use crate::fingerprint::{Hash128, ShingleSummary, Shingles};

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

/// The pairs within the policy's Hamming distance with at least one entry for which `chosen`
/// holds, as (index, index, distance) into `fingerprints`: each pair once, the smaller index
/// first, closest pairs first. A large batch finds its rows' candidates this way, by one join.
pub fn pairs_with(
    policy: &Policy,
    fingerprints: &[(Hash128, u64)],
    chosen: impl Fn(Hash128) -> bool,
) -> Vec<(u32, u32, u32)> {
    let wanted: Vec<bool> = fingerprints.iter().map(|&(h, _)| chosen(h)).collect();
    let mut by_distance: Vec<Vec<(u32, u32, u32)>> = vec![Vec::new(); policy.hamming as usize + 1];
    for (a, b, d) in join(fingerprints, policy, Some(&wanted)) {
        if fingerprints[a as usize].0 != fingerprints[b as usize].0 {
            by_distance[d as usize].push((a.min(b), a.max(b), d));
        }
    }
    by_distance.concat()
}

/// Calls `found(id, distance)` for the entries of `permuted` within `hamming` bits of `q`.
/// Chunks of eight are tested without a branch first (the compiler vectorises that; nearly every
/// chunk of a crowded bucket holds no candidate), and only a chunk with one is walked.
fn scan(permuted: &[u64], ids: &[u32], q: u64, hamming: u32, mut found: impl FnMut(u32, u32)) {
    for (chunk, chunk_ids) in permuted.chunks(8).zip(ids.chunks(8)) {
        let any = chunk
            .iter()
            .fold(false, |any, &p| any | ((p ^ q).count_ones() <= hamming));
        if any {
            for (&p, &id) in chunk.iter().zip(chunk_ids) {
                let d = (p ^ q).count_ones();
                if d <= hamming {
                    found(id, d);
                }
            }
        }
    }
}

/// Every pair of fingerprints within the policy's Hamming distance, found the way the redb
/// tables find them but in memory, as (index, index, distance) into `fingerprints`: each pair
/// once, the smaller index first, in index order (for fingerprints in hash order, the order of
/// their hashes, whatever the number of cores). Used by `verify` to recompute from scratch, and
/// by the quality benchmark.
pub fn all_pairs(fingerprints: &[(Hash128, u64)], policy: &Policy) -> Vec<(u32, u32, u32)> {
    let mut pairs: Vec<(u32, u32, u32)> = join(fingerprints, policy, None)
        .into_iter()
        .filter(|&(a, b, _)| fingerprints[a as usize].0 != fingerprints[b as usize].0)
        .map(|(a, b, d)| (a.min(b), a.max(b), d))
        .collect();
    pairs.sort_unstable();
    pairs
}

/// The entries that appear in `pairs` (indices into a list of `n`), each once in order of first
/// appearance, and each entry's slot in that list (`u32::MAX` for one in no pair): what is
/// loaded once per row for a pair list (its text's shingles or their summary).
pub fn rows_in_pairs(n: usize, pairs: &[(u32, u32, u32)]) -> (Vec<u32>, Vec<u32>) {
    let mut slot = vec![u32::MAX; n];
    let mut rows = Vec::new();
    for &(a, b, _) in pairs {
        for i in [a, b] {
            if slot[i as usize] == u32::MAX {
                slot[i as usize] = rows.len() as u32;
                rows.push(i);
            }
        }
    }
    (rows, slot)
}

/// The pairs within the policy's Hamming distance as (index, index, distance) into
/// `fingerprints`, each once (a pair close in several blocks is reported by the first table that
/// proposes it); with `wanted`, only pairs with at least one wanted entry.
///
/// A join rather than a lookup per row: each table's entries are sorted by permuted SimHash, and
/// every bucket is compared with itself and with each neighbouring bucket (prefix within the
/// probe radius) above it, so each pair of entries is compared once per table instead of twice,
/// over contiguous memory. Word SimHashes of conversational text are far from uniform (at 1.35M
/// rows of the scale corpus one 16-bit bucket holds 9,316 rows and a lookup scanned 14k
/// entries), so these comparisons are nearly all of the work: the join took 11.8 s where the
/// lookups took 119 s (docs/PERFORMANCE.md § Scale). The tables run on their own threads.
fn join(
    fingerprints: &[(Hash128, u64)],
    policy: &Policy,
    wanted: Option<&[bool]>,
) -> Vec<(u32, u32, u32)> {
    let tables = policy.tables();
    // One worker per core, each taking the next table not yet taken when it is done with one
    // (tables take unequal times: a crowded block is slow): a table's sorted copy of the
    // fingerprints is what the join holds in memory, so no more are held at once. Each table's
    // pairs are kept apart and put together in table order, whichever worker made them.
    let workers = crate::parallel::workers().clamp(1, tables.len().max(1));
    let next = std::sync::atomic::AtomicUsize::new(0);
    let mut by_table = crate::parallel::on_threads(workers, |_| {
        let mut done = Vec::new();
        loop {
            let t = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            if t >= tables.len() {
                return done;
            }
            done.push((
                t,
                join_table(fingerprints, &tables, t, policy.hamming, wanted),
            ));
        }
    })
    .concat();
    by_table.sort_unstable_by_key(|&(t, _)| t);
    by_table.into_iter().flat_map(|(_, pairs)| pairs).collect()
}

/// [`join`] for table `t`. Within a bucket the wanted entries come first, so the pairs with a
/// wanted entry are: a wanted entry with every later entry of its bucket and every entry of a
/// neighbouring bucket, and an unwanted one with the wanted entries of a neighbouring bucket.
fn join_table(
    fingerprints: &[(Hash128, u64)],
    tables: &BlockTables,
    t: usize,
    hamming: u32,
    wanted: Option<&[bool]>,
) -> Vec<(u32, u32, u32)> {
    let mut entries: Vec<(u64, u32)> = fingerprints
        .iter()
        .enumerate()
        .map(|(i, &(_, s))| (tables.permute(t, s), i as u32))
        .collect();
    entries.sort_unstable();
    let is_wanted = |id: u32| wanted.is_none_or(|w| w[id as usize]);
    // Bucket prefix → (start, end of its wanted entries, end) in `entries`.
    let mut runs: HashMap<u64, (usize, usize, usize)> = HashMap::new();
    let mut start = 0;
    while start < entries.len() {
        let lo = tables.bucket_of_permuted(t, entries[start].0);
        let end =
            start + entries[start..].partition_point(|e| tables.bucket_of_permuted(t, e.0) == lo);
        let run = &mut entries[start..end];
        if wanted.is_some() {
            run.sort_by_key(|e| !is_wanted(e.1));
        }
        let wanted_end = start + run.partition_point(|e| is_wanted(e.1));
        runs.insert(lo, (start, wanted_end, end));
        start = end;
    }
    let (permuted, ids): (Vec<u64>, Vec<u32>) = entries.into_iter().unzip();
    let mut found = Vec::new();
    for (&lo, &(start, wanted_end, end)) in &runs {
        let simhash = fingerprints[ids[start] as usize].1;
        for (other, _) in tables.ranges(t, simhash) {
            let (from, to_wanted, to) = if other == lo {
                (start, wanted_end, end)
            } else if other > lo {
                match runs.get(&other) {
                    Some(&run) => run,
                    None => continue,
                }
            } else {
                continue;
            };
            for i in start..end {
                let (from, to) = match (other == lo, i < wanted_end) {
                    // Within the bucket, the entries after `i`; an unwanted `i` has none left
                    // that are wanted.
                    (true, true) => (i + 1, end),
                    (true, false) => break,
                    (false, true) => (from, to),
                    (false, false) => (from, to_wanted),
                };
                let a = ids[i];
                let simhash_a = fingerprints[a as usize].1;
                scan(
                    &permuted[from..to],
                    &ids[from..to],
                    permuted[i],
                    hamming,
                    |b, d| {
                        // Every table that proposes the pair finds it: the first one reports it.
                        if tables.first_table(simhash_a, fingerprints[b as usize].1) == Some(t) {
                            found.push((a, b, d));
                        }
                    },
                );
            }
        }
    }
    found
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
    use std::collections::BTreeMap;

    fn xorshift(seed: &mut u64) -> u64 {
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

    #[test]
    fn in_memory_candidates_equal_a_brute_force_scan() {
        let p = policy();
        let mut seed = 5u64;
        let mut fps: Vec<(Hash128, u64)> = Vec::new();
        for i in 0..400u128 {
            let base = xorshift(&mut seed);
            fps.push((Hash128(i * 2), base));
            // A neighbour 0..=8 bits away.
            let mut near = base;
            for _ in 0..(xorshift(&mut seed) % 9) {
                near ^= 1 << (xorshift(&mut seed) % 64);
            }
            fps.push((Hash128(i * 2 + 1), near));
        }
        let brute = brute_pairs(&fps, p.hamming);
        assert!(brute.len() > 100);
        assert_eq!(all_pairs_by_hash(&fps, &p), brute);
    }

    #[test]
    fn rows_in_pairs_lists_each_row_once_with_its_slot() {
        let (rows, slot) = rows_in_pairs(5, &[(3, 1, 0), (1, 4, 2), (3, 4, 1)]);
        assert_eq!(rows, vec![3, 1, 4]);
        assert_eq!(slot, vec![u32::MAX, 1, u32::MAX, 0, 2]);
    }

    /// [`all_pairs`] keyed by the pairs' hashes, checked to come in index order, each once.
    fn all_pairs_by_hash(fps: &[(Hash128, u64)], p: &Policy) -> BTreeMap<(Hash128, Hash128), u32> {
        let pairs = all_pairs(fps, p);
        assert!(pairs
            .windows(2)
            .all(|w| (w[0].0, w[0].1) < (w[1].0, w[1].1)));
        assert!(pairs.iter().all(|&(a, b, _)| a < b));
        pairs
            .into_iter()
            .map(|(a, b, d)| {
                let (x, y) = (fps[a as usize].0, fps[b as usize].0);
                ((x.min(y), x.max(y)), d)
            })
            .collect()
    }

    /// Pairs within the policy's distance by comparing every pair.
    fn brute_pairs(fps: &[(Hash128, u64)], hamming: u32) -> BTreeMap<(Hash128, Hash128), u32> {
        let mut brute = BTreeMap::new();
        for (i, a) in fps.iter().enumerate() {
            for b in &fps[i + 1..] {
                let d = (a.1 ^ b.1).count_ones();
                if d <= hamming && a.0 != b.0 {
                    brute.insert((a.0.min(b.0), a.0.max(b.0)), d);
                }
            }
        }
        brute
    }

    #[test]
    fn crowded_buckets_find_what_a_brute_force_scan_finds() {
        // Fingerprints around a few centres (as common words pull a corpus's SimHashes
        // together): the centres' buckets hold hundreds of rows each.
        for (blocks, hamming) in [(4, 6), (4, 3), (4, 7), (3, 8), (2, 0), (6, 12)] {
            let mut p = policy();
            p.blocks = blocks;
            p.hamming = hamming;
            let mut seed = 11u64 + u64::from(blocks * 100 + hamming);
            let centres: Vec<u64> = (0..3).map(|_| xorshift(&mut seed)).collect();
            let mut fps = Vec::new();
            for i in 0..1200u128 {
                let mut s = centres[(i % 3) as usize];
                // Mostly the low bits move, so the top block stays shared.
                for _ in 0..(xorshift(&mut seed) % 12) {
                    let bit = xorshift(&mut seed) % if i % 5 == 0 { 64 } else { 32 };
                    s ^= 1 << bit;
                }
                fps.push((Hash128(i), s));
            }
            let mut bucket_sizes: HashMap<u64, usize> = HashMap::new();
            for &(_, s) in &fps {
                *bucket_sizes.entry(p.tables().bucket(0, s)).or_default() += 1;
            }
            assert!(
                bucket_sizes.values().any(|&n| n >= 300),
                "{blocks}/{hamming}: no crowded bucket"
            );
            let brute = brute_pairs(&fps, hamming);
            assert!(!brute.is_empty());
            assert_eq!(all_pairs_by_hash(&fps, &p), brute, "{blocks}/{hamming}");
            // The pairs of three rows in seven, with either side chosen.
            let chosen = |h: Hash128| h.0 % 7 < 3;
            let pairs = pairs_with(&p, &fps, chosen);
            assert!(pairs.windows(2).all(|w| w[0].2 <= w[1].2), "closest first");
            // Every table proposes the pairs close in its block: each is still reported once.
            assert_eq!(
                join(&fps, &p, None).len(),
                brute.len(),
                "{blocks}/{hamming} once"
            );
            let mut by_row = BTreeMap::new();
            for &(a, b, d) in &pairs {
                assert!(a < b);
                let (a, b) = (fps[a as usize].0, fps[b as usize].0);
                assert!(chosen(a) || chosen(b));
                by_row.insert((a.min(b), a.max(b)), d);
            }
            let mut expected = brute.clone();
            expected.retain(|&(a, b), _| chosen(a) || chosen(b));
            assert_eq!(by_row, expected, "{blocks}/{hamming} by row");
        }
    }

    #[test]
    fn combinations_are_complete() {
        assert_eq!(combinations(4, 1).len(), 4);
        assert_eq!(combinations(5, 2).len(), 10);
        assert_eq!(combinations(3, 3), vec![vec![0, 1, 2]]);
    }

    fn policy() -> Policy {
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
