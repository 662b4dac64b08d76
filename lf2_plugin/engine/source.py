"""Source-stage pre-training with the official option of adapting BN statistics to the target domain.

The official ``source_pretrain.py`` (as MMT / MEB-Net) forwards one unlabelled target batch per iteration,
without a loss, so the BatchNorm running statistics see both domains. Here that is a hook on fast-reid's own
DefaultTrainer, enabled by ``DATASETS.TARGET_BN_ADAPT`` (the target dataset's name).
"""

import logging

import torch

from fastreid.data import build_reid_train_loader
from fastreid.data.build import _train_loader_from_config
from fastreid.engine.train_loop import HookBase
from fastreid.solver.lr_scheduler import WarmupLR, _get_warmup_factor_at_epoch
from fastreid.utils import comm

from ..data.build import readable_train_set
from ..data.samplers import RandomMultipleGallerySampler
from ..modeling.split_bn import convert_split_batchnorm
from .hooks import with_best_metric
from .readable import ReadableImagesTrainer
from .step import unwrap_model

__all__ = ["EpochWarmupLR", "SourceTrainer", "TargetBNAdaptationHook", "source_learning_rates"]

logger = logging.getLogger(__name__)


class TargetBNAdaptationHook(HookBase):
    """Every training forward of the model is followed by one target batch through backbone and head in train
    mode, without gradients, before the loss is back-propagated: the official ``PreTrainer`` order (source
    forward, target forward, backward, step), so the BN running statistics see the target batch at the weights
    of the same step."""

    def __init__(self, data_loader):
        self._iterator = iter(data_loader)
        self._handle = None

    def before_train(self):
        self._handle = unwrap_model(self.trainer.model).register_forward_hook(self._forward_target)

    def after_train(self):
        if self._handle is not None:
            self._handle.remove()
            self._handle = None

    @torch.no_grad()
    def _forward_target(self, model, inputs, outputs):
        if not model.training:
            return
        batch = next(self._iterator)
        images = model.preprocess_image(batch)
        # The head's training branch needs targets only to compute logits; their values do not matter.
        model.heads(model.backbone(images), torch.zeros(images.size(0), dtype=torch.long, device=images.device))


class EpochWarmupLR(WarmupLR):
    """fast-reid's warm-up with a factor that changes once per epoch: iteration i gets fast-reid's factor of the
    first iteration of its epoch. This is the official ``WarmupMultiStepLR``, which is stepped once per epoch
    (``SOLVER.WARMUP_PER_EPOCH``)."""

    def __init__(self, optimizer, iters_per_epoch, **kwargs):
        self.iters_per_epoch = int(iters_per_epoch)
        super().__init__(optimizer, **kwargs)

    def get_lr(self):
        epoch_start = self.last_epoch // self.iters_per_epoch * self.iters_per_epoch
        factor = _get_warmup_factor_at_epoch(self.warmup_method, epoch_start, self.warmup_iters, self.warmup_factor)
        return [base_lr * factor for base_lr in self.base_lrs]


