"""LF2 beside fast-reid's own baselines on one direction (``tools/benchmark_table.py``), over paired seeds.

Every row is trained with ``tools/train_net.py`` from the direction's configs (same backbone, input size, schedule
and seed) and scored by the same ``--eval-only`` step on the target test set (fast-reid's evaluator, flip and
metric of the source config):

- ``bot_direct``: fast-reid's ``Baseline`` with the bag-of-tricks choices of its ``Base-bagtricks.yml`` (BNNeck,
  fast-reid's CE with label smoothing and hard triplet with margin 0.3, random erasing, ``NaiveIdentitySampler``),
  trained on the source labels, no target BN adaptation; evaluated on the target;
- ``sbs_direct``: the same with the ``Base-SBS.yml`` choices that exist for this backbone and input: GeM pooling,
  CircleSoftmax (scale 64, margin 0.35), BNNeck feature after the BN, soft triplet, AutoAugment (p 0.1), cosine
  decay after half the epochs (left out: non-local blocks have no ResNet-18 variant, backbone freezing needs an
  ImageNet backbone, AMP a GPU, 384×128 another input size);
- ``direct_transfer``: LF2's source model (the direction's ``source.yml``) on the target; ``lf2``: LF2 from it;
- ``lf2_osnet``: the source stage and LF2 with fast-reid's OSNet (:data:`SECOND_BACKBONE`) instead;
- ``target_supervised``: ``bot_direct``'s recipe trained on the target's own labels: the upper bound.
"""

import os
import time

from .ablation import aggregate, paired_differences
from .paired import format_interval
from .runs import (
    METRICS,
    ROOT,
    adapt,
    config_tuple,
    datasets_env,
    metrics_row,
    read_json,
    source_and_direct_transfer,
    source_stage_files,
    train_net,
    write_json,
)

__all__ = [
    "BOT_OPTS",
    "SBS_OPTS",
    "SECOND_BACKBONE",
    "ROWS",
    "TABLE_PAIRS",
    "run_table",
    "run_seed",
    "summarize",
    "format_table",
]

# fast-reid's Base-bagtricks.yml choices on top of the direction's source config (its model, losses, sampler, erasing)
BOT_OPTS = [
    *("MODEL.META_ARCHITECTURE", "Baseline", "MODEL.LOSSES.TRI.MARGIN", "0.3"),
    *("INPUT.REA.ENABLED", "True", "INPUT.REA.PROB", "0.5", "INPUT.REA.STYLE", "torchvision"),
    *("INPUT.REA.VALUE", "[123.675, 116.28, 103.53]", "DATALOADER.SAMPLER_TRAIN", "NaiveIdentitySampler"),
    *("DATASETS.TARGET_BN_ADAPT", ""),
]
# Base-SBS.yml's head, loss and augmentation choices on top of BOT_OPTS (SOLVER.DELAY_EPOCHS is added per direction)
SBS_OPTS = [
    *BOT_OPTS,
    *("MODEL.HEADS.NECK_FEAT", "after", "MODEL.HEADS.POOL_LAYER", "GeneralizedMeanPoolingP"),
    *("MODEL.HEADS.CLS_LAYER", "CircleSoftmax", "MODEL.HEADS.SCALE", "64", "MODEL.HEADS.MARGIN", "0.35"),
    *("MODEL.LOSSES.TRI.MARGIN", "0.0", "INPUT.AUTOAUG.ENABLED", "True", "INPUT.AUTOAUG.PROB", "0.1"),
]
# The second backbone LF2 is run with: fast-reid's OSNet x1.0 (512 channels), source stage and adaptation alike
SECOND_BACKBONE = [
    *("MODEL.BACKBONE.NAME", "build_osnet_backbone", "MODEL.BACKBONE.DEPTH", "x1_0"),
    *("MODEL.BACKBONE.FEAT_DIM", "512"),
]
ROWS = ("bot_direct", "sbs_direct", "direct_transfer", "lf2", "direct_transfer_osnet", "lf2_osnet", "target_supervised")
# (minuend, subtrahend) of the paired differences the table reports
TABLE_PAIRS = (
    ("lf2", "bot_direct"),
    ("lf2", "sbs_direct"),
    ("lf2", "direct_transfer"),
    ("lf2_osnet", "lf2"),
    ("target_supervised", "lf2"),
)


