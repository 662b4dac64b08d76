"""Running ``tools/train_net.py`` as a user does, one step of an experiment at a time, and reading its results.

The steps run the repository's own ``tools/train_net.py``: this module needs the checkout (``pip install -e``).
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
    "datasets_env",
    "keep_final_weights_only",
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
