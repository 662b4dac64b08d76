"""Finished steps of a long experiment kept as small files (e.g. in the repository), so that its table can grow
over machines that do not keep their run folders.

A step's record is what the ablation reads from a finished LF2 run (``summary.json``, ``clustering.jsonl``) and the
fingerprint of the source weights the run started from. The source model (too large to keep) is trained again
from its seed; a recorded step is reused only when the retrained weights have the same fingerprint, so that a
reused step stays paired with the ones trained now. On CPU, source training from a seed is bit-for-bit repeatable
on one machine; another CPU's kernels may round differently, and the step is then trained again.
"""

import hashlib
import os
import shutil

from .runs import read_json, write_json

__all__ = ["STEP_FILES", "weights_fingerprint", "record_step", "restore_step"]

# what a finished LF2 run leaves that the ablation's rows, pseudo-label quality and F1 trajectories are read from
STEP_FILES = ("summary.json", "clustering.jsonl")
FINGERPRINT_FILE = "source_weights.json"


def weights_fingerprint(path):
    """SHA-256 over the checkpoint's model tensors (name, dtype, shape, bytes, in name order): equal exactly when
    every weight is bit-for-bit equal, whatever else the file holds (optimizer, RNG states, pickling details)."""
    import torch

    state = torch.load(path, map_location="cpu", weights_only=False)["model"]
    digest = hashlib.sha256()
    for name in sorted(state):
        tensor = state[name].detach().cpu().contiguous()
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(tensor.view(-1).view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
    return digest.hexdigest()


def step_dir(record, seed, name):
    return os.path.join(record, f"seed{seed}", name)


def copy_step_files(from_dir, to_dir):
    os.makedirs(to_dir, exist_ok=True)
    for file in STEP_FILES:
        shutil.copyfile(os.path.join(from_dir, file), os.path.join(to_dir, file))


def record_step(record, seed, name, run_dir, fingerprint):
    """Copy a finished run's :data:`STEP_FILES` to ``<record>/seed<seed>/<name>/`` beside the fingerprint of the
    source weights it started from."""
    target = step_dir(record, seed, name)
    copy_step_files(run_dir, target)
    write_json(os.path.join(target, FINGERPRINT_FILE), {"sha256": fingerprint})


def restore_step(record, seed, name, run_dir, fingerprint):
    """Put a recorded step's files into ``run_dir`` when it was trained from the same source weights; returns
    whether it did. A step recorded from other weights is left alone, and the mismatch is printed."""
    source = step_dir(record, seed, name)
    if os.path.exists(os.path.join(run_dir, "summary.json")) or not os.path.isfile(
        os.path.join(source, FINGERPRINT_FILE)
    ):
        return False
    recorded = read_json(os.path.join(source, FINGERPRINT_FILE))["sha256"]
    if recorded != fingerprint:
        print(
            f"{source} was trained from other source weights (sha256 {recorded[:12]}, now {fingerprint[:12]}): "
            "training it again",
            flush=True,
        )
        return False
    copy_step_files(source, run_dir)
    print(f"restored {name} of seed {seed} from {source} (same source weights, sha256 {fingerprint[:12]})", flush=True)
    return True
