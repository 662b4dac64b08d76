#!/usr/bin/env python
"""Benchmark LF2's pseudo-label clustering against the reference pipeline on synthetic re-ID-like features.

    nice python tools/benchmark_clustering.py [--sizes 12936,16522,32621] [--dim 2048] --out FILE.json

For each size N (Market-1501 / DukeMTMC-reID / MSMT17 train sizes by default) it generates clustered features
(identities with per-identity image counts, look-alike identity groups, camera offsets, a few junk images) once,
saves them, and runs every implementation in its own fresh subprocess (so peak memory is that implementation's
alone), capped at ``--mem-cap-gb`` of address space (RLIMIT_AS):

* ``reference``: fast-reid ``compute_jaccard_distance(k1=30, k2=6, search_option=3)`` + sklearn DBSCAN(eps=0.6,
  min_samples=4, metric="precomputed") on its dense output.
* ``knn_floor``: the exact faiss ``IndexFlatL2`` k1-NN search alone (the floor of any exact method).
* ``lf2_dbscan``: the plugin's DBSCAN path, exact k-NN. ``lf2_dbscan_fast``: the same with ``--fast-knn``.
* ``sklearn_minibatch``: sklearn MiniBatchKMeans with LF2's settings (max_iter 100, batch 300, init 1500, n_init 3).
* ``lf2_kmeans``, ``lf2_faiss_kmeans``: the plugin's ``cluster_features`` with those algorithms (global level).

Rows of FILE.json: ``{"n", "impl", "seconds", "peak_mb", "ari_vs_reference" | "nmi", ...}``. ``peak_mb`` is the
subprocess's peak resident memory above its resident memory right before the measured call (features already
loaded, libraries imported); ``process_peak_mb`` is the whole process's peak. DBSCAN rows also carry
``ari_vs_truth``, cluster counts and per-phase ``timings``; when the reference could not finish (memory cap),
its row says so (``status``) and the other DBSCAN rows carry ``ari_vs_exact`` against ``lf2_dbscan`` instead.
"""

import argparse
import json

from lf2_plugin.benchmarks.clustering import DBSCAN_IMPLS, KMEANS_IMPLS, markdown_table, run_clustering_benchmark


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="12936,16522,32621")
    parser.add_argument("--dim", type=int, default=2048)
    parser.add_argument("--out", required=False)
    parser.add_argument("--impls", default=",".join(DBSCAN_IMPLS + KMEANS_IMPLS))
    parser.add_argument(
        "--fast-knn", default="grouped_ivf", help="fast mode k-NN: grouped_ivf|ivf|hnsw[:knn_search_kwarg=int,...]"
    )
    parser.add_argument("--mem-cap-gb", type=float, default=12.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--table", metavar="FILE.json", help="print FILE.json as a markdown table and exit")
    args = parser.parse_args(argv)
    if args.table:
        with open(args.table) as f:
            print(markdown_table(json.load(f)))
        return
    if not args.out:
        parser.error("--out is required")
    rows = run_clustering_benchmark(
        [int(s) for s in args.sizes.split(",") if s],
        args.dim,
        [impl for impl in args.impls.split(",") if impl],
        args.out,
        fast_knn=args.fast_knn,
        mem_cap_gb=args.mem_cap_gb,
        seed=args.seed,
    )
    print(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
