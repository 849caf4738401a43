//! The HTML report: well-formed (parsed as XML, every SVG chart with a title), every family of
//! the coverage gate present, its figures equal to the JSON report's, and in every export
//! (listed in the manifest with its sha256). Byte-identical exports across ingest orders cover
//! its determinism (`export::exports_are_byte_identical_whatever_the_ingest_order`).

use std::collections::BTreeMap;
use std::path::Path;

use quick_xml::events::Event;
use quick_xml::Reader;
use serde_json::Value;

use super::common::{copy_dir, run_idx, Fixture};

/// Every element's name and attributes, in document order; panics on malformed XML.
fn elements(html: &str) -> Vec<(String, BTreeMap<String, String>)> {
    let mut reader = Reader::from_str(html);
    reader.config_mut().check_end_names = true;
    let mut out = Vec::new();
    loop {
        match reader.read_event() {
            Ok(Event::Eof) => break,
            Ok(Event::Start(e)) | Ok(Event::Empty(e)) => {
                let name = String::from_utf8(e.name().as_ref().to_vec()).unwrap();
                let attrs = e
                    .attributes()
                    .map(|a| {
                        let a = a.expect("well-formed attribute");
                        (
                            String::from_utf8(a.key.as_ref().to_vec()).unwrap(),
                            a.unescape_value().expect("escaped value").into_owned(),
                        )
                    })
                    .collect();
                out.push((name, attrs));
            }
            Ok(_) => {}
            Err(e) => panic!("malformed HTML at {}: {e}", reader.buffer_position()),
        }
    }
    out
}

fn example_index(f: &Fixture) -> String {
    let data = f.data.join("examples");
    copy_dir(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/data"),
        &data,
    );
    let data = data.to_str().unwrap().to_string();
    assert!(run_idx(&f.index_dir, &["ingest", &data]).status.success());
    data
}

#[test]
fn the_report_is_well_formed_and_its_figures_are_the_json_reports() {
    let f = Fixture::new();
    example_index(&f);
    let html_path = f.data.with_file_name("report.html");
    let out = run_idx(
        &f.index_dir,
        &["verify", "--html", html_path.to_str().unwrap()],
    );
    assert!(matches!(out.status.code(), Some(0 | 4)));
    let json: Value =
        serde_json::from_slice(&run_idx(&f.index_dir, &["verify", "--json"]).stdout).unwrap();
    let html = std::fs::read_to_string(&html_path).unwrap();
    // Self-contained: no script, nothing fetched.
    assert!(!html.contains("<script"));
    assert!(!html.contains("src=\"http") && !html.contains("href=\"http"));
    let els = elements(&html);

    // Every chart is an SVG whose first child is its title.
    let svgs: Vec<usize> = els
        .iter()
        .enumerate()
        .filter(|(_, e)| e.0 == "svg")
        .map(|(i, _)| i)
        .collect();
    assert!(svgs.len() >= 5, "{} charts", svgs.len());
    for &i in &svgs {
        assert_eq!(els[i + 1].0, "title", "an svg without a title");
    }

    // Gates and totals.
    let gates: BTreeMap<&str, &str> = els
        .iter()
        .filter_map(|(_, a)| Some((a.get("data-gate")?.as_str(), a.get("data-passed")?.as_str())))
        .collect();
    for gate in ["coverage", "leakage", "structure", "distribution"] {
        assert_eq!(
            gates[gate],
            json["gates"][gate]["passed"].to_string(),
            "{gate}"
        );
    }
    let total = els
        .iter()
        .find_map(|(_, a)| a.get("data-total-rows"))
        .unwrap();
    assert_eq!(total, &json["report"]["total"]["rows"].to_string());

    // The coverage matrix: every family, with the JSON's rows, tokens and status.
    let rows: BTreeMap<&str, &BTreeMap<String, String>> = els
        .iter()
        .filter(|(n, a)| n == "tr" && a.contains_key("data-family"))
        .map(|(_, a)| (a["data-family"].as_str(), a))
        .collect();
    let families = json["gates"]["coverage"]["families"].as_array().unwrap();
    assert_eq!(rows.len(), families.len());
    for fam in families {
        let a = rows[fam["family"].as_str().unwrap()];
        assert_eq!(a["data-rows"], fam["rows"].to_string());
        assert_eq!(a["data-tokens"], fam["tokens"].to_string());
        assert_eq!(a["data-status"], fam["status"].as_str().unwrap());
    }
    // Lengths per family equal the JSON's percentiles.
    let lengths = json["report"]["lengths"].as_object().unwrap();
    let shown: Vec<&BTreeMap<String, String>> = els
        .iter()
        .filter(|(n, a)| n == "tr" && a.contains_key("data-lengths-family"))
        .map(|(_, a)| a)
        .collect();
    assert_eq!(shown.len(), lengths.len());
    for a in shown {
        let l = &lengths[a["data-lengths-family"].as_str()]["tokens"];
        assert_eq!(a["data-p50"], l["p50"].to_string());
        assert_eq!(a["data-max"], l["max"].to_string());
    }
    // The same state, the same bytes.
    let again = f.data.with_file_name("again.html");
    run_idx(&f.index_dir, &["verify", "--html", again.to_str().unwrap()]);
    assert_eq!(std::fs::read(&again).unwrap(), html.as_bytes());
}

#[test]
fn every_export_carries_the_report_in_its_manifest() {
    let f = Fixture::new();
    example_index(&f);
    let out = f.data.with_file_name("export");
    let run = run_idx(
        &f.index_dir,
        &[
            "export",
            "--out",
            out.to_str().unwrap(),
            "--allow-failing-gates",
        ],
    );
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    elements(&html);
    assert!(html.contains("idx dataset report"));
    let manifest: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("manifest.json")).unwrap()).unwrap();
    let entry = manifest["files"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["path"] == "report.html")
        .expect("report.html in the manifest");
    assert_eq!(entry["bytes"], html.len());
    assert_eq!(entry["sha256"].as_str().unwrap().len(), 64);
    // `idx export verify` re-reads it like every other file.
    let check = run_idx(
        &f.index_dir,
        &[
            "export",
            "verify",
            out.join("manifest.json").to_str().unwrap(),
        ],
    );
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stdout)
    );
}
