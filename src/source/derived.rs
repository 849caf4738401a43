//! The derived source: the objects idx writes itself under `DATA_DIR/derived/` (see
//! [`crate::derive`]), one folder per recipe. They are scanned like a local folder but belong to
//! the fixed source [`DERIVED_SOURCE`], so moving the data directory changes nothing, and no
//! user folder can be mistaken for them. Named on the command line as `idx-derived:`.

use std::fs::File;
use std::path::{Path, PathBuf};

use super::{local, Found, FoundObject, Location, Scan, ScanScope};
use crate::error::Result;

/// The source every derived object belongs to.
pub const DERIVED_SOURCE: &str = "idx-derived:";

/// The folder of derived objects.
#[derive(Debug, Clone)]
pub struct DerivedSource {
    pub dir: PathBuf,
}

impl super::Source for DerivedSource {
    fn describe(&self) -> String {
        format!("derived rows ({})", self.dir.display())
    }

    fn scan(&self) -> Result<Found> {
        let mut scan = if self.dir.is_dir() {
            local::scan(&self.dir, None)?
        } else {
            // No recipe has written anything: every derived object is gone.
            Scan {
                source: String::new(),
                objects: Vec::new(),
                scope: ScanScope::All,
                errors: Vec::new(),
            }
        };
        scan.source = DERIVED_SOURCE.to_string();
        Ok(scan.into())
    }

    fn open(&self, object: &FoundObject, _spool: &Path) -> std::result::Result<File, String> {
        match &object.location {
            Location::File(path) => {
                File::open(path).map_err(|e| format!("cannot open {}: {e}", path.display()))
            }
            other => Err(format!("{other:?} is not a local file")),
        }
    }
}
