//! Word 3-shingle sets, which judge whether two rows whose SimHashes are close are
//! near-duplicates: the set of a fingerprint text ([`shingle_set`]), its Jaccard similarity with
//! another (exact, or decided early against a threshold), and the two ways the decision is made
//! cheaper for the many pairs a crowded SimHash bucket proposes: [`Shingles`] carries bucket
//! counts that bound the overlap, and a [`ShingleSummary`] keeps only that bound's inputs (68
//! bytes) for passes that hold every row at once.

use xxhash_rust::xxh3::xxh3_64;

/// Number of words in one shingle of the near-duplicate verification.
pub const SHINGLE_WORDS: usize = 3;

/// The sorted, deduplicated hashes of the word 3-shingles of a fingerprint text (its words when
/// it has fewer than three): the sets whose Jaccard similarity judges a near-duplicate. Each
/// word is hashed once (XXH3-64) and a shingle's hash is the XXH3-64 of its words' three
/// hashes: every word is read once, not once per shingle it is in, and a short input hashes
/// in a few instructions (the old streaming hasher per shingle took three times as long).
pub fn shingle_set(text: &str) -> Vec<u64> {
    let words: Vec<u64> = text
        .split(' ')
        .filter(|w| !w.is_empty())
        .map(|w| xxh3_64(w.as_bytes()))
        .collect();
    let mut out: Vec<u64> = if words.len() < SHINGLE_WORDS {
        words
    } else {
        words
            .windows(SHINGLE_WORDS)
            .map(|win| {
                let mut bytes = [0u8; 8 * SHINGLE_WORDS];
                for (chunk, w) in bytes.chunks_exact_mut(8).zip(win) {
                    chunk.copy_from_slice(&w.to_le_bytes());
                }
                xxh3_64(&bytes)
            })
            .collect()
    };
    out.sort_unstable();
    out.dedup();
    out
}

/// Buckets of a [`Shingles`]' counts: a shingle falls in the bucket its hash's top six bits name.
const SHINGLE_BUCKETS: usize = 64;

/// A row's shingle set (see [`shingle_set`]) with how many of its shingles fall in each of 64
/// buckets of the hash space. Two sets can share at most `min(a, b)` shingles in a bucket, so the
/// counts bound the overlap from above in a few vector instructions over 256 bytes, where the
/// merge walks both sets: most pairs a crowded SimHash bucket proposes (rows built from one
/// template, chats made of common phrases) are ruled out by the bound alone, and a pair it
/// admits gets the exact test, so the decision is exactly the merge's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shingles {
    set: Vec<u64>,
    counts: [u16; SHINGLE_BUCKETS],
    /// No count saturated: the counts bound the overlap (checked once, not per pair).
    bounded: bool,
}

impl Shingles {
    /// The shingles of a fingerprint text.
    pub fn of_text(text: &str) -> Shingles {
        Shingles::from_set(shingle_set(text))
    }

    /// Counts a sorted, deduplicated set (as [`shingle_set`] makes it).
    pub fn from_set(set: Vec<u64>) -> Shingles {
        let mut counts = [0u16; SHINGLE_BUCKETS];
        for &h in &set {
            // A full bucket (65,535 shingles, a text of millions of words) saturates: the
            // bound then holds only for the other buckets, and `bounded` says so.
            let c = &mut counts[(h >> 58) as usize];
            *c = c.saturating_add(1);
        }
        let bounded = !counts.contains(&u16::MAX);
        Shingles {
            set,
            counts,
            bounded,
        }
    }

    /// The sorted, deduplicated shingle hashes.
    pub fn set(&self) -> &[u64] {
        &self.set
    }

    /// An upper bound of the number of shingles the two sets share.
    pub fn overlap_bound(&self, other: &Shingles) -> usize {
        if !self.bounded || !other.bounded {
            return self.set.len().min(other.set.len());
        }
        self.counts
            .iter()
            .zip(&other.counts)
            .map(|(&a, &b)| a.min(b) as usize)
            .sum()
    }

