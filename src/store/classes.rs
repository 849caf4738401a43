//! The `object_classes` table: per object, the content classes of its places' record kinds
//! (`RecordKind::content_class`) as one byte, so a selection by kind (a derive recipe's `kinds`)
//! passes over an object that cannot hold such a row without reading its rows. Classes, not
//! kinds: two kinds of one class with the same text share a stored spelling, whose head keeps
//! the first one's kind, so only the class is the same whichever way it is counted. The write
//! batch keeps it with the places; an index from before the table is filled once by the
//! upgrade, and `idx check` recounts it.

use redb::{ReadableTable, Table};

use super::tables::{OBJECTS, OBJECT_PLACES, VARIANTS};
use super::{codec, keys};
use crate::error::Result;
use crate::model::ClassMask;

/// The classes of an object's places, read from each place's variant head (what the table
/// should hold for it; 0 for an object without places).
pub(super) fn recount(
    object_places: &impl ReadableTable<&'static [u8], &'static [u8]>,
    variants: &impl ReadableTable<&'static [u8], &'static [u8]>,
    object_id: &str,
) -> Result<ClassMask> {
    let prefix = keys::object_places_prefix(object_id);
    let end = keys::prefix_end(&prefix);
    let mut mask = 0;
    for entry in object_places.range::<&[u8]>(prefix.as_slice()..end.as_slice())? {
        let (_, v) = entry?;
        let (hash, variant, _) = codec::decode_place(v.value())?;
        if let Some(value) = variants.get(keys::variant(hash, variant).as_slice())? {
            mask |= codec::decode_variant_head(value.value())?.kind.class_bit();
        }
    }
    Ok(mask)
}

/// Fill `object_classes` for every object (an upgrade from a format without it).
pub(super) fn fill(txn: &redb::WriteTransaction) -> Result<()> {
    let objects = txn.open_table(OBJECTS)?;
    let object_places = txn.open_table(OBJECT_PLACES)?;
    let variants = txn.open_table(VARIANTS)?;
    let mut table: Table<&str, u8> = txn.open_table(super::tables::OBJECT_CLASSES)?;
    for entry in objects.iter()? {
        let (id, _) = entry?;
        let mask = recount(&object_places, &variants, id.value())?;
        if mask != 0 {
            table.insert(id.value(), mask)?;
        }
    }
    Ok(())
}
