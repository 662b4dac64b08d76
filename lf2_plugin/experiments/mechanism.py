"""Paired mechanism benchmark: what LF2's part levels and Fusion Module do, each variant started from one state.

A whole adaptation's final mAP is chaotic: whichever run gets better labels at the first re-clustering keeps
them, so seeds differ by more than the variants do. Here every variant starts from the *same* state and does one
epoch only, so that the feedback loop has no time to amplify noise. A state is a seed's source model, or that
seed's LF2 run after epoch e (its checkpoint, RNG state included; the branch resumes it, so the EMA step counter
and the random streams continue as in the run). From each state, each variant:

1. clusters the state's features its own way: per level NMI, ARI, pairwise precision / recall / F1 against the
   true target identities (never used for training) and, on the synthetic benchmark, the share of local-cue
   group-mate pairs put in one cluster (lower is better: they are different people);
2. trains one epoch on those labels (``tools/train_net.py``, the variant's overrides);
3. is scored: the teacher's target mAP / Rank-1, and the quality of the labels its next clustering gives.

Every variant is then differenced against ``lf2`` state by state (:func:`paired_table`, n = states).

Layout under ``out``: ``seed<s>/source`` (source model), ``seed<s>/states`` (the LF2 run that leaves a checkpoint
after every epoch), ``seed<s>/from_<source|epochE>/<variant>/result.json`` (one branch). A finished branch or step
is kept, so an interrupted benchmark continues where it stopped; branch checkpoints are deleted once scored.
"""

import json
import logging
import os
import resource
import shutil
import time
from dataclasses import dataclass

import numpy as np
import torch

from .paired import format_interval, paired_difference
from .runs import FIDELITY_VARIANTS, RESUME_STATE_KEYS, VARIANTS, read_json, train_net

__all__ = [
    "State",
    "TargetTruth",
    "prepare_states",
    "run_branch",
    "score_labels",
    "next_labels",
    "paired_table",
    "branch_checkpoint",
    "LABEL_METRICS",
]

logger = logging.getLogger(__name__)

# per level, what a label set is scored by (clustering_quality keys, then local-cue pair rates)
LABEL_METRICS = ("nmi", "ari", "pairwise_precision", "pairwise_recall", "pairwise_f1", "group_mates", "unrelated")


@dataclass(frozen=True)
class State:
    """A starting state: ``epoch`` None is the seed's source model, else the LF2 run's checkpoint after ``epoch``."""

    seed: int
    epoch: object
    weights: str

    @property
    def tag(self):
        return f"seed{self.seed}/" + ("source" if self.epoch is None else f"epoch{self.epoch}")


def _cpu_seconds():
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def prepare_states(out, config_dir, seeds, epochs, env, opts=()):
    """Per seed: the source model (``source.yml``) and one LF2 run (``lf2.yml`` + ``opts``) that keeps a
    checkpoint after every epoch (``model_<epoch>.pth``), kept when it has every one of ``epochs``. Returns the
    states, the source ones first per seed."""
    states = []
    for seed in seeds:
        seed_dir = os.path.join(out, f"seed{seed}")
        source = os.path.join(seed_dir, "source", "model_final.pth")
        train_net(
            os.path.join(config_dir, "source.yml"),
            os.path.dirname(source),
            "SEED",
            seed,
            env=env,
            reuse_if="model_final.pth",
        )
        states.append(State(seed, None, source))
        if not epochs:
            continue
        run_dir = os.path.join(seed_dir, "states")
        if not all(os.path.exists(_epoch_checkpoint(run_dir, epoch)) for epoch in epochs):
            shutil.rmtree(run_dir, ignore_errors=True)  # interrupted, or run for fewer epochs
            # one epoch more than the last state, so that every state is a periodic checkpoint model_<epoch>
            train_net(
                os.path.join(config_dir, "lf2.yml"),
                run_dir,
                "MODEL.WEIGHTS",
                source,
                "SEED",
                seed,
                *opts,
                "SOLVER.MAX_EPOCH",
                max(epochs) + 2,
                "SOLVER.CHECKPOINT_PERIOD",
                1,
                "SOLVER.CHECKPOINT_KEEP",
                0,
                env=env,
            )
        states += [State(seed, epoch, _epoch_checkpoint(run_dir, epoch)) for epoch in sorted(epochs)]
    return states


