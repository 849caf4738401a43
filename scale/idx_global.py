#!/usr/bin/env python3
"""The global step of a sharded idx deployment (docs/SCALE.md), on Apache Spark.

Reads every shard's signatures (`idx export signatures`, contract in schema/signatures.md),
joins them, and writes the assignment table each shard imports (`idx import assignments`):

1. each shard's effective rows: its latest snapshot generation plus later changes;
2. exact duplicates across shards: rows are nodes keyed by content hash, so the same hash in
   two shards is one node;
3. near-duplicate candidates across shards: band keys of the MinHash sketches (25 bands of 5
   bins), kept when the SimHashes are within the shards' Hamming distance and the estimated
   Jaccard similarity (share of equal bins) reaches their threshold. Pairs inside one shard
   are that shard's business: it decided them exactly, and its own clusters and
   near-duplicate groups come in as edges;
4. connected components by alternating large-star / small-star contraction (Kiveris et al.,
   SoCC 2014), in DataFrames only: clusters over rows, holdout groups and pairs; and
   near-duplicate groups over usable rows and the pairs of one training phase;
5. for every row in a cluster that spans shards: the cluster id (its smallest content hash),
   whether it holds a holdout group, whether this shard's copy is the one that goes out (the
   smallest variant hash, then the smallest shard id) and the row standing for its
   near-duplicate group (most tokens, then the smallest content hash).

Runs in local mode with `python3 scale/idx_global.py SIGNATURES OUT` (pip install pyspark and a
JDK), or on a cluster with `spark-submit scale/idx_global.py SIGNATURES OUT`; SIGNATURES and
OUT may be any path Spark reads (s3a://… on a cluster with the hadoop-aws jars).
"""

import argparse
import json
import os
import sys
import time

BANDS = 25
BAND_ROWS = 5
FORMAT = "idx-assignments"


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("signatures", help="folder holding SHARD/shard.json and its generations")
    p.add_argument("out", help="folder to write: assignments/ (Parquet parts and _idx.json), job.json")
    p.add_argument("--pairs", action="store_true",
                   help="also write the confirmed cross-shard pairs (pairs/) for inspection")
    p.add_argument("--partitions", type=int, default=0,
                   help="shuffle partitions (default: Spark's, or 4x the cores in local mode)")
    return p.parse_args(argv)


def read_shards(folder):
    """Every shard's shard.json, checked to agree on the settings; the generation files each
    shard's effective state is made of."""
    shards = {}
    for name in sorted(os.listdir(folder)):
        path = os.path.join(folder, name, "shard.json")
        if not os.path.isfile(path):
            continue
        with open(path) as f:
            info = json.load(f)
        if info.get("format") != "idx-signatures" or info.get("format_version") != 2:
            sys.exit(f"{path}: not idx signatures of format version 2")
        shards[info["shard"]] = info
    if not shards:
        sys.exit(f"{folder}: no SHARD/shard.json found (run `idx export signatures` first)")
    settings = {json.dumps(s["settings"], sort_keys=True) for s in shards.values()}
    if len(settings) != 1:
        sys.exit("the shards were built with different near-duplicate settings: "
                 + ", ".join(f"{k}: {v['settings']}" for k, v in shards.items()))
    files, digests = [], {}
    for shard, info in shards.items():
        gens = info["generations"]
        start = max(i for i, g in enumerate(gens) if g["snapshot"])
        files += [os.path.join(folder, shard, g["file"]) for g in gens[start:]]
        digests[shard] = gens[-1]["state_digest"]
    return next(iter(shards.values()))["settings"], files, digests


def connected_components(spark, edges, F, Window):
    """Connected components of an undirected graph given as a DataFrame of (u, v) string
    pairs, by alternating large-star and small-star rounds until nothing changes. Returns
    (node, label) with label the smallest node of the node's component; nodes without edges
    are absent."""
    e = edges.where(F.col("u") != F.col("v")).select(
        F.least("u", "v").alias("u"), F.greatest("u", "v").alias("v")).distinct()
    rounds = 0
    while True:
        rounds += 1
        # Large star: every node links its larger neighbours to its smallest neighbour (or
        # itself).
        both = e.union(e.select(F.col("v").alias("u"), F.col("u").alias("v")))
        m = both.groupBy("u").agg(F.min("v").alias("m")).select(
            "u", F.least("u", "m").alias("m"))
        large = both.join(m, "u").where(F.col("v") > F.col("u")).select(
            F.col("v").alias("u"), F.col("m").alias("v")).distinct()
        # Small star: every node links itself and its smaller neighbours to the smallest.
        oriented = large.select(F.greatest("u", "v").alias("u"), F.least("u", "v").alias("v")) \
            .where(F.col("u") != F.col("v")).distinct()
        m2 = oriented.groupBy("u").agg(F.min("v").alias("m"))
        small = oriented.join(m2, "u").select(F.col("v").alias("u"), F.col("m").alias("v")) \
            .union(m2.select("u", F.col("m").alias("v"))) \
            .where(F.col("u") != F.col("v")).select(
                F.greatest("u", "v").alias("u"), F.least("u", "v").alias("v")).distinct()
        small = small.localCheckpoint()
        changed = small.exceptAll(e).limit(1).count() + e.exceptAll(small).limit(1).count()
        e = small
        if changed == 0:
            break
    # Converged: a star around each component's smallest node; (u, v) with v < u the centre.
    labels = e.select(F.col("u").alias("node"), F.col("v").alias("label"))
    centres = e.select(F.col("v").alias("node"), F.col("v").alias("label"))
    out = labels.union(centres).groupBy("node").agg(F.min("label").alias("label"))
    return out, rounds


