//! The imported global assignment table of a sharded deployment (`crate::scale`): for every
//! row of this shard that sits in a cluster spanning shards, the global cluster id, whether
//! that cluster is a holdout one, whether this shard's copy of the row is the one exported,
//! and the row standing for its near-duplicate group. One import replaces the previous one in
//! one commit. The table is state: it changes splits, so it is part of the state digest.

use std::collections::BTreeMap;

use redb::ReadableTable;
use serde::{Deserialize, Serialize};

use super::tables::{GLOBAL, META, META_GLOBAL, META_SHARD};
use super::{codec, ReadView, Store};
use crate::error::{Error, Result};
use crate::fingerprint::Hash128;

/// One row's global assignment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GlobalAssignment {
    /// The smallest content hash of the global cluster.
    pub cluster: Hash128,
    /// Whether the global cluster holds a holdout group.
    pub holdout: bool,
    /// Whether this shard's copy of the row is the one that goes out (another shard may hold
    /// the same row: the copy with the smallest variant hash stands for them all).
    pub owner: bool,
    /// The row standing for its near-duplicate group (itself when it stands for itself).
    pub representative: Hash128,
}

impl GlobalAssignment {
    fn encode(&self) -> [u8; 34] {
        let mut v = [0u8; 34];
        v[..16].copy_from_slice(&self.cluster.to_bytes());
        v[16] = u8::from(self.holdout);
        v[17] = u8::from(self.owner);
        v[18..].copy_from_slice(&self.representative.to_bytes());
        v
    }

    fn decode(v: &[u8]) -> Result<GlobalAssignment> {
        let bad = || Error::Codec {
            table: "global",
            message: "entry is not (cluster, holdout, owner, representative)".into(),
        };
        if v.len() != 34 {
            return Err(bad());
        }
        Ok(GlobalAssignment {
            cluster: Hash128::from_bytes(&v[..16]).ok_or_else(bad)?,
            holdout: v[16] != 0,
            owner: v[17] != 0,
            representative: Hash128::from_bytes(&v[18..]).ok_or_else(bad)?,
        })
    }
}

/// What the imported table was: enough for `idx verify` to tell whether it still describes
/// this shard and for an export manifest to name it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GlobalInfo {
    /// sha256 of the assignment file as read.
    pub digest: String,
    /// The shard whose rows were imported.
    pub shard: String,
    /// Every shard's state digest the job read, by shard id.
    pub shards: BTreeMap<String, String>,
    /// Entries imported for this shard.
    pub rows: u64,
}

impl Store {
    /// Replace the imported global assignments with `rows` in one commit.
    pub fn import_global(
        &self,
        info: &GlobalInfo,
        rows: &BTreeMap<Hash128, GlobalAssignment>,
    ) -> Result<()> {
        let txn = self.begin_write()?;
        {
            let mut table = txn.open_table(GLOBAL)?;
            table.retain(|_, _| false)?;
            for (row, a) in rows {
                table.insert(row.to_bytes().as_slice(), a.encode().as_slice())?;
            }
            txn.open_table(META)?
                .insert(META_GLOBAL, codec::encode(info).as_slice())?;
        }
        txn.commit()?;
        Ok(())
    }

    /// Record the shard id this index exports signatures as.
    pub fn set_shard(&self, shard: &str) -> Result<()> {
        let txn = self.begin_write()?;
        txn.open_table(META)?
            .insert(META_SHARD, codec::encode(&shard.to_string()).as_slice())?;
        txn.commit()?;
        Ok(())
    }
}

impl ReadView {
    /// Every imported global assignment (empty when none was imported).
    pub fn global_assignments(&self) -> Result<BTreeMap<Hash128, GlobalAssignment>> {
        let Some(t) = self.global_table()? else {
            return Ok(BTreeMap::new());
        };
        let mut out = BTreeMap::new();
        for entry in t.iter()? {
            let (k, v) = entry?;
            let row = Hash128::from_bytes(k.value()).ok_or_else(|| Error::Codec {
                table: "global",
                message: "key is not a hash".into(),
            })?;
            out.insert(row, GlobalAssignment::decode(v.value())?);
        }
        Ok(out)
    }

    /// One row's imported global assignment.
    pub fn global_assignment(&self, row: Hash128) -> Result<Option<GlobalAssignment>> {
        let Some(t) = self.global_table()? else {
            return Ok(None);
        };
        t.get(row.to_bytes().as_slice())?
            .map(|v| GlobalAssignment::decode(v.value()))
            .transpose()
    }

    /// What the imported assignment table was, if one was imported.
    pub fn global_info(&self) -> Result<Option<GlobalInfo>> {
        self.meta(META_GLOBAL)
    }

    /// The shard id recorded by `idx export signatures`.
    pub fn shard(&self) -> Result<Option<String>> {
        self.meta(META_SHARD)
    }

    /// The global table, or `None` in an index that never imported one (it is created by the
    /// first import, not when the index is).
    pub(super) fn global_table(
        &self,
    ) -> Result<Option<redb::ReadOnlyTable<&'static [u8], &'static [u8]>>> {
        match self.txn.open_table(GLOBAL) {
            Ok(t) => Ok(Some(t)),
            Err(redb::TableError::TableDoesNotExist(_)) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }
}

impl ReadView {
    /// Every row's holdout groups (link groups of derived rows aside), in hash order.
    pub fn holdout_memberships(&self) -> Result<BTreeMap<Hash128, Vec<Hash128>>> {
        let t = self.txn.open_table(super::tables::ROW_GROUPS)?;
        let mut out: BTreeMap<Hash128, Vec<Hash128>> = BTreeMap::new();
        for entry in t.iter()? {
            let (k, v) = entry?;
            if !super::clusters::is_holdout_membership(v.value()) {
                continue;
            }
            let key = k.value();
            if let (Some(row), Some(group)) = (
                key.get(..16).and_then(Hash128::from_bytes),
                key.get(16..32).and_then(Hash128::from_bytes),
            ) {
                out.entry(row).or_default().push(group);
            }
        }
        Ok(out)
    }

    /// The representative spelling of a row with its variant hash (the smallest).
    pub fn representative_variant(
        &self,
        row: Hash128,
    ) -> Result<Option<(Hash128, super::VariantRecord)>> {
        let t = self.txn.open_table(super::tables::VARIANTS)?;
        let start = super::keys::variant(row, Hash128(0));
        let end = super::keys::variant(row, Hash128(u128::MAX));
        let Some(entry) = t.range::<&[u8]>(start.as_slice()..=end.as_slice())?.next() else {
            return Ok(None);
        };
        let (k, v) = entry?;
        let variant = k
            .value()
            .get(16..32)
            .and_then(Hash128::from_bytes)
            .ok_or_else(|| Error::Codec {
                table: "variants",
                message: "key is not (row, variant)".into(),
            })?;
        Ok(Some((variant, codec::decode_variant(v.value())?)))
    }
}
