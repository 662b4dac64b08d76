"""The LF2 mean-teacher trainer: fast-reid's DefaultTrainer with a loop that differs where LF2 differs.

What differs from ``DefaultTrainer`` (and nothing else does):

- the train set is the *unlabelled* target: its ground-truth ids never reach a loss (they only score the
  pseudo labels); the loaders come from the clustering hook, rebuilt every epoch, one per feature level;
- an epoch is ``SOLVER.ITERS_PER_EPOCH`` iterations (400 in the paper), independent of the data size;
- each iteration draws one batch per level, computes the LF2 losses, steps, and EMA-updates the teacher;
- after clustering, the global classifier is re-initialised from the level-0 centroids (and, with
  ``SOLVER.RESET_OPTIMIZER_EACH_EPOCH``, the optimizer state is reset, as the official code re-creates Adam);
- ``MODEL.WEIGHTS`` may be a source-stage checkpoint (fills student and teacher) or an LF2 checkpoint;
- checkpoints also hold the pseudo labels and every RNG state, so ``--resume`` continues exactly;
- after training, the last epoch's metrics are reported, the best epoch only beside them.
"""

import glob
import hashlib
import json
import logging
import numbers
import os
import random
import re
import time

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel

from fastreid.data.datasets import DATASET_REGISTRY
from fastreid.engine import DefaultTrainer, hooks
from fastreid.engine.train_loop import SimpleTrainer, TrainerBase
from fastreid.utils import comm
from fastreid.utils.checkpoint import Checkpointer
from fastreid.utils.events import get_event_storage
from fastreid.utils.logger import setup_logger

from ..clustering.hook import MultiLevelClusteringHook
from ..data.pseudo_labels import build_clustering_loader, build_pseudo_label_loaders
from ..modeling.split_bn import convert_split_batchnorm
from .hooks import BestMetricCheckpointer

__all__ = ["LF2Trainer", "LF2StepRunner", "AtomicCheckpointer", "unwrap_model"]

logger = logging.getLogger(__name__)


def unwrap_model(model):
    return model.module if isinstance(model, DistributedDataParallel) else model


class LF2StepRunner(SimpleTrainer):
    """One LF2 iteration: a batch from each level's loader, the LF2 losses, a step, then the EMA update."""

    def __init__(self, model, optimizer):
        TrainerBase.__init__(self)
        model.train()
        self.model = model
        self.optimizer = optimizer
        self.param_wrapper = None
        self.data_loaders, self._iterators = [], []

    @property
    def data_loader(self):
        return self.data_loaders[0] if self.data_loaders else None

    def set_data_loaders(self, loaders):
        for old in self.data_loaders:
            getattr(old, "shutdown", lambda: None)()  # DataLoaderX's prefetch thread on GPU
        self.data_loaders = list(loaders)
        self._iterators = [iter(loader) for loader in self.data_loaders]

    def run_step(self):
        assert self.model.training, "[LF2StepRunner] model was changed to eval mode!"
        if not self._iterators:
            raise RuntimeError("no pseudo-labelled loaders: the clustering hook must run before the first step")
        start = time.perf_counter()
        batches = [next(iterator) for iterator in self._iterators]
        data_time = time.perf_counter() - start
        loss_dict = self.model(batches)
        losses = sum(loss_dict.values())
        self.optimizer.zero_grad()
        losses.backward()
        self._write_metrics(loss_dict, data_time)  # raises FloatingPointError on NaN/inf before the step
        self.optimizer.step()
        momentum = unwrap_model(self.model).ema_update(self.iter)
        if comm.is_main_process():
            get_event_storage().put_scalar("ema_momentum", momentum, smoothing_hint=False)


def _rng_state():
    np_state = np.random.get_state()
    return {
        "python": random.getstate(),
        "numpy": {
            "keys": torch.from_numpy(np_state[1].astype(np.int64)),
            "pos": int(np_state[2]),
            "has_gauss": int(np_state[3]),
            "cached_gaussian": float(np_state[4]),
        },
        "torch": torch.get_rng_state(),
    }


