"""The LF2 mean-teacher trainer: fast-reid's DefaultTrainer with a loop that differs where LF2 differs.

What differs from ``DefaultTrainer`` (and nothing else does):

- the train set is the *unlabelled* target: its ground-truth ids never reach a loss (they only score the
  pseudo labels); the loaders come from the clustering hook, rebuilt every epoch, one per feature level;
- an epoch is ``SOLVER.ITERS_PER_EPOCH`` iterations (400 in the paper), independent of the data size;
- each iteration draws one batch per level, computes the LF2 losses, steps, and EMA-updates the teacher;
- after clustering, the global classifier is re-initialised from the level-0 centroids (and, with
  ``SOLVER.RESET_OPTIMIZER_EACH_EPOCH``, the optimizer state is reset, as the official code re-creates Adam);
- ``MODEL.WEIGHTS`` may be a source-stage checkpoint (fills student and teacher) or an LF2 checkpoint;
- checkpoints also hold the pseudo labels and every RNG state, so ``--resume`` continues exactly, from an
  epoch checkpoint or from one written mid-epoch (:mod:`~lf2_plugin.engine.mid_epoch`);
- after training, the last epoch's metrics are reported, the best epoch only beside them.
"""

import hashlib
import logging

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel

from fastreid.engine import hooks
from fastreid.engine.train_loop import TrainerBase
from fastreid.utils import comm
from fastreid.utils.events import EventStorage
from fastreid.utils.logger import setup_logger

from ..clustering.hook import MultiLevelClusteringHook
from ..data.build import train_items
from ..data.pseudo_labels import build_clustering_loader, build_pseudo_label_loaders
from ..modeling.meta_arch import LF2
from ..modeling.split_bn import convert_split_batchnorm
from .checkpoint import AtomicCheckpointer
from .hooks import BestMetricCheckpointer
from .mid_epoch import MidEpochResume
from .readable import ReadableImagesTrainer
from .rng import rng_state, set_rng_state
from .step import LF2StepRunner, unwrap_model
from .summary import flat_metrics, write_summary

__all__ = ["LF2Trainer"]

logger = logging.getLogger(__name__)


