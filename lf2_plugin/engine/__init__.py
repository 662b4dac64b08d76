"""Training entry points: set-up, launch and the trainer that matches a config's meta-architecture."""
from .defaults import build_config, seed_everything, setup
from .launch import distributed_backend, launch

__all__ = ["build_config", "seed_everything", "setup", "launch", "distributed_backend", "trainer_class_for"]


def trainer_class_for(cfg):
    """``LF2Trainer`` for ``LF2``; ``SourceTrainer`` when ``DATASETS.TARGET_BN_ADAPT`` names a target or
    ``MODEL.BN_SPLITS`` > 1; else fast-reid's own ``DefaultTrainer``."""
    from fastreid.engine import DefaultTrainer

    from .source import SourceTrainer
    from .trainer import LF2Trainer

    if cfg.MODEL.META_ARCHITECTURE == "LF2":
        return LF2Trainer
    return SourceTrainer if cfg.DATASETS.TARGET_BN_ADAPT or cfg.MODEL.BN_SPLITS > 1 else DefaultTrainer
