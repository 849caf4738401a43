//! Pairs of close fingerprints found in memory, by a join per block table rather than a lookup
//! per row: every pair within the policy's Hamming distance (`verify`'s recomputation, the
//! quality bench), the pairs with a chosen row (a large ingest batch), and the rows a pair list
//! needs loaded. The tables are the parent module's [`BlockTables`]; the join runs on every core.

use std::collections::HashMap;

use super::{BlockTables, Policy};
use crate::fingerprint::Hash128;

/// The pairs within the policy's Hamming distance with at least one entry whose index `chosen`
/// holds for and which `keep` (index, index, distance) keeps, as (index, index, distance) into
/// `fingerprints`: each pair once, the smaller index first, closest pairs first. A large batch
/// finds its rows' candidates this way, by one join; `keep` runs on the join's threads, as
/// each pair is found, so a cheap test there saves holding the pairs it drops.
pub fn pairs_with(
    policy: &Policy,
    fingerprints: &[(Hash128, u64)],
    chosen: impl Fn(u32) -> bool,
    keep: impl Fn(u32, u32, u32) -> bool + Sync,
) -> Vec<(u32, u32, u32)> {
    let wanted: Vec<bool> = (0..fingerprints.len() as u32).map(chosen).collect();
    let mut by_distance: Vec<Vec<(u32, u32, u32)>> = vec![Vec::new(); policy.hamming as usize + 1];
    let keep = |a: u32, b: u32, d: u32| {
        fingerprints[a as usize].0 != fingerprints[b as usize].0 && keep(a, b, d)
    };
    for (a, b, d) in join(fingerprints, policy, Some(&wanted), &keep) {
        by_distance[d as usize].push((a.min(b), a.max(b), d));
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
    let distinct = |a: u32, b: u32, _| fingerprints[a as usize].0 != fingerprints[b as usize].0;
    let mut pairs: Vec<(u32, u32, u32)> = join(fingerprints, policy, None, &distinct)
        .into_iter()
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
/// proposes it), that `keep` keeps; with `wanted`, only pairs with at least one wanted entry.
///
/// A join rather than a lookup per row: each table's entries are sorted by permuted SimHash, and
/// every bucket is compared with itself and with each neighbouring bucket (prefix within the
/// probe radius) above it, so each pair of entries is compared once per table instead of twice,
/// over contiguous memory. Word SimHashes of conversational text are far from uniform (at 1.35M
/// rows of the scale corpus one 16-bit bucket holds 9,316 rows and a lookup scanned 14k
/// entries), so these comparisons are nearly all of the work: the join took 11.8 s where the
/// lookups took 119 s (docs/PERFORMANCE.md § Scale). The entries compared are the distinct
/// SimHash values, not the rows: rows made from one template often share theirs (15,544 rows of
/// the templated bench corpus have 8,069 values), and a crowded bucket costs the square of its
/// size. A pair of values is expanded into its rows' pairs, and the rows sharing a value are
/// paired at distance 0, on the thread that found them. The tables run on their own threads.
fn join(
    fingerprints: &[(Hash128, u64)],
    policy: &Policy,
    wanted: Option<&[bool]>,
    keep: &(impl Fn(u32, u32, u32) -> bool + Sync),
) -> Vec<(u32, u32, u32)> {
    let tables = policy.tables();
    let values = Distinct::of(fingerprints, wanted);
    let want = |i: u32| wanted.is_none_or(|w| w[i as usize]);
    // The pairs of rows behind a pair of values (or behind one value, paired among themselves).
    let expand = |ga: u32, gb: u32, d: u32, found: &mut Vec<(u32, u32, u32)>| {
        let (ma, mb) = (values.members(ga), values.members(gb));
        for (k, &a) in ma.iter().enumerate() {
            let others = if ga == gb { &mb[k + 1..] } else { mb };
            for &b in others {
                if (want(a) || want(b)) && keep(a, b, d) {
                    found.push((a, b, d));
                }
            }
        }
    };
    // One worker per core, each taking the next table not yet taken when it is done with one
    // (tables take unequal times: a crowded block is slow): a table's sorted copy of the
    // values is what the join holds in memory, so no more are held at once. Each table's pairs
    // are kept apart and put together in table order, whichever worker made them; the rows
    // sharing a value come first, as a table of their own.
    let workers = crate::parallel::workers().clamp(1, tables.len().max(1));
    let next = std::sync::atomic::AtomicUsize::new(0);
    let mut by_table = crate::parallel::on_threads(workers, |_| {
        let mut done = Vec::new();
        loop {
            let t = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            if t > tables.len() {
                return done;
            }
            let mut found = Vec::new();
            if t == 0 {
                for g in 0..values.len() {
                    expand(g, g, 0, &mut found);
                }
            } else {
                join_table(&values, &tables, t - 1, policy.hamming, |ga, gb, d| {
                    expand(ga, gb, d, &mut found)
                });
            }
            done.push((t, found));
        }
    })
    .concat();
    by_table.sort_unstable_by_key(|&(t, _)| t);
    by_table.into_iter().flat_map(|(_, pairs)| pairs).collect()
}

/// The distinct SimHash values of a list of fingerprints, each with the indices of its rows and
/// whether any of them is wanted.
struct Distinct {
    /// (value, wanted) in value order.
    values: Vec<(u64, bool)>,
    /// Where each value's rows start in `rows` (one more entry than `values`).
    starts: Vec<u32>,
    rows: Vec<u32>,
}

impl Distinct {
    fn of(fingerprints: &[(Hash128, u64)], wanted: Option<&[bool]>) -> Distinct {
        let mut rows: Vec<u32> = (0..fingerprints.len() as u32).collect();
        rows.sort_unstable_by_key(|&i| (fingerprints[i as usize].1, i));
        let mut values: Vec<(u64, bool)> = Vec::new();
        let mut starts = Vec::new();
        for (k, &i) in rows.iter().enumerate() {
            let value = fingerprints[i as usize].1;
            let w = wanted.is_none_or(|w| w[i as usize]);
            match values.last_mut() {
                Some((v, any)) if *v == value => *any |= w,
                _ => {
                    values.push((value, w));
                    starts.push(k as u32);
                }
            }
        }
        starts.push(rows.len() as u32);
        Distinct {
            values,
            starts,
            rows,
        }
    }

    fn len(&self) -> u32 {
        self.values.len() as u32
    }

    fn members(&self, g: u32) -> &[u32] {
        &self.rows[self.starts[g as usize] as usize..self.starts[g as usize + 1] as usize]
    }
}

/// [`join`] for table `t` over distinct values, calling `found(value, value, distance)` for each
/// pair of distinct values this table reports. Within a bucket the wanted values come first, so
/// the pairs with a wanted value are: a wanted value with every later value of its bucket and
/// every value of a neighbouring bucket, and an unwanted one with the wanted values of a
/// neighbouring bucket.
fn join_table(
    values: &Distinct,
    tables: &BlockTables,
    t: usize,
    hamming: u32,
    mut found: impl FnMut(u32, u32, u32),
) {
    let mut entries: Vec<(u64, u32)> = values
        .values
        .iter()
        .enumerate()
        .map(|(i, &(v, _))| (tables.permute(t, v), i as u32))
        .collect();
    entries.sort_unstable();
    let is_wanted = |id: u32| values.values[id as usize].1;
    // Bucket prefix → (start, end of its wanted entries, end) in `entries`.
    let mut runs: HashMap<u64, (usize, usize, usize)> = HashMap::new();
    let mut start = 0;
    while start < entries.len() {
        let lo = tables.bucket_of_permuted(t, entries[start].0);
        let end =
            start + entries[start..].partition_point(|e| tables.bucket_of_permuted(t, e.0) == lo);
        let run = &mut entries[start..end];
        run.sort_by_key(|e| !is_wanted(e.1));
        let wanted_end = start + run.partition_point(|e| is_wanted(e.1));
        runs.insert(lo, (start, wanted_end, end));
        start = end;
    }
    let (permuted, ids): (Vec<u64>, Vec<u32>) = entries.into_iter().unzip();
    for (&lo, &(start, wanted_end, end)) in &runs {
        let simhash = values.values[ids[start] as usize].0;
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
                let simhash_a = values.values[a as usize].0;
                scan(
                    &permuted[from..to],
                    &ids[from..to],
                    permuted[i],
                    hamming,
                    |b, d| {
                        // Every table that proposes the pair finds it: the first one reports it.
                        if tables.first_table(simhash_a, values.values[b as usize].0) == Some(t) {
                            found(a, b, d);
                        }
                    },
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{policy, xorshift};
    use super::*;
    use std::collections::BTreeMap;

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
            // And of those, the pairs a test on the join's threads keeps.
            let kept = |a: Hash128, b: Hash128| !(a.0 + b.0).is_multiple_of(5);
            let pairs = pairs_with(
                &p,
                &fps,
                |i| chosen(fps[i as usize].0),
                |a, b, _| kept(fps[a as usize].0, fps[b as usize].0),
            );
            assert!(pairs.windows(2).all(|w| w[0].2 <= w[1].2), "closest first");
            // Every table proposes the pairs close in its block: each is still reported once.
            assert_eq!(
                join(&fps, &p, None, &|_, _, _| true).len(),
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
            expected.retain(|&(a, b), _| (chosen(a) || chosen(b)) && kept(a, b));
            assert_eq!(by_row, expected, "{blocks}/{hamming} by row");
        }
    }
}