class SourceTrainer(ReadableImagesTrainer):
    """fast-reid's DefaultTrainer (as :class:`ReadableImagesTrainer`) plus :class:`TargetBNAdaptationHook` on
    ``DATASETS.TARGET_BN_ADAPT``, split BN (``MODEL.BN_SPLITS``), a fixed epoch length (``SOLVER.ITERS_PER_EPOCH``;
    fast-reid's is the train-set size over the batch), the per-epoch warm-up (``SOLVER.WARMUP_PER_EPOCH``) and
    ``model_best`` on ``TEST.BEST_METRIC``."""

    def __init__(self, cfg):
        super().__init__(cfg)
        if cfg.SOLVER.ITERS_PER_EPOCH:
            self.iters_per_epoch = int(cfg.SOLVER.ITERS_PER_EPOCH)
            self.max_iter = self.max_epoch * self.iters_per_epoch

    @classmethod
    def build_lr_scheduler(cls, cfg, optimizer, iters_per_epoch):
        iters_per_epoch = int(cfg.SOLVER.ITERS_PER_EPOCH) or iters_per_epoch
        schedulers = super().build_lr_scheduler(cfg, optimizer, iters_per_epoch)
        if cfg.SOLVER.WARMUP_PER_EPOCH and "warmup_sched" in schedulers:
            schedulers["warmup_sched"] = EpochWarmupLR(
                optimizer,
                iters_per_epoch,
                warmup_factor=cfg.SOLVER.WARMUP_FACTOR,
                warmup_iters=cfg.SOLVER.WARMUP_ITERS,
                warmup_method=cfg.SOLVER.WARMUP_METHOD,
            )
        return schedulers

    @classmethod
    def build_model(cls, cfg):
        return convert_split_batchnorm(super().build_model(cfg), cfg.MODEL.BN_SPLITS)

    @classmethod
    def build_train_loader(cls, cfg):
        """fast-reid's loader; ``DATALOADER.SAMPLER_TRAIN: RandomMultipleGallerySampler`` (the official one)
        is built here, fast-reid's own names by fast-reid."""
        if cfg.DATALOADER.SAMPLER_TRAIN != "RandomMultipleGallerySampler":
            return super().build_train_loader(cfg)
        plain = cfg.clone()
        plain.defrost()
        plain.DATALOADER.SAMPLER_TRAIN = "TrainingSampler"  # fast-reid builds the dataset; the sampler is ours
        kwargs = _train_loader_from_config(plain, train_set=readable_train_set(plain))
        kwargs["sampler"] = RandomMultipleGallerySampler(
            kwargs["train_set"].img_items,
            cfg.SOLVER.IMS_PER_BATCH // comm.get_world_size(),
            cfg.DATALOADER.NUM_INSTANCE,
        )
        return build_reid_train_loader(**kwargs)

    def build_hooks(self):
        ret = with_best_metric(super().build_hooks(), self.cfg)
        if not self.cfg.DATASETS.TARGET_BN_ADAPT:
            return ret
        cfg = self.cfg.clone()
        cfg.defrost()
        cfg.DATASETS.NAMES = (cfg.DATASETS.TARGET_BN_ADAPT,)
        cfg.DATALOADER.SAMPLER_TRAIN = "TrainingSampler"  # target labels are neither known nor needed
        logger.info("Adapting BN statistics to the unlabelled target %s every iteration", cfg.DATASETS.NAMES[0])
        ret.insert(2, TargetBNAdaptationHook(build_reid_train_loader(cfg, train_set=readable_train_set(cfg))))
        return ret


def source_learning_rates(cfg):
    """The learning rate of every source-stage iteration ``cfg`` gives, through :class:`SourceTrainer`'s
    schedulers and fast-reid's own ``LRScheduler`` hook (``SOLVER.ITERS_PER_EPOCH`` must be set)."""
    from types import SimpleNamespace

    from fastreid.engine import hooks
    from fastreid.utils.events import EventStorage

    iters_per_epoch = int(cfg.SOLVER.ITERS_PER_EPOCH)
    if iters_per_epoch <= 0:
        raise ValueError("source_learning_rates needs SOLVER.ITERS_PER_EPOCH > 0")
    optimizer = torch.optim.Adam([{"params": [torch.nn.Parameter(torch.zeros(1))], "lr": cfg.SOLVER.BASE_LR}])
    hook = hooks.LRScheduler(optimizer, SourceTrainer.build_lr_scheduler(cfg, optimizer, iters_per_epoch))
    hook.trainer = trainer = SimpleNamespace(
        warmup_iters=cfg.SOLVER.WARMUP_ITERS, delay_epochs=cfg.SOLVER.DELAY_EPOCHS, grad_scaler=None
    )
    rates = []
    with EventStorage() as trainer.storage:
        for epoch in range(cfg.SOLVER.MAX_EPOCH):
            trainer.epoch = epoch
            for i in range(iters_per_epoch):
                trainer.iter = epoch * iters_per_epoch + i
                hook.before_step()
                rates.append(optimizer.param_groups[0]["lr"])
                hook.after_step()
            hook.after_epoch()
    return rates