def main(argv):
    args = parse_args(argv)
    from pyspark import SparkConf
    from pyspark.sql import SparkSession, Window
    from pyspark.sql import functions as F

    settings, files, digests = read_shards(args.signatures)
    builder = SparkSession.builder.appName("idx-global")
    if not SparkConf().contains("spark.master"):
        builder = builder.master(os.environ.get("IDX_SPARK_MASTER", "local[*]"))
        builder = builder.config("spark.ui.enabled", "false")
        # Local mode runs in this process's JVM: its heap is the driver's.
        builder = builder.config("spark.driver.memory",
                                 os.environ.get("IDX_SPARK_DRIVER_MEMORY", "2g"))
    if args.partitions:
        builder = builder.config("spark.sql.shuffle.partitions", str(args.partitions))
    elif not SparkConf().contains("spark.master"):
        builder = builder.config("spark.sql.shuffle.partitions", str(4 * (os.cpu_count() or 1)))
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("WARN")
    stages = {}

    def timed(name, df):
        t = time.time()
        df = df.localCheckpoint()
        n = df.count()
        stages[name] = {"seconds": round(time.time() - t, 3), "rows": n}
        print(f"idx_global: {name}: {n} rows in {stages[name]['seconds']} s", file=sys.stderr)
        return df

    hamming, jaccard, bins = settings["hamming"], settings["jaccard"], settings["sketch_bins"]
    min_words = settings["min_words"]
    if BANDS * BAND_ROWS > bins:
        sys.exit(f"sketches of {bins} bins are too short for {BANDS} bands of {BAND_ROWS}")

    # 1. Effective rows of every shard.
    raw = spark.read.parquet(*files)
    latest = Window.partitionBy("shard", "content_hash").orderBy(F.col("generation").desc())
    rows = timed("rows", raw.withColumn("_n", F.row_number().over(latest))
                 .where((F.col("_n") == 1) & ~F.col("deleted")).drop("_n"))

    # 3. Cross-shard candidate pairs by band keys, confirmed on SimHash and the sketch.
    fp = rows.where(F.col("sketch").isNotNull() & (F.col("words") >= min_words)).select(
        "shard", "content_hash", "simhash", "sketch", "usable", "phase")
    banded = fp.select("shard", "content_hash", F.explode(F.expr(
        f"transform(sequence(0, {BANDS - 1}), b -> xxhash64(b, slice(sketch, b * {BAND_ROWS} + 1, {BAND_ROWS})))"
    )).alias("band"))
    a, b = banded.alias("a"), banded.alias("b")
    candidates = timed("candidate_pairs", a.join(b, "band").where(
        (F.col("a.shard") < F.col("b.shard")) & (F.col("a.content_hash") != F.col("b.content_hash"))
    ).select(F.col("a.shard").alias("sa"), F.col("a.content_hash").alias("ha"),
             F.col("b.shard").alias("sb"), F.col("b.content_hash").alias("hb")).distinct())
    fa = fp.select(*[F.col(c).alias(c + "_a") for c in fp.columns])
    fb = fp.select(*[F.col(c).alias(c + "_b") for c in fp.columns])
    judged = candidates \
        .join(fa, (F.col("sa") == F.col("shard_a")) & (F.col("ha") == F.col("content_hash_a"))) \
        .join(fb, (F.col("sb") == F.col("shard_b")) & (F.col("hb") == F.col("content_hash_b"))) \
        .withColumn("hamming", F.bit_count(F.col("simhash_a").bitwiseXOR(F.col("simhash_b")))) \
        .where(F.col("hamming") <= hamming) \
        .withColumn("similarity", F.expr(
            f"aggregate(zip_with(sketch_a, sketch_b, (x, y) -> if(x = y, 1, 0)), 0, (acc, x) -> acc + x) / {bins}")) \
        .where(F.col("similarity") >= jaccard)
    pairs = timed("confirmed_pairs", judged.select(
        "sa", "ha", "sb", "hb", "hamming", "similarity",
        (F.col("usable_a") & F.col("usable_b") & (F.col("phase_a") == F.col("phase_b"))).alias("collapsible")))

    # 4a. Clusters: rows (r…), holdout groups (g…); edges from local clusters, holdout groups
    # and the confirmed pairs.
    r = lambda c: F.concat(F.lit("r"), c)
    cluster_edges = rows.select(r(F.col("content_hash")).alias("u"), r(F.col("cluster")).alias("v")) \
        .union(rows.select(r(F.col("content_hash")).alias("u"),
                           F.explode("holdout_groups").alias("g")).select("u", F.concat(F.lit("g"), F.col("g")).alias("v"))) \
        .union(pairs.select(r(F.col("ha")).alias("u"), r(F.col("hb")).alias("v")))
    t = time.time()
    components, rounds = connected_components(spark, cluster_edges, F, Window)
    components = components.where(F.col("node").startswith("r")).select(
        F.expr("substring(node, 2)").alias("content_hash"), "label")
    components = timed("clusters", components)
    stages["clusters"]["rounds"] = rounds
    stages["clusters"]["seconds"] = round(time.time() - t, 3)

    # Rows of clusters spanning shards, with the cluster id and holdout flag.
    # A row with no edge is a cluster of its own (still spanning when two shards hold it).
    placed = rows.join(components, "content_hash", "left").withColumn(
        "label", F.coalesce(F.col("label"), F.concat(F.lit("r"), F.col("content_hash"))))
    per_cluster = placed.groupBy("label").agg(
        F.countDistinct("shard").alias("shards"),
        F.min("content_hash").alias("cluster_id"),
        F.max(F.size("holdout_groups") > 0).alias("holdout"))
    spanning = timed("spanning_rows", placed.join(per_cluster.where(F.col("shards") > 1), "label"))

    # Owner of each content hash: the copy with the smallest variant hash, then shard id.
    by_hash = Window.partitionBy("content_hash").orderBy("variant", "shard")
    owned = spanning.withColumn("owner", F.row_number().over(by_hash) == 1)

    # 4b. Near-duplicate groups over usable rows: local groups and collapsible pairs.
    usable = owned.where(F.col("usable"))
    group_edges = usable.select(F.col("content_hash").alias("u"), F.col("collapse_group").alias("v")) \
        .union(pairs.where("collapsible").select(F.col("ha").alias("u"), F.col("hb").alias("v")))
    t = time.time()
    groups, group_rounds = connected_components(spark, group_edges, F, Window)
    groups = timed("near_duplicate_groups", groups)
    stages["near_duplicate_groups"]["rounds"] = group_rounds
    stages["near_duplicate_groups"]["seconds"] = round(time.time() - t, 3)
    # The representative: most tokens (the owner copy's), then the smallest content hash.
    tokens = owned.where(F.col("owner") & F.col("usable")).select("content_hash", "tokens")
    best = Window.partitionBy("label").orderBy(F.col("tokens").desc(), F.col("content_hash"))
    reps = groups.withColumnRenamed("node", "content_hash").join(tokens, "content_hash") \
        .withColumn("_n", F.row_number().over(best)).where(F.col("_n") == 1) \
        .select("label", F.col("content_hash").alias("representative"))
    rep_of = groups.withColumnRenamed("node", "content_hash").join(reps, "label").select(
        "content_hash", "representative")

    assignments = owned.join(rep_of, "content_hash", "left").select(
        "shard", "content_hash", F.col("cluster_id").alias("cluster"), "holdout", "owner",
        F.coalesce(F.col("representative"), F.col("content_hash")).alias("representative"))
    assignments = timed("assignments", assignments)

    out = os.path.join(args.out, "assignments")
    t = time.time()
    assignments.repartition(max(1, stages["assignments"]["rows"] // 4_000_000 + 1)) \
        .sortWithinPartitions("shard", "content_hash") \
        .write.mode("overwrite").parquet(out)
    stages["write"] = {"seconds": round(time.time() - t, 3)}
    if args.pairs:
        pairs.write.mode("overwrite").parquet(os.path.join(args.out, "pairs"))
    info = {"format": FORMAT, "shards": digests}
    if not out.startswith(("s3a://", "s3://", "hdfs://")):
        with open(os.path.join(out, "_idx.json"), "w") as f:
            json.dump(info, f, indent=2, sort_keys=True)
            f.write("\n")
        with open(os.path.join(args.out, "job.json"), "w") as f:
            json.dump({"settings": settings, "bands": BANDS, "band_rows": BAND_ROWS,
                       "files": len(files), "stages": stages}, f, indent=2, sort_keys=True)
            f.write("\n")
    else:
        spark.sparkContext.parallelize([json.dumps(info, indent=2, sort_keys=True)], 1) \
            .saveAsTextFile(out + "/_idx.json.d")
    print(json.dumps({"assignments": out, "stages": stages}), flush=True)
    spark.stop()


if __name__ == "__main__":
    main(sys.argv[1:])
