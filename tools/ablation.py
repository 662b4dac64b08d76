#!/usr/bin/env python
"""Ablations of LF2 on the synthetic benchmark, each the mean over several seeds.

    python tools/ablation.py [--out logs/ablation] [--seeds 1 2 3] [--config-dir configs/SynthDuke2SynthMarket]
                             [--reuse] [--sources logs/ablation] [--variants lf2 global_only_mt ...] [-- KEY VALUE ...]
    python tools/ablation.py --out DIR --combine A/summary.json B/summary.json

Per seed: one source pre-training (so direct transfer varies with the seed too), then every LF2 variant from that
source model. Rows: direct_transfer, lf2, global_only_mt (NUM_PARTS 0: global-only mean teacher, single-level
clustering), lf2_no_fusion (levels 1..K cluster the teacher's own stripes), lf2_fusion_loss (FUSION.LOSS_WEIGHT
> 0). Writes ``<out>/summary.json``: {"rows": [{"name", "mAP", "Rank-1", "Rank-5", "Rank-10", "std": {...},
"seeds": [{"seed", ...}]}], "seconds", "paired": [per-seed differences of PAIRS with mean, std, 95% interval],
"pseudo_labels": {variant: [per level]}} and prints mean ± standard deviation. ``--reuse`` keeps the steps an
earlier, interrupted run finished. Trailing ``KEY VALUE`` pairs go to every LF2 variant (before the variant's own
override), e.g. a study of one hyperparameter; ``--sources DIR`` takes the source models and direct-transfer
results of an earlier ablation's seeds instead of training them again. ``--combine A/summary.json B/summary.json``
trains nothing: it pools the per-seed values of earlier summaries over disjoint seeds (e.g. seeds 4-6 run later
beside seeds 1-3) into ``<out>/summary.json``, rows the summaries share only, without ``"pseudo_labels"``.
"""

import argparse
import json
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from demo import adapt, source_and_direct_transfer, source_stage_files  # noqa: E402

from lf2_plugin.experiments.paired import paired_difference  # noqa: E402
from lf2_plugin.experiments.runs import METRICS, ROOT, VARIANTS, datasets_env, metrics_row, read_json  # noqa: E402

# How well each level's last-epoch pseudo labels match the true target ids (never seen by training): NMI, pairwise F1
PSEUDO_LABEL_METRICS = ("nmi", "pairwise_precision", "pairwise_recall", "pairwise_f1")

# The comparisons docs/BENCHMARKS.md reports, as (minuend, subtrahend) rows; a pair is skipped when a row was not run.
PAIRS = (
    ("lf2", "direct_transfer"),
    ("lf2", "global_only_mt"),
    ("lf2_no_fusion", "lf2"),
    ("lf2_fusion_loss", "lf2"),
    ("global_only_mt", "direct_transfer"),
    ("lf2_no_fusion", "global_only_mt"),
)


def run_seed(out, config_dir, seed, env, reuse=False, variants=tuple(VARIANTS), common_opts=(), sources=None):
    """direct_transfer and the ``variants`` rows of one seed; with ``sources`` its source model is taken from there."""
    seed_dir = os.path.join(out, f"seed{seed}")
    if sources:
        weights, direct_row = finished_source(os.path.join(sources, f"seed{seed}"))
    else:
        weights, direct_row = source_and_direct_transfer(seed_dir, config_dir, seed, env, reuse=reuse)
    return [direct_row] + [
        adapt(
            name, config_dir, os.path.join(seed_dir, name), weights, seed, [*common_opts, *VARIANTS[name]], env, reuse
        )
        for name in variants
    ]


def finished_source(seed_dir):
    """(source weights, direct-transfer row) of a seed an earlier ablation finished."""
    weights, results = source_stage_files(seed_dir)
    for path in (weights, results):
        if not os.path.exists(path):
            raise SystemExit(f"--sources: {path} does not exist (run that ablation's seed first)")
    return weights, metrics_row("direct_transfer", read_json(results))


