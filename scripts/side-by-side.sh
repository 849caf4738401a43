#!/usr/bin/env bash
# idx beside text-dedup (https://github.com/ChenghaoMou/text-dedup, from PyPI) on the same
# generated corpus, in one run on this machine: text-dedup's SimHash and exact-hash
# deduplication against `idx ingest` of the same rows, each timed with its peak resident memory
# (GNU time), and the rows each keeps. Prints a Markdown table and the time ratios.
#
#   scripts/side-by-side.sh [ROWS]        # default 100000 (the query bench's `short` corpus)
#
# What is compared: text-dedup reads one column of text and writes the rows it keeps; idx reads
# the chat JSONL itself and, besides exact and near-duplicates (word SimHash proposals verified
# by shingle Jaccard), normalises, redacts PII, counts o200k tokens, assigns splits, and builds the
# redb index and the full-text index. The text given to text-dedup is each conversation's
# messages joined by newlines. Both use every core (text-dedup `--num_proc`, idx's workers).
#
# Work goes to SIDE_DIR (default /tmp/idx-side): a Python venv with text-dedup, the corpus (kept
# between runs), the outputs. IDX_BIN=path measures that binary instead of building the
# release one.
set -euo pipefail
cd "$(dirname "$0")/.."
rows=${1:-100000}
work=${SIDE_DIR:-/tmp/idx-side}
mkdir -p "$work"
[[ -x /usr/bin/time ]] || { echo "side-by-side.sh needs GNU time (/usr/bin/time)" >&2; exit 1; }
bin=${IDX_BIN:-}
if [[ -z $bin ]]; then
  cargo build --release --locked --quiet
  bin=$PWD/target/release/idx
fi
venv=$work/venv
if [[ ! -x $venv/bin/python ]] || ! "$venv/bin/python" -c 'import text_dedup' 2>/dev/null; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet 'text-dedup==0.4.0'
fi
td_version=$("$venv/bin/python" -c 'import importlib.metadata as m; print(m.version("text-dedup"))')

corpus=$work/$rows
if [[ ! -d $corpus/data/data ]]; then
  # The query bench's corpus generator (as scripts/scale.sh), stopped once the corpus is written.
  IDX_BENCH_GENERATE_ONLY=1 IDX_BENCH_ROWS=$rows IDX_BENCH_INDEX=$corpus/data \
    cargo bench --locked --bench query >/dev/null 2>&1
fi
text=$corpus/text.jsonl
if [[ ! -f $text ]]; then
  "$venv/bin/python" - "$corpus/data/data" "$text" <<'PY'
import json, pathlib, sys
src, out = pathlib.Path(sys.argv[1]), sys.argv[2]
with open(out, "w", encoding="utf-8") as w:
    for path in sorted(src.rglob("*.jsonl")):
        for line in path.open(encoding="utf-8"):
            if line.strip():
                messages = json.loads(line)["messages"]
                text = "\n".join(m["content"] for m in messages)
                w.write(json.dumps({"text": text}, ensure_ascii=False) + "\n")
PY
fi
input_rows=$(wc -l < "$text")
input_mb=$(du -sm "$corpus/data/data" | cut -f1)

# "seconds peak_MiB" of one command (its output to a log named after the step)
measure() {
  local name=$1; shift
  local t; t=$(mktemp)
  if ! /usr/bin/time -f '%e %M' -o "$t" "$@" >"$work/$name.log" 2>&1; then
    echo "$name failed; see $work/$name.log" >&2
    exit 1
  fi
  tail -n 1 "$t" | awk '{printf "%s %.0f\n", $1, $2/1024}'
  rm -f "$t"
}

cores=$(nproc)
rm -rf "$work/out-simhash" "$work/out-exact" "$work/idx" "$work/.cache"
read -r sim_s sim_mb < <(measure text-dedup-simhash env -C "$work" "$venv/bin/python" -m text_dedup.simhash \
  --path json --data_files "$text" --split train --column text --cache_dir "$work/.cache" \
  --output "$work/out-simhash" --num_proc "$cores" --clean_cache)
read -r ex_s ex_mb < <(measure text-dedup-exact env -C "$work" "$venv/bin/python" -m text_dedup.exact_hash \
  --path json --data_files "$text" --split train --column text --cache_dir "$work/.cache" \
  --output "$work/out-exact" --num_proc "$cores" --clean_cache)
kept() { "$venv/bin/python" -c 'import datasets, sys; print(datasets.load_from_disk(sys.argv[1]).num_rows)' "$1"; }
sim_kept=$(kept "$work/out-simhash")
ex_kept=$(kept "$work/out-exact")

read -r idx_s idx_mb < <(measure idx-ingest "$bin" --data-dir "$work/idx" ingest --no-progress "$corpus/data/data")
# idx keeps a row per exact duplicate set, then one per near-duplicate cluster.
read -r idx_unique idx_kept < <("$bin" --data-dir "$work/idx" --json verify 2>/dev/null | python3 -c '
import json, sys
r = json.load(sys.stdin)
unique = r["report"]["total"]["rows"]
leak = r["gates"]["leakage"]
print(unique, unique - leak["rows_in_clusters"] + leak["clusters"])')

echo "$rows rows requested, $input_rows generated ($input_mb MB of chat JSONL), $cores cores, text-dedup $td_version"
echo
echo "| tool | what it does | time | peak RSS | rows kept |"
echo "|---|---|---:|---:|---:|"
echo "| text-dedup simhash | 64-bit SimHash of 3-grams, 3 bits, 4 buckets | $sim_s s | $sim_mb MiB | $sim_kept |"
echo "| text-dedup exact_hash | md5 of the text | $ex_s s | $ex_mb MiB | $ex_kept |"
echo "| idx ingest | exact + verified near-duplicates, PII, tokens, splits, redb + full-text index | $idx_s s | $idx_mb MiB | $idx_kept ($idx_unique exact-unique) |"
echo
python3 -c "import sys; s, e, i = map(float, sys.argv[1:]); print(f'idx ingest takes {i/s:.2f}x the time of text-dedup simhash and {i/e:.2f}x that of text-dedup exact_hash')" "$sim_s" "$ex_s" "$idx_s"
