//! What the index costs on disk, table by table: entries, the bytes their keys and values hold,
//! and the pages they occupy (with the B-tree's own pages and free space in them), read from
//! redb's table statistics in one read transaction. `idx status --storage` shows it beside the
//! full-text index's folder, so a user can see what a row costs and which table to blame.

use redb::{ReadableTableMetadata, TableHandle};
use serde::Serialize;

use super::ReadView;
use crate::error::Result;

/// redb's page size: a table occupies whole pages.
const PAGE_BYTES: u64 = 4096;

/// One redb table's footprint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TableFootprint {
    pub table: String,
    pub entries: u64,
    /// Bytes of keys and values stored in the table's leaves.
    pub stored_bytes: u64,
    /// Bytes of the pages the table occupies (leaves and branches).
    pub page_bytes: u64,
}

impl ReadView {
    /// Every table's footprint, largest first (ties by name).
    pub fn table_footprints(&self) -> Result<Vec<TableFootprint>> {
        let mut out = Vec::new();
        for handle in self.txn.list_tables()? {
            let name = handle.name().to_string();
            let table = self.txn.open_untyped_table(handle)?;
            let stats = table.stats()?;
            out.push(TableFootprint {
                table: name,
                entries: table.len()?,
                stored_bytes: stats.stored_bytes(),
                page_bytes: (stats.leaf_pages() + stats.branch_pages()) * PAGE_BYTES,
            });
        }
        out.sort_by(|a, b| b.page_bytes.cmp(&a.page_bytes).then(a.table.cmp(&b.table)));
        Ok(out)
    }
}
