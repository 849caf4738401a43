//! The SimHash tables, packed by bucket. For each of the policy's block tables and each bucket
//! in it (the table's block prefix of a permuted fingerprint), `simhash_buckets` holds one entry
//! whose value is every fingerprint in that bucket, sorted: a candidate lookup reads one value
//! per probe and scans contiguous memory, instead of iterating one redb entry per row (which is
//! what made `query near` slow where templated rows crowd a bucket), and a bucket costs one key,
//! not one per row. This module owns that layout: the key and value codec, the lookup, applying
//! a batch's fingerprint changes (each touched bucket read, merged and written once), listing
//! every fingerprint (table 0), and upgrading an index of format 4, which kept a key per row.

use std::collections::BTreeMap;

use redb::{ReadableTable, Table, TableDefinition, WriteTransaction};

use super::tables::SIMHASH_BUCKETS;
use crate::error::{Error, Result};
use crate::fingerprint::Hash128;
use crate::neardup::{BlockTables, Policy};

/// Bytes per fingerprint in a bucket value: the permuted fingerprint and the row's hash.
const ENTRY: usize = 8 + 16;

/// The key of a bucket: table number ‖ the bucket's prefix (its low bits cleared), big-endian so
/// the buckets of a table sort by prefix.
fn bucket_key(table: usize, bucket: u64) -> [u8; 9] {
    let mut k = [0u8; 9];
    k[0] = table as u8;
    k[1..].copy_from_slice(&bucket.to_be_bytes());
    k
}

fn corrupt(message: &str) -> Error {
    Error::Codec {
        table: "simhash_buckets",
        message: message.to_string(),
    }
}

/// A bucket value, read in place: `n` permuted fingerprints (u64 little-endian) followed by the
/// `n` row hashes, sorted by (fingerprint, row), each pair once. Fingerprints come first so a
/// lookup scans 8 bytes per row and reads a hash only for the rows within distance.
struct Bucket<'a> {
    fingerprints: &'a [u8],
    rows: &'a [u8],
}