    /// Their Jaccard similarity when it is at least `threshold` (the decision of
    /// [`jaccard_at_least`] on the two sets), tried against the counts' bound first.
    pub fn similar_at_least(&self, other: &Shingles, threshold: f64) -> Option<f64> {
        if !self.may_reach(other, threshold) {
            return None;
        }
        jaccard_at_least(&self.set, &other.set, threshold)
    }

    /// Whether the two sets may be at least `threshold` similar: `false` only when the counts'
    /// bound rules the pair out, and then [`Shingles::similar_at_least`] is `None` too.
    pub fn may_reach(&self, other: &Shingles, threshold: f64) -> bool {
        let (na, nb) = (self.set.len(), other.set.len());
        na + nb == 0 || ratio(na, nb, self.overlap_bound(other)) >= threshold
    }
}

impl Shingles {
    /// What the bucket bound needs of this set (its size and counts), in 68 bytes.
    pub fn summary(&self) -> ShingleSummary {
        ShingleSummary {
            len: u32::try_from(self.set.len()).unwrap_or(u32::MAX),
            counts: self.counts.map(|c| c.min(u16::from(u8::MAX)) as u8),
        }
    }
}

/// A shingle set's size and bucket counts (saturated at 255): what the bound of
/// [`Shingles::similar_at_least`] needs, in 68 bytes instead of the set's 8 per shingle. Held for
/// every row of a large pass (verify's recomputation, a large ingest batch), it rules out most
/// pairs of a crowded SimHash bucket before either set is made again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShingleSummary {
    len: u32,
    counts: [u8; SHINGLE_BUCKETS],
}

impl ShingleSummary {
    /// An upper bound of the number of shingles the two sets share. A bucket's smaller count
    /// is exact unless both saturated; then only the smaller size bounds the overlap.
    pub fn overlap_bound(&self, other: &ShingleSummary) -> usize {
        let most = self.len.min(other.len) as usize;
        let mut sum = 0usize;
        for (&a, &b) in self.counts.iter().zip(&other.counts) {
            if a == u8::MAX && b == u8::MAX {
                return most;
            }
            sum += usize::from(a.min(b));
        }
        sum.min(most)
    }

    /// Whether the two sets may be at least `threshold` similar: `false` only when the bound
    /// rules the pair out, and then [`Shingles::similar_at_least`] is `None` too.
    pub fn may_reach(&self, other: &ShingleSummary, threshold: f64) -> bool {
        let (na, nb) = (self.len as usize, other.len as usize);
        na + nb == 0 || ratio(na, nb, self.overlap_bound(other)) >= threshold
    }
}

/// Jaccard similarity of two sorted, deduplicated sets (1.0 for two empty sets).
pub fn jaccard(a: &[u64], b: &[u64]) -> f64 {
    if a.is_empty() && b.is_empty() {
        return 1.0;
    }
    let (_, _, common) = merge_common(a, b, (0, 0, 0), usize::MAX);
    ratio(a.len(), b.len(), common)
}

/// The Jaccard similarity of two sorted, deduplicated sets when it is at least `threshold`,
/// else `None` — the same decision as `jaccard(a, b) >= threshold`, made sooner: a pair whose
/// sizes alone rule it out is never merged, and the merge stops as soon as the elements left
/// cannot bring the overlap up to the threshold (most proposed pairs in a crowded SimHash
/// bucket are rejected this way after a fraction of their shingles).
pub fn jaccard_at_least(a: &[u64], b: &[u64], threshold: f64) -> Option<f64> {
    if a.is_empty() && b.is_empty() {
        return (1.0 >= threshold).then_some(1.0);
    }
    let (na, nb) = (a.len(), b.len());
    // Even a full overlap of the smaller set is not enough.
    if ratio(na, nb, na.min(nb)) < threshold {
        return None;
    }
    const STEP: usize = 64;
    let (mut i, mut j, mut common) = (0, 0, 0);
    while i < na && j < nb {
        (i, j, common) = merge_common(a, b, (i, j, common), STEP);
        // The best the rest could do: every remaining element of the shorter rest shared.
        let best = common + (na - i).min(nb - j);
        if ratio(na, nb, best) < threshold {
            return None;
        }
    }
    let sim = ratio(na, nb, common);
    (sim >= threshold).then_some(sim)
}

