"""Running ``tools/train_net.py`` as a user does, one step of an experiment at a time, and reading its results.

The steps run the repository's own ``tools/train_net.py``: this module needs the checkout (``pip install -e``).
It also holds the steps the demo and the ablation share: source training, direct transfer, one LF2 adaptation.
"""

import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TRAIN_NET = os.path.join(ROOT, "tools", "train_net.py")
METRICS = ("mAP", "Rank-1", "Rank-5", "Rank-10")

# LF2 variants of the ablation and the mechanism benchmark: name -> KEY VALUE overrides of the LF2 config
VARIANTS = {
    "lf2": [],
    "global_only_mt": ["MODEL.LF2.NUM_PARTS", "0"],
    "lf2_no_fusion": ["MODEL.LF2.FUSION.ENABLED", "False"],
    "lf2_fusion_loss": ["MODEL.LF2.FUSION.LOSS_WEIGHT", "0.5"],
}

# The synthetic demo's training choices before they were made the official ones (docs/FIDELITY.md), one per
# variant: what each official choice costs or gains on the synthetic benchmark.
FIDELITY_VARIANTS = {
    "lf2_fastreid_sampler": ["DATALOADER.SAMPLER_TRAIN", "BalancedIdentitySampler"],
    "lf2_torchvision_erasing": ["INPUT.REA.STYLE", "torchvision", "INPUT.REA.VALUE", "[123.675, 116.28, 103.53]"],
    "lf2_mean_centroids": ["MODEL.LF2.CLUSTER.KMEANS.CENTROIDS", "mean"],
}

# checkpoint entries only resuming the same run needs (the optimizer's and schedulers' state)
RESUME_STATE_KEYS = ("optimizer", "lr_sched", "warmup_sched")

__all__ = [
    "ROOT",
    "TRAIN_NET",
    "METRICS",
    "VARIANTS",
    "FIDELITY_VARIANTS",
    "RESUME_STATE_KEYS",
    "train_net",
    "metrics_row",
    "read_json",
    "write_json",
    "config_tuple",
    "datasets_env",
    "keep_final_weights_only",
    "source_stage_files",
    "source_and_direct_transfer",
    "adapt",
    "target_tests",
]


def train_net(config, out_dir, *opts, flags=(), env=None, reuse_if=None):
    """Run tools/train_net.py; its log goes to <out_dir>/stdout.log.

    With ``reuse_if`` (a file name a finished run leaves in ``out_dir``) an earlier finished run is kept instead,
    and an unfinished one that left a checkpoint is resumed (``--resume``) rather than started again.
    """
    os.makedirs(out_dir, exist_ok=True)
    cmd = [sys.executable, TRAIN_NET, "--config-file", config, *flags, "OUTPUT_DIR", out_dir, *map(str, opts)]
    if reuse_if and os.path.exists(os.path.join(out_dir, reuse_if)):
        print(f"reusing the finished run in {out_dir} (remove it to run again): {' '.join(cmd[1:])}", flush=True)
        return None
    if (
        reuse_if
        and "--eval-only" not in flags
        and "--resume" not in flags
        and os.path.exists(os.path.join(out_dir, "last_checkpoint"))
    ):
        cmd.insert(cmd.index("--config-file"), "--resume")  # interrupted: continue from its last checkpoint
    print("$", " ".join(cmd), flush=True)
    with open(os.path.join(out_dir, "stdout.log"), "a" if "--resume" in cmd else "w") as log:
        proc = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
    if proc.returncode != 0:
        with open(os.path.join(out_dir, "stdout.log")) as log:
            tail = log.read()[-4000:]
        raise SystemExit(f"step failed ({' '.join(cmd)}):\n{tail}")
    return proc


def metrics_row(name, metrics):
    return {"name": name, **{k: round(float(metrics[k]), 2) for k in METRICS}}


def read_json(path):
    with open(path) as f:
        return json.load(f)


def write_json(path, obj, indent=1):
    """``obj`` as JSON in ``path`` (its folder made if missing)."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=indent)


def config_tuple(values):
    """A tuple-valued override (e.g. ``DATASETS.TESTS``) as yacs reads it: the literal of a Python tuple."""
    return repr(tuple(values))


def datasets_env():
    """The environment of every step: ``FASTREID_DATASETS`` defaults to ``<repo>/datasets``."""
    return dict(os.environ, FASTREID_DATASETS=os.environ.get("FASTREID_DATASETS", os.path.join(ROOT, "datasets")))


def keep_final_weights_only(run_dir):
    """Delete a finished run's other checkpoints and strip what only resuming needs (optimizer, schedulers, RNG
    states) from its ``model_final.pth``: the weights still evaluate and start an adaptation, the run can no longer
    be resumed. Returns the bytes freed."""
    import torch

    final = os.path.join(run_dir, "model_final.pth")
    if not os.path.isfile(final):
        raise FileNotFoundError(f"{run_dir} has no model_final.pth: not a finished run")
    before = sum(os.path.getsize(os.path.join(run_dir, n)) for n in os.listdir(run_dir) if n.endswith(".pth"))
    checkpoint = torch.load(final, map_location="cpu", weights_only=False)
    slim = {k: v for k, v in checkpoint.items() if k not in (*RESUME_STATE_KEYS, "rng")}
    torch.save(slim, final + ".tmp")
    os.replace(final + ".tmp", final)
    for name in os.listdir(run_dir):
        if name.endswith(".pth") and name != "model_final.pth":
            os.remove(os.path.join(run_dir, name))
    with open(os.path.join(run_dir, "last_checkpoint"), "w") as f:
        f.write("model_final.pth")
    return before - os.path.getsize(final)


def source_stage_files(out):
    """(source weights, direct-transfer results): what :func:`source_and_direct_transfer` leaves under ``out``."""
    return os.path.join(out, "source", "model_final.pth"), os.path.join(out, "direct_transfer", "eval_results.json")


def source_and_direct_transfer(out, config_dir, seed, env, reuse=False, opts=()):
    """Source training in <out>/source, then its model on the target test set in <out>/direct_transfer.

    Returns the source weights and the direct-transfer row. ``reuse`` keeps steps an earlier call finished;
    ``opts`` (KEY VALUE overrides) apply to both steps.
    """
    source_config, lf2_config = (os.path.join(config_dir, name) for name in ("source.yml", "lf2.yml"))
    weights, results = source_stage_files(out)
    train_net(
        source_config,
        os.path.dirname(weights),
        "SEED",
        str(seed),
        *opts,
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
        *opts,
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


def target_tests(lf2_config):
    """The LF2 config's test sets as a ``DATASETS.TESTS`` override: the source model is evaluated on them."""
    from ..engine import build_config

    return config_tuple(build_config(lf2_config).DATASETS.TESTS)