impl<'a> Bucket<'a> {
    fn parse(value: &'a [u8]) -> Result<Bucket<'a>> {
        if value.is_empty() || !value.len().is_multiple_of(ENTRY) {
            return Err(corrupt(
                "value is not a whole number of (fingerprint, hash) entries",
            ));
        }
        let (fingerprints, rows) = value.split_at(value.len() / ENTRY * 8);
        Ok(Bucket { fingerprints, rows })
    }

    fn len(&self) -> usize {
        self.fingerprints.len() / 8
    }

    fn fingerprint(&self, i: usize) -> u64 {
        let mut b = [0u8; 8];
        b.copy_from_slice(&self.fingerprints[i * 8..i * 8 + 8]);
        u64::from_le_bytes(b)
    }

    fn row(&self, i: usize) -> Result<Hash128> {
        Hash128::from_bytes(&self.rows[i * 16..i * 16 + 16])
            .ok_or_else(|| corrupt("row hash is not 16 bytes"))
    }

    /// Every (permuted fingerprint, row), in stored order.
    fn entries(&self) -> Result<Vec<(u64, Hash128)>> {
        (0..self.len())
            .map(|i| Ok((self.fingerprint(i), self.row(i)?)))
            .collect()
    }

    /// The rows whose permuted fingerprint is within `hamming` bits of `permuted`.
    fn within(
        &self,
        permuted: u64,
        hamming: u32,
        mut found: impl FnMut(Hash128, u32),
    ) -> Result<()> {
        for i in 0..self.len() {
            let distance = (self.fingerprint(i) ^ permuted).count_ones();
            if distance <= hamming {
                found(self.row(i)?, distance);
            }
        }
        Ok(())
    }
}

/// The value of a bucket holding `entries`, which must be sorted and distinct.
fn encode(entries: &[(u64, Hash128)]) -> Vec<u8> {
    let mut v = Vec::with_capacity(entries.len() * ENTRY);
    for &(fingerprint, _) in entries {
        v.extend_from_slice(&fingerprint.to_le_bytes());
    }
    for &(_, row) in entries {
        v.extend_from_slice(&row.to_bytes());
    }
    v
}

/// Every indexed row within `hamming` bits of `simhash` (as far as the block tables' probes
/// reach), except `row`: (row, distance).
pub(super) fn candidates(
    table: &impl ReadableTable<&'static [u8], &'static [u8]>,
    tables: &BlockTables,
    hamming: u32,
    row: Hash128,
    simhash: u64,
) -> Result<BTreeMap<Hash128, u32>> {
    let mut out = BTreeMap::new();
    for t in 0..tables.len() {
        let permuted = tables.permute(t, simhash);
        for (bucket, _) in tables.ranges(t, simhash) {
            let Some(value) = table.get(bucket_key(t, bucket).as_slice())? else {
                continue;
            };
            Bucket::parse(value.value())?.within(permuted, hamming, |other, d| {
                if other != row {
                    out.insert(other, d);
                }
            })?;
        }
    }
    Ok(out)
}

/// Every fingerprint in the tables, once (table 0 holds each unpermuted): (row, simhash), in
/// (simhash, row) order.
pub(super) fn all_fingerprints(
    table: &impl ReadableTable<&'static [u8], &'static [u8]>,
) -> Result<Vec<(Hash128, u64)>> {
    let (start, end) = (bucket_key(0, 0), bucket_key(0, u64::MAX));
    let mut out = Vec::new();
    for entry in table.range::<&[u8]>(start.as_slice()..=end.as_slice())? {
        let (_, value) = entry?;
        let bucket = Bucket::parse(value.value())?;
        out.reserve(bucket.len());
        for (fingerprint, row) in bucket.entries()? {
            out.push((row, fingerprint));
        }
    }
    Ok(out)
}

/// Apply fingerprint changes to every table: the `removed` (row, simhash) leave and the
/// `created` join, removals first. Each touched bucket is read, merged and written once (or
/// removed when it empties), whatever the order of the changes, so the stored values are a
/// function of the set of fingerprints. Works on one table at a time to bound memory.
pub(super) fn apply(
    table: &mut Table<'_, &'static [u8], &'static [u8]>,
    tables: &BlockTables,
    removed: &[(Hash128, u64)],
    created: &[(Hash128, u64)],
) -> Result<()> {
    if removed.is_empty() && created.is_empty() {
        return Ok(());
    }
    for t in 0..tables.len() {
        // (bucket, permuted, row, joins).
        let mut changes: Vec<(u64, u64, Hash128, bool)> =
            Vec::with_capacity(removed.len() + created.len());
        for (list, joins) in [(removed, false), (created, true)] {
            for &(row, simhash) in list {
                let permuted = tables.permute(t, simhash);
                changes.push((tables.bucket_of_permuted(t, permuted), permuted, row, joins));
            }
        }
        changes.sort_unstable();
        for same in changes.chunk_by(|a, b| a.0 == b.0) {
            let key = bucket_key(t, same[0].0);
            let mut entries = match table.get(key.as_slice())? {
                Some(value) => Bucket::parse(value.value())?.entries()?,
                None => Vec::new(),
            };
            // Sorted, as `same` is.
            let leaving: Vec<(u64, Hash128)> =
                same.iter().filter(|c| !c.3).map(|c| (c.1, c.2)).collect();
            if !leaving.is_empty() {
                entries.retain(|e| leaving.binary_search(e).is_err());
            }
            entries.extend(same.iter().filter(|c| c.3).map(|c| (c.1, c.2)));
            entries.sort_unstable();
            entries.dedup();
            if entries.is_empty() {
                table.remove(key.as_slice())?;
            } else {
                table.insert(key.as_slice(), encode(&entries).as_slice())?;
            }
        }
    }
    Ok(())
}

/// Format 4's SimHash tables: table ‖ permuted SimHash (u64 BE) ‖ row hash → nothing.
const FORMAT_4_TABLES: TableDefinition<&[u8], ()> = TableDefinition::new("simhash_tables");

/// Upgrade format 4's SimHash tables to buckets, in `txn`: its keys come in (table, permuted,
/// row) order, so each bucket is gathered in turn and written once; the old table is deleted.
/// `policy` is the one the index was built with (its blocks fix the buckets); without one the
/// old table is only deleted.
pub(super) fn upgrade_from_format_4(txn: &WriteTransaction, policy: Option<&Policy>) -> Result<()> {
    if let Some(policy) = policy {
        let tables = policy.tables();
        let old = txn.open_table(FORMAT_4_TABLES)?;
        let mut new = txn.open_table(SIMHASH_BUCKETS)?;
        let mut current: Option<(usize, u64)> = None;
        let mut entries: Vec<(u64, Hash128)> = Vec::new();
        let mut flush = |at: Option<(usize, u64)>, entries: &mut Vec<(u64, Hash128)>| {
            if let Some((t, bucket)) = at {
                new.insert(bucket_key(t, bucket).as_slice(), encode(entries).as_slice())?;
            }
            entries.clear();
            Ok::<(), Error>(())
        };
        for entry in old.iter()? {
            let (key, _) = entry?;
            let key = key.value();
            let (Some(&t), Some(permuted), Some(row)) = (
                key.first(),
                key.get(1..9)
                    .and_then(|b| <[u8; 8]>::try_from(b).ok())
                    .map(u64::from_be_bytes),
                key.get(9..).and_then(Hash128::from_bytes),
            ) else {
                return Err(Error::Codec {
                    table: "simhash_tables",
                    message: "key is not table, permuted SimHash and hash".into(),
                });
            };
            let t = usize::from(t);
            if t >= tables.len() {
                return Err(Error::Codec {
                    table: "simhash_tables",
                    message: format!("table {t} beyond the policy's {}", tables.len()),
                });
            }
            let at = (t, tables.bucket_of_permuted(t, permuted));
            if current != Some(at) {
                flush(current, &mut entries)?;
                current = Some(at);
            }
            entries.push((permuted, row));
        }
        flush(current, &mut entries)?;
    }
    txn.delete_table(FORMAT_4_TABLES)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use redb::ReadableDatabase;

    /// Four 16-bit blocks probed one flip deep: every pair within 7 bits is found.
    const HAMMING: u32 = 7;

    fn block_tables() -> BlockTables {
        BlockTables::new(4, HAMMING)
    }

    const FRESH: TableDefinition<&[u8], &[u8]> = TableDefinition::new("fresh");

    fn dump(db: &redb::Database, def: TableDefinition<&[u8], &[u8]>) -> Vec<(Vec<u8>, Vec<u8>)> {
        let read = db.begin_read().unwrap();
        let t = read.open_table(def).unwrap();
        t.iter()
            .unwrap()
            .map(|e| {
                let (k, v) = e.unwrap();
                (k.value().to_vec(), v.value().to_vec())
            })
            .collect()
    }

    #[test]
    fn a_value_round_trips_and_bad_lengths_are_errors() {
        let entries = vec![(3u64, Hash128(9)), (3, Hash128(10)), (u64::MAX, Hash128(1))];
        let v = encode(&entries);
        assert_eq!(v.len(), 3 * ENTRY);
        assert_eq!(Bucket::parse(&v).unwrap().entries().unwrap(), entries);
        assert!(Bucket::parse(&v[..v.len() - 1]).is_err());
        assert!(Bucket::parse(&[]).is_err());
    }

    fn fingerprints() -> impl Strategy<Value = Vec<(Hash128, u64)>> {
        // Few distinct rows and high bits, so buckets fill and changes overlap.
        prop::collection::vec((0u128..64, 0u64..16, any::<u64>()), 0..60).prop_map(|v| {
            v.into_iter()
                .map(|(r, high, low)| (Hash128(r), (high << 60) | (low >> 4)))
                .collect()
        })
    }

    proptest! {
        /// A damaged value (any bytes) is an error or entries, never a panic, and a lookup over
        /// it finds only what it holds.
        #[test]
        fn any_bytes_parse_to_entries_or_an_error(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
            match Bucket::parse(&bytes) {
                Ok(bucket) => {
                    prop_assert_eq!(bytes.len(), bucket.len() * ENTRY);
                    let entries = bucket.entries().unwrap();
                    let mut seen = 0;
                    bucket.within(0, 64, |_, _| seen += 1).unwrap();
                    prop_assert_eq!(seen, entries.len());
                }
                Err(e) => prop_assert!(e.to_string().contains("simhash_buckets")),
            }
        }

        /// Whatever was added and removed, in whatever batches, a lookup finds exactly the rows
        /// a brute-force scan of what is left finds, and the stored bytes are those of adding
        /// what is left at once.
        #[test]
        fn lookups_match_brute_force_after_any_changes(
            given in fingerprints(),
            drop_mask in any::<u64>(),
            probes in prop::collection::vec(any::<u64>(), 1..8),
            flips in prop::collection::vec(prop::collection::vec(0u32..64, 0..10), 0..8),
        ) {
            let tables = block_tables();
            let mut live: BTreeMap<Hash128, u64> = BTreeMap::new();
            for &(r, s) in &given {
                live.entry(r).or_insert(s);
            }
            let all: Vec<(Hash128, u64)> = live.into_iter().collect();
            let (mut kept, mut dropped) = (Vec::new(), Vec::new());
            for (i, &e) in all.iter().enumerate() {
                if drop_mask >> (i % 64) & 1 == 0 { kept.push(e) } else { dropped.push(e) }
            }
            let dir = tempfile::tempdir().unwrap();
            let db = redb::Database::create(dir.path().join("b.redb")).unwrap();
            let txn = db.begin_write().unwrap();
            {
                // Everything in two batches (the second reversed), then the drops.
                let mut t = txn.open_table(SIMHASH_BUCKETS).unwrap();
                let (a, b) = all.split_at(all.len() / 2);
                let b: Vec<_> = b.iter().rev().copied().collect();
                apply(&mut t, &tables, &[], &b).unwrap();
                apply(&mut t, &tables, &[], a).unwrap();
                apply(&mut t, &tables, &dropped, &[]).unwrap();
                apply(&mut txn.open_table(FRESH).unwrap(), &tables, &[], &kept).unwrap();
            }
            txn.commit().unwrap();
            prop_assert_eq!(dump(&db, SIMHASH_BUCKETS), dump(&db, FRESH));
            let read = db.begin_read().unwrap();
            let t = read.open_table(SIMHASH_BUCKETS).unwrap();
            let mut listed = all_fingerprints(&t).unwrap();
            listed.sort_unstable();
            prop_assert_eq!(&listed, &kept);
            // Random probes, and kept fingerprints with up to 9 bits flipped (near and just
            // beyond the distance).
            let near = flips.iter().zip(kept.iter().cycle()).map(|(bits, &(_, s))| {
                bits.iter().fold(s, |x, &b| x ^ (1u64 << b))
            });
            let near: Vec<u64> = if kept.is_empty() { Vec::new() } else { near.collect() };
            for probe in probes.into_iter().chain(near) {
                let found = candidates(&t, &tables, HAMMING, Hash128(u128::MAX), probe).unwrap();
                let brute: BTreeMap<Hash128, u32> = kept
                    .iter()
                    .map(|&(r, s)| (r, (s ^ probe).count_ones()))
                    .filter(|&(_, d)| d <= HAMMING)
                    .collect();
                prop_assert_eq!(found, brute);
            }
        }
    }

    #[test]
    fn a_format_4_table_upgrades_to_the_same_buckets() {
        let policy = Policy {
            hamming: HAMMING,
            blocks: 4,
            ..crate::config::IdxConfig::load(None)
                .unwrap()
                .policy(&crate::families::Classifier::load(None).unwrap())
        };
        let tables = policy.tables();
        let rows: Vec<(Hash128, u64)> = (0..500u64)
            .map(|i| {
                let s = i.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ (i << 7);
                (Hash128(u128::from(i) * 7919), s)
            })
            .collect();
        let dir = tempfile::tempdir().unwrap();
        let db = redb::Database::create(dir.path().join("b.redb")).unwrap();
        let txn = db.begin_write().unwrap();
        {
            let mut old = txn.open_table(FORMAT_4_TABLES).unwrap();
            for &(row, s) in &rows {
                for t in 0..tables.len() {
                    let mut k = [0u8; 25];
                    k[0] = t as u8;
                    k[1..9].copy_from_slice(&tables.permute(t, s).to_be_bytes());
                    k[9..].copy_from_slice(&row.to_bytes());
                    old.insert(k.as_slice(), ()).unwrap();
                }
            }
            apply(&mut txn.open_table(FRESH).unwrap(), &tables, &[], &rows).unwrap();
        }
        upgrade_from_format_4(&txn, Some(&policy)).unwrap();
        txn.commit().unwrap();
        let read = db.begin_read().unwrap();
        assert!(
            read.open_table(FORMAT_4_TABLES).is_err(),
            "old table deleted"
        );
        drop(read);
        let upgraded = dump(&db, SIMHASH_BUCKETS);
        assert!(upgraded.len() > tables.len());
        assert_eq!(upgraded, dump(&db, FRESH));
    }
}
