//! `generate` recipes: an external command (any language) turns selected rows into new rows.
//! idx sends it the rows it has not yet seen under the same generator digest (the command line
//! plus the bytes of every file the command line or `files` names) as JSON Lines on stdin —
//! `{"input": HASH, "messages": [...], "rejected"?, "label"?, "attributes": {...}}` — and reads
//! JSON Lines on stdout: records in any shape idx reads, each with `"input"` naming the row it
//! was made from. Outputs are cached by (input hash, generator digest) in the object's name,
//! `INPUT.DIGEST.jsonl` (an empty object when the generator made nothing of that input), so a
//! re-run sends nothing, a new input row sends one row, and a changed generator regenerates. A
//! generator that fails, times out or writes nothing readable is recorded with its stderr; the
//! rows it made before keep standing, and its inputs are sent again by the next run.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::{Recipe, RecipeReport, Row};
use crate::error::{Error, Result};
use crate::fingerprint::Hash128;
use crate::parse::derived::DerivedLine;

/// How much of a failed generator's stderr the report keeps.
const STDERR_TAIL: usize = 2048;

/// The generator's digest: its command line and the bytes of every file it names.
pub(super) fn digest(recipe: &Recipe) -> Result<String> {
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    for arg in &recipe.command {
        h.update(arg.as_bytes());
        h.update(&[0]);
    }
    let named = recipe
        .command
        .iter()
        .filter(|a| Path::new(a).is_file())
        .chain(&recipe.files);
    for file in named {
        let bytes = std::fs::read(file).map_err(|source| Error::Io {
            path: file.into(),
            source,
        })?;
        h.update(file.as_bytes());
        h.update(&[0]);
        h.update(&bytes);
    }
    Ok(format!("{:016x}", h.digest()))
}

/// The objects of a generate recipe (file name → bytes) for the selected rows, running the
/// generator for those without a cached output under `digest`. `dir` is the recipe's folder.
pub(super) fn make(
    recipe: &Recipe,
    rows: &[Row<'_>],
    dir: &Path,
    report: &mut RecipeReport,
) -> Result<BTreeMap<String, Vec<u8>>> {
    let digest = match digest(recipe) {
        Ok(d) => d,
        Err(e) => {
            // Nothing can be generated; what was made before stands.
            report.failures.push(format!("generator digest: {e}"));
            return Ok(existing(dir, |_| true));
        }
    };
    let name = |h: Hash128| format!("{}.{digest}.jsonl", h.to_hex());
    let cached = existing(dir, |n| n.ends_with(&format!(".{digest}.jsonl")));
    let mut files = BTreeMap::new();
    let mut to_send: Vec<&Row<'_>> = Vec::new();
    for row in rows {
        match cached.get(&name(row.input.hash)) {
            Some(bytes) => {
                report.cached += 1;
                files.insert(name(row.input.hash), bytes.clone());
            }
            None => to_send.push(row),
        }
    }
    if to_send.is_empty() {
        return Ok(files);
    }
    report.sent = to_send.len() as u64;
    match run(recipe, &to_send) {
        Ok(out) => {
            let mut made: BTreeMap<Hash128, Vec<DerivedLine>> = BTreeMap::new();
            let sent: BTreeSet<Hash128> = to_send.iter().map(|r| r.input.hash).collect();
            for (n, line) in out.lines().enumerate() {
                if line.trim().is_empty() {
                    continue;
                }
                match read_output(line, &sent) {
                    Ok((input, conversation)) => made.entry(input).or_default().push(DerivedLine {
                        conversation,
                        recipe: recipe.name.clone(),
                        inputs: vec![input.to_hex()],
                        generator: Some(digest.clone()),
                    }),
                    Err(why) => {
                        *report
                            .skipped
                            .entry("unreadable generator output".to_string())
                            .or_default() += 1;
                        if report.failures.len() < 5 {
                            report
                                .failures
                                .push(format!("stdout line {}: {why}", n + 1));
                        }
                    }
                }
            }
            for row in &to_send {
                let mut bytes = Vec::new();
                for line in made.remove(&row.input.hash).unwrap_or_default() {
                    serde_json::to_writer(&mut bytes, &line)
                        .map_err(|e| Error::Query(e.to_string()))?;
                    bytes.push(b'\n');
                }
                files.insert(name(row.input.hash), bytes);
            }
        }
        Err(failure) => {
            report.failures.push(failure);
            // The rows made from these inputs before (by any generator digest) stand until a
            // run succeeds.
            let prefixes: BTreeSet<String> = to_send
                .iter()
                .map(|r| format!("{}.", r.input.hash.to_hex()))
                .collect();
            files.extend(existing(dir, |n| {
                n.split_once('.')
                    .is_some_and(|(h, _)| prefixes.contains(&format!("{h}.")))
            }));
        }
    }
    Ok(files)
}

/// The objects already in the recipe's folder whose names pass `keep`.
fn existing(dir: &Path, keep: impl Fn(&str) -> bool) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') || !keep(&name) {
            continue;
        }
        if let Ok(bytes) = std::fs::read(e.path()) {
            out.insert(name, bytes);
        }
    }
    out
}

