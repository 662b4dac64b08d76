#!/usr/bin/env python
"""Score many clusterings of one checkpoint's target features against the true identities (a diagnostic).

    python tools/sweep_clustering.py --config-file configs/SynthMarket2SynthHard/source.yml \
        MODEL.WEIGHTS logs/SynthMarket2SynthHard/source/model_final.pth \
        --kmeans-k 75 100 150 200 300 --dbscan-eps 0.4 0.5 0.6 0.7 --out docs/benchmarks/sweep.json

One feature pass per feature variant (BN statistics as saved / re-estimated on the target), each with and without
the per-camera mean removed, then every k-means k and DBSCAN (eps, min-samples) on the Jaccard distance. Writes
the JSON report and a Markdown table (.md) beside it, best pairwise F1 first. See docs/CLUSTERING.md.
"""

import argparse

import lf2_plugin  # noqa: F401  (registration + compat fixes)
from lf2_plugin.deploy import model_from_arguments
from lf2_plugin.experiments.clustering_sweep import run_clustering_sweep, write_sweep_report


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config-file", required=True, help="the config the weights were trained with")
    parser.add_argument("--dataset", help="target dataset name (default: DATASETS.TARGET_BN_ADAPT or NAMES[0])")
    parser.add_argument("--kmeans-k", type=int, nargs="*", default=[])
    parser.add_argument("--dbscan-eps", type=float, nargs="*", default=[])
    parser.add_argument("--dbscan-min-samples", type=int, nargs="+", default=[4])
    parser.add_argument("--camera-norm", choices=["off", "on"], nargs="+", default=["off", "on"])
    parser.add_argument("--target-bn", choices=["off", "on"], nargs="+", default=["off", "on"])
    parser.add_argument("--level", type=int, default=0, help="LF2 clustering level (0 = global)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", required=True, help="JSON report (a .md table is written beside it)")
    parser.add_argument("opts", nargs="*", help="config overrides KEY VALUE ..., e.g. MODEL.WEIGHTS path.pth")
    args = parser.parse_intermixed_args(argv)
    cfg, model = model_from_arguments(args.config_file, args.opts)
    report = run_clustering_sweep(
        cfg,
        model,
        dataset=args.dataset,
        kmeans_k=args.kmeans_k,
        dbscan_eps=args.dbscan_eps,
        dbscan_min_samples=args.dbscan_min_samples,
        camera_norm=[v == "on" for v in args.camera_norm],
        target_bn=[v == "on" for v in args.target_bn],
        level=args.level,
        seed=args.seed,
    )
    print(write_sweep_report(report, args.out))


if __name__ == "__main__":
    main()