/// |A ∩ B| / |A ∪ B| from the sizes and the overlap (the formula `jaccard` decides with).
fn ratio(na: usize, nb: usize, common: usize) -> f64 {
    common as f64 / (na + nb - common) as f64
}

/// Advance a merge of two sorted sets at positions (i, j) with `common` elements shared so far
/// by at most `steps` comparisons; returns the new (i, j, common). Branch-free: comparisons of
/// unrelated shingle hashes are unpredictable.
fn merge_common(
    a: &[u64],
    b: &[u64],
    (mut i, mut j, mut common): (usize, usize, usize),
    steps: usize,
) -> (usize, usize, usize) {
    let mut left = steps;
    while i < a.len() && j < b.len() && left > 0 {
        let (x, y) = (a[i], b[j]);
        common += usize::from(x == y);
        i += usize::from(x <= y);
        j += usize::from(y <= x);
        left -= 1;
    }
    (i, j, common)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fingerprint::simhash_of;
    use std::collections::BTreeSet;

    #[test]
    fn shingle_sets_and_jaccard() {
        let a = shingle_set("a b c d e");
        assert_eq!(a.len(), 3);
        assert_eq!(jaccard(&a, &a), 1.0);
        // The last of seven words changed: 4 of 5 shingles shared, 6 distinct in all.
        let c = shingle_set("a b c d e f g");
        let d = shingle_set("a b c d e f x");
        assert!((jaccard(&c, &d) - 4.0 / 6.0).abs() < 1e-9);
        // The middle word of five changed: no shingle survives.
        assert_eq!(jaccard(&a, &shingle_set("a b x d e")), 0.0);
        assert_eq!(shingle_set("hi there").len(), 2);
        assert_eq!(jaccard(&[], &[]), 1.0);
        assert_eq!(jaccard(&a, &[]), 0.0);
        // Word order matters to shingles, not to the SimHash.
        assert_ne!(shingle_set("a b c"), shingle_set("c b a"));
        assert_eq!(simhash_of("a b c"), simhash_of("c b a"));
    }

    /// The plain merge the fast paths must agree with.
    fn reference_jaccard(a: &[u64], b: &[u64]) -> f64 {
        let sa: std::collections::BTreeSet<u64> = a.iter().copied().collect();
        let sb: std::collections::BTreeSet<u64> = b.iter().copied().collect();
        if sa.is_empty() && sb.is_empty() {
            return 1.0;
        }
        sa.intersection(&sb).count() as f64 / sa.union(&sb).count() as f64
    }

    proptest::proptest! {
        /// The early-exit decisions are the full computation's, on sets of every overlap (drawn
        /// from a small universe so that overlaps are common) and thresholds around them.
        #[test]
        fn jaccard_early_exit_decides_as_the_full_merge(
            a in proptest::collection::btree_set(0u64..400, 0..300),
            b in proptest::collection::btree_set(0u64..400, 0..300),
            threshold in 0.0f64..1.0,
        ) {
            let (a, b): (Vec<u64>, Vec<u64>) = (a.into_iter().collect(), b.into_iter().collect());
            let full = reference_jaccard(&a, &b);
            proptest::prop_assert!((jaccard(&a, &b) - full).abs() < 1e-12);
            let expected = (full >= threshold).then_some(full);
            proptest::prop_assert_eq!(jaccard_at_least(&a, &b, threshold).is_some(), expected.is_some());
            for t in [full, full - 1e-9, full + 1e-9] {
                proptest::prop_assert_eq!(
                    jaccard_at_least(&a, &b, t).is_some(),
                    jaccard(&a, &b) >= t
                );
            }
            // The bucket counts' bound never undercounts the overlap, so with it the decision
            // is still the merge's. The values are spread over the hash space (a bijection, so
            // the overlap is the same) for every bucket to be used.
            let spread = |s: &[u64]| -> Vec<u64> {
                let mut v: Vec<u64> = s.iter().map(|x| x.wrapping_mul(0x9E37_79B9_7F4A_7C15)).collect();
                v.sort_unstable();
                v
            };
            let (sa, sb) = (Shingles::from_set(spread(&a)), Shingles::from_set(spread(&b)));
            let common = a.iter().filter(|x| b.binary_search(x).is_ok()).count();
            proptest::prop_assert!(sa.overlap_bound(&sb) >= common);
            proptest::prop_assert!(sa.overlap_bound(&sb) <= a.len().min(b.len()));
            for t in [threshold, full, full - 1e-9, full + 1e-9] {
                proptest::prop_assert_eq!(
                    sa.similar_at_least(&sb, t),
                    jaccard_at_least(sa.set(), sb.set(), t)
                );
            }
        }
    }

    proptest::proptest! {
        /// A summary never rules out a pair the sets would pass, also when its counts saturate
        /// (values crowded into four buckets, up to 300 in each).
        #[test]
        fn a_summary_rules_out_only_what_the_sets_would(
            a in proptest::collection::btree_set(0u64..1200, 0..1200),
            b in proptest::collection::btree_set(0u64..1200, 0..1200),
            threshold in 0.0f64..1.0,
        ) {
            let crowd = |s: &BTreeSet<u64>| -> Shingles {
                let mut v: Vec<u64> = s.iter().map(|&x| ((x % 4) << 58) | x).collect();
                v.sort_unstable();
                Shingles::from_set(v)
            };
            let (sa, sb) = (crowd(&a), crowd(&b));
            let common = a.intersection(&b).count();
            let bound = sa.summary().overlap_bound(&sb.summary());
            proptest::prop_assert!(bound >= common);
            let full = reference_jaccard(sa.set(), sb.set());
            for t in [threshold, full, full - 1e-9, full + 1e-9] {
                if !sa.summary().may_reach(&sb.summary(), t) {
                    proptest::prop_assert_eq!(sa.similar_at_least(&sb, t), None);
                }
            }
            proptest::prop_assert!(sa.summary().may_reach(&sb.summary(), full));
        }
    }

    #[test]
    fn the_bucket_bound_rules_out_sets_far_apart() {
        let a = Shingles::of_text(
            &(0..300)
                .map(|i| format!("w{i}"))
                .collect::<Vec<_>>()
                .join(" "),
        );
        let b = Shingles::of_text(
            &(150..450)
                .map(|i| format!("w{i}"))
                .collect::<Vec<_>>()
                .join(" "),
        );
        // 148 of 298 shingles shared: Jaccard about a third; the bound alone says no to 0.8.
        let bound = a.overlap_bound(&b);
        assert!((148..298).contains(&bound), "{bound}");
        assert!(ratio(a.set().len(), b.set().len(), bound) < 0.8);
        assert_eq!(a.similar_at_least(&b, 0.8), None);
        assert_eq!(a.similar_at_least(&a, 0.8), Some(1.0));
        // The summary bounds as the counts do (none saturates here).
        assert_eq!(a.summary().overlap_bound(&b.summary()), bound);
        assert!(!a.summary().may_reach(&b.summary(), 0.8));
        assert!(a.summary().may_reach(&a.summary(), 1.0));
        let empty = Shingles::of_text("");
        assert_eq!(empty.similar_at_least(&empty, 0.8), Some(1.0));
        assert_eq!(empty.similar_at_least(&a, 0.1), None);
    }
}