def _epoch_checkpoint(run_dir, epoch):
    return os.path.join(run_dir, f"model_{epoch:04d}.pth")


def branch_checkpoint(state_path, run_dir, epoch):
    """Start ``run_dir`` from the state: its checkpoint without optimizer and scheduler state (a variant may
    have other parameters; both are irrelevant with ``SOLVER.RESET_OPTIMIZER_EACH_EPOCH`` and a constant
    learning rate, which :func:`run_branch` checks), tagged as the last checkpoint for ``--resume``."""
    checkpoint = torch.load(state_path, map_location="cpu", weights_only=False)
    kept = {k: v for k, v in checkpoint.items() if k not in RESUME_STATE_KEYS}
    if kept.get("epoch") != epoch:
        raise ValueError(f"{state_path} is the checkpoint of epoch {kept.get('epoch')}, not {epoch}")
    os.makedirs(run_dir, exist_ok=True)
    path = _epoch_checkpoint(run_dir, epoch)
    torch.save(kept, path)
    with open(os.path.join(run_dir, "last_checkpoint"), "w") as f:
        f.write(os.path.basename(path))


def _check_branchable(cfg):
    """Branches drop the optimizer and scheduler state: valid only if the run would have dropped it anyway."""
    lr_changes = cfg.SOLVER.WARMUP_ITERS > 0 or any(step < cfg.SOLVER.MAX_EPOCH for step in cfg.SOLVER.STEPS)
    if not cfg.SOLVER.RESET_OPTIMIZER_EACH_EPOCH or lr_changes or cfg.SOLVER.SCHED != "MultiStepLR":
        raise ValueError(
            "the mechanism benchmark branches a run without its optimizer and scheduler state: it "
            "needs SOLVER.RESET_OPTIMIZER_EACH_EPOCH True and a constant learning rate"
        )


def _branch_dir(out, state, variant):
    return os.path.join(out, f"seed{state.seed}", f"from_{os.path.basename(state.tag)}", variant)


def run_branch(state, variant, out, config_dir, env, opts=()):
    """One epoch of ``variant`` from ``state``, scored (``result.json`` in the branch folder, kept)."""
    from ..engine import build_config

    run_dir = _branch_dir(out, state, variant)
    result_file = os.path.join(run_dir, "result.json")
    if os.path.exists(result_file):
        return read_json(result_file)
    if os.path.isdir(run_dir):  # an interrupted branch: start it again from the state
        shutil.rmtree(run_dir)
    config = os.path.join(config_dir, "lf2.yml")
    overrides = [*opts, *{**VARIANTS, **FIDELITY_VARIANTS}[variant], "SEED", state.seed]
    wall, cpu = time.perf_counter(), _cpu_seconds()
    if state.epoch is None:
        epoch = 0
        train_net(config, run_dir, "MODEL.WEIGHTS", state.weights, *overrides, "SOLVER.MAX_EPOCH", 1, env=env)
    else:
        epoch = state.epoch + 1
        _check_branchable(build_config(config, overrides))
        branch_checkpoint(state.weights, run_dir, state.epoch)
        train_net(config, run_dir, *overrides, "SOLVER.MAX_EPOCH", epoch + 1, flags=("--resume",), env=env)
    final = os.path.join(run_dir, "model_final.pth")
    cfg = build_config(
        config, [*overrides, "MODEL.WEIGHTS", final, "OUTPUT_DIR", run_dir, "MODEL.BACKBONE.PRETRAIN", False]
    )
    labels = [np.asarray(level) for level in torch.load(final, map_location="cpu", weights_only=False)["pseudo_labels"]]
    target = TargetTruth.of(cfg)
    result = {
        "state": state.tag,
        "variant": variant,
        "epoch": epoch,
        "metrics": read_json(os.path.join(run_dir, "summary.json"))["last"],
        "labels": score_labels(target, labels),
        "next_labels": score_labels(target, next_labels(cfg, target.items, final, epoch + 1)),
        "seconds": round(time.perf_counter() - wall, 1),
        "cpu_seconds": round(_cpu_seconds() - cpu, 1),
    }
    for name in os.listdir(run_dir):  # scored: the branch's checkpoints are not needed any more
        if name.endswith(".pth"):
            os.remove(os.path.join(run_dir, name))
    with open(result_file + ".tmp", "w") as f:
        json.dump(result, f, indent=1)
    os.replace(result_file + ".tmp", result_file)
    return result


