#!/usr/bin/env python
"""The main job on the synthetic benchmark: source pre-training, direct transfer, LF2 adaptation, evaluation.

    python tools/demo.py [--out logs/demo] [--config-dir configs/SynthDuke2SynthMarket] [--seed 1] [KEY VALUE ...]

Every step is a ``tools/train_net.py`` run, exactly what a user types; trailing ``KEY VALUE`` pairs go to the LF2
step. Writes ``<out>/summary.json`` ({"rows": [{"name", "mAP", "Rank-1", "Rank-5", "Rank-10"}], "seconds"}),
``<out>/lf2/metrics.png`` and prints the table. Of the checkpoints only each stage's final weights stay
(``model_final.pth`` without optimizer state): what direct transfer and LF2 evaluate, not enough to resume.
"""

import argparse
import os

from lf2_plugin.experiments.demo import format_table, run_demo
from lf2_plugin.experiments.runs import ROOT


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
