"""Training entry points: set-up, launch and the trainer that matches a config's meta-architecture."""

from .defaults import build_config, seed_everything, setup
from .launch import distributed_backend, launch

__all__ = ["build_config", "seed_everything", "setup", "launch", "distributed_backend", "trainer_class_for"]


def trainer_class_for(cfg):
    """``LF2Trainer`` for ``LF2``; ``SourceTrainer`` for ``LF2SourceBaseline`` or when ``DATASETS.TARGET_BN_ADAPT``
    names a target, ``DATALOADER.SAMPLER_TRAIN`` is the plugin's ``RandomMultipleGallerySampler``,
    ``MODEL.BN_SPLITS`` > 1, ``SOLVER.ITERS_PER_EPOCH`` or ``SOLVER.WARMUP_PER_EPOCH`` is set; else
    ``ReadableImagesTrainer`` with ``DATASETS.SKIP_UNREADABLE_IMAGES`` and fast-reid's own ``DefaultTrainer``
    without."""
    from fastreid.engine import DefaultTrainer

    from .readable import ReadableImagesTrainer
    from .source import SourceTrainer
    from .trainer import LF2Trainer

    if cfg.MODEL.META_ARCHITECTURE == "LF2":
        return LF2Trainer
    needs_source_trainer = (
        cfg.MODEL.META_ARCHITECTURE == "LF2SourceBaseline"
        or cfg.DATASETS.TARGET_BN_ADAPT
        or cfg.DATALOADER.SAMPLER_TRAIN == "RandomMultipleGallerySampler"
        or cfg.MODEL.BN_SPLITS > 1
        or cfg.SOLVER.ITERS_PER_EPOCH
        or cfg.SOLVER.WARMUP_PER_EPOCH
    )
    if needs_source_trainer:
        return SourceTrainer
    # fast-reid's loaders would read the images dataset validation left out
    return ReadableImagesTrainer if cfg.DATASETS.SKIP_UNREADABLE_IMAGES else DefaultTrainer