@dataclass(frozen=True)
class TargetTruth:
    """The target train images in the trainer's order, their true ids and, for a generated synthetic target, each
    image's identity number and the local-cue groups (else None): what :func:`score_labels` scores against."""

    items: list
    true_ids: list
    pids: object
    groups: object

    @classmethod
    def of(cls, cfg):
        from ..data.synthetic.local_cues import target_train_groups
        from ..engine.trainer import LF2Trainer

        items, true_ids = LF2Trainer.load_target_train_set(cfg)
        return cls(items, true_ids, *target_train_groups(cfg, items))


def next_labels(cfg, items, weights, epoch):
    """The labels per level that the clustering hook would give at ``epoch`` from ``weights`` (same features of
    the target train ``items``, same seed)."""
    from ..clustering import distributed_cluster_levels, resolve_min_clusters
    from ..clustering.features import extract_clustering_features
    from ..clustering.hook import cluster_camids, epoch_cluster_seed
    from ..data.pseudo_labels import build_clustering_loader
    from ..engine.checkpoint import AtomicCheckpointer
    from ..engine.trainer import LF2Trainer

    model = LF2Trainer.build_model(cfg)
    AtomicCheckpointer(model, "").load(weights)
    features = extract_clustering_features(model, build_clustering_loader(cfg, items), flip=True, progress=False)
    results = distributed_cluster_levels(
        features,
        cfg.MODEL.LF2.CLUSTER,
        seed=epoch_cluster_seed(cfg, epoch),
        min_clusters=resolve_min_clusters(cfg),
        camids=cluster_camids(cfg, [item[2] for item in items]),
    )
    return [r.labels for r in results]


def score_labels(target, labels_per_level):
    """Per level: :func:`clustering_quality` against the ``target``'s (:class:`TargetTruth`) true ids, and
    (synthetic targets) the share of local-cue group-mate and of unrelated pairs that share a label."""
    from ..clustering import clustering_quality
    from ..data.synthetic.local_cues import pair_co_clustering

    scores = []
    for labels in labels_per_level:
        level = clustering_quality(labels, target.true_ids)
        if target.groups is not None:
            rates = pair_co_clustering(target.pids, labels, target.groups)
            level.update(group_mates=rates["group_mates"], unrelated=rates["unrelated"])
        scores.append({k: round(float(v), 5) for k, v in level.items()})
    return scores


def _metric_series(results, variant, states, metric):
    """Per state, ``metric`` of ``variant``: "mAP" / "Rank-1", or "labels/<level>/<key>",
    "next_labels/<level>/<key>"; None where the variant has no such level."""
    values = []
    for state in states:
        result = results[state][variant]
        if "/" not in metric:
            values.append(result["metrics"][metric])
            continue
        kind, level, key = metric.split("/")
        levels = result[kind]
        values.append(levels[int(level)].get(key) if int(level) < len(levels) else None)
    return values


