//! The decontamination tables: benchmark sets with their items' n-grams, and per row the
//! result of its check against the current set. Written by `idx decontaminate` (benchmarks)
//! and after each ingest (rows); an index made before these tables existed reads as having
//! none.

use redb::{ReadOnlyTable, ReadableTable, TableDefinition};

use super::records::{BenchmarkItem, BenchmarkRecord, Contamination};
use super::tables::{BENCHMARKS, BENCHMARK_ITEMS, CONTAMINATION, ROWS};
use super::{codec, ReadView, Store};
use crate::error::Result;
use crate::fingerprint::Hash128;

/// Rows to (re)write or forget in the contamination table, in one commit.
#[derive(Debug, Default)]
pub struct ContaminationUpdate {
    /// Drop every stored check first (the benchmark set changed).
    pub clear: bool,
    pub put: Vec<(Hash128, Contamination)>,
    /// Rows no longer in the index.
    pub delete: Vec<Hash128>,
}

fn item_key(name: &str, item: u32) -> Vec<u8> {
    let mut k = Vec::with_capacity(name.len() + 5);
    k.extend_from_slice(name.as_bytes());
    k.push(0);
    k.extend_from_slice(&item.to_be_bytes());
    k
}

/// The key range of one benchmark's items.
fn item_range(name: &str) -> (Vec<u8>, Vec<u8>) {
    let mut start = name.as_bytes().to_vec();
    start.push(0);
    let mut end = name.as_bytes().to_vec();
    end.push(1);
    (start, end)
}

impl Store {
    /// Store a benchmark set (replacing one of the same name) in one commit.
    pub fn put_benchmark(&self, record: &BenchmarkRecord, items: &[BenchmarkItem]) -> Result<()> {
        let txn = self.begin_write()?;
        {
            let mut table = txn.open_table(BENCHMARK_ITEMS)?;
            let (start, end) = item_range(&record.name);
            table.retain_in::<&[u8], _>(start.as_slice()..end.as_slice(), |_, _| false)?;
            for (i, item) in items.iter().enumerate() {
                table.insert(
                    item_key(&record.name, i as u32).as_slice(),
                    codec::encode(item).as_slice(),
                )?;
            }
            txn.open_table(BENCHMARKS)?
                .insert(record.name.as_str(), codec::encode(record).as_slice())?;
        }
        txn.commit()?;
        Ok(())
    }

    /// Forget a benchmark set; whether it was there.
    pub fn remove_benchmark(&self, name: &str) -> Result<bool> {
        let txn = self.begin_write()?;
        let found = {
            let mut table = txn.open_table(BENCHMARK_ITEMS)?;
            let (start, end) = item_range(name);
            table.retain_in::<&[u8], _>(start.as_slice()..end.as_slice(), |_, _| false)?;
            let found = txn.open_table(BENCHMARKS)?.remove(name)?.is_some();
            found
        };
        txn.commit()?;
        Ok(found)
    }

    /// Apply the result of a decontamination pass in one commit.
    pub fn update_contamination(&self, update: &ContaminationUpdate) -> Result<()> {
        let txn = self.begin_write()?;
        {
            let mut table = txn.open_table(CONTAMINATION)?;
            if update.clear {
                table.retain(|_, _| false)?;
            }
            for h in &update.delete {
                table.remove(h.to_bytes().as_slice())?;
            }
            for (h, c) in &update.put {
                table.insert(h.to_bytes().as_slice(), codec::encode(c).as_slice())?;
            }
        }
        txn.commit()?;
        Ok(())
    }
}

