//! The sketch a signature carries so Jaccard similarity can be estimated where two texts are
//! not together: one-permutation MinHash (Li, Owen & Zhang 2012) over a row's word 3-shingle
//! hashes, with *optimal densification* (Shrivastava 2017) for the bins a short text leaves
//! empty. The shingle hashes are XXH3-64 values (uniform), so the top [`BIN_BITS`] bits pick the
//! bin and the low 32 bits are the value kept; the smallest value per bin is the bin's
//! minimum. An empty bin borrows the minimum of the first non-empty bin a hash sequence
//! seeded by its own index names — the same sequence for every text, so two texts agree on a
//! borrowed bin exactly when they agree on the bin it borrows from, and the share of equal bins
//! estimates Jaccard without bias. Bands of consecutive bins are the candidate keys of the
//! global job (`scale/idx_global.py`).

/// log2 of [`BINS`].
pub const BIN_BITS: u32 = 7;

/// Bins per sketch: the standard error of an estimate is about `sqrt(J (1 - J) / BINS)`, 0.035
/// at J = 0.8.
pub const BINS: usize = 1 << BIN_BITS;

/// The sketch of a shingle set (`fingerprint::shingle_set`); `None` for an empty set (a text
/// of fewer than three words has no shingle to sketch).
pub fn sketch(shingles: &[u64]) -> Option<Vec<u32>> {
    if shingles.is_empty() {
        return None;
    }
    let mut bins: Vec<Option<u32>> = vec![None; BINS];
    for &x in shingles {
        let bin = (x >> (64 - BIN_BITS)) as usize;
        let value = x as u32;
        let slot = &mut bins[bin];
        *slot = Some(slot.map_or(value, |v| v.min(value)));
    }
    let out = (0..BINS)
        .map(|i| match bins[i] {
            Some(v) => v,
            None => {
                // At least one bin is full, so the probe ends; each attempt hits a full bin with
                // probability >= 1/BINS, and the sequence is a pure function of (i, attempt).
                let mut attempt = 0u64;
                loop {
                    attempt += 1;
                    let j =
                        (xxhash_rust::xxh3::xxh3_64_with_seed(&(i as u64).to_le_bytes(), attempt)
                            >> (64 - BIN_BITS)) as usize;
                    if let Some(v) = bins[j] {
                        break v;
                    }
                }
            }
        })
        .collect();
    Some(out)
}

/// The estimated Jaccard similarity of the sets behind two sketches: the share of equal bins.
pub fn estimate(a: &[u32], b: &[u32]) -> f64 {
    let equal = a.iter().zip(b).filter(|(x, y)| x == y).count();
    equal as f64 / a.len().max(1) as f64
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fingerprint::{jaccard_at_least, shingle_set};
    use proptest::prelude::*;

    fn words(seed: u64, n: usize) -> Vec<String> {
        let mut rng = crate::rng::Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
        (0..n).map(|_| format!("w{}", rng.below(5_000))).collect()
    }

    #[test]
    fn identical_sets_estimate_one_and_disjoint_sets_near_zero() {
        let a = shingle_set(&words(1, 400).join(" "));
        let b = shingle_set(&words(2, 400).join(" "));
        let sa = sketch(&a).unwrap();
        assert_eq!(sa.len(), BINS);
        assert_eq!(estimate(&sa, &sketch(&a).unwrap()), 1.0);
        assert!(estimate(&sa, &sketch(&b).unwrap()) < 0.05);
        assert_eq!(sketch(&[]), None);
    }

    #[test]
    fn estimates_track_the_exact_jaccard_on_average() {
        // Texts edited in a growing share of their words: the mean error of the estimate over
        // many pairs stays small and no single estimate is wildly off.
        let mut total_error = 0.0;
        let mut n = 0.0;
        for seed in 0..200u64 {
            let base = words(seed, 30 + (seed as usize % 300));
            let mut edited = base.clone();
            let mut rng = crate::rng::Rng((seed + 1_000).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
            let edits = (seed % 10) as usize * base.len() / 40;
            for _ in 0..edits {
                let at = rng.below(edited.len());
                edited[at] = format!("x{}", rng.below(1_000_000));
            }
            let (a, b) = (shingle_set(&base.join(" ")), shingle_set(&edited.join(" ")));
            let exact = jaccard_at_least(&a, &b, 0.0).unwrap();
            let est = estimate(&sketch(&a).unwrap(), &sketch(&b).unwrap());
            assert!((est - exact).abs() < 0.2, "seed {seed}: {est} vs {exact}");
            total_error += est - exact;
            n += 1.0;
        }
        assert!((total_error / n).abs() < 0.02, "bias {}", total_error / n);
    }

    proptest! {
        #[test]
        fn any_shingle_set_gives_a_full_sketch_of_its_own_values(
            set in proptest::collection::btree_set(any::<u64>(), 1..300)
        ) {
            let set: Vec<u64> = set.into_iter().collect();
            let s = sketch(&set).unwrap();
            prop_assert_eq!(s.len(), BINS);
            let values: std::collections::BTreeSet<u32> = set.iter().map(|&x| x as u32).collect();
            prop_assert!(s.iter().all(|v| values.contains(v)));
            prop_assert_eq!(estimate(&s, &s), 1.0);
        }
    }
}
