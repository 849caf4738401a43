#!/usr/bin/env bash
# Train two steps of a tiny, locally built model on every stage file of an idx export, with the
# trainers people use: TRL (and `datasets`), axolotl and LLaMA-Factory. Not part of CI (it
# installs torch and three trainers, ~15 GB); its output goes in the closing note of changes to
# the trainer files.
#
#   scripts/trainer-check.sh [WORK_DIR]        (default: target/trainer-check)
#
# What it does:
#   1. Three virtual environments under $VENV_DIR (default WORK_DIR/venvs): `base` (torch,
#      transformers, datasets, TRL), `axolotl` and `llamafactory`, each layered on `base` so torch
#      is installed once where the trainer's pins allow. Existing environments are reused.
#   2. Ingests examples/data and exports it four times, once per preference algorithm phase C
#      can pick (ORPO — the shipped default —, DPO, SimPO, KTO), with configs/curriculum.toml
#      changed only in that stage's `algorithm`; and exports the real public conversations in
#      ../shared/data/real (or $REAL_DATA) when they are there.
#   3. Builds a tiny randomly initialised Llama and a BPE tokenizer with a ChatML template from
#      the exports' own text (no download).
#   4. Runs scripts/trainer_check.py: `datasets` loads every JSONL file in small chunks and the
#      export through its dataset card; TRL, axolotl and LLaMA-Factory train 2 steps on every
#      stage (the first export: every stage; the others: the preference stage), evaluating on
#      the val file where there is one.
# Exits non-zero when any check fails; every check prints one PASS/FAIL line.
set -uo pipefail

cd "$(dirname "$0")/.."
ROOT=$(pwd)
WORK=${1:-target/trainer-check}
mkdir -p "$WORK"
WORK=$(cd "$WORK" && pwd)
VENV_DIR=${VENV_DIR:-$WORK/venvs}
LOG_DIR=$WORK/logs
export LOG_DIR
mkdir -p "$VENV_DIR" "$LOG_DIR"

venv() { # NAME PACKAGES...
    local name=$1
    shift
    if [ ! -x "$VENV_DIR/$name/bin/python" ]; then
        echo "== installing $name: $*"
        python3 -m venv "$VENV_DIR/$name" || return 1
        if [ "$name" != base ]; then
            "$VENV_DIR/base/bin/python" -c 'import site; print(site.getsitepackages()[0])' \
                >"$("$VENV_DIR/$name/bin/python" -c 'import site; print(site.getsitepackages()[0])')/_base.pth"
        fi
        "$VENV_DIR/$name/bin/pip" install -q "$@" >"$LOG_DIR/pip-$name.log" 2>&1 ||
            { echo "pip install for $name failed: $LOG_DIR/pip-$name.log"; return 1; }
    fi
}
venv base torch transformers datasets trl accelerate pyyaml || exit 1
venv axolotl axolotl || exit 1
venv llamafactory llamafactory || exit 1
# torchaudio (which LLaMA-Factory imports) trails torch's releases: give LLaMA-Factory the torch
# its torchaudio was built for, or both refuse to load.
versions=$("$VENV_DIR/llamafactory/bin/python" -c 'import importlib.metadata as m; print(m.version("torch").split("+")[0], m.version("torchaudio").split("+")[0])')
read -r torch_v audio_v <<<"$versions"
if [ "${torch_v%.*}" != "${audio_v%.*}" ]; then
    echo "== llamafactory: torch $torch_v with torchaudio $audio_v: installing torch ${audio_v%.*}"
    "$VENV_DIR/llamafactory/bin/pip" install -q "torch==${audio_v%.*}.*" "torchaudio==$audio_v" torchvision \
        >"$LOG_DIR/pip-llamafactory-torch.log" 2>&1 || { echo "see $LOG_DIR/pip-llamafactory-torch.log"; exit 1; }
fi
for v in base axolotl llamafactory; do
    "$VENV_DIR/$v/bin/python" - <<'EOF' | sed "s/^/$v: /"
import importlib.metadata as m
found = []
for p in ["torch", "transformers", "datasets", "trl", "axolotl", "llamafactory"]:
    try:
        found.append(f"{p} {m.version(p)}")
    except m.PackageNotFoundError:
        pass
print(", ".join(found))
EOF
done

echo "== building idx and exporting examples/data"
cargo build --release -q || exit 1
IDX=$ROOT/target/release/idx
DATA=$WORK/index
rm -rf "$DATA"
"$IDX" --data-dir "$DATA" ingest examples/data >/dev/null || exit 1
EXPORTS=()
for algo in orpo dpo simpo kto; do
    sed "s/^algorithm = \"orpo\"/algorithm = \"$algo\"/" configs/curriculum.toml >"$WORK/curriculum-$algo.toml"
    grep -q "^algorithm = \"$algo\"" "$WORK/curriculum-$algo.toml" || { echo "no algorithm line in configs/curriculum.toml"; exit 1; }
    rm -rf "$WORK/export-$algo"
    "$IDX" --data-dir "$DATA" --curriculum "$WORK/curriculum-$algo.toml" export \
        --out "$WORK/export-$algo" --allow-failing-gates >/dev/null || exit 1
    EXPORTS+=("$WORK/export-$algo")
done

# Real public conversations (counsel-chat, ESConv), when the shared data is beside the checkout:
# larger stages, and val files to evaluate on.
REAL=${REAL_DATA:-$ROOT/../shared/data/real}
if [ -d "$REAL" ]; then
    rm -rf "$WORK/index-real" "$WORK/export-real"
    "$IDX" --data-dir "$WORK/index-real" ingest "$REAL" >/dev/null || exit 1
    "$IDX" --data-dir "$WORK/index-real" export --out "$WORK/export-real" --allow-failing-gates >/dev/null || exit 1
    EXPORTS+=("$WORK/export-real")
fi

MODEL=$WORK/tiny-model
"$VENV_DIR/base/bin/python" scripts/trainer_check.py model "$MODEL" "${EXPORTS[@]}" || exit 1

failed=0
check() { # VENV COMMAND EXPORT [ONLY_PHASE]
    echo "== $2 on ${3#"$WORK"/}${4:+ (phase $4)}"
    ONLY_PHASE=${4:-} "$VENV_DIR/$1/bin/python" scripts/trainer_check.py "$2" "$3" "$MODEL" || failed=1
}
for e in "${EXPORTS[@]}"; do
    # Every stage of the first export and of the real data; the preference stage of the others.
    only=preference
    case "$e" in "${EXPORTS[0]}" | */export-real) only= ;; esac
    [ -z "$only" ] && check base datasets "$e"
    check base trl "$e" $only
    PATH="$VENV_DIR/axolotl/bin:$PATH" check axolotl axolotl "$e" $only
    PATH="$VENV_DIR/llamafactory/bin:$PATH" check llamafactory llamafactory "$e" $only
done
echo "== logs in $LOG_DIR"
if [ $failed = 0 ]; then echo "trainer check: every check passed"; else echo "trainer check: FAILED"; fi
exit $failed