def mean_and_std(series, digits):
    """Mean and sample standard deviation over seeds (0 for a single seed), rounded."""
    std = statistics.stdev(series) if len(series) > 1 else 0.0
    return round(statistics.mean(series), digits), round(std, digits)


def last_epoch_pseudo_labels(run_dir):
    """Per level, the last epoch's pseudo-label quality against the true ids (logged by the clustering hook)."""
    with open(os.path.join(run_dir, "clustering.jsonl")) as f:
        last = [json.loads(line) for line in f if line.strip()][-1]
    return [{k: level[k] for k in PSEUDO_LABEL_METRICS} for level in last["levels"]]


def aggregate_pseudo_labels(out, seeds, variants=tuple(VARIANTS)):
    """{variant: [per level: mean and standard deviation over seeds of the last epoch's NMI, pairwise F1, ...]}."""
    table = {}
    for name in variants:
        per_seed = [last_epoch_pseudo_labels(os.path.join(out, f"seed{seed}", name)) for seed in seeds]
        levels = []
        for level in range(len(per_seed[0])):
            row = {"level": level}
            for k in PSEUDO_LABEL_METRICS:
                series = [levels_[level][k] for levels_ in per_seed]
                row[k], row.setdefault("std", {})[k] = mean_and_std(series, digits=4)
            levels.append(row)
        table[name] = levels
    return table


def aggregate(per_seed):
    """{seed: rows} -> rows with the mean, the standard deviation and the per-seed values."""
    names = [row["name"] for row in next(iter(per_seed.values()))]
    rows = []
    for name in names:
        values = [(seed, next(r for r in rows_ if r["name"] == name)) for seed, rows_ in per_seed.items()]
        row = {"name": name}
        for k in METRICS:
            series = [v[k] for _, v in values]
            row[k], row.setdefault("std", {})[k] = mean_and_std(series, digits=2)
        row["seeds"] = [{"seed": seed, **{k: v[k] for k in METRICS}} for seed, v in values]
        rows.append(row)
    return rows


def paired_differences(rows, metric="mAP"):
    """Per seed, row a − row b (same seed, same source model, so the source model's variation cancels): the
    differences, their mean and sample std, a 95% Student-t interval of the mean and in how many seeds a > b."""
    by_name = {row["name"]: {s["seed"]: s[metric] for s in row["seeds"]} for row in rows}
    pairs = []
    for a, b in PAIRS:
        if a not in by_name or b not in by_name:
            continue
        seeds = list(by_name[a])
        pairs.append(
            paired_difference(a, b, metric, [by_name[a][s] for s in seeds], [by_name[b][s] for s in seeds], seeds)
        )
    return pairs


def combine_summaries(paths):
    """{seed: rows} from the per-seed values of earlier summaries; only the rows every summary has, in the first
    one's order. A seed in two summaries is an error (pooling must not count a run twice)."""
    summaries = [read_json(path) for path in paths]
    shared = set.intersection(*({row["name"] for row in s["rows"]} for s in summaries))
    names = [row["name"] for row in summaries[0]["rows"] if row["name"] in shared]
    per_seed, origin = {}, {}
    for path, summary in zip(paths, summaries):
        seeds = {entry["seed"] for row in summary["rows"] for entry in row["seeds"]}
        for seed in sorted(seeds):
            if seed in origin:
                raise SystemExit(f"--combine: seed {seed} is in both {origin[seed]} and {path}")
            origin[seed] = path
            by_name = {
                row["name"]: next((e for e in row["seeds"] if e["seed"] == seed), None) for row in summary["rows"]
            }
            missing = [name for name in names if by_name[name] is None]
            if missing:
                raise SystemExit(f"--combine: {path} has no seed {seed} for {', '.join(missing)}")
            per_seed[seed] = [{"name": name, **{k: by_name[name][k] for k in METRICS}} for name in names]
    return dict(sorted(per_seed.items()))


