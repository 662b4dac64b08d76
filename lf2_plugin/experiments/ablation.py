"""Ablations of LF2 on the synthetic benchmark (``tools/ablation.py``), each the mean over several seeds.

Per seed: one source pre-training (so direct transfer varies with the seed too), then every LF2 variant
(:data:`.runs.VARIANTS`) from that source model; rows are pooled over seeds, differenced seed by seed
(:data:`PAIRS`) and, per variant, the last epoch's pseudo labels are scored against the true ids. Earlier
summaries over disjoint seeds can be pooled instead (:func:`combine_ablations`).
"""

import json
import os
import statistics
import time

from .paired import format_interval, paired_difference
from .record import record_step, restore_step, weights_fingerprint
from .runs import (
    METRICS,
    VARIANTS,
    adapt,
    datasets_env,
    metrics_row,
    read_json,
    source_and_direct_transfer,
    source_stage_files,
)

__all__ = [
    "PSEUDO_LABEL_METRICS",
    "PAIRS",
    "run_ablation",
    "combine_ablations",
    "run_seed",
    "aggregate",
    "aggregate_pseudo_labels",
    "global_f1_per_epoch",
    "paired_differences",
    "combine_summaries",
    "format_summary",
]

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


def run_ablation(
    out, config_dir, seeds, reuse=False, variants=tuple(VARIANTS), common_opts=(), sources=None, record=None
):
    """Every seed under ``out`` (``seed<s>/``); returns the summary: rows (mean, std, per-seed values), seconds,
    paired differences, pseudo-label quality, the common overrides and the sources folder. With ``record`` every
    finished LF2 step is also kept there (:mod:`.record`) and, with ``reuse``, taken from there."""
    env = datasets_env()
    start = time.perf_counter()
    per_seed = {
        seed: run_seed(out, config_dir, seed, env, reuse, variants, common_opts, sources, record) for seed in seeds
    }
    rows = aggregate(per_seed)
    return {
        "rows": rows,
        "seconds": round(time.perf_counter() - start, 1),
        "paired": paired_differences(rows),
        "pseudo_labels": aggregate_pseudo_labels(out, seeds, variants),
        "global_f1_per_epoch": global_f1_per_epoch(out, seeds, variants),
        "opts": common_opts,
        "sources": sources,
    }


def combine_ablations(paths):
    """The summary of earlier summaries' per-seed values pooled (:func:`combine_summaries`); nothing is trained."""
    rows = aggregate(combine_summaries(paths))
    metrics = shared_metrics(rows)
    return {"rows": rows, "seconds": 0.0, "paired": paired_differences(rows), "combined": paths, "metrics": metrics}


def run_seed(
    out, config_dir, seed, env, reuse=False, variants=tuple(VARIANTS), common_opts=(), sources=None, record=None
):
    """direct_transfer and the ``variants`` rows of one seed; with ``sources`` its source model is taken from there.
    With ``record`` each variant's finished run is recorded there and, with ``reuse``, a step recorded from the
    same source weights is restored instead of trained."""
    seed_dir = os.path.join(out, f"seed{seed}")
    if sources:
        weights, direct_row = finished_source(os.path.join(sources, f"seed{seed}"))
    else:
        weights, direct_row = source_and_direct_transfer(seed_dir, config_dir, seed, env, reuse=reuse)
    fingerprint = weights_fingerprint(weights) if record else None
    rows = [direct_row]
    for name in variants:
        run_dir = os.path.join(seed_dir, name)
        if record and reuse:
            restore_step(record, seed, name, run_dir, fingerprint)
        rows.append(adapt(name, config_dir, run_dir, weights, seed, [*common_opts, *VARIANTS[name]], env, reuse))
        if record:
            record_step(record, seed, name, run_dir, fingerprint)
    return rows


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


def clustering_history(run_dir):
    """The clustering hook's records of a run, one per epoch in epoch order (a run resumed at an epoch's start logs
    that epoch's clustering again: the last line of an epoch counts)."""
    with open(os.path.join(run_dir, "clustering.jsonl")) as f:
        epochs = {e["epoch"]: e for e in (json.loads(line) for line in f if line.strip())}
    return [epochs[epoch] for epoch in sorted(epochs)]


def last_epoch_pseudo_labels(run_dir):
    """Per level, the last epoch's pseudo-label quality against the true ids (logged by the clustering hook)."""
    last = clustering_history(run_dir)[-1]
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


def global_f1_trajectory(run_dir):
    """The global level's pairwise F1 against the true ids at every epoch's clustering, in epoch order."""
    return [round(e["levels"][0]["pairwise_f1"], 4) for e in clustering_history(run_dir)]


def global_f1_per_epoch(out, seeds, variants=tuple(VARIANTS)):
    """{variant: per-seed global pairwise F1 trajectories, their per-epoch mean and the paired last − first epoch
    difference over seeds}: whether adaptation improves the labels it trains on, not only mAP."""
    table = {}
    for name in variants:
        per_seed = {seed: global_f1_trajectory(os.path.join(out, f"seed{seed}", name)) for seed in seeds}
        epochs = min(len(t) for t in per_seed.values())
        table[name] = {
            "per_seed": {str(seed): t for seed, t in per_seed.items()},
            "mean": [round(statistics.mean(t[e] for t in per_seed.values()), 4) for e in range(epochs)],
            "last_minus_first": paired_difference(
                "last_epoch",
                "first_epoch",
                "global_pairwise_f1",
                [t[-1] for t in per_seed.values()],
                [t[0] for t in per_seed.values()],
                list(per_seed),
                digits=4,
            ),
        }
    return table


