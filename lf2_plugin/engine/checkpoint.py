"""Checkpoints that survive a process killed mid-save, and loads that refuse a checkpoint of another model."""

import errno
import glob
import os
import re
import shutil

import torch

from fastreid.utils.checkpoint import Checkpointer

__all__ = ["AtomicCheckpointer", "CheckpointWriteError"]


class CheckpointWriteError(OSError):
    """A checkpoint (or ``last_checkpoint``) could not be written; the previous one and its tag are intact."""


class AtomicCheckpointer(Checkpointer):
    """fast-reid's Checkpointer with atomic writes, checked loads and optional extra state in every checkpoint.

    The file is written to a temporary name and renamed, then ``last_checkpoint`` is replaced the same way, so a
    process killed mid-save leaves the previous checkpoint and its tag intact. Loading names the file when it is
    missing or unreadable and raises when the checkpoint does not fill the model's backbone (fast-reid only warns
    and trains from the random initialisation); ``--resume`` (and :meth:`load_complete`) refuses a checkpoint
    that leaves any model tensor unset. With ``keep_last`` > 0 only the newest ``keep_last`` periodic checkpoints
    (``model_<epoch>.pth``) stay on disk; ``model_final``, ``model_best`` and ``model_interrupted`` always stay.
    ``built_with`` (:func:`~lf2_plugin.modeling.checkpoint.model_provenance`) is stored in every checkpoint.
    """

    PERIODIC_NAME = re.compile(r"model_(\d+)\.pth")

    def __init__(
        self, model, save_dir="", *, extra_state=None, keep_last=0, built_with=None, resumes_mid_epoch=False, **kwargs
    ):
        super().__init__(model, save_dir, **kwargs)
        self.resumes_mid_epoch = resumes_mid_epoch  # the trainer continues a mid-epoch checkpoint exactly
        self.extra_state = extra_state
        self.keep_last = int(keep_last)
        self.built_with = built_with
        self._loading = ""
        self._complete_except = None  # while loading completely: the model keys that may differ

    def save(self, name, **kwargs):
        if not self.save_dir or not self.save_to_disk:
            return
        data = {"model": self.model.state_dict()}
        data.update({key: obj.state_dict() for key, obj in self.checkpointables.items()})
        if self.extra_state is not None:
            data.update(self.extra_state())
        if self.built_with is not None:
            data["built_with"] = dict(self.built_with)
        data.update(kwargs)
        basename = f"{name}.pth"
        path = os.path.join(self.save_dir, basename)
        self.logger.info("Saving checkpoint to %s", path)
        _atomic_write(path, lambda f: torch.save(data, f), binary=True)
        self.tag_last_checkpoint(basename)
        self._remove_old_periodic_checkpoints()

    def _remove_old_periodic_checkpoints(self):
        """Why: fast-reid keeps every periodic checkpoint; an LF2 one (student, teacher, Adam) of ResNet-50 is
        ~0.4 GB, so the paper's 80 epochs would fill ~30 GB. Runs after the new file is tagged as the last one."""
        if self.keep_last <= 0:
            return
        periodic = sorted(
            (int(match.group(1)), name)
            for name in os.listdir(self.save_dir)
            if (match := self.PERIODIC_NAME.fullmatch(name))
        )
        for _, name in periodic[: -self.keep_last]:
            self.logger.info("Removing %s (SOLVER.CHECKPOINT_KEEP %d)", name, self.keep_last)
            os.remove(os.path.join(self.save_dir, name))

    def tag_last_checkpoint(self, last_filename_basename):
        _atomic_write(os.path.join(self.save_dir, "last_checkpoint"), lambda f: f.write(last_filename_basename))

    def load_complete(self, path, *, may_differ=(), **kwargs):
        """:meth:`load`, refusing a checkpoint that leaves any model tensor but those named in ``may_differ``
        missing or of another shape (:class:`~lf2_plugin.modeling.checkpoint.IncompleteCheckpointError`)."""
        self._complete_except = frozenset(may_differ)
        try:
            return self.load(path, **kwargs)
        finally:
            self._complete_except = None

    def resume_or_load(self, path, *, resume=True):
        if resume and self.has_checkpoint():  # the run that wrote OUTPUT_DIR goes on: every tensor must fit
            return self._resume()
        return super().resume_or_load(path, resume=resume)

    def _resume(self):
        if self.save_to_disk:
            stale_files = [
                path
                for pattern in ("*.pth.tmp.*", "last_checkpoint.tmp.*")
                for path in glob.glob(os.path.join(glob.escape(self.save_dir), pattern))
            ]
            for stale in stale_files:
                self.logger.warning("Removing %s, left by a process killed while saving", stale)
                os.remove(stale)
        # a model's cluster-sized tensors (LF2's classifier) are set again before they are used
        may_differ = getattr(self.model, "CLUSTER_SIZED_KEYS", ())
        checkpoint = self.load_complete(self.get_checkpoint_file(), may_differ=may_differ)
        if checkpoint.get("interrupted_mid_epoch") and not self.resumes_mid_epoch:
            self.logger.warning(
                "Resuming from a checkpoint written mid-epoch (stopped by %s at iteration %d): epoch %d restarts "
                "from its first iteration with these weights, so the result is not bit-identical to an "
                "uninterrupted run (resuming from an epoch checkpoint model_NNNN.pth is, as is an LF2 run's)",
                checkpoint.get("interrupted", "a signal"),
                checkpoint.get("iteration", -1),
                checkpoint.get("epoch", -1) + 1,
            )
        return checkpoint

    def _load_file(self, f):
        from ..modeling.checkpoint import checkpoint_state_dict, load_checkpoint_file

        self._loading = f
        checkpoint = load_checkpoint_file(f)
        if not isinstance(checkpoint, dict) or "model" not in checkpoint:  # a bare state dict
            checkpoint = {"model": checkpoint_state_dict(checkpoint)}
        return checkpoint

    def _load_model(self, checkpoint):
        stored = {k[len("module.") :] if k.startswith("module.") else k: v for k, v in checkpoint["model"].items()}
        model_state = self.model.state_dict()
        if self._complete_except is not None:
            self._check_complete(checkpoint, stored, model_state)
        backbone = [k for k in model_state if k.startswith(("backbone.", "teacher.backbone."))]
        unfit = [k for k in backbone if k not in stored or tuple(stored[k].shape) != tuple(model_state[k].shape)]
        if unfit:
            examples = "; ".join(
                f"{k}: {tuple(stored[k].shape) if k in stored else 'missing'} in the checkpoint, "
                f"{tuple(model_state[k].shape)} in the model"
                for k in unfit[:3]
            )
            raise RuntimeError(
                f"{self._loading} does not fit this model's backbone: {len(unfit)} of {len(backbone)} backbone "
                f"tensors missing or of another shape ({examples}). It was trained with another "
                f"MODEL.BACKBONE / META_ARCHITECTURE: set them as in the config that wrote it."
            )
        return super()._load_model(checkpoint)

    def _check_complete(self, checkpoint, stored, model_state):
        from ..modeling.checkpoint import (
            IncompleteCheckpointError,
            describe_provenance,
            describe_saved_model,
            describe_unfit,
            unfit_tensors,
        )

        keys = [k for k in model_state if k not in self._complete_except]
        missing, misfit = unfit_tensors(stored, model_state, keys)
        if not (missing or misfit):
            return
        builds = f"; this run builds {describe_provenance(self.built_with)}" if self.built_with is not None else ""
        raise IncompleteCheckpointError(
            f"{self._loading} does not fit this model: {len(missing)} of {len(keys)} tensors missing, {len(misfit)} "
            f"of another shape ({describe_unfit(stored, model_state, missing, misfit)}). It was saved from "
            f"{describe_saved_model(checkpoint)}{builds}. Use the config the checkpoint was trained with (for "
            "--resume: OUTPUT_DIR/config.yaml)."
        )


