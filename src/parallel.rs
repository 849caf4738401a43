//! Work spread over the machine's cores on scoped threads. The places that fan work out (the
//! near-duplicate join, shingling a batch's texts, sketching rows for the global job) go through
//! these two functions, so how many threads run, how work is cut into contiguous parts and what
//! a panicking worker does (its panic is resumed on the caller: a panic is a bug, not an input
//! error) are decided once. The ingest pipeline's reader/worker/writer threads are not here:
//! they are a pipeline with channels, not a fan-out.

use crate::Result;

/// Threads a fan-out uses: one per core.
pub fn workers() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

/// `f(k)` for each `k` in `0..n`, each on its own scoped thread, the results in order of `k`.
pub fn on_threads<R: Send>(n: usize, f: impl Fn(usize) -> R + Sync) -> Vec<R> {
    if n <= 1 {
        return (0..n).map(&f).collect();
    }
    let f = &f;
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..n).map(|k| scope.spawn(move || f(k))).collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
            })
            .collect()
    })
}

/// `f` of every item, the items cut into one contiguous part per core (all on the caller when
/// there are fewer than `min_parallel`), the results in the items' order; the first error of
/// the earliest failing part is returned.
pub fn map_items<T: Sync, R: Send>(
    items: &[T],
    min_parallel: usize,
    f: impl Fn(&T) -> Result<R> + Sync,
) -> Result<Vec<R>> {
    map_parts(items, min_parallel, |part| part.iter().map(&f).collect())
}

/// [`map_items`] with `f` given a whole part, for work that sets something up once per part
/// (a table opened, a buffer reused); `f` returns one result per item of its part.
pub fn map_parts<T: Sync, R: Send>(
    items: &[T],
    min_parallel: usize,
    f: impl Fn(&[T]) -> Result<Vec<R>> + Sync,
) -> Result<Vec<R>> {
    let workers = workers();
    if workers < 2 || items.len() < min_parallel.max(2) {
        return f(items);
    }
    let chunk = items.len().div_ceil(workers);
    let parts = on_threads(items.len().div_ceil(chunk), |k| {
        f(&items[k * chunk..((k + 1) * chunk).min(items.len())])
    });
    let mut out = Vec::with_capacity(items.len());
    for part in parts {
        out.extend(part?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Error;

    #[test]
    fn items_keep_their_order_and_the_first_error_wins() {
        let items: Vec<u32> = (0..1000).collect();
        let doubled = map_items(&items, 1, |&x| Ok(x * 2)).unwrap();
        assert_eq!(doubled, items.iter().map(|x| x * 2).collect::<Vec<_>>());
        let failed = map_items(&items, 1, |&x| {
            if x % 300 == 299 {
                Err(Error::Invariant(format!("item {x}")))
            } else {
                Ok(x)
            }
        });
        assert!(matches!(failed, Err(Error::Invariant(m)) if m == "item 299"));
        assert_eq!(
            map_items(&[] as &[u32], 1, |&x| Ok(x)).unwrap(),
            Vec::<u32>::new()
        );
    }

    #[test]
    fn each_thread_gets_its_own_index() {
        assert_eq!(on_threads(5, |k| k * k), vec![0, 1, 4, 9, 16]);
        assert!(on_threads(0, |k| k).is_empty());
    }
}
