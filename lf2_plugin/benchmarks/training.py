"""``tools/benchmark_training.py``: the time of one LF2 training iteration against fast-reid's Baseline with the
same backbone, input size and student images, on fixed random batches (data loading excluded)."""

import functools
import os
import statistics
import time

import torch

from fastreid.engine import DefaultTrainer
from fastreid.modeling import build_model
from fastreid.utils.events import EventStorage

from ..engine import build_config
from ..experiments.runs import ROOT

__all__ = ["common_opts", "random_batch", "train_step", "time_steps", "benchmark_training"]


def common_opts(depth, size, device):
    """Overrides both configs share: an untrained ResNet of ``depth`` at input ``size`` on ``device``."""
    return [
        "MODEL.DEVICE",
        device,
        "MODEL.BACKBONE.NAME",
        "build_resnet_backbone",
        "MODEL.BACKBONE.DEPTH",
        depth,
        "MODEL.BACKBONE.FEAT_DIM",
        str(512 if depth in ("18x", "34x") else 2048),
        "MODEL.BACKBONE.PRETRAIN",
        "False",
        "MODEL.HEADS.NUM_CLASSES",
        "500",
        "INPUT.SIZE_TRAIN",
        f"[{size[0]}, {size[1]}]",
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
    """Median seconds of ``iters`` calls of ``step`` after ``warmup`` untimed ones."""
    for _ in range(warmup):
        step()
    times = []
    for _ in range(iters):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def benchmark_training(depth="50x", size=(256, 128), batch=16, iters=3, device="cpu"):
    """Rows for baseline and lf2 (printed as they finish) and the ratio row of their seconds per iteration."""
    opts = common_opts(depth, size, device)
    lf2_cfg = build_config(os.path.join(ROOT, "configs", "Base-LF2.yml"), opts)
    base_cfg = build_config(
        os.path.join(ROOT, "configs", "Base-LF2-source.yml"), opts + ["MODEL.META_ARCHITECTURE", "Baseline"]
    )
    levels = lf2_cfg.MODEL.LF2.NUM_PARTS + 1
    rows = []
    torch.manual_seed(0)
    for impl, cfg in (("baseline", base_cfg), ("lf2", lf2_cfg)):
        model = build_model(cfg).train()
        optimizer, _ = DefaultTrainer.build_optimizer(cfg, model)
        if impl == "lf2":
            batches = [random_batch(batch, size, seed=level) for level in range(levels)]
        else:
            batches = random_batch(batch * levels, size)
        step = functools.partial(train_step, model, optimizer, batches, iter(range(10**9)) if impl == "lf2" else None)
        with EventStorage(0):
            seconds = time_steps(step, iters)
        images = batch * levels
        rows.append(
            {
                "impl": impl,
                "seconds_per_iter": round(seconds, 3),
                "student_images_per_iter": images,
                "student_images_per_s": round(images / seconds, 2),
                "depth": depth,
                "size": list(size),
                "device": device,
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