def _atomic_write(path, write, binary=False):
    """``write(f)`` to a temporary file, fsync, rename over ``path``. On failure the temporary file is removed and
    :class:`CheckpointWriteError` names the folder and its free space: torch reports a full disk only as
    ``RuntimeError: [enforce fail at inline_container.cc] unexpected pos``."""
    tmp = f"{path}.tmp.{os.getpid()}"
    try:
        with open(tmp, "wb" if binary else "w") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except (OSError, RuntimeError) as error:
        message = _write_failure(path, tmp, error)
        if os.path.exists(tmp):
            os.remove(tmp)
        raise CheckpointWriteError(message) from error


# Below this many free bytes a failed write is reported as a full disk whatever the error says.
_FULL_DISK_BYTES = 1 << 20


def _write_failure(path, tmp, error):
    folder = os.path.dirname(os.path.abspath(path))
    written = os.path.getsize(tmp) if os.path.exists(tmp) else 0
    free = shutil.disk_usage(folder).free  # before the temporary file is removed, as the write saw it
    full = getattr(error, "errno", None) in (errno.ENOSPC, errno.EDQUOT) or free < _FULL_DISK_BYTES
    cause = "the disk is full" if full else f"{type(error).__name__}: {error}"
    return (
        f"cannot write {path}: {cause} ({_size(free)} free in {folder}; {_size(written)} of the file were written "
        "and have been removed). The previous checkpoint and last_checkpoint are intact: free space (or move "
        "OUTPUT_DIR elsewhere, with its last checkpoint) and --resume."
    )


def _size(num_bytes):
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if num_bytes < 1024 or unit == "GiB":
            return f"{num_bytes:.0f} {unit}" if unit == "bytes" else f"{num_bytes:.1f} {unit}"
        num_bytes /= 1024
