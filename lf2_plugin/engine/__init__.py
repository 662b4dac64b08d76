"""Training entry points: set-up, launch and the trainer that matches a config's meta-architecture."""
from .defaults import build_config, seed_everything, setup
from .launch import distributed_backend, launch

__all__ = ["build_config", "seed_everything", "setup", "launch", "distributed_backend", "trainer_class_for"]


def trainer_class_for(cfg):
    """The trainer class for ``cfg``: fast-reid's ``DefaultTrainer`` for its own meta-architectures."""
    from fastreid.engine import DefaultTrainer

    return DefaultTrainer