def _timed(run_dir, done_file, step):
    """``step()`` and the wall seconds of the run in ``run_dir``, kept in ``<run_dir>/seconds.json``.

    A run that had already finished (``done_file`` present) keeps the seconds it recorded then (None if it recorded
    none); a run resumed from a checkpoint is marked ``resumed`` (its seconds cover the resumed part only)."""
    path = os.path.join(run_dir, "seconds.json")
    if os.path.exists(os.path.join(run_dir, done_file)):
        step()
        return read_json(path) if os.path.exists(path) else {"seconds": None}
    resumed = os.path.exists(os.path.join(run_dir, "last_checkpoint"))
    start = time.perf_counter()
    step()
    timing = {"seconds": round(time.perf_counter() - start, 1), "resumed": resumed}
    write_json(path, timing)
    return timing


def _fastreid_baseline(name, config_dir, run_dir, seed, train_on, target, opts, env, reuse):
    """Train a fast-reid Baseline from the direction's source config on ``train_on``; its row on ``target``."""
    config = os.path.join(config_dir, "source.yml")
    common = ("SEED", str(seed), "DATASETS.TESTS", config_tuple([target]), *opts)
    timing = _timed(
        run_dir,
        "model_final.pth",
        lambda: train_net(
            config,
            run_dir,
            *common,
            "DATASETS.NAMES",
            config_tuple([train_on]),
            env=env,
            reuse_if=reuse and "model_final.pth",
        ),
    )
    eval_dir = os.path.join(run_dir, "eval_target")
    weights = os.path.join(run_dir, "model_final.pth")
    flags = ("--eval-only",)
    train_net(
        config,
        eval_dir,
        *common,
        "MODEL.WEIGHTS",
        weights,
        flags=flags,
        env=env,
        reuse_if=reuse and "eval_results.json",
    )
    return {**metrics_row(name, read_json(os.path.join(eval_dir, "eval_results.json"))), **timing}


def _lf2_rows(config_dir, out, seed, opts, names, env, reuse):
    """(direct transfer, LF2) rows named ``names``: the direction's source stage, then LF2, both with ``opts``."""
    source_dir, lf2_dir = os.path.join(out, "source"), os.path.join(out, "lf2")
    source = _timed(
        source_dir, "model_final.pth", lambda: source_and_direct_transfer(out, config_dir, seed, env, reuse, opts)
    )
    weights, results = source_stage_files(out)
    adapted = _timed(
        lf2_dir, "summary.json", lambda: adapt(names[1], config_dir, lf2_dir, weights, seed, opts, env, reuse)
    )
    return [
        {**metrics_row(names[0], read_json(results)), **source},
        {**metrics_row(names[1], read_json(os.path.join(lf2_dir, "summary.json"))["last"]), **adapted},
    ]


