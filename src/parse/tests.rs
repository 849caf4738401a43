//! Unit tests of object reading: formats, line numbers, limits, encodings, gzip.

use super::*;

fn collect(data: &[u8], format: FileFormat, limits: Limits) -> (Vec<ParsedRecord>, Vec<Rejection>) {
    let mut recs = Vec::new();
    let mut rejs = Vec::new();
    read_object(data, format, false, limits, &mut |item| match item {
        Item::Record(r) => recs.push(r),
        Item::Rejected(r) => rejs.push(r),
    });
    (recs, rejs)
}

#[test]
fn jsonl_lines_are_numbered_and_blank_lines_skipped() {
    let data = b"{\"text\":\"a\"}\r\n\n{\"text\":\"b\"}\n{bad\n";
    let (recs, rejs) = collect(data, FileFormat::Jsonl, Limits::default());
    assert_eq!(recs.iter().map(|r| r.line).collect::<Vec<_>>(), vec![1, 3]);
    assert_eq!(
        recs.iter().map(|r| r.record).collect::<Vec<_>>(),
        vec![0, 1]
    );
    assert_eq!(rejs.len(), 1);
    assert_eq!(rejs[0].line, 4);
    assert!(rejs[0].reason.starts_with("invalid JSON"));
}

#[test]
fn long_lines_are_rejected_and_reading_goes_on() {
    let long = format!(
        "{{\"text\":\"{}\"}}\n{{\"text\":\"ok\"}}\n",
        "x".repeat(5000)
    );
    let limits = Limits {
        max_line_bytes: 1000,
        ..Limits::default()
    };
    let (recs, rejs) = collect(long.as_bytes(), FileFormat::Jsonl, limits);
    assert_eq!(recs.len(), 1);
    assert_eq!(recs[0].line, 2);
    assert!(rejs[0].reason.contains("over the limit"));
}

/// Regression (issue 19, item 7): a 1 MB `.json.gz` reached 1 GB of memory. A gzip stream
/// that expands past the ratio stops with a rejection at the line reached; the rows before
/// it stand.
#[test]
fn a_gzip_bomb_stops_at_the_ratio_with_the_rows_before_it_kept() {
    use std::io::Write;
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    gz.write_all(b"{\"text\": \"one\"}\n{\"text\": \"two\"}\n")
        .unwrap();
    let block = vec![b'\n'; 1 << 20];
    for _ in 0..24 {
        gz.write_all(&block).unwrap();
    }
    let bomb = gz.finish().unwrap();
    let mut recs = 0;
    let mut rejs = Vec::new();
    read_object(
        &bomb[..],
        FileFormat::Jsonl,
        true,
        Limits::default(),
        &mut |item| match item {
            Item::Record(_) => recs += 1,
            Item::Rejected(r) => rejs.push(r),
        },
    );
    assert_eq!(recs, 2);
    assert_eq!(rejs.len(), 1, "{rejs:?}");
    assert!(
        rejs[0].reason.contains("decompression bomb"),
        "{}",
        rejs[0].reason
    );
    assert!(rejs[0].line > 2);
    // The same data under a ratio it fits is read to the end.
    let lenient = Limits {
        max_gzip_ratio: 1 << 20,
        ..Limits::default()
    };
    let mut rejected = 0;
    read_object(&bomb[..], FileFormat::Jsonl, true, lenient, &mut |item| {
        if let Item::Rejected(_) = item {
            rejected += 1;
        }
    });
    assert_eq!(rejected, 0);
}

#[test]
fn json_array_elements_get_their_line() {
    let data = b"[\n  {\"text\": \"a\"},\n  {\"nope\": 1},\n  {\"text\": \"c\"}\n]";
    let (recs, rejs) = collect(data, FileFormat::Json, Limits::default());
    assert_eq!(recs.iter().map(|r| r.line).collect::<Vec<_>>(), vec![2, 4]);
    assert_eq!(rejs[0].line, 3);
    assert!(rejs[0].reason.contains("record 1"));
}

#[test]
fn json_file_holding_lines_is_read_as_jsonl() {
    let data = b"{\"text\":\"a\"}\n{\"text\":\"b\"}\n";
    let (recs, rejs) = collect(data, FileFormat::Json, Limits::default());
    assert_eq!(recs.len(), 2);
    assert!(rejs.is_empty());
}

#[test]
fn non_utf8_documents_are_decoded_and_counted() {
    let (recs, rejs) = collect(
        b"[{\"text\": \"caf\xe9 \x93ok\x94\"}]",
        FileFormat::Json,
        Limits::default(),
    );
    assert!(rejs.is_empty());
    assert_eq!(recs[0].conversation.messages[0].content, "café “ok”");
    assert_eq!(recs[0].repairs.decoded, 1);
    let utf16: Vec<u8> = "\u{feff}A transcript, in UTF-16.\r\n"
        .encode_utf16()
        .flat_map(|u| u.to_le_bytes())
        .collect();
    let (recs, _) = collect(&utf16, FileFormat::Text, Limits::default());
    assert_eq!(
        recs[0].conversation.messages[0].content,
        "A transcript, in UTF-16."
    );
    assert_eq!(recs[0].repairs.decoded, 1);
}

#[test]
fn mojibake_in_records_is_repaired_before_hashing() {
    let (recs, _) = collect(
        "{\"text\": \"I donâ€™t know\"}\n".as_bytes(),
        FileFormat::Jsonl,
        Limits::default(),
    );
    assert_eq!(recs[0].conversation.messages[0].content, "I don’t know");
    assert_eq!(recs[0].repairs.mojibake, 1);
}

