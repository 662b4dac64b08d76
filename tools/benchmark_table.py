#!/usr/bin/env python
"""LF2 beside fast-reid's own baselines on one direction of the synthetic benchmark, over paired seeds.

    python tools/benchmark_table.py [--out logs/benchmark_table] [--seeds 1 2 3]
                                    [--config-dir configs/SynthDuke2SynthMarket] [--reuse] [--rows bot_direct lf2 ...]

Rows (lf2_plugin/experiments/baseline_table.py): bot_direct and sbs_direct (fast-reid's Baseline with its
bag-of-tricks / SBS choices, trained on the source, evaluated on the target), direct_transfer and lf2 (LF2's source
model and LF2), direct_transfer_osnet and lf2_osnet (the same with fast-reid's OSNet x1.0), target_supervised
(bot_direct's recipe on the target's own labels: the upper bound). All from the direction's configs (backbone,
input, schedule), the same seeds and the same --eval-only evaluation. Writes ``<out>/summary.json`` (rows with
per-seed values and seconds per run, paired mAP differences) and prints the Markdown table. ``--reuse`` keeps the
steps an earlier, interrupted call finished and resumes an unfinished one. ``--rows`` runs only those rows (a row
and its pair, e.g. lf2 and direct_transfer, come from one run); rows an earlier call recorded for a seed under --out
stay in its table, so a costly row (the OSNet pair) can be run on fewer seeds than the others.
"""

import argparse
import os

from lf2_plugin.experiments.baseline_table import ROWS, format_table, run_table
from lf2_plugin.experiments.runs import ROOT


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=os.path.join("logs", "benchmark_table"))
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--config-dir", default=os.path.join(ROOT, "configs", "SynthDuke2SynthMarket"))
    parser.add_argument("--reuse", action="store_true", help="keep the steps an earlier call under --out finished")
    parser.add_argument("--rows", nargs="+", choices=ROWS, default=list(ROWS), help="the rows to run (default: all)")
    args = parser.parse_args()
    print(format_table(run_table(args.out, args.config_dir, args.seeds, reuse=args.reuse, rows=args.rows)))


if __name__ == "__main__":
    main()