def _set_rng_state(state):
    random.setstate(tuple(x if not isinstance(x, list) else tuple(x) for x in state["python"]))
    n = state["numpy"]
    np.random.set_state(
        ("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached_gaussian"])
    )
    torch.set_rng_state(state["torch"])


class AtomicCheckpointer(Checkpointer):
    """fast-reid's Checkpointer with atomic writes, checked loads and optional extra state in every checkpoint.

    The file is written to a temporary name and renamed, then ``last_checkpoint`` is replaced the same way, so a
    process killed mid-save leaves the previous checkpoint and its tag intact. Loading names the file when it is
    missing or unreadable and raises when the checkpoint does not fill the model's backbone (fast-reid only warns
    and trains from the random initialisation). With ``keep_last`` > 0 only the newest ``keep_last`` periodic
    checkpoints (``model_<epoch>.pth``) stay on disk; ``model_final``, ``model_best`` and ``model_interrupted``
    always stay.
    """

    PERIODIC_NAME = re.compile(r"model_(\d+)\.pth")

    def __init__(self, model, save_dir, *, extra_state=None, keep_last=0, **kwargs):
        super().__init__(model, save_dir, **kwargs)
        self.extra_state = extra_state
        self.keep_last = int(keep_last)
        self._loading = ""

    def save(self, name, **kwargs):
        if not self.save_dir or not self.save_to_disk:
            return
        data = {"model": self.model.state_dict()}
        data.update({key: obj.state_dict() for key, obj in self.checkpointables.items()})
        if self.extra_state is not None:
            data.update(self.extra_state())
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

    def resume_or_load(self, path, *, resume=True):
        if resume and self.has_checkpoint() and self.save_to_disk:
            stale_files = [
                path
                for pattern in ("*.pth.tmp.*", "last_checkpoint.tmp.*")
                for path in glob.glob(os.path.join(glob.escape(self.save_dir), pattern))
            ]
            for stale in stale_files:
                self.logger.warning("Removing %s, left by a process killed while saving", stale)
                os.remove(stale)
        checkpoint = super().resume_or_load(path, resume=resume)
        if resume and checkpoint.get("interrupted_mid_epoch"):
            self.logger.warning(
                "Resuming from a checkpoint written mid-epoch (stopped by %s at iteration %d): epoch %d restarts "
                "from its first iteration with these weights, so the result is not bit-identical to an "
                "uninterrupted run (resuming from an epoch checkpoint model_NNNN.pth is)",
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


def _atomic_write(path, write, binary=False):
    tmp = f"{path}.tmp.{os.getpid()}"
    with open(tmp, "wb" if binary else "w") as f:
        write(f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


class LF2Trainer(DefaultTrainer):
    """Unsupervised adaptation with LF2 (``MODEL.META_ARCHITECTURE: LF2``); see the module docstring."""

    def __init__(self, cfg):
        TrainerBase.__init__(self)
        if not logging.getLogger("fastreid").isEnabledFor(logging.INFO):
            setup_logger()
        cfg = cfg.clone()
        self.target_items, true_ids = self.load_target_train_set(cfg)
        model = self.build_model(cfg)
        optimizer, _ = self.build_optimizer(cfg, model)
        self._trainer = LF2StepRunner(self._wrap_distributed(cfg, model), optimizer)
        self.iters_per_epoch = cfg.SOLVER.ITERS_PER_EPOCH or len(self.target_items) // cfg.SOLVER.IMS_PER_BATCH
        self.scheduler = self.build_lr_scheduler(cfg, optimizer, self.iters_per_epoch)
        self.pseudo_labels = []
        self.checkpointer = AtomicCheckpointer(
            model,
            cfg.OUTPUT_DIR,
            save_to_disk=comm.is_main_process(),
            extra_state=self._extra_checkpoint_state,
            keep_last=cfg.SOLVER.CHECKPOINT_KEEP,
            optimizer=optimizer,
            **self.scheduler,
        )
        self.start_epoch = 0
        self.max_epoch = cfg.SOLVER.MAX_EPOCH
        self.max_iter = self.max_epoch * self.iters_per_epoch
        self.warmup_iters = cfg.SOLVER.WARMUP_ITERS
        self.delay_epochs = cfg.SOLVER.DELAY_EPOCHS
        self.cfg = cfg
        self.eval_history = []
        self.clustering_hook = MultiLevelClusteringHook(
            cfg,
            build_clustering_loader(cfg, self.target_items),
            true_ids=true_ids,
            image_paths=[item[0] for item in self.target_items],
            camids=[item[2] for item in self.target_items],
        )
        self.register_hooks(self.build_hooks())

    # ---- data -------------------------------------------------------------------------------------------------
    @staticmethod
    def load_target_train_set(cfg):
        """The target train images ``(path, pid, camid)`` of ``DATASETS.NAMES`` and their ids (for scoring only)."""
        import fastreid.data.build as data_build

        items = []
        for name in cfg.DATASETS.NAMES:
            dataset = DATASET_REGISTRY.get(name)(root=data_build._root)
            if comm.is_main_process():
                dataset.show_train()
            items.extend(dataset.train)
        batch = cfg.SOLVER.IMS_PER_BATCH
        if len(items) < batch:
            raise ValueError(
                f"target train set {list(cfg.DATASETS.NAMES)} has {len(items)} images, fewer than one "
                f"batch (SOLVER.IMS_PER_BATCH={batch})"
            )
        return items, [item[1] for item in items]

    @classmethod
    def build_model(cls, cfg):
        return convert_split_batchnorm(super().build_model(cfg), cfg.MODEL.BN_SPLITS)

    @property
    def unwrapped_model(self):
        return unwrap_model(self.model)

    @staticmethod
    def _wrap_distributed(cfg, model):
        if comm.get_world_size() == 1:
            return model
        # Parameters without a gradient (attention/fusion when FUSION.LOSS_WEIGHT is 0) need find_unused_parameters.
        device_ids = [comm.get_local_rank()] if cfg.MODEL.DEVICE.startswith("cuda") else None
        return DistributedDataParallel(
            model, device_ids=device_ids, broadcast_buffers=False, find_unused_parameters=True
        )

    def set_pseudo_labels(self, results):
        """Called by the clustering hook: new classifier, optimizer bookkeeping and one loader per level."""
        model = self.unwrapped_model
        before = dict(model.named_parameters())
        model.reset_classifier(torch.from_numpy(np.ascontiguousarray(results[0].centroids)))
        replaced = {
            before[name]: param
            for name, param in model.named_parameters()
            if name in before and before[name] is not param
        }
        for group in self.optimizer.param_groups:
            group["params"] = [replaced.get(p, p) for p in group["params"]]
        for old in replaced:
            self.optimizer.state.pop(old, None)
        if self.cfg.SOLVER.RESET_OPTIMIZER_EACH_EPOCH:
            self.optimizer.state.clear()
        if replaced and comm.get_world_size() > 1:
            self._trainer.model = self._wrap_distributed(self.cfg, model)  # DDP must see the new parameter
        self.pseudo_labels = [torch.from_numpy(np.asarray(r.labels, dtype=np.int64)) for r in results]
        digest = hashlib.sha1(b"".join(labels.numpy().tobytes() for labels in self.pseudo_labels)).hexdigest()
        logger.info("epoch %d pseudo-label digest %s", self.epoch, digest[:16])
        self._trainer.set_data_loaders(
            build_pseudo_label_loaders(self.cfg, self.target_items, [r.labels for r in results])
        )

    # ---- fast-reid trainer API --------------------------------------------------------------------------------
    @classmethod
    def build_train_loader(cls, cfg):
        raise NotImplementedError("LF2Trainer trains on pseudo-labelled loaders built by its clustering hook")

    def build_hooks(self):
        cfg = self.cfg
        ret = [hooks.IterationTimer(), hooks.LRScheduler(self.optimizer, self.scheduler), self.clustering_hook]

        def test_and_save_results():
            self._last_eval_results = self.test(self.cfg, self.model)
            self.eval_history.append({"epoch": self.epoch, **_flat_metrics(self._last_eval_results)})
            return self._last_eval_results

        ret.append(hooks.EvalHook(cfg.TEST.EVAL_PERIOD, test_and_save_results))
        if comm.is_main_process():
            ret.append(BestMetricCheckpointer(self.checkpointer, cfg.SOLVER.CHECKPOINT_PERIOD, cfg.TEST.BEST_METRIC))
            ret.append(hooks.PeriodicWriter(self.build_writers(), 20))
        return ret

    def _extra_checkpoint_state(self):
        return {"pseudo_labels": list(self.pseudo_labels), "rng": _rng_state()}

    def resume_or_load(self, resume=True):
        """Resume from OUTPUT_DIR's last checkpoint (model, optimizer, schedulers, RNG), or load MODEL.WEIGHTS:
        an LF2 checkpoint as is, a source-stage checkpoint into both student and teacher."""
        from ..modeling.checkpoint import checkpoint_state_dict, is_lf2_state_dict, load_checkpoint_file

        if resume and self.checkpointer.has_checkpoint():
            checkpoint = self.checkpointer.resume_or_load(self.cfg.MODEL.WEIGHTS, resume=True)
            self.start_epoch = checkpoint.get("epoch", -1) + 1
            if "rng" in checkpoint:
                _set_rng_state(checkpoint["rng"])
            self.pseudo_labels = checkpoint.get("pseudo_labels", [])
            return
        path = self.cfg.MODEL.WEIGHTS
        if not path:
            logger.warning("MODEL.WEIGHTS is empty: adapting from a randomly initialised network")
            return
        state_dict = checkpoint_state_dict(load_checkpoint_file(path))
        if is_lf2_state_dict(state_dict):
            self.checkpointer.load(path, checkpointables=[])
        else:
            self.unwrapped_model.load_source_checkpoint(state_dict)

    def train(self):
        super().train()
        if comm.is_main_process():
            self.write_summary()
            return self._last_eval_results

    def write_summary(self):
        """Log and save the last epoch's metrics; the best epoch (chosen on the test set) only beside them."""
        if not self.eval_history:
            return None
        last = self.eval_history[-1]
        best = max(self.eval_history, key=lambda r: r.get("mAP", -1))
        losses = [(int(it), float(v)) for v, it in self.storage.history("total_loss").values()]
        summary = {"last": last, "best_on_test_set": best, "history": self.eval_history, "total_loss": losses}
        logger.info("Final (last epoch %d): %s", last["epoch"], _format_metrics(last))
        logger.info(
            "Best epoch on the test set (%d, for reference only, not model selection): %s",
            best["epoch"],
            _format_metrics(best),
        )
        with open(os.path.join(self.cfg.OUTPUT_DIR, "summary.json"), "w") as f:
            json.dump(summary, f, indent=1)
        with open(os.path.join(self.cfg.OUTPUT_DIR, "metrics.json"), "a") as f:
            f.write(json.dumps({"summary": "last", **last}) + "\n")
            f.write(json.dumps({"summary": "best_on_test_set", **best}) + "\n")
        return summary


def _flat_metrics(results):
    # ReidEvaluator's metrics are numpy scalars (np.float32 is no python float, but is a numbers.Real)
    flat = {}
    for key, value in results.items():
        if isinstance(value, dict):
            flat.update({f"{key}/{k}": float(v) for k, v in value.items() if isinstance(v, numbers.Real)})
        elif isinstance(value, numbers.Real):
            flat[key] = float(value)
    return flat


def _format_metrics(record):
    return ", ".join(f"{k}={v:.2f}" for k, v in record.items() if k != "epoch")
