#!/usr/bin/env python3
"""Bench of the global job (docs/SCALE.md): generate N signature rows over 3 shards (Parquet, in
the contract of schema/signatures.md, with planted cross-shard near-duplicate groups and
exact copies), run scale/idx_global.py on them in local mode, and print the time and peak
memory (RSS of the job's process tree, sampled) of every stage.

    python3 scale/bench.py --rows 10000000 --work /path/with/space [--driver-memory 12g]
"""

import argparse
import json
import os
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))


def generate(spark, F, rows, folder, shards=3):
    """N rows: 20% in planted groups of 4 consecutive ids (so spread over the shards), each
    member differing from the group in ~5% of its sketch bins and one SimHash bit; every 50th
    row also copied exactly into the next shard; 1% in a holdout group."""
    ids = spark.range(rows)
    grouped = (F.floor(F.col("id") / 4) % 5) == 0
    group = F.when(grouped, F.col("id") - F.col("id") % 4).otherwise(F.col("id") + rows)
    hx = lambda c: F.lower(F.lpad(F.hex(c), 16, "0"))
    content = F.concat(hx(F.xxhash64("id", F.lit(1))), hx(F.xxhash64("id", F.lit(2))))
    sketch = F.expr(
        "transform(sequence(1, 128), i -> hash(if(grouped and i % 20 = id % 4, id, grp), i))")
    df = ids.withColumn("grouped", grouped).withColumn("grp", group).select(
        (F.col("id") % shards).alias("k"),
        F.col("id"),
        content.alias("content_hash"),
        F.expr("xxhash64(grp, 3) ^ if(grouped, shiftleft(1L, cast(id % 4 as int)), 0L)").alias("simhash"),
        sketch.alias("sketch"),
        F.when(F.col("id") % 100 == 7, F.array(F.concat(hx(F.col("id")), hx(F.col("id")))))
         .otherwise(F.array().cast("array<string>")).alias("holdout_groups"),
    )
    # Every 50th row also sits in the next shard (an exact copy).
    copies = df.where(F.col("id") % 50 == 1).withColumn("k", (F.col("k") + 1) % shards)
    df = df.unionByName(copies)
    out = df.select(
        F.concat(F.lit("shard-"), F.col("k")).alias("shard"),
        F.lit(1).cast("long").alias("generation"), F.lit(True).alias("snapshot"),
        F.lit(False).alias("deleted"), "content_hash", F.col("content_hash").alias("variant"),
        "simhash", F.lit(200).alias("words"), F.lit(300).cast("long").alias("tokens"), "sketch",
        F.concat(F.lit("family-"), (F.col("id") % 14).cast("string")).alias("family"),
        F.lit("chatml").alias("kind"), F.lit("sft").alias("phase"), F.lit("clean").alias("pii"),
        F.lit(True).alias("usable"), "holdout_groups", F.col("content_hash").alias("cluster"),
        F.col("content_hash").alias("collapse_group"), F.lit(1).cast("long").alias("places"),
        F.xxhash64("id").alias("record_digest"), F.lit("bench").alias("state_digest"), "k")
    settings = {"hamming": 6, "blocks": 4, "jaccard": 0.8, "min_words": 24,
                "salt": "idx-splits-v1",
                "fractions": {"train": 0.9, "val": 0.05, "test": 0.05},
                "holdout_fractions": {"train": 0.8, "val": 0.1, "test": 0.1},
                "sketch_bins": 128}
    for k in range(shards):
        shard = f"shard-{k}"
        path = os.path.join(folder, shard)
        out.where(F.col("k") == k).drop("k").write.mode("overwrite").parquet(
            os.path.join(path, "gen-000001.parquet"))
        with open(os.path.join(path, "shard.json"), "w") as f:
            json.dump({"format": "idx-signatures", "format_version": 1, "shard": shard,
                       "settings": settings,
                       "generations": [{"generation": 1, "file": "gen-000001.parquet",
                                        "sha256": "", "snapshot": True, "rows": 0,
                                        "deleted": 0, "state_digest": "bench"}]}, f)


def tree_rss(pid):
    """RSS in bytes of a process and its descendants."""
    total, todo = 0, [pid]
    children = {}
    for p in os.listdir("/proc"):
        if p.isdigit():
            try:
                with open(f"/proc/{p}/stat") as f:
                    parent = int(f.read().rsplit(")", 1)[1].split()[1])
                children.setdefault(parent, []).append(int(p))
            except OSError:
                pass
    while todo:
        p = todo.pop()
        todo += children.get(p, [])
        try:
            with open(f"/proc/{p}/statm") as f:
                total += int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        except OSError:
            pass
    return total


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rows", type=int, default=1_000_000)
    p.add_argument("--work", required=True, help="folder for the signatures and the job's output")
    p.add_argument("--driver-memory", default="12g")
    p.add_argument("--skip-generate", action="store_true")
    args = p.parse_args()
    sig = os.path.join(args.work, "signatures")
    if not args.skip_generate:
        from pyspark.sql import SparkSession
        from pyspark.sql import functions as F
        spark = SparkSession.builder.master("local[*]").config("spark.ui.enabled", "false") \
            .config("spark.driver.memory", args.driver_memory).getOrCreate()
        t = time.time()
        generate(spark, F, args.rows, sig)
        spark.stop()
        print(f"bench: generated {args.rows} rows in {time.time() - t:.1f} s", file=sys.stderr)
    env = dict(os.environ, IDX_SPARK_DRIVER_MEMORY=args.driver_memory)
    job = subprocess.Popen([sys.executable, os.path.join(HERE, "idx_global.py"), sig,
                            os.path.join(args.work, "job")], env=env,
                           stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    peak = {"now": 0, "stage": 0, "all": 0}
    done = threading.Event()

    def sample():
        while not done.is_set():
            r = tree_rss(job.pid)
            peak["stage"] = max(peak["stage"], r)
            peak["all"] = max(peak["all"], r)
            time.sleep(0.5)

    threading.Thread(target=sample, daemon=True).start()
    start = time.time()
    last = start
    stages = []
    for line in job.stderr:
        if line.startswith("idx_global: "):
            now = time.time()
            name = line.split(":")[1].strip()
            stages.append({"stage": name, "wall_s": round(now - last, 1),
                           "peak_rss_mib": round(peak["stage"] / 2**20)})
            print(f"bench: {line.strip()} (peak RSS {peak['stage'] / 2**20:.0f} MiB)", file=sys.stderr)
            peak["stage"] = 0
            last = now
        elif "Exception" in line or "Error" in line:
            print(line.rstrip(), file=sys.stderr)
    job.wait()
    done.set()
    total = time.time() - start
    print(json.dumps({"rows": args.rows, "exit": job.returncode, "seconds": round(total, 1),
                      "peak_rss_mib": round(peak["all"] / 2**20), "stages": stages}, indent=2))
    sys.exit(job.returncode)


if __name__ == "__main__":
    main()
