#!/usr/bin/env python3
"""Hold an idx export to the trainers that read it: `datasets`, TRL, axolotl, LLaMA-Factory.

Run by scripts/trainer-check.sh, once per virtual environment (each trainer pins its own
versions), with one of these commands:

  model OUT EXPORT...        build a tiny randomly initialised Llama and a BPE tokenizer trained
                             on the exports' text, with a ChatML chat template (no downloads)
  datasets EXPORT            load every JSONL file in small chunks, and the export folder through
                             its dataset card
  trl EXPORT MODEL           2 training steps per stage file: SFTTrainer (text; messages with
                             assistant-only loss), DPOTrainer, ORPOTrainer, CPOTrainer (SimPO),
                             KTOTrainer, each evaluating on the stage's val file when it has one
  axolotl EXPORT MODEL       `axolotl train` on every stage config, as shipped but for the model,
                             the step count and CPU settings (the overridden keys are printed)
  llamafactory EXPORT MODEL  `llamafactory-cli train` on every stage through dataset_info.json

Each command prints one line per check, `PASS` or `FAIL`, and exits non-zero when one failed.
"""

import atexit
import json
import os
import shutil
import subprocess
import sys
import tempfile
import traceback
from pathlib import Path

CHATML = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' }}"
    "{% if message['role'] == 'assistant' %}"
    "{% generation %}{{ message['content'] + '<|im_end|>' }}{% endgeneration %}{{ '\\n' }}"
    "{% else %}{{ message['content'] + '<|im_end|>' + '\\n' }}{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)

RESULTS = []


def report(what, ok, detail=""):
    RESULTS.append(ok)
    line = f"{'PASS' if ok else 'FAIL'}  {what}"
    if detail:
        line += f"  — {detail}"
    print(line, flush=True)


def stages(export):
    cur = json.loads((Path(export) / "curriculum" / "curriculum.json").read_text())
    return cur["stages"]


def jsonl_files(export):
    return sorted(p for p in Path(export).rglob("*.jsonl"))


def texts(export):
    for path in jsonl_files(export):
        for line in path.read_text().splitlines():
            v = json.loads(line)
            for m in v.get("messages") or []:
                if isinstance(m, dict):
                    yield m["content"]
            if isinstance(v.get("text"), str):
                yield v["text"]


# ---------------------------------------------------------------------------- model