class LF2Trainer(ReadableImagesTrainer):
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
        self._loader_rng = None  # the RNG state this epoch's loaders were built with
        self._mid_epoch = None  # a MidEpochResume until the resumed epoch has its loaders
        self.checkpointer = AtomicCheckpointer(
            model,
            cfg.OUTPUT_DIR,
            save_to_disk=comm.is_main_process(),
            extra_state=self._extra_checkpoint_state,
            keep_last=cfg.SOLVER.CHECKPOINT_KEEP,
            resumes_mid_epoch=True,
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
        items = train_items(cfg)
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
        self._replace_classifier(torch.from_numpy(np.ascontiguousarray(results[0].centroids)))
        if self.cfg.SOLVER.RESET_OPTIMIZER_EACH_EPOCH:
            self.optimizer.state.clear()
        self.pseudo_labels = [torch.from_numpy(np.asarray(r.labels, dtype=np.int64)) for r in results]
        digest = hashlib.sha1(b"".join(labels.numpy().tobytes() for labels in self.pseudo_labels)).hexdigest()
        logger.info("epoch %d pseudo-label digest %s", self.epoch, digest[:16])
        self._loader_rng = rng_state()
        self._trainer.set_data_loaders(self._build_pseudo_label_loaders())

    def _build_pseudo_label_loaders(self):
        return build_pseudo_label_loaders(
            self.cfg, self.target_items, [labels.numpy() for labels in self.pseudo_labels]
        )

    def _replace_classifier(self, centroids):
        """The global classifiers ← ``centroids``, with the optimizer's parameter lists following them."""
        model = self.unwrapped_model
        before = dict(model.named_parameters())
        model.reset_classifier(centroids)
        replaced = {
            before[name]: param
            for name, param in model.named_parameters()
            if name in before and before[name] is not param
        }
        for group in self.optimizer.param_groups:
            group["params"] = [replaced.get(p, p) for p in group["params"]]
        for old in replaced:
            self.optimizer.state.pop(old, None)
        if replaced and comm.get_world_size() > 1:
            self._trainer.model = self._wrap_distributed(self.cfg, model)  # DDP must see the new parameter

    # ---- fast-reid trainer API --------------------------------------------------------------------------------
    @classmethod
    def build_train_loader(cls, cfg):
        raise NotImplementedError("LF2Trainer trains on pseudo-labelled loaders built by its clustering hook")

    def build_hooks(self):
        cfg = self.cfg
        ret = [hooks.IterationTimer(), hooks.LRScheduler(self.optimizer, self.scheduler), self.clustering_hook]

        def test_and_save_results():
            self._last_eval_results = self.test(self.cfg, self.model)
            self.eval_history.append({"epoch": self.epoch, **flat_metrics(self._last_eval_results)})
            return self._last_eval_results

        ret.append(hooks.EvalHook(cfg.TEST.EVAL_PERIOD, test_and_save_results))
        if comm.is_main_process():
            ret.append(BestMetricCheckpointer(self.checkpointer, cfg.SOLVER.CHECKPOINT_PERIOD, cfg.TEST.BEST_METRIC))
            ret.append(hooks.PeriodicWriter(self.build_writers(), 20))
        return ret

    def _extra_checkpoint_state(self):
        state = {"pseudo_labels": list(self.pseudo_labels), "rng": rng_state()}
        if self._loader_rng is not None:
            state["loader_rng"] = self._loader_rng
        return state

    def resume_or_load(self, resume=True):
        """Resume from OUTPUT_DIR's last checkpoint (model, optimizer, schedulers, RNG), or load MODEL.WEIGHTS:
        an LF2 checkpoint whole (only the classifiers, set by clustering, may differ), a source-stage checkpoint into
        both student and teacher."""
        from ..modeling.checkpoint import checkpoint_state_dict, is_lf2_state_dict, load_checkpoint_file

        if resume and self.checkpointer.has_checkpoint():
            stored = checkpoint_state_dict(load_checkpoint_file(self.checkpointer.get_checkpoint_file()))
            classifier = stored.get("heads.weight")
            if classifier is not None and classifier.shape != self.unwrapped_model.heads.weight.shape:
                self._replace_classifier(classifier)  # sized by clustering; the optimizer state then loads onto it
            checkpoint = self.checkpointer.resume_or_load(self.cfg.MODEL.WEIGHTS, resume=True)
            self.start_epoch = checkpoint.get("epoch", -1) + 1
            if "rng" in checkpoint:
                set_rng_state(checkpoint["rng"])
            self.pseudo_labels = checkpoint.get("pseudo_labels", [])
            self._resume_inside_epoch(checkpoint)
            return
        path = self.cfg.MODEL.WEIGHTS
        if not path:
            logger.warning("MODEL.WEIGHTS is empty: adapting from a randomly initialised network")
            return
        state_dict = checkpoint_state_dict(load_checkpoint_file(path))
        if is_lf2_state_dict(state_dict):  # every tensor but the classifiers, which clustering sets, must fit
            self.checkpointer.load_complete(path, checkpointables=[], may_differ=LF2.CLUSTER_SIZED_KEYS)
        else:
            self.unwrapped_model.load_source_checkpoint(state_dict)

    def _resume_inside_epoch(self, checkpoint):
        if not checkpoint.get("interrupted_mid_epoch"):
            return
        self._mid_epoch = MidEpochResume.from_checkpoint(checkpoint)
        if self._mid_epoch is None:
            logger.warning(
                "The checkpoint was written mid-epoch without the loaders' state (an older version): epoch %d "
                "restarts from its first iteration with these weights, so the run is not bit-identical to an "
                "uninterrupted one",
                self.start_epoch,
            )
            return
        logger.info(
            "Resuming inside epoch %d after %d of its %d steps, with its pseudo labels (no clustering) and its "
            "loaders advanced past the batches already trained on",
            self.start_epoch,
            self._mid_epoch.steps_done,
            self.iters_per_epoch,
        )

    def before_epoch(self):
        if self._mid_epoch is None:
            return super().before_epoch()
        self.storage.epoch = self.epoch  # as TrainerBase.before_epoch, whose hook loop this replaces
        for hook in self._hooks:
            if hook is not self.clustering_hook:
                hook.before_epoch()
        self._mid_epoch.restore_loaders(self._build_pseudo_label_loaders, self._trainer)
        self._mid_epoch = None

    def _run_epochs(self):
        """fast-reid's ``TrainerBase.train`` loop, starting inside ``start_epoch`` after a mid-epoch resume."""
        done = self._mid_epoch.steps_done if self._mid_epoch is not None else 0
        logger.info("Starting training from epoch %d", self.start_epoch)
        self.iter = self.start_iter = self.start_epoch * self.iters_per_epoch + done
        with EventStorage(self.start_iter) as self.storage:
            try:
                self.before_train()
                for epoch in range(self.start_epoch, self.max_epoch):
                    self.epoch = epoch
                    self.before_epoch()
                    for _ in range(self.iters_per_epoch - done):
                        self.before_step()
                        self.run_step()
                        self.after_step()
                        self.iter += 1
                    done = 0
                    self.after_epoch()
            except Exception:
                logger.exception("Exception during training:")
                raise
            finally:
                self.after_train()

    def train(self):
        self._run_epochs()
        if comm.is_main_process():
            self.write_summary()
            return self._last_eval_results

    def write_summary(self):
        """Log and save the last epoch's metrics; the best epoch (chosen on the test set) only beside them."""
        return write_summary(self.cfg.OUTPUT_DIR, self.eval_history, self.storage)
