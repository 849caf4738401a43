//! S3 inventories: the list of objects that should exist, as the original system wrote it
//! (`s3_manifest.json`: objects `{key, size, last_modified, etag}` in `objects` arrays nested
//! in `categories` sections at any depth) or as a plain JSON array of such objects. Accepted
//! shapes are documented in `schema/s3-inventory.schema.json`. Parsing only; no I/O.

use serde_json::Value;

/// One object an inventory lists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InventoryObject {
    /// Key relative to the bucket root.
    pub key: String,
    pub size: u64,
    /// Nanoseconds since the Unix epoch, 0 when absent or unreadable.
    pub last_modified_ns: i128,
    /// Without quotes; empty when absent.
    pub etag: String,
}

/// A parsed inventory.
#[derive(Debug, Clone, Default)]
pub struct Inventory {
    /// The bucket it describes, when it says.
    pub bucket: Option<String>,
    /// Sorted by key, no duplicates.
    pub objects: Vec<InventoryObject>,
}

impl Inventory {
    /// Parse `text` (named `origin` in errors).
    pub fn parse(text: &str, origin: &str) -> Result<Inventory, String> {
        let value: Value =
            serde_json::from_str(text).map_err(|e| format!("{origin}: invalid JSON: {e}"))?;
        let mut objects = Vec::new();
        let mut problems = Vec::new();
        collect(&value, "$", &mut objects, &mut problems);
        if let Some(p) = problems.first() {
            return Err(format!(
                "{origin}: {p}{}",
                if problems.len() > 1 {
                    format!(" (and {} more)", problems.len() - 1)
                } else {
                    String::new()
                }
            ));
        }
        if objects.is_empty() && !matches!(value, Value::Array(ref a) if a.is_empty()) {
            return Err(format!(
                "{origin}: no objects found (expected `objects` arrays of {{key, size, \
                 last_modified, etag}} or a plain array of them)"
            ));
        }
        objects.sort_by(|a, b| a.key.cmp(&b.key));
        objects.dedup_by(|a, b| a.key == b.key);
        Ok(Inventory {
            bucket: value
                .get("bucket")
                .and_then(Value::as_str)
                .map(str::to_string),
            objects,
        })
    }

    /// The objects under `prefix` (a key prefix; empty for the whole bucket).
    pub fn under<'a>(&'a self, prefix: &'a str) -> impl Iterator<Item = &'a InventoryObject> {
        self.objects.iter().filter(move |o| {
            prefix.is_empty()
                || o.key == prefix
                || o.key
                    .strip_prefix(prefix)
                    .is_some_and(|rest| prefix.ends_with('/') || rest.starts_with('/'))
        })
    }
}

fn collect(v: &Value, path: &str, out: &mut Vec<InventoryObject>, problems: &mut Vec<String>) {
    match v {
        Value::Array(items) if items.iter().any(|i| i.get("key").is_some()) => {
            for (i, item) in items.iter().enumerate() {
                match object(item) {
                    Ok(o) => out.push(o),
                    Err(e) => problems.push(format!("{path}[{i}]: {e}")),
                }
            }
        }
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                collect(item, &format!("{path}[{i}]"), out, problems);
            }
        }
        Value::Object(map) => {
            for (k, child) in map {
                collect(child, &format!("{path}.{k}"), out, problems);
            }
        }
        _ => {}
    }
}

fn object(v: &Value) -> Result<InventoryObject, String> {
    let key = v
        .get("key")
        .and_then(Value::as_str)
        .filter(|k| !k.is_empty())
        .ok_or("`key` is missing or not a string")?;
    let size = match v.get("size") {
        Some(s) => s.as_u64().ok_or("`size` is not a non-negative integer")?,
        None => return Err(format!("`{key}`: `size` is missing")),
    };
    // Absent, the time is unknown (0); present, it must be one.
    let last_modified_ns = match v.get("last_modified") {
        None | Some(Value::Null) => 0,
        Some(t) => t
            .as_str()
            .and_then(parse_rfc3339_ns)
            .ok_or_else(|| format!("`{key}`: `last_modified` is not an RFC 3339 time: {t}"))?,
    };
    let etag = v
        .get("etag")
        .and_then(Value::as_str)
        .map(|e| e.trim_matches('"').to_string())
        .unwrap_or_default();
    Ok(InventoryObject {
        key: key.to_string(),
        size,
        last_modified_ns,
        etag,
    })
}

/// An RFC 3339 time (`2025-12-01T00:00:00+00:00`, `…Z`, fractional seconds, any offset) as
/// nanoseconds since the epoch; `None` when it is not one.
pub fn parse_rfc3339_ns(s: &str) -> Option<i128> {
    time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .ok()
        .map(|t| t.unix_timestamp_nanos())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_sections_and_plain_lists() {
        let nested = r#"{"bucket": "b", "categories": {"gdrive": {"raw": {"count": 1, "objects": [
            {"key": "datasets/a.jsonl", "size": 10, "last_modified": "2025-12-01T00:00:00+00:00", "etag": "\"abc\""}]},
            "processed": {"x": {"objects": [{"key": "datasets/b.json", "size": 2, "etag": "d"}]}}},
            "voice": {"objects": []}}}"#;
        let inv = Inventory::parse(nested, "m.json").unwrap();
        assert_eq!(inv.bucket.as_deref(), Some("b"));
        let keys: Vec<&str> = inv.objects.iter().map(|o| o.key.as_str()).collect();
        assert_eq!(keys, ["datasets/a.jsonl", "datasets/b.json"]);
        assert_eq!(inv.objects[0].etag, "abc");
        assert_eq!(inv.objects[0].last_modified_ns, 1_764_547_200_000_000_000);
        let plain = r#"[{"key": "x/y.jsonl", "size": 3}]"#;
        let inv = Inventory::parse(plain, "l.json").unwrap();
        assert_eq!(inv.objects.len(), 1);
        assert_eq!(inv.under("x").count(), 1);
        assert_eq!(inv.under("x/").count(), 1);
        assert_eq!(inv.under("xy").count(), 0);
        assert_eq!(inv.under("").count(), 1);
    }

    #[test]
    fn bad_inventories_say_where() {
        let err =
            Inventory::parse(r#"{"objects": [{"key": "a", "size": -1}]}"#, "m.json").unwrap_err();
        assert!(err.contains("m.json: $.objects[0]: `size`"), "{err}");
        let err =
            Inventory::parse(r#"{"objects": [{"size": 1, "key": 3}]}"#, "m.json").unwrap_err();
        assert!(err.contains("`key` is missing"), "{err}");
        let err = Inventory::parse("{\"a\": 1}", "m.json").unwrap_err();
        assert!(err.contains("no objects found"), "{err}");
        assert!(Inventory::parse("{", "m.json")
            .unwrap_err()
            .contains("invalid JSON"));
    }

    #[test]
    fn timestamps() {
        assert_eq!(parse_rfc3339_ns("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(parse_rfc3339_ns("1970-01-01T01:00:00+01:00"), Some(0));
        assert_eq!(
            parse_rfc3339_ns("2000-03-01T00:00:00.5Z"),
            Some(951_868_800_500_000_000)
        );
        assert_eq!(parse_rfc3339_ns("garbage"), None);
        assert_eq!(parse_rfc3339_ns("2025-13-01T00:00:00Z"), None);
    }
}
