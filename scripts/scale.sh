#!/usr/bin/env bash
# How idx grows with the index: for each row count given (default 100000 300000 1000000),
# generate that many short multi-turn rows (the query bench's `short` corpus: 1,000 rows per
# file), then time `idx ingest`, `idx verify` and `idx export` of them through the release
# binary, with peak resident memory (GNU time) and the index's size on disk
# (`idx status --storage`). Prints one Markdown table row per size (docs/PERFORMANCE.md).
# Work goes to SCALE_DIR (default /tmp/idx-scale); each size's data is generated once and kept.
# IDX_BIN=path measures that binary instead of building the release one.
set -euo pipefail
cd "$(dirname "$0")/.."
sizes=("$@")
[[ ${#sizes[@]} -gt 0 ]] || sizes=(100000 300000 1000000)
work=${SCALE_DIR:-/tmp/idx-scale}
mkdir -p "$work"
bin=${IDX_BIN:-}
if [[ -z $bin ]]; then
  cargo build --release --locked --quiet
  bin=$PWD/target/release/idx
fi
[[ -x /usr/bin/time ]] || { echo "scale.sh needs GNU time (/usr/bin/time)" >&2; exit 1; }

# seconds and peak RSS (MiB) of one command, its output discarded (a failing gate is expected:
# the corpus is one family, so coverage fails; the work is done all the same)
measure() {
  local log; log=$(mktemp)
  /usr/bin/time -f '%e %M' -o "$log" "$@" >/dev/null 2>&1 || true
  tail -n 1 "$log" | awk '{printf "%.1f s | %.0f MiB", $1, $2/1024}'
  rm -f "$log"
}

echo "| rows | input | ingest (time, peak RSS) | index on disk | verify | export |"
echo "|---:|---:|---|---|---|---|"
for rows in "${sizes[@]}"; do
  dir=$work/$rows
  if [[ ! -d $dir/data/data ]]; then
    # The query bench's corpus generator, stopped once the corpus is written.
    IDX_BENCH_GENERATE_ONLY=1 IDX_BENCH_ROWS=$rows IDX_BENCH_INDEX=$dir/data \
      cargo bench --locked --bench query >/dev/null 2>&1
  fi
  rm -rf "$dir/idx" "$dir/out"
  input=$(du -sm "$dir/data/data" | cut -f1)
  ingest=$(measure "$bin" --data-dir "$dir/idx" ingest "$dir/data/data")
  disk=$("$bin" --data-dir "$dir/idx" --json status --storage | python3 -c 'import json,sys; s=json.load(sys.stdin)["storage"]; t=s["redb_bytes"]+s["fulltext_bytes"]; r=t/s["input_bytes"]; print(f"{t/1e6:.0f} MB ({r:.2f}x)")')
  verify=$(measure "$bin" --data-dir "$dir/idx" verify)
  export=$(measure "$bin" --data-dir "$dir/idx" export --out "$dir/out" --allow-failing-gates)
  echo "| $rows | $input MB | $ingest | $disk | $verify | $export |"
done
