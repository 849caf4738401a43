//! Columnar objects: Parquet (streamed a row group at a time, never the whole file in memory)
//! and Arrow IPC (the stream format Hugging Face `datasets` writes as `.arrow`, and the file
//! format). Each row becomes a JSON object of its columns (nested lists and structs included,
//! nulls left out), then a conversation by the same mapping and detection as JSON records. The
//! 1-based row index is the row's "line" in rejections and provenance.

use std::fs::File;
use std::io::{BufReader, Read, Seek};

use arrow_array::RecordBatch;

use super::{finish, reject, shape, FileFormat, Item, Limits, Mapping};

/// Rows are converted to JSON this many at a time.
const BATCH_ROWS: usize = 1024;

/// The first bytes of an Arrow IPC *file* (the stream format has no magic).
const ARROW_FILE_MAGIC: &[u8] = b"ARROW1";

/// Read a Parquet or Arrow IPC object from its file.
pub(super) fn read_columnar_file(
    mut file: File,
    format: FileFormat,
    limits: Limits,
    mapping: Option<&Mapping>,
    sink: &mut dyn FnMut(Item),
) {
    if format == FileFormat::Parquet {
        return Rows::new(limits, mapping, sink).parquet(file);
    }
    let mut magic = [0u8; 6];
    let is_file = file.read_exact(&mut magic).is_ok() && magic == ARROW_FILE_MAGIC;
    if let Err(e) = file.rewind() {
        return Rows::new(limits, mapping, sink).fail(format!("read error: {e}"));
    }
    if !is_file {
        return read_arrow_stream(BufReader::new(file), limits, mapping, sink);
    }
    let mut rows = Rows::new(limits, mapping, sink);
    match guarded(|| arrow_ipc::reader::FileReader::try_new(BufReader::new(file), None)) {
        Ok(batches) => rows.all(batches),
        Err(e) => rows.fail(format!("not a readable Arrow IPC file: {e}")),
    }
}

/// Read an Arrow IPC stream from any reader (a gzipped `.arrow.gz`, or a file).
pub(super) fn read_arrow_stream(
    reader: impl Read,
    limits: Limits,
    mapping: Option<&Mapping>,
    sink: &mut dyn FnMut(Item),
) {
    let mut rows = Rows::new(limits, mapping, sink);
    match guarded(|| arrow_ipc::reader::StreamReader::try_new(reader, None)) {
        Ok(batches) => rows.all(batches),
        Err(e) => rows.fail(format!("not a readable Arrow IPC stream: {e}")),
    }
}

/// Read a Parquet object that is not a plain file (a gzipped one), whole, within the document
/// limit.
pub(super) fn read_parquet_bytes(
    bytes: Vec<u8>,
    limits: Limits,
    mapping: Option<&Mapping>,
    sink: &mut dyn FnMut(Item),
) {
    Rows::new(limits, mapping, sink).parquet(bytes::Bytes::from(bytes));
}

/// Open a reader, turning a panic of the Arrow/Parquet code on malformed data into an error.
fn guarded<T, E: std::fmt::Display>(
    open: impl FnOnce() -> std::result::Result<T, E>,
) -> std::result::Result<T, String> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(open)) {
        Ok(Ok(reader)) => Ok(reader),
        Ok(Err(e)) => Err(e.to_string()),
        Err(panic) => Err(format!("malformed data ({})", gave_up(&*panic))),
    }
}

/// What a panic of the Arrow/Parquet readers said, bounded (it may quote the data).
fn gave_up(panic: &(dyn std::any::Any + Send)) -> String {
    format!(
        "the reader gave up: {}",
        crate::pii::bounded_excerpt(&crate::error::panic_message(panic))
    )
}

struct Rows<'a, 's> {
    next_line: u64,
    limits: Limits,
    mapping: Option<&'a Mapping>,
    sink: &'s mut dyn FnMut(Item),
}

impl<'a, 's> Rows<'a, 's> {
    fn new(limits: Limits, mapping: Option<&'a Mapping>, sink: &'s mut dyn FnMut(Item)) -> Self {
        Rows {
            next_line: 1,
            limits,
            mapping,
            sink,
        }
    }

    /// Every row of a Parquet file (a file or an in-memory buffer), a row group at a time.
    fn parquet<R: parquet::file::reader::ChunkReader + 'static>(&mut self, input: R) {
        let reader = guarded(|| {
            parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(input)
                .and_then(|b| b.with_batch_size(BATCH_ROWS).build())
        });
        match reader {
            Ok(batches) => self.all(batches),
            Err(e) => self.fail(format!("not a readable Parquet file: {e}")),
        }
    }

    fn fail(&mut self, reason: String) {
        (self.sink)(reject(self.next_line, reason));
    }

    fn all<E: std::fmt::Display>(
        &mut self,
        mut batches: impl Iterator<Item = std::result::Result<RecordBatch, E>>,
    ) {
        loop {
            // The Arrow readers can panic on malformed data (found by the property tests): a
            // panic is that object's rejection, not a failure of the run.
            let next = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| batches.next()));
            match next {
                Ok(None) => return,
                Ok(Some(Ok(batch))) => {
                    let line = self.next_line;
                    let done = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        self.batch(&batch)
                    }));
                    if let Err(panic) = done {
                        return self.fail_at(line, &*panic);
                    }
                }
                Ok(Some(Err(e))) => {
                    // A broken row group or message ends the object here: what came before it
                    // stays read.
                    return self.fail(format!(
                        "unreadable data after row {}: {e}",
                        self.next_line - 1
                    ));
                }
                Err(panic) => return self.fail_at(self.next_line, &*panic),
            }
        }
    }

    /// The reader panicked on malformed data at `line`.
    fn fail_at(&mut self, line: u64, panic: &(dyn std::any::Any + Send)) {
        (self.sink)(reject(
            line,
            format!("malformed data after row {} ({})", line - 1, gave_up(panic)),
        ));
    }

    fn batch(&mut self, batch: &RecordBatch) {
        let first = self.next_line;
        self.next_line += batch.num_rows() as u64;
        let mut writer = arrow_json::LineDelimitedWriter::new(Vec::new());
        if let Err(e) = writer.write(batch).and_then(|_| writer.finish()) {
            for line in first..self.next_line {
                (self.sink)(reject(
                    line,
                    format!("a column idx cannot read as JSON: {e}"),
                ));
            }
            return;
        }
        let json = writer.into_inner();
        for (i, row) in json
            .split(|&b| b == b'\n')
            .filter(|r| !r.is_empty())
            .enumerate()
        {
            let line = first + i as u64;
            if row.len() > self.limits.max_line_bytes {
                (self.sink)(reject(
                    line,
                    format!(
                        "row is {} bytes, over the limit of {} bytes",
                        row.len(),
                        self.limits.max_line_bytes
                    ),
                ));
                continue;
            }
            let item = serde_json::from_slice::<serde_json::Value>(row)
                .map_err(|e| format!("invalid row: {e}"))
                .and_then(|value| shape(value, self.mapping))
                .and_then(finish);
            (self.sink)(match item {
                Ok(finished) => Item::Record(finished.at(line, 0)),
                Err(reason) => reject(line, reason),
            });
        }
    }
}

/// Whether a format is columnar (read from a file, not a line stream).
pub(super) fn is_columnar(format: FileFormat) -> bool {
    matches!(format, FileFormat::Parquet | FileFormat::Arrow)
}