def paired_table(results, variants, baseline="lf2", num_levels=3):
    """Paired differences ``variant − baseline`` over the states, for mAP, Rank-1 and every label metric of every
    level both have. ``results``: {state tag: {variant: result}}."""
    states = sorted(results)
    metrics = ["mAP", "Rank-1"] + [
        f"{kind}/{level}/{key}"
        for kind in ("labels", "next_labels")
        for level in range(num_levels)
        for key in LABEL_METRICS
    ]
    pairs = []
    for variant in variants:
        if variant == baseline:
            continue
        for metric in metrics:
            a = _metric_series(results, variant, states, metric)
            b = _metric_series(results, baseline, states, metric)
            if any(v is None for v in a + b):
                continue
            digits = 2 if "/" not in metric else 4
            pairs.append(
                paired_difference(variant, baseline, metric, a, b, states, digits=digits, unit_key="per_state")
            )
    return pairs


def finished_results(out, states, variants):
    """{state tag: {variant: result}} of the branches already scored under ``out`` (nothing is run)."""
    results = {}
    for state in states:
        for variant in variants:
            path = os.path.join(_branch_dir(out, state, variant), "result.json")
            if os.path.exists(path):
                results.setdefault(state.tag, {})[variant] = read_json(path)
    return {tag: by_variant for tag, by_variant in results.items() if set(by_variant) == set(variants)}


def run_benchmark(out, config_dir, seeds, epochs, variants, env, opts=(), run=True):
    """The states, every branch from each (unless ``run`` is False: only what is already finished) and the
    paired table. Returns the summary that docs/benchmarks/ keeps."""
    wall, cpu = time.perf_counter(), _cpu_seconds()
    states = (
        prepare_states(out, config_dir, seeds, epochs, env, opts)
        if run
        else [State(seed, epoch, "") for seed in seeds for epoch in (None, *sorted(epochs))]
    )
    states_cpu = _cpu_seconds() - cpu
    if run:
        for state in states:
            for variant in variants:
                run_branch(state, variant, out, config_dir, env, opts)
    results = finished_results(out, states, variants)
    return {
        "config_dir": os.path.relpath(config_dir),
        "seeds": list(seeds),
        "epochs": list(epochs),
        "variants": list(variants),
        "opts": [str(o) for o in opts],
        "states": sorted(results),
        "paired": paired_table(results, variants),
        "cpu_minutes": {
            "states (this call)": round(states_cpu / 60, 1),
            **{v: round(sum(r[v]["cpu_seconds"] for r in results.values()) / 60, 1) for v in variants},
        },
        "wall_minutes (this call)": round((time.perf_counter() - wall) / 60, 1),
        "results": results,
    }


# what format_table prints (the JSON holds every metric of every level)
HEADLINE_METRICS = (
    "mAP",
    "Rank-1",
    "labels/0/pairwise_f1",
    "labels/1/pairwise_f1",
    "labels/2/pairwise_f1",
    "labels/0/group_mates",
    "labels/1/group_mates",
    "labels/2/group_mates",
    "next_labels/0/pairwise_f1",
    "next_labels/1/pairwise_f1",
    "next_labels/2/pairwise_f1",
)


def format_table(summary):
    lines = [
        f"{len(summary['states'])} starting states; paired differences variant − lf2",
        "| variant − lf2 | metric | mean | 95% CI | n | variant higher in |",
        "|---|---|--:|---|--:|--:|",
    ]
    for pair in summary["paired"]:
        if pair["metric"] in HEADLINE_METRICS:
            lines.append(
                f"| {pair['a']} − {pair['b']} | {pair['metric']} | {pair['mean']:+g} | "
                f"{format_interval(pair['ci95'], '+g')} | {pair['n']} | {pair['better_in']} |"
            )
    lines.append("CPU minutes: " + ", ".join(f"{k} {v}" for k, v in summary["cpu_minutes"].items()))
    return "\n".join(lines)
