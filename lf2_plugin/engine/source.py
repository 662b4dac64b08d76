"""Source-stage pre-training with the official option of adapting BN statistics to the target domain.

The official ``source_pretrain.py`` (as MMT / MEB-Net) forwards one unlabelled target batch per iteration,
without a loss, so the BatchNorm running statistics see both domains. Here that is a hook on fast-reid's own
DefaultTrainer, enabled by ``DATASETS.TARGET_BN_ADAPT`` (the target dataset's name).
"""
import logging

import torch
from fastreid.data import build_reid_train_loader
from fastreid.engine import DefaultTrainer
from fastreid.engine.train_loop import HookBase

from ..modeling.split_bn import convert_split_batchnorm
from .trainer import unwrap_model

__all__ = ["SourceTrainer", "TargetBNAdaptationHook"]

logger = logging.getLogger(__name__)


class TargetBNAdaptationHook(HookBase):
    """After every step, one target batch goes through backbone and head in train mode, without gradients."""

    def __init__(self, data_loader):
        self._iterator = iter(data_loader)

    @torch.no_grad()
    def after_step(self):
        model = unwrap_model(self.trainer.model)
        batch = next(self._iterator)
        images = model.preprocess_image(batch)
        # The head's training branch needs targets only to compute logits; their values do not matter.
        model.heads(model.backbone(images), torch.zeros(images.size(0), dtype=torch.long, device=images.device))


class SourceTrainer(DefaultTrainer):
    """fast-reid's DefaultTrainer plus :class:`TargetBNAdaptationHook` on ``DATASETS.TARGET_BN_ADAPT`` and split BN
    (``MODEL.BN_SPLITS``)."""

    @classmethod
    def build_model(cls, cfg):
        return convert_split_batchnorm(super().build_model(cfg), cfg.MODEL.BN_SPLITS)

    def build_hooks(self):
        ret = super().build_hooks()
        if not self.cfg.DATASETS.TARGET_BN_ADAPT:
            return ret
        cfg = self.cfg.clone()
        cfg.defrost()
        cfg.DATASETS.NAMES = (cfg.DATASETS.TARGET_BN_ADAPT,)
        cfg.DATALOADER.SAMPLER_TRAIN = "TrainingSampler"  # target labels are neither known nor needed
        logger.info("Adapting BN statistics to the unlabelled target %s every iteration", cfg.DATASETS.NAMES[0])
        ret.insert(2, TargetBNAdaptationHook(build_reid_train_loader(cfg)))
        return ret
