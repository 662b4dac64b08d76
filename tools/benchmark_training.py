#!/usr/bin/env python
"""Training cost of LF2 against fast-reid's Baseline with the same backbone, input size and student images.

    python tools/benchmark_training.py [--depth 50x] [--size 256 128] [--batch 16] [--iters 3] --out FILE.json

One LF2 iteration puts K+1 batches of ``--batch`` images through the student (forward + backward) and the teacher
(forward, no grad); the Baseline iteration puts one batch of (K+1)·batch images through its network. Both include
the optimizer step (and LF2's EMA update). Data loading is excluded: the batches are fixed random tensors.
Writes rows {"impl", "seconds_per_iter", "student_images_per_iter", "student_images_per_s"} plus
{"impl": "ratio", "lf2_cost_per_student_image_vs_baseline"}.
"""

import argparse
import json

import torch

from lf2_plugin.benchmarks.training import benchmark_training


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--depth", default="50x")
    parser.add_argument("--size", type=int, nargs=2, default=[256, 128])
    parser.add_argument("--batch", type=int, default=16, help="images per level (LF2) ")
    parser.add_argument("--iters", type=int, default=3)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    rows = benchmark_training(args.depth, args.size, args.batch, args.iters, args.device)
    with open(args.out, "w") as f:
        json.dump(rows, f, indent=1)
    print(json.dumps(rows[-1]))


if __name__ == "__main__":
    main()
