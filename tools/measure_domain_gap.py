#!/usr/bin/env python
"""Measure the synthetic benchmark's domain gap: the 2x2 (train domain x test domain) table of fast-reid's
supervised Baseline, plus a randomly initialised, untrained network of the same architecture.

    python tools/measure_domain_gap.py [--output-dir DIR] [KEY VALUE ...]

    python tools/measure_domain_gap.py --direction configs/SynthMarket2SynthHard [--output-dir DIR] [--seed N]

With ``--direction``: that direction's gap with its own source recipe (``source.yml``): source in-domain, direct
transfer and target supervised (lf2_plugin.experiments.domain_gap); writes DIR/gap.json. Without it:
generate SynthMarket and SynthDuke into $FASTREID_DATASETS/synthetic (if missing; timed), evaluate an
untrained network (seeded by SEED) on both, then run ``tools/train_net.py`` on configs/Synthetic/baseline_market.yml
and baseline_duke.yml and evaluate each final checkpoint on both domains (as ``train_net.py --eval-only`` would).
``KEY VALUE`` overrides go to every run. Writes DIR/domain_gap.md and DIR/domain_gap.json and prints the table.
"""

import argparse
import json
import os
import subprocess
import sys
import time

REPO = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
sys.path.insert(0, REPO)

import lf2_plugin  # noqa: E402,F401  (compat fixes + dataset registration)
from lf2_plugin.data.datasets import synthetic_root  # noqa: E402
from lf2_plugin.data.synthetic import generate_domain  # noqa: E402

CONFIG_DIR = os.path.join(REPO, "configs", "Synthetic")
DOMAINS = (("market", "SynthMarket"), ("duke", "SynthDuke"))
TESTS = [name for _, name in DOMAINS]


def generate_both(root):
    seconds = {}
    for domain, _ in DOMAINS:
        start = time.time()
        generate_domain(synthetic_root(root, domain), domain)
        seconds[domain] = round(time.time() - start, 1)
    return seconds


def evaluate(config_file, opts, output_dir, weights=None):
    """Results on both test sets of the config's model: loaded from ``weights``, or freshly initialised
    (seeded by SEED) when ``weights`` is None -- the 'no learning' reference row."""
    from lf2_plugin.engine import build_config, seed_everything

    from fastreid.engine import DefaultTrainer
    from fastreid.utils.checkpoint import Checkpointer
    from fastreid.utils.logger import setup_logger

    setup_logger(name="fastreid")
    cfg = build_config(config_file, list(opts) + ["OUTPUT_DIR", output_dir])
    if weights is None:
        cfg.MODEL.HEADS.NUM_CLASSES = 1  # the classifier is not used for retrieval features
    seed_everything(cfg.SEED if cfg.SEED >= 0 else 0)
    model = DefaultTrainer.build_model(cfg)
    if weights is not None:
        Checkpointer(model).load(weights)
    results = DefaultTrainer.test(cfg, model)
    return {name: {k: float(results[name][k]) for k in ("mAP", "Rank-1")} for name in TESTS}


def train_and_evaluate(domain, opts, output_dir, reuse):
    """Train with tools/train_net.py (the documented command), then evaluate its final checkpoint."""
    run_dir = os.path.join(output_dir, f"baseline_{domain}")
    config_file = os.path.join(CONFIG_DIR, f"baseline_{domain}.yml")
    weights = os.path.join(run_dir, "model_final.pth")
    minutes = None
    if not (reuse and os.path.isfile(weights)):
        command = [
            sys.executable,
            os.path.join(REPO, "tools", "train_net.py"),
            "--config-file",
            config_file,
            "OUTPUT_DIR",
            run_dir,
            *opts,
        ]
        print("+", " ".join(command), flush=True)
        start = time.time()
        subprocess.run(command, check=True)
        minutes = round((time.time() - start) / 60, 1)
    return evaluate(config_file, opts, run_dir, weights), minutes


def markdown_table(rows):
    lines = [
        "| Model | Trained on | SynthMarket mAP | SynthMarket Rank-1 | SynthDuke mAP | SynthDuke Rank-1 |",
        "|:--|:--|--:|--:|--:|--:|",
    ]
    for model, trained_on, results in rows:
        cells = [f"{results[n]['mAP']:.1f} | {results[n]['Rank-1']:.1f}" for n in TESTS]
        lines.append(f"| {model} | {trained_on} | {' | '.join(cells)} |")
    return "\n".join(lines)


def direction_main(args):
    from lf2_plugin.experiments.domain_gap import measure_direction_gap
    from lf2_plugin.experiments.runs import datasets_env

    report = measure_direction_gap(args.direction, args.output_dir, args.seed, datasets_env())
    with open(os.path.join(args.output_dir, "gap.json"), "w", encoding="utf-8") as f:
        json.dump(report, f, indent=1)
    print(f"{report['direction']} ({report['source']} -> {report['target']}, seed {report['seed']}):")
    for row in report["rows"]:
        print(f"  {row['name']:<18} mAP {row['mAP']:5.1f}  Rank-1 {row['Rank-1']:5.1f}")
    print(f"  target supervised / direct transfer mAP: {report['room']}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--output-dir", default="logs/synthetic/domain_gap")
    parser.add_argument("--direction", help="a configs/<Direction> folder (source.yml, lf2.yml)")
    parser.add_argument("--seed", type=int, default=1, help="with --direction: SEED of both trainings")
    parser.add_argument("--skip-training", action="store_true", help="only generate and evaluate untrained")
    parser.add_argument(
        "--reuse",
        action="store_true",
        help="evaluate an existing OUTPUT/baseline_<domain>/model_final.pth instead of retraining",
    )
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="KEY VALUE overrides for every run")
    args = parser.parse_args(argv)
    os.makedirs(args.output_dir, exist_ok=True)
    if args.direction:
        return direction_main(args)
    root = os.getenv("FASTREID_DATASETS", "datasets")

    report = {"dataset_root": root, "generation_seconds": generate_both(root), "opts": args.opts}
    base_config = os.path.join(CONFIG_DIR, "Base-synth-baseline.yml")
    rows = [("untrained (random init)", "-", evaluate(base_config, args.opts, args.output_dir))]
    if not args.skip_training:
        report["training_minutes"] = {}
        for domain, name in DOMAINS:
            results, minutes = train_and_evaluate(domain, args.opts, args.output_dir, args.reuse)
            report["training_minutes"][domain] = minutes
            rows.append(("Baseline R18", name, results))
    report["rows"] = [{"model": m, "trained_on": t, "results": r} for m, t, r in rows]
    table = markdown_table(rows)
    with open(os.path.join(args.output_dir, "domain_gap.md"), "w", encoding="utf-8") as f:
        f.write(table + "\n")
    with open(os.path.join(args.output_dir, "domain_gap.json"), "w", encoding="utf-8") as f:
        json.dump(report, f, indent=2)
    print(json.dumps({k: v for k, v in report.items() if k != "rows"}))
    print(table)


if __name__ == "__main__":
    main()