impl ReadView {
    /// A table that an older index may not have: `None` then.
    fn optional<K: redb::Key + 'static, V: redb::Value + 'static>(
        &self,
        def: TableDefinition<K, V>,
    ) -> Result<Option<ReadOnlyTable<K, V>>> {
        match self.txn.open_table(def) {
            Ok(t) => Ok(Some(t)),
            Err(redb::TableError::TableDoesNotExist(_)) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Every benchmark set, by name.
    pub fn benchmarks(&self) -> Result<Vec<BenchmarkRecord>> {
        let Some(t) = self.optional(BENCHMARKS)? else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        for entry in t.iter()? {
            out.push(codec::decode("benchmarks", entry?.1.value())?);
        }
        Ok(out)
    }

    /// Visit every item of one benchmark set, in item order.
    pub fn for_each_benchmark_item(
        &self,
        name: &str,
        mut f: impl FnMut(u32, BenchmarkItem) -> Result<()>,
    ) -> Result<()> {
        let Some(t) = self.optional(BENCHMARK_ITEMS)? else {
            return Ok(());
        };
        let (start, end) = item_range(name);
        for entry in t.range::<&[u8]>(start.as_slice()..end.as_slice())? {
            let (k, v) = entry?;
            let k = k.value();
            let item = u32::from_be_bytes(k[k.len() - 4..].try_into().expect("4-byte suffix"));
            f(item, codec::decode("benchmark_items", v.value())?)?;
        }
        Ok(())
    }

    /// One item of a benchmark set.
    pub fn benchmark_item(&self, name: &str, item: u32) -> Result<Option<BenchmarkItem>> {
        let Some(t) = self.optional(BENCHMARK_ITEMS)? else {
            return Ok(None);
        };
        match t.get(item_key(name, item).as_slice())? {
            Some(v) => Ok(Some(codec::decode("benchmark_items", v.value())?)),
            None => Ok(None),
        }
    }

    /// A row's stored check.
    pub fn contamination(&self, row: Hash128) -> Result<Option<Contamination>> {
        let Some(t) = self.optional(CONTAMINATION)? else {
            return Ok(None);
        };
        match t.get(row.to_bytes().as_slice())? {
            Some(v) => Ok(Some(codec::decode("contamination", v.value())?)),
            None => Ok(None),
        }
    }

    /// Every row checked against `set` with at least one hit, in hash order.
    pub fn contaminated(&self, set: &str) -> Result<Vec<(Hash128, Contamination)>> {
        let Some(t) = self.optional(CONTAMINATION)? else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        for entry in t.iter()? {
            let (k, v) = entry?;
            let c: Contamination = codec::decode("contamination", v.value())?;
            if c.set == set && !c.hits.is_empty() {
                if let Some(h) = Hash128::from_bytes(k.value()) {
                    out.push((h, c));
                }
            }
        }
        Ok(out)
    }

    /// Rows with any stored check (whatever the set).
    pub fn contaminated_any(&self) -> Result<Vec<Hash128>> {
        let Some(t) = self.optional(CONTAMINATION)? else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        for entry in t.iter()? {
            if let Some(h) = Hash128::from_bytes(entry?.0.value()) {
                out.push(h);
            }
        }
        Ok(out)
    }

    /// What a pass against `set` must do: rows with no check or a check against another set
    /// (to check), and checks of rows that are gone (to delete). A walk over the keys of both
    /// tables in hash order; no row is decoded.
    pub fn contamination_work(&self, set: &str) -> Result<(Vec<Hash128>, Vec<Hash128>)> {
        let rows = self.txn.open_table(ROWS)?;
        let checks = self.optional(CONTAMINATION)?;
        let mut stored: Vec<(Hash128, bool)> = Vec::new();
        if let Some(t) = &checks {
            for entry in t.iter()? {
                let (k, v) = entry?;
                let (s,): (String,) = codec::decode_prefix("contamination", v.value())?;
                if let Some(h) = Hash128::from_bytes(k.value()) {
                    stored.push((h, s == set));
                }
            }
        }
        let mut todo = Vec::new();
        let mut gone = Vec::new();
        let mut it = stored.into_iter().peekable();
        for entry in rows.iter()? {
            let Some(h) = Hash128::from_bytes(entry?.0.value()) else {
                continue;
            };
            while let Some(&(s, _)) = it.peek() {
                if s < h {
                    gone.push(s);
                    it.next();
                } else {
                    break;
                }
            }
            match it.peek() {
                Some(&(s, current)) if s == h => {
                    if !current {
                        todo.push(h);
                    }
                    it.next();
                }
                _ => todo.push(h),
            }
        }
        gone.extend(it.map(|(s, _)| s));
        Ok((todo, gone))
    }
}