/// One stdout line: the input it names (one of those sent) and the conversation it holds.
fn read_output(
    line: &str,
    sent: &BTreeSet<Hash128>,
) -> std::result::Result<(Hash128, crate::model::Conversation), String> {
    let mut value: Value = serde_json::from_str(line).map_err(|e| format!("invalid JSON: {e}"))?;
    let input = value
        .as_object_mut()
        .and_then(|o| o.remove("input"))
        .ok_or("no `input` naming the row it was made from")?;
    let input = input
        .as_str()
        .and_then(Hash128::from_hex)
        .filter(|h| sent.contains(h))
        .ok_or_else(|| format!("`input` {input} is not a row that was sent"))?;
    let conversation = crate::parse::derived::conversation_of(value)?;
    Ok((input, conversation))
}

/// Run the generator on these rows; its stdout, or why it failed (with its stderr's tail).
fn run(recipe: &Recipe, rows: &[&Row<'_>]) -> std::result::Result<String, String> {
    let (program, args) = recipe
        .command
        .split_first()
        .ok_or("the recipe has no command")?;
    let mut stdin_text = Vec::new();
    for row in rows {
        let c = &row.conversation;
        let mut line = json!({
            "input": row.input.hash.to_hex(),
            "messages": c.messages,
            "attributes": row.input.attributes.iter().map(|(k, v)| {
                (k.clone(), serde_json::from_str::<Value>(v).unwrap_or(Value::String(v.clone())))
            }).collect::<serde_json::Map<String, Value>>(),
        });
        if let Some(r) = &c.rejected {
            line["rejected"] = json!(r);
        }
        if let Some(l) = c.label {
            line["label"] = json!(l);
        }
        stdin_text.extend(line.to_string().into_bytes());
        stdin_text.push(b'\n');
    }
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start `{}`: {e}", recipe.command.join(" ")))?;
    let mut stdin = child.stdin.take().expect("piped");
    let writer = std::thread::spawn(move || {
        // A generator that stops reading early is its own business: its exit status says.
        let _ = stdin.write_all(&stdin_text);
    });
    let mut stdout = child.stdout.take().expect("piped");
    let mut stderr = child.stderr.take().expect("piped");
    let out_reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = stdout.read_to_end(&mut buf);
        buf
    });
    let err_reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = stderr.read_to_end(&mut buf);
        buf
    });
    let deadline = Instant::now() + Duration::from_secs(recipe.timeout_seconds);
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Ok(status),
            Ok(None) if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                break Err(format!("timed out after {} s", recipe.timeout_seconds));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => break Err(format!("waiting for it: {e}")),
        }
    };
    let _ = writer.join();
    let out = out_reader.join().unwrap_or_default();
    let err = err_reader.join().unwrap_or_default();
    let tail = |err: &[u8]| {
        let text = String::from_utf8_lossy(err);
        let start = text.len().saturating_sub(STDERR_TAIL);
        let start = (start..text.len())
            .find(|&i| text.is_char_boundary(i))
            .unwrap_or(text.len());
        text[start..].trim().to_string()
    };
    let command = recipe.command.join(" ");
    match status {
        Ok(s) if s.success() => String::from_utf8(out)
            .map_err(|_| format!("`{command}` wrote stdout that is not UTF-8")),
        Ok(s) => Err(format!("`{command}` failed ({s}); stderr: {}", tail(&err))),
        Err(why) => Err(format!("`{command}` {why}; stderr: {}", tail(&err))),
    }
}
