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
import functools
import json
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import torch  # noqa: E402

import lf2_plugin  # noqa: E402,F401
from lf2_plugin.engine import build_config  # noqa: E402

from fastreid.engine import DefaultTrainer  # noqa: E402
from fastreid.modeling import build_model  # noqa: E402
from fastreid.utils.events import EventStorage  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def common_opts(args):
    return [
        "MODEL.DEVICE",
        args.device,
        "MODEL.BACKBONE.NAME",
        "build_resnet_backbone",
        "MODEL.BACKBONE.DEPTH",
        args.depth,
        "MODEL.BACKBONE.FEAT_DIM",
        str(512 if args.depth in ("18x", "34x") else 2048),
        "MODEL.BACKBONE.PRETRAIN",
        "False",
        "MODEL.HEADS.NUM_CLASSES",
        "500",
        "INPUT.SIZE_TRAIN",
        f"[{args.size[0]}, {args.size[1]}]",
    ]


def random_batch(n, size, num_classes=500, seed=0):
    g = torch.Generator().manual_seed(seed)
    # P x K labels so the batch-hard triplet has positives
    targets = torch.arange(n // 4).repeat_interleave(4) % num_classes
    return {"images": torch.rand(n, 3, *size, generator=g) * 255, "targets": targets}


def train_step(model, optimizer, batches, ema_steps=None):
    """One optimiser step on ``batches``; with ``ema_steps`` (an iterator of step numbers) the mean teacher's update."""
    losses = sum(model(batches).values())
    optimizer.zero_grad()
    losses.backward()
    optimizer.step()
    if ema_steps is not None:
        model.ema_update(next(ema_steps))


def time_steps(step, iters, warmup=1):
    for _ in range(warmup):
        step()
    times = []
    for _ in range(iters):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def benchmark(args):
    lf2_cfg = build_config(os.path.join(ROOT, "configs", "Base-LF2.yml"), common_opts(args))
    base_cfg = build_config(
        os.path.join(ROOT, "configs", "Base-LF2-source.yml"),
        common_opts(args) + ["MODEL.META_ARCHITECTURE", "Baseline"],
    )
    levels = lf2_cfg.MODEL.LF2.NUM_PARTS + 1
    rows = []
    torch.manual_seed(0)
    for impl, cfg in (("baseline", base_cfg), ("lf2", lf2_cfg)):
        model = build_model(cfg).train()
        optimizer, _ = DefaultTrainer.build_optimizer(cfg, model)
        if impl == "lf2":
            batches = [random_batch(args.batch, args.size, seed=level) for level in range(levels)]
        else:
            batches = random_batch(args.batch * levels, args.size)
        step = functools.partial(train_step, model, optimizer, batches, iter(range(10**9)) if impl == "lf2" else None)
        with EventStorage(0):
            seconds = time_steps(step, args.iters)
        images = args.batch * levels
        rows.append(
            {
                "impl": impl,
                "seconds_per_iter": round(seconds, 3),
                "student_images_per_iter": images,
                "student_images_per_s": round(images / seconds, 2),
                "depth": args.depth,
                "size": list(args.size),
                "device": args.device,
                "threads": torch.get_num_threads(),
            }
        )
        print(rows[-1], flush=True)
    base, lf2 = rows
    rows.append(
        {
            "impl": "ratio",
            "lf2_cost_per_student_image_vs_baseline": round(lf2["seconds_per_iter"] / base["seconds_per_iter"], 3),
        }
    )
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--depth", default="50x")
    parser.add_argument("--size", type=int, nargs=2, default=[256, 128])
    parser.add_argument("--batch", type=int, default=16, help="images per level (LF2) ")
    parser.add_argument("--iters", type=int, default=3)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    rows = benchmark(args)
    with open(args.out, "w") as f:
        json.dump(rows, f, indent=1)
    print(json.dumps(rows[-1]))


if __name__ == "__main__":
    main()