def print_summary(summary):
    """The rows (mean ± std), the paired differences and, when there, the pseudo-label quality as Markdown."""
    print("| method | " + " | ".join(METRICS) + " |\n" + "|---" * (len(METRICS) + 1) + "|")
    for row in summary["rows"]:
        print(f"| {row['name']} | " + " | ".join(f"{row[k]:.1f} ± {row['std'][k]:.1f}" for k in METRICS) + " |")
    print(
        "\npaired mAP differences (same seed and source model)"
        "\n| a − b | per seed | mean ± std | 95% CI | a better in |\n|---|---|---|---|---|"
    )
    for pair in summary["paired"]:
        print(
            f"| {pair['a']} − {pair['b']} | "
            + ", ".join(f"{d:+.1f}" for d in pair["per_seed"])
            + f" | {pair['mean']:+.1f} ± {pair['std']:.1f} | [{pair['ci95'][0]:+.1f}, {pair['ci95'][1]:+.1f}] | "
            f"{pair['better_in']} |"
        )
    if not summary.get("pseudo_labels"):
        return
    print(
        "\nlast-epoch pseudo labels vs true ids (mean ± std over seeds)\n| method | level | "
        + " | ".join(PSEUDO_LABEL_METRICS)
        + " |\n"
        + "|---" * (len(PSEUDO_LABEL_METRICS) + 2)
        + "|"
    )
    for name, levels in summary["pseudo_labels"].items():
        for row in levels:
            print(
                f"| {name} | {row['level']} | "
                + " | ".join(f"{row[k]:.3f} ± {row['std'][k]:.3f}" for k in PSEUDO_LABEL_METRICS)
                + " |"
            )


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=os.path.join("logs", "ablation"))
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--config-dir", default=os.path.join(ROOT, "configs", "SynthDuke2SynthMarket"))
    parser.add_argument(
        "--reuse",
        action="store_true",
        help="keep the steps an earlier run under --out finished (e.g. after an interruption)",
    )
    parser.add_argument(
        "--variants",
        nargs="+",
        choices=list(VARIANTS),
        default=list(VARIANTS),
        help="the LF2 variants to run (default: all)",
    )
    parser.add_argument(
        "--sources",
        help="an earlier ablation's --out: take its seeds' source models and direct "
        "transfer instead of training them again",
    )
    parser.add_argument(
        "--combine",
        nargs="+",
        metavar="SUMMARY",
        help="train nothing: pool earlier summaries' per-seed values (disjoint seeds) into --out",
    )
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="KEY VALUE overrides for every LF2 variant")
    args = parser.parse_args()
    args.opts = args.opts[1:] if args.opts[:1] == ["--"] else args.opts
    if len(args.opts) % 2 or any(token.startswith("--") for token in args.opts):
        parser.error(f"options first, then KEY VALUE pairs (after `--` when --variants is last); got {args.opts}")
    out = os.path.abspath(args.out)
    if args.combine:
        rows = aggregate(combine_summaries(args.combine))
        summary = {"rows": rows, "seconds": 0.0, "paired": paired_differences(rows), "combined": args.combine}
    else:
        sources = os.path.abspath(args.sources) if args.sources else None
        env = datasets_env()
        start = time.perf_counter()
        per_seed = {
            seed: run_seed(out, args.config_dir, seed, env, args.reuse, args.variants, args.opts, sources)
            for seed in args.seeds
        }
        rows = aggregate(per_seed)
        summary = {
            "rows": rows,
            "seconds": round(time.perf_counter() - start, 1),
            "paired": paired_differences(rows),
            "pseudo_labels": aggregate_pseudo_labels(out, args.seeds, args.variants),
            "opts": args.opts,
            "sources": sources,
        }
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "summary.json"), "w") as f:
        json.dump(summary, f, indent=1)
    print_summary(summary)


if __name__ == "__main__":
    main()