#[test]
fn lone_surrogates_and_utf16_jsonl_are_repaired() {
    let data = b"{\"text\": \"broken \\ud83d emoji\"}\n";
    let (recs, rejs) = collect(data, FileFormat::Jsonl, Limits::default());
    assert!(rejs.is_empty(), "{rejs:?}");
    assert_eq!(
        recs[0].conversation.messages[0].content,
        "broken \u{fffd} emoji"
    );
    assert_eq!(recs[0].repairs.surrogates, 1);
    let utf16: Vec<u8> = "\u{feff}{\"text\": \"one\"}\r\n{\"text\": \"two\"}\r\n"
        .encode_utf16()
        .flat_map(|u| u.to_le_bytes())
        .collect();
    let (recs, rejs) = collect(&utf16, FileFormat::Jsonl, Limits::default());
    assert!(rejs.is_empty(), "{rejs:?}");
    assert_eq!(recs.len(), 2);
    assert_eq!(recs[1].line, 2);
    assert_eq!(recs[0].repairs.decoded + recs[1].repairs.decoded, 1);
    let doc = b"[{\"text\": \"a \\udc00 b\"}, {\"text\": \"fine\"}]";
    let (recs, rejs) = collect(doc, FileFormat::Json, Limits::default());
    assert!(rejs.is_empty(), "{rejs:?}");
    assert_eq!(recs.len(), 2);
    assert_eq!(recs[0].repairs.surrogates, 1);
}

#[test]
fn windows_1252_lines_are_decoded_and_other_bytes_rejected() {
    let data = b"{\"text\":\"caf\xe9 \x93quoted\x94\"}\n{\"text\":\"bad \x81 byte\"}\n";
    let (recs, rejs) = collect(data, FileFormat::Jsonl, Limits::default());
    assert_eq!(recs.len(), 1);
    assert_eq!(
        recs[0].conversation.messages[0].content,
        "caf\u{e9} \u{201c}quoted\u{201d}"
    );
    assert_eq!(recs[0].repairs.decoded, 1);
    assert_eq!(rejs.len(), 1);
    assert_eq!(rejs[0].line, 2);
    assert!(
        rejs[0].reason.contains("invalid UTF-8"),
        "{}",
        rejs[0].reason
    );
}

#[test]
fn formats_by_extension() {
    assert_eq!(
        detect_file_format("a/b.JSONL"),
        Some((FileFormat::Jsonl, false))
    );
    assert_eq!(
        detect_file_format("a/b.json.gz"),
        Some((FileFormat::Json, true))
    );
    assert_eq!(detect_file_format("t.txt"), Some((FileFormat::Text, false)));
    assert_eq!(detect_file_format("README.md"), None);
    assert_eq!(detect_file_format("x.ipynb"), None);
}

#[test]
fn csv_records_keep_their_line_across_quoted_multi_line_fields() {
    let data = "prompt,response,topic\n\
                \"I can't sleep,\nand I keep thinking\",\"That sounds \"\"exhausting\"\".\",sleep\n\
                \n\
                plain question,plain answer,\n\
                only one\n\
                a,b,c,d\n";
    let (recs, rejs) = collect(
        data.as_bytes(),
        FileFormat::Delimited(b','),
        Limits::default(),
    );
    assert_eq!(recs.iter().map(|r| r.line).collect::<Vec<_>>(), vec![2, 5]);
    assert_eq!(
        recs.iter().map(|r| r.record).collect::<Vec<_>>(),
        vec![0, 1]
    );
    let first = &recs[0].conversation.messages;
    assert_eq!(first[0].content, "I can't sleep, and I keep thinking");
    assert_eq!(first[1].content, "That sounds \"exhausting\".");
    // A row with only a prompt is no prompt/response pair; one with too many fields is neither.
    assert_eq!(rejs.iter().map(|r| r.line).collect::<Vec<_>>(), vec![6, 7]);
    assert!(
        rejs[0].reason.starts_with("record 2:"),
        "{}",
        rejs[0].reason
    );
    assert!(
        rejs[1].reason.contains("4 fields for 3 columns"),
        "{}",
        rejs[1].reason
    );
}

#[test]
fn tsv_and_known_column_names_need_no_mapping() {
    let data = b"instruction\toutput\nName a feeling.\tCalm.\n";
    let (recs, rejs) = collect(data, FileFormat::Delimited(b'\t'), Limits::default());
    assert!(rejs.is_empty(), "{rejs:?}");
    assert_eq!(recs[0].conversation.messages[1].content, "Calm.");
    let (recs, rejs) = collect(b"", FileFormat::Delimited(b','), Limits::default());
    assert!(recs.is_empty());
    assert!(
        rejs[0].reason.contains("no header row"),
        "{}",
        rejs[0].reason
    );
    // A quote never closed runs to the end of the object (the csv crate reads it as one field).
    let (recs, rejs) = collect(
        b"text\nfine\n\"never closed\nmore\n",
        FileFormat::Delimited(b','),
        Limits::default(),
    );
    assert_eq!((recs.len(), rejs.len()), (2, 0), "{rejs:?}");
    assert_eq!(recs[1].line, 3);
    assert!(detect_file_format("data/Counsel.CSV.gz") == Some((FileFormat::Delimited(b','), true)));
    assert!(detect_file_format("x.tsv") == Some((FileFormat::Delimited(b'\t'), false)));
}