def run_seed(out, config_dir, seed, env, reuse=False, rows=ROWS):
    """The rows of :data:`ROWS` named in ``rows`` for one seed under ``<out>/seed<seed>``, in :data:`ROWS` order."""
    from ..engine import build_config

    source_cfg = build_config(os.path.join(config_dir, "source.yml"))
    source, target = source_cfg.DATASETS.NAMES[0], build_config(os.path.join(config_dir, "lf2.yml")).DATASETS.NAMES[0]
    sbs = [*SBS_OPTS, "SOLVER.DELAY_EPOCHS", str(source_cfg.SOLVER.MAX_EPOCH // 2)]
    seed_dir = os.path.join(out, f"seed{seed}")

    def baseline(name, train_on, opts):
        return [
            _fastreid_baseline(name, config_dir, os.path.join(seed_dir, name), seed, train_on, target, opts, env, reuse)
        ]

    def lf2_pair(folder, opts, names):
        return _lf2_rows(config_dir, os.path.join(seed_dir, folder), seed, opts, names, env, reuse)

    steps = {
        "bot_direct": lambda: baseline("bot_direct", source, BOT_OPTS),
        "sbs_direct": lambda: baseline("sbs_direct", source, sbs),
        "direct_transfer": lambda: lf2_pair("resnet", [], ("direct_transfer", "lf2")),
        "direct_transfer_osnet": lambda: lf2_pair("osnet", SECOND_BACKBONE, ("direct_transfer_osnet", "lf2_osnet")),
        "target_supervised": lambda: baseline("target_supervised", target, BOT_OPTS),
    }
    steps["lf2"], steps["lf2_osnet"] = steps["direct_transfer"], steps["direct_transfer_osnet"]  # one run, two rows
    done = {}
    for name in ROWS:
        if name in rows and name not in done:
            done.update({row["name"]: row for row in steps[name]()})
    return [done[name] for name in ROWS if name in rows]


def merge_recorded(path, rows):
    """``rows`` with the rows an earlier call recorded in ``path`` (a seed's ``rows.json``) that were not run now,
    in :data:`ROWS` order: a later call with other ``--rows`` adds to a seed's table instead of replacing it."""
    by_name = {row["name"]: row for row in (read_json(path) if os.path.exists(path) else [])}
    by_name.update({row["name"]: row for row in rows})
    return [by_name[name] for name in ROWS if name in by_name]


def run_table(out, config_dir, seeds, reuse=False, rows=ROWS):
    """Every seed's ``rows`` under ``out``, beside the rows earlier calls recorded for it (:func:`merge_recorded`);
    returns the summary (``rows`` pooled over the seeds that have each, with per-seed values and seconds, ``paired``
    differences of :data:`TABLE_PAIRS` in mAP over the seeds both rows have) and writes it to ``<out>/summary.json``."""
    env = datasets_env()
    per_seed = {}
    for seed in seeds:
        path = os.path.join(out, f"seed{seed}", "rows.json")
        per_seed[seed] = merge_recorded(path, run_seed(out, config_dir, seed, env, reuse, rows))
        write_json(path, per_seed[seed])
    summary = summarize(per_seed)
    summary["command_args"] = {"config_dir": os.path.relpath(config_dir, ROOT), "seeds": list(seeds)}
    write_json(os.path.join(out, "summary.json"), summary)
    return summary


def summarize(per_seed):
    """``rows`` (:func:`.ablation.aggregate` over seeds, plus the mean seconds per run) and ``paired`` (mAP)."""
    rows = aggregate(
        {seed: [{k: row[k] for k in ("name", *METRICS)} for row in rows] for seed, rows in per_seed.items()}
    )
    for row in rows:
        seconds = [r.get("seconds") for rs in per_seed.values() for r in rs if r["name"] == row["name"]]
        known = [s for s in seconds if s is not None]
        row["seconds_per_run"] = round(sum(known) / len(known), 1) if known else None
    return {"rows": rows, "paired": paired_differences(rows, "mAP", TABLE_PAIRS)}


def format_table(summary):
    """The summary as Markdown: mAP and Rank-1 (mean ± std over seeds), minutes per run, then the paired mAP
    differences with their 95% intervals."""
    lines = ["| row | mAP | Rank-1 | n | minutes per run |", "|:--|--:|--:|--:|--:|"]
    for row in summary["rows"]:
        minutes = "" if row["seconds_per_run"] is None else f"{row['seconds_per_run'] / 60:.1f}"
        lines.append(
            f"| {row['name']} | {row['mAP']:.1f} ± {row['std']['mAP']:.1f} | {row['Rank-1']:.1f} ± "
            f"{row['std']['Rank-1']:.1f} | {len(row['seeds'])} | {minutes} |"
        )
    lines.append("")
    for pair in summary["paired"]:
        lines.append(
            f"- {pair['a']} − {pair['b']}: {pair['mean']:+.1f} mAP, 95% CI {format_interval(pair['ci95'])}, "
            f"n = {pair['n']}, {pair['a']} higher in {pair['better_in']}"
        )
    return "\n".join(lines)
