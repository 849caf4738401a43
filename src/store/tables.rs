//! The redb tables and meta keys: every table idx keeps, with what its keys and values are.

use redb::TableDefinition;

/// Version of the on-disk layout; bumped on any incompatible change to tables or records.
/// 2: near-duplicate tables, word SimHash, `RowRecord::words`.
/// 3: structure flaws on rows, place metadata (session, attributes, merged turns) after the
/// hashes in `object_places`, the mapping and sessions on objects.
/// 4: `simhash_tables` keys carry no value; `variants` values are a head (tokens, kind, messages, first role) and the conversation,
/// zstd-compressed when that is smaller.
/// 5: `simhash_buckets` (one packed entry per table and bucket) replaces `simhash_tables` (one
/// key per table and row).
/// 6: `object_classes` (the content classes of each object's places).
/// An index of format 4 or 5 is upgraded in place by the next writer.
pub const FORMAT_VERSION: u32 = 6;

/// The oldest format a writer upgrades in place (see `Store::open_write`); every format from it
/// up to `FORMAT_VERSION` is upgradable.
pub(super) const OLDEST_UPGRADABLE: u32 = 4;

pub(super) const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");

pub(super) const OBJECTS: TableDefinition<&str, &[u8]> = TableDefinition::new("objects");

pub(super) const OBJECT_PLACES: TableDefinition<&[u8], &[u8]> =
    TableDefinition::new("object_places");

pub(super) const ROW_PLACES: TableDefinition<&[u8], ()> = TableDefinition::new("row_places");

/// Object id → the content classes of its places (`model::ClassMask`); no entry for an object without
/// places. Lets a selection by kind (`derive`) pass over objects without reading their rows.
pub(super) const OBJECT_CLASSES: TableDefinition<&str, u8> = TableDefinition::new("object_classes");

pub(super) const VARIANTS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("variants");

pub(super) const VARIANT_REFS: TableDefinition<&[u8], u64> = TableDefinition::new("variant_refs");

pub(super) const ROWS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("rows");

pub(super) const FAMILY_STATS: TableDefinition<&str, &[u8]> = TableDefinition::new("family_stats");

pub(super) const FTS_LOG: TableDefinition<u64, &[u8]> = TableDefinition::new("fts_log");

/// Table number ‖ bucket (a permuted SimHash's block prefix) → every (permuted SimHash, row)
/// in the bucket, packed (see `buckets`): the permutation moves bits, so the Hamming distance of
/// two permuted values is that of the SimHashes (and table 0's permutation is the identity).
pub(super) const SIMHASH_BUCKETS: TableDefinition<&[u8], &[u8]> =
    TableDefinition::new("simhash_buckets");

pub(super) const CLUSTERS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("clusters");

pub(super) const CLUSTER_MEMBERS: TableDefinition<&[u8], ()> =
    TableDefinition::new("cluster_members");

pub(super) const ROW_GROUPS: TableDefinition<&[u8], u64> = TableDefinition::new("row_groups");

pub(super) const GROUP_ROWS: TableDefinition<&[u8], ()> = TableDefinition::new("group_rows");

pub(super) const SPLIT_MOVES: TableDefinition<&[u8], &[u8]> = TableDefinition::new("split_moves");

/// Benchmark name → `BenchmarkRecord`.
pub(super) const BENCHMARKS: TableDefinition<&str, &[u8]> = TableDefinition::new("benchmarks");

/// Benchmark name \0 item number (u32 BE) → `BenchmarkItem` (its place and its n-grams).
pub(super) const BENCHMARK_ITEMS: TableDefinition<&[u8], &[u8]> =
    TableDefinition::new("benchmark_items");

/// Row hash → `Contamination`: every row checked against the current benchmark set (a clean
/// row has no hits).
pub(super) const CONTAMINATION: TableDefinition<&[u8], &[u8]> =
    TableDefinition::new("contamination");

pub(super) const META_VERSION: &str = "format_version";

pub(super) const META_SEQ: &str = "seq";

pub(super) const META_TOTALS: &str = "totals";

pub(super) const META_FTS_PRUNED: &str = "fts_pruned_through";

pub(super) const META_POLICY: &str = "policy";

/// Row hash → its imported global assignment (scale-out, `store::global`): global cluster id
/// ‖ holdout ‖ owner (this shard's copy goes out) ‖ representative of its near-duplicate group.
pub(super) const GLOBAL: TableDefinition<&[u8], &[u8]> = TableDefinition::new("global");

/// The shard id this index exports signatures as (`idx export signatures --shard`).
pub(super) const META_SHARD: &str = "shard";

/// What the imported assignment table was (`store::global::GlobalInfo`).
pub(super) const META_GLOBAL: &str = "global";
