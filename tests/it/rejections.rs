//! Bad input is rejected with its line and a reason, counted per object, and never stops the run.

use super::common::{chat, Fixture};

#[test]
fn every_kind_of_bad_line_is_counted_with_its_line_and_reason() {
    let f = Fixture::new();
    let mut body: Vec<u8> = Vec::new();
    body.extend_from_slice(chat("good", "one").as_bytes());
    body.push(b'\n');
    body.extend_from_slice(b"{not json\n"); // 2
    body.extend_from_slice(b"{\"text\": \"bad \x81\x8d bytes\"}\n"); // 3
    body.extend_from_slice(b"{\"messages\": \"not a list\"}\n"); // 4
    body.extend_from_slice(b"{\"messages\": []}\n"); // 5
    body.extend_from_slice(b"{\"messages\": [{\"role\": \"user\", \"content\": \"   \"}]}\n"); // 6
    body.extend_from_slice(b"{\"colour\": \"blue\"}\n"); // 7
    body.extend_from_slice(b"[1, 2, 3]\n"); // 8
    body.extend_from_slice(b"{\"messages\": [{\"role\": \"wizard\", \"content\": \"x\"}]}\n"); // 9
    body.extend_from_slice(b"{\"text\": 42}\n"); // 10
    body.extend_from_slice(chat("good", "two").as_bytes()); // 11
    body.push(b'\n');
    f.write("bad.jsonl", &body);
    f.write("fine.jsonl", chat("other", "file"));

    let r = f.ingest();
    assert_eq!(r.rows_added, 3);
    assert_eq!(r.rejected_rows, 9);
    let lines: Vec<u64> = r.rejections.iter().map(|x| x.line).collect();
    assert_eq!(lines, vec![2, 3, 4, 5, 6, 7, 8, 9, 10]);
    let reason = |line: u64| {
        r.rejections
            .iter()
            .find(|x| x.line == line)
            .map(|x| x.reason.clone())
            .unwrap()
    };
    assert!(reason(2).starts_with("invalid JSON"));
    assert!(reason(3).contains("invalid UTF-8"));
    assert!(reason(4).contains("must be an array"));
    assert!(reason(5).contains("empty conversation"));
    assert!(reason(6).contains("empty conversation"));
    assert!(reason(7).contains("unknown record shape"));
    assert!(reason(8).contains("expected a JSON object"));
    assert!(reason(9).contains("unknown role"));
    assert!(reason(10).contains("must be a string"));
    assert!(r.rejections.iter().all(|x| x.key == "bad.jsonl"));

    let s = f.status();
    assert_eq!(s.totals.rejected_rows, 9);
    assert_eq!(s.objects_with_rejections.get("bad.jsonl"), Some(&9));
    assert_eq!(s.totals.rows, 3);
}

#[test]
fn a_huge_line_is_rejected_without_buffering_and_the_rest_is_read() {
    let mut f = Fixture::new();
    f.options.limits.max_line_bytes = 16 << 20;
    let huge = format!("{{\"text\": \"{}\"}}\n", "word ".repeat(10 << 20)); // ~50 MB
    let mut body = chat("before", "huge").into_bytes();
    body.push(b'\n');
    body.extend_from_slice(huge.as_bytes());
    body.extend_from_slice(chat("after", "huge").as_bytes());
    f.write("huge.jsonl", &body);
    let r = f.ingest();
    assert_eq!(r.rows_added, 2);
    assert_eq!(r.rejected_rows, 1);
    assert_eq!(r.rejections[0].line, 2);
    assert!(
        r.rejections[0].reason.contains("over the limit"),
        "{}",
        r.rejections[0].reason
    );
}

#[test]
fn broken_json_documents_and_bad_gzip_are_rejections_not_failures() {
    let f = Fixture::new();
    f.write("broken.json", "[\n {\"text\": \"a\"},\n {\"text\": \n");
    f.write(
        "corrupt.jsonl.gz",
        b"\x1f\x8b\x08\x00garbage that is not deflate",
    );
    f.write("empty.txt", "   \n");
    f.write("ok.jsonl", chat("still", "indexed"));
    let r = f.ingest();
    assert_eq!(r.objects_failed, 0);
    assert_eq!(r.rows_added, 1);
    assert_eq!(r.rejected_rows, 3);
    let broken = r
        .rejections
        .iter()
        .find(|x| x.key == "broken.json")
        .unwrap();
    assert!(broken.reason.starts_with("invalid JSON"));
    assert_eq!(broken.line, 4);
    let gz = r
        .rejections
        .iter()
        .find(|x| x.key == "corrupt.jsonl.gz")
        .unwrap();
    assert!(gz.reason.contains("read error"), "{}", gz.reason);
    assert!(r.rejections.iter().any(|x| x.key == "empty.txt"));
}
