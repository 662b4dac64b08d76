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

from lf2_plugin.experiments.domain_gap import format_direction_gap, measure_direction_gap, measure_synthetic_domain_gap
from lf2_plugin.experiments.runs import datasets_env, write_json


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
        report = measure_direction_gap(args.direction, args.output_dir, args.seed, datasets_env())
        write_json(os.path.join(args.output_dir, "gap.json"), report)
        print(format_direction_gap(report))
        return
    root = os.getenv("FASTREID_DATASETS", "datasets")
    report, table = measure_synthetic_domain_gap(args.output_dir, args.opts, root, args.skip_training, args.reuse)
    print(json.dumps({k: v for k, v in report.items() if k != "rows"}))
    print(table)


if __name__ == "__main__":
    main()