def build_model(out, exports):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    specials = ["<|pad|>", "<|begin|>", "<|im_start|>", "<|im_end|>", "<|unk|>"]
    tok = Tokenizer(models.BPE(unk_token="<|unk|>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=4000,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    corpus = [t for e in exports for t in texts(e)] + ["user assistant system\n"]
    tok.train_from_iterator(corpus, trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<|begin|>",
        eos_token="<|im_end|>",
        pad_token="<|pad|>",
        unk_token="<|unk|>",
        additional_special_tokens=["<|im_start|>"],
    )
    fast.chat_template = CHATML
    fast.model_max_length = 8192
    fast.save_pretrained(out)
    config = LlamaConfig(
        vocab_size=len(fast),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=8192,
        bos_token_id=fast.bos_token_id,
        eos_token_id=fast.eos_token_id,
        pad_token_id=fast.pad_token_id,
        tie_word_embeddings=True,
    )
    LlamaForCausalLM(config).save_pretrained(out)
    print(f"model: {out} (vocab {len(fast)}, {sum(1 for _ in corpus)} texts)")


# ---------------------------------------------------------------------------- datasets


def check_datasets(export):
    import datasets

    for path in jsonl_files(export):
        rel = path.relative_to(export)
        try:
            ds = datasets.load_dataset(
                "json", data_files=str(path), split="train", chunksize=4096
            )
            lines = sum(1 for _ in path.open())
            assert len(ds) == lines, f"{len(ds)} rows of {lines} lines"
            report(f"datasets json {rel}", True, f"{len(ds)} rows")
        except Exception as e:  # noqa: BLE001 - every failure is reported
            report(f"datasets json {rel}", False, f"{type(e).__name__}: {e}")
    try:
        dd = datasets.load_dataset(str(export))
        report(
            "datasets load_dataset(EXPORT) via README.md configs",
            True,
            ", ".join(f"{k}: {len(v)}" for k, v in dd.items()),
        )
    except Exception as e:  # noqa: BLE001
        report("datasets load_dataset(EXPORT)", False, f"{type(e).__name__}: {e}")


# ---------------------------------------------------------------------------- TRL


def trl_run(export, model_dir, stage):
    import datasets
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(0)
    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir)

    def load(key):
        f = stage.get(key)
        if not f:
            return None
        ds = datasets.load_dataset(
            "json", data_files=str(Path(export) / f["path"]), split="train"
        )
        return ds.select(range(min(len(ds), 8))) if key == "val_file" else ds

    train, val = load("train_file"), load("val_file")
    out = tempfile.mkdtemp(prefix="trl-")
    common = dict(
        output_dir=out,
        max_steps=2,
        per_device_train_batch_size=2,
        per_device_eval_batch_size=2,
        report_to=[],
        use_cpu=True,
        save_strategy="no",
        logging_steps=1,
        eval_strategy="steps" if val is not None else "no",
        eval_steps=2,
    )
    fmt = stage["format"]
    algo = (stage.get("algorithm") or {}).get("algorithm")
    if fmt in ("text", "messages"):
        from trl import SFTConfig, SFTTrainer

        extra = {"dataset_text_field": "text"} if fmt == "text" else {"assistant_only_loss": True}
        args = SFTConfig(max_length=1024, **extra, **common)
        trainer = SFTTrainer(model=model, args=args, train_dataset=train, eval_dataset=val, processing_class=tok)
        name = "SFTTrainer" + (" (assistant-only loss)" if fmt == "messages" else "")
    elif algo == "kto":
        from trl import KTOConfig, KTOTrainer

        args = KTOConfig(max_length=1024, **common)
        trainer = KTOTrainer(model=model, args=args, train_dataset=train, eval_dataset=val, processing_class=tok)
        name = "KTOTrainer"
    elif algo == "orpo":
        from trl.experimental.orpo import ORPOConfig, ORPOTrainer

        args = ORPOConfig(max_length=1024, **common)
        trainer = ORPOTrainer(model=model, args=args, train_dataset=train, eval_dataset=val, processing_class=tok)
        name = "ORPOTrainer"
    elif algo == "simpo":
        from trl.experimental.cpo import CPOConfig, CPOTrainer

        args = CPOConfig(loss_type="simpo", cpo_alpha=0.0, max_length=1024, **common)
        trainer = CPOTrainer(model=model, args=args, train_dataset=train, eval_dataset=val, processing_class=tok)
        name = "CPOTrainer (SimPO)"
    else:
        from trl import DPOConfig, DPOTrainer

        args = DPOConfig(max_length=1024, **common)
        trainer = DPOTrainer(model=model, args=args, train_dataset=train, eval_dataset=val, processing_class=tok)
        name = "DPOTrainer"
    result = trainer.train()
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    evals = [h["eval_loss"] for h in trainer.state.log_history if "eval_loss" in h]
    assert result.global_step == 2, f"{result.global_step} steps"
    assert losses and all(l == l for l in losses), f"losses {losses}"  # not NaN
    detail = f"{name}, {len(train)} train rows, loss {losses[-1]:.3f}"
    if evals:
        detail += f", eval on {len(val)} val rows: {evals[-1]:.3f}"
    return detail


def check_trl(export, model_dir, only):
    for stage in stages(export):
        if not stage.get("train_file") or (only and stage["phase"] != only):
            continue
        what = f"trl {stage['train_file']['path']}"
        try:
            report(what, True, trl_run(export, model_dir, stage))
        except Exception as e:  # noqa: BLE001
            traceback.print_exc()
            report(what, False, f"{type(e).__name__}: {e}")


# ---------------------------------------------------------------------------- axolotl


def run(cmd, cwd, log):
    env = {**os.environ, "WANDB_DISABLED": "true", "AXOLOTL_DO_NOT_TRACK": "1", "DO_NOT_TRACK": "1",
           "HF_HUB_OFFLINE": "1", "HF_DATASETS_DISABLE_PROGRESS_BARS": "1"}
    with open(log, "w") as f:
        p = subprocess.run(cmd, cwd=cwd, stdout=f, stderr=subprocess.STDOUT, env=env)
    return p.returncode, Path(log).read_text()


def first_error(text):
    """The exception a log ends with (a pydantic error with its message line), not the
    launcher's CalledProcessError that wraps it."""
    lines = text.splitlines()
    for i, line in enumerate(lines):
        word = line.split(":", 1)[0].strip()
        if (word.endswith("Error") or word.endswith("Exception")) and " " not in word \
                and "CalledProcessError" not in word and not line.startswith(" "):
            more = lines[i + 1].strip() if i + 1 < len(lines) and "validation error" in line else ""
            return (line.strip() + (" " + more if more else ""))[:400]
    return (lines[-1] if lines else "").strip()[:400]


def log_name(export, stem, trainer):
    return Path(os.environ["LOG_DIR"]) / f"{Path(export).name}.{stem}.{trainer}.log"


def check_axolotl(export, model_dir, only):
    import yaml

    for stage in stages(export):
        cfg_path = stage.get("axolotl_config")
        if not cfg_path or (only and stage["phase"] != only):
            continue
        text = (Path(export) / cfg_path).read_text()
        cfg = yaml.safe_load(text)  # one document, or this raises
        out = tempfile.mkdtemp(prefix="axolotl-")
        overrides = {
            "base_model": str(model_dir),
            "max_steps": 2,
            "output_dir": out,
            "dataset_prepared_path": str(Path(out) / "prepared"),
            "bf16": False,
            "fp16": False,
            "tf32": False,
            "save_strategy": "no",
            "micro_batch_size": 2 if cfg.get("rl") == "kto" else cfg.get("micro_batch_size"),
            "special_tokens": {"pad_token": "<|pad|>", "eos_token": "<|im_end|>"},
        }
        if cfg.get("test_datasets"):
            overrides["eval_steps"] = 2
        cfg.update(overrides)
        run_cfg = Path(out) / "config.yaml"
        run_cfg.write_text(yaml.safe_dump(cfg, sort_keys=False))
        log = log_name(export, Path(cfg_path).stem, "axolotl")
        rc, text = run(["axolotl", "train", str(run_cfg)], cwd=export, log=log)
        ok = rc == 0 and "train_runtime" in text
        report(
            f"axolotl {cfg_path} (rl: {cfg.get('rl') or '-'})",
            ok,
            "2 steps" if ok else f"rc {rc}: {first_error(text)} (log {log})",
        )


# ---------------------------------------------------------------------------- LLaMA-Factory


def check_llamafactory(export, model_dir, only):
    import yaml

    info = json.loads((Path(export) / "curriculum" / "dataset_info.json").read_text())
    for stage in stages(export):
        if not stage.get("train_file") or (only and stage["phase"] != only):
            continue
        algo = (stage.get("algorithm") or {}).get("algorithm")
        lf_stage = {"text": "pt", "messages": "sft"}.get(stage["format"]) or ("kto" if algo == "kto" else "dpo")
        out = tempfile.mkdtemp(prefix="lf-")
        cfg = {
            "model_name_or_path": str(model_dir),
            "stage": lf_stage,
            "do_train": True,
            "finetuning_type": "full",
            "dataset_dir": str(Path(export) / "curriculum"),
            "dataset": f"{stage['id']}_train",
            "template": "chatml",
            "cutoff_len": 1024,
            "max_steps": 2,
            "per_device_train_batch_size": 2,
            "output_dir": out,
            "overwrite_output_dir": True,
            "report_to": "none",
            "save_strategy": "no",
            "logging_steps": 1,
        }
        if lf_stage == "pt":
            # Pretraining packs the text into blocks of cutoff_len tokens: small blocks, so a
            # small export still gives a few.
            cfg["cutoff_len"] = 128
        if f"{stage['id']}_val" in info:
            cfg.update({"eval_dataset": f"{stage['id']}_val", "eval_strategy": "steps", "eval_steps": 2, "per_device_eval_batch_size": 2})
        if lf_stage == "dpo":
            cfg["pref_loss"] = {"orpo": "orpo", "simpo": "simpo"}.get(algo, "sigmoid")
        run_cfg = Path(out) / "train.yaml"
        run_cfg.write_text(yaml.safe_dump(cfg, sort_keys=False))
        log = log_name(export, f"{stage['order']:02d}_{stage['id']}", "llamafactory")
        rc, text = run(["llamafactory-cli", "train", str(run_cfg)], cwd=export, log=log)
        ok = rc == 0 and "train_loss" in text
        dropped = [l for l in text.splitlines() if "Skipping this abnormal example" in l]
        if dropped:
            ok = False
        detail = f"stage {lf_stage}" + (f", pref_loss {cfg['pref_loss']}" if "pref_loss" in cfg else "")
        if not ok:
            detail += f": rc {rc}, {len(dropped)} rows skipped as abnormal: {first_error(text)} (log {log})"
        report(f"llamafactory {stage['id']}_train ({stage['format']})", ok, detail)


def main(argv):
    if len(argv) < 2:
        print(__doc__)
        return 2
    cmd = argv[1]
    only = os.environ.get("ONLY_PHASE") or None
    os.environ.setdefault("LOG_DIR", tempfile.mkdtemp(prefix="trainer-logs-"))
    # The trainers' output folders (checkpoints of a few MB each) go under one scratch folder,
    # removed at exit; the logs in LOG_DIR stay for reading.
    scratch = tempfile.mkdtemp(prefix="idx-trainer-check-")
    atexit.register(shutil.rmtree, scratch, True)
    tempfile.tempdir = scratch
    if cmd == "model":
        build_model(argv[2], argv[3:])
        return 0
    if cmd == "datasets":
        check_datasets(Path(argv[2]).resolve())
    elif cmd == "trl":
        check_trl(Path(argv[2]).resolve(), Path(argv[3]).resolve(), only)
    elif cmd == "axolotl":
        check_axolotl(Path(argv[2]).resolve(), Path(argv[3]).resolve(), only)
    elif cmd == "llamafactory":
        check_llamafactory(Path(argv[2]).resolve(), Path(argv[3]).resolve(), only)
    else:
        print(__doc__)
        return 2
    return 0 if all(RESULTS) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
