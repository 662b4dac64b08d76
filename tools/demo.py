#!/usr/bin/env python
"""The main job on the synthetic benchmark: source pre-training, direct transfer, LF2 adaptation, evaluation.

    python tools/demo.py [--out logs/demo] [--config-dir configs/SynthDuke2SynthMarket] [--seed 1] [KEY VALUE ...]

Every step is a ``tools/train_net.py`` run, exactly what a user types; trailing ``KEY VALUE`` pairs go to the LF2
step. Writes ``<out>/summary.json`` ({"rows": [{"name", "mAP", "Rank-1", "Rank-5", "Rank-10"}], "seconds"}),
``<out>/lf2/metrics.png`` and prints the table. Of the checkpoints only each stage's final weights stay
(``model_final.pth`` without optimizer state): what direct transfer and LF2 evaluate, not enough to resume.
"""

import argparse
import json
import os
import time

from lf2_plugin.experiments.runs import (
    METRICS,
    ROOT,
    datasets_env,
    keep_final_weights_only,
    metrics_row,
    read_json,
    train_net,
)


def source_stage_files(out):
    """(source weights, direct-transfer results): what :func:`source_and_direct_transfer` leaves under ``out``."""
    return os.path.join(out, "source", "model_final.pth"), os.path.join(out, "direct_transfer", "eval_results.json")


def source_and_direct_transfer(out, config_dir, seed, env, reuse=False):
    """Source training in <out>/source, then its model on the target test set in <out>/direct_transfer.

    Returns the source weights and the direct-transfer row. ``reuse`` keeps steps an earlier call finished.
    """
    source_config, lf2_config = (os.path.join(config_dir, name) for name in ("source.yml", "lf2.yml"))
    weights, results = source_stage_files(out)
    train_net(
        source_config,
        os.path.dirname(weights),
        "SEED",
        str(seed),
        env=env,
        reuse_if=reuse and os.path.basename(weights),
    )
    # Direct transfer: the source model on the target test set, through the source config's model definition.
    train_net(
        source_config,
        os.path.dirname(results),
        "MODEL.WEIGHTS",
        weights,
        "DATASETS.TESTS",
        target_tests(lf2_config),
        "SEED",
        str(seed),
        flags=("--eval-only",),
        env=env,
        reuse_if=reuse and os.path.basename(results),
    )
    return weights, metrics_row("direct_transfer", read_json(results))


def adapt(name, config_dir, run_dir, weights, seed, opts, env, reuse=False):
    """One LF2 adaptation from ``weights`` in ``run_dir``; returns its last-epoch row named ``name``."""
    train_net(
        os.path.join(config_dir, "lf2.yml"),
        run_dir,
        "MODEL.WEIGHTS",
        weights,
        "SEED",
        str(seed),
        *opts,
        env=env,
        reuse_if=reuse and "summary.json",
    )
    return metrics_row(name, read_json(os.path.join(run_dir, "summary.json"))["last"])


def run_demo(out, config_dir, seed, lf2_opts=()):
    start = time.perf_counter()
    env = datasets_env()
    weights, direct_row = source_and_direct_transfer(out, config_dir, seed, env)
    lf2_dir = os.path.join(out, "lf2")
    rows = [direct_row, adapt("lf2", config_dir, lf2_dir, weights, seed, lf2_opts, env)]
    summary = {"rows": rows, "seconds": round(time.perf_counter() - start, 1)}
    with open(os.path.join(out, "summary.json"), "w") as f:
        json.dump(summary, f, indent=1)
    from lf2_plugin.engine.plots import plot_run

    plot_run(lf2_dir)
    for run_dir in (os.path.dirname(weights), lf2_dir):  # a demo keeps the final weights only
        keep_final_weights_only(run_dir)
    return summary


def target_tests(lf2_config):
    from lf2_plugin.engine import build_config

    return "(" + ", ".join(f'"{name}"' for name in build_config(lf2_config).DATASETS.TESTS) + ",)"


def format_table(summary):
    lines = ["| method | " + " | ".join(METRICS) + " |", "|---" * (len(METRICS) + 1) + "|"]
    for row in summary["rows"]:
        lines.append(f"| {row['name']} | " + " | ".join(f"{row[k]:.1f}" for k in METRICS) + " |")
    return "\n".join(lines) + f"\n\ntotal time: {summary['seconds']:.0f} s"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=os.path.join("logs", "demo"))
    parser.add_argument("--config-dir", default=os.path.join(ROOT, "configs", "SynthDuke2SynthMarket"))
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="KEY VALUE overrides for the LF2 step")
    args = parser.parse_args()
    summary = run_demo(os.path.abspath(args.out), args.config_dir, args.seed, args.opts)
    print(format_table(summary))


if __name__ == "__main__":
    main()