def aggregate(per_seed):
    """{seed: rows} -> rows with the mean, the standard deviation and the per-seed values; a row some seeds lack is
    pooled over the seeds that have it."""
    names = list(dict.fromkeys(row["name"] for rows_ in per_seed.values() for row in rows_))
    rows = []
    for name in names:
        values = [(seed, r) for seed, rows_ in per_seed.items() for r in rows_ if r["name"] == name]
        metrics = shared_metrics(v for _, v in values)
        row = {"name": name}
        for k in metrics:
            series = [v[k] for _, v in values]
            row[k], row.setdefault("std", {})[k] = mean_and_std(series, digits=2)
        row["seeds"] = [{"seed": seed, **{k: v[k] for k in metrics}} for seed, v in values]
        rows.append(row)
    return rows


def shared_metrics(entries):
    """The METRICS every entry has, in METRICS order (a summary kept from a lost run may hold mAP and Rank-1 only)."""
    entries = list(entries)
    return [k for k in METRICS if all(k in entry for entry in entries)]


def paired_differences(rows, metric="mAP", pairs=PAIRS):
    """Per seed, row a − row b for each (a, b) of ``pairs`` (same seed, same source model, so the source model's
    variation cancels), over the seeds both rows have: the differences, their mean and sample std, a 95% Student-t
    interval of the mean and in how many seeds a > b."""
    by_name = {row["name"]: {s["seed"]: s[metric] for s in row["seeds"]} for row in rows}
    differences = []
    for a, b in pairs:
        if a not in by_name or b not in by_name:
            continue
        seeds = [s for s in by_name[a] if s in by_name[b]]  # a row run on fewer seeds pairs over those
        differences.append(
            paired_difference(a, b, metric, [by_name[a][s] for s in seeds], [by_name[b][s] for s in seeds], seeds)
        )
    return differences


def combine_summaries(paths):
    """{seed: rows} from the per-seed values of earlier summaries; only the rows every summary has, in the first
    one's order, and only the metrics every such entry has. A seed in two summaries is an error (pooling must not
    count a run twice)."""
    summaries = [read_json(path) for path in paths]
    shared = set.intersection(*({row["name"] for row in s["rows"]} for s in summaries))
    names = [row["name"] for row in summaries[0]["rows"] if row["name"] in shared]
    metrics = shared_metrics(e for s in summaries for row in s["rows"] if row["name"] in shared for e in row["seeds"])
    if "mAP" not in metrics:
        raise SystemExit(f"--combine: not every per-seed entry of {', '.join(paths)} has an mAP (nothing to pair)")
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
            per_seed[seed] = [{"name": name, **{k: by_name[name][k] for k in metrics}} for name in names]
    return dict(sorted(per_seed.items()))


def format_summary(summary):
    """The rows (mean ± std), the paired differences and, when there, the pseudo-label quality as Markdown."""
    metrics = shared_metrics(summary["rows"])
    lines = ["| method | " + " | ".join(metrics) + " |", "|---" * (len(metrics) + 1) + "|"]
    for row in summary["rows"]:
        lines.append(f"| {row['name']} | " + " | ".join(f"{row[k]:.1f} ± {row['std'][k]:.1f}" for k in metrics) + " |")
    lines += [
        "",
        "paired mAP differences (same seed and source model)",
        "| a − b | per seed | mean ± std | 95% CI | a better in |",
        "|---|---|---|---|---|",
    ]
    for pair in summary["paired"]:
        lines.append(
            f"| {pair['a']} − {pair['b']} | "
            + ", ".join(f"{d:+.1f}" for d in pair["per_seed"])
            + f" | {pair['mean']:+.1f} ± {pair['std']:.1f} | {format_interval(pair['ci95'])} | "
            f"{pair['better_in']} |"
        )
    if summary.get("pseudo_labels"):
        lines += [
            "",
            "last-epoch pseudo labels vs true ids (mean ± std over seeds)",
            "| method | level | " + " | ".join(PSEUDO_LABEL_METRICS) + " |",
            "|---" * (len(PSEUDO_LABEL_METRICS) + 2) + "|",
        ]
        for name, levels in summary["pseudo_labels"].items():
            for row in levels:
                lines.append(
                    f"| {name} | {row['level']} | "
                    + " | ".join(f"{row[k]:.3f} ± {row['std'][k]:.3f}" for k in PSEUDO_LABEL_METRICS)
                    + " |"
                )
    if summary.get("global_f1_per_epoch"):
        lines += ["", "global pseudo-label pairwise F1 per epoch (mean over seeds); last − first epoch, paired"]
        for name, entry in summary["global_f1_per_epoch"].items():
            change = entry["last_minus_first"]
            lines.append(
                f"| {name} | " + " ".join(f"{f:.3f}" for f in entry["mean"]) + f" | {change['mean']:+.3f} "
                f"{format_interval(change['ci95'], '+.3f')} (n = {change['n']}) |"
            )
    return "\n".join(lines)
