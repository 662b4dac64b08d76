"""The base of the plugin's trainers: fast-reid's DefaultTrainer reading only the images dataset validation kept."""

import logging

from fastreid.data import build_reid_test_loader, build_reid_train_loader
from fastreid.engine import DefaultTrainer

from ..data.build import images_excluded, readable_test_set, readable_train_set

__all__ = ["ReadableImagesTrainer"]


class ReadableImagesTrainer(DefaultTrainer):
    """fast-reid's DefaultTrainer whose train and test loaders (evaluation and precise BN included) leave out the
    images :func:`~lf2_plugin.data.validation.validate_datasets` excluded (``DATASETS.SKIP_UNREADABLE_IMAGES``).
    While nothing is excluded its loaders are fast-reid's own."""

    @classmethod
    def build_train_loader(cls, cfg):
        if not images_excluded():
            return super().build_train_loader(cfg)
        # the line DefaultTrainer.build_train_loader logs, under its logger
        logging.getLogger(DefaultTrainer.__module__).info("Prepare training set")
        return build_reid_train_loader(cfg, train_set=readable_train_set(cfg, combineall=cfg.DATASETS.COMBINEALL))

    @classmethod
    def build_test_loader(cls, cfg, dataset_name):
        if not images_excluded():
            return super().build_test_loader(cfg, dataset_name)
        test_set, num_query = readable_test_set(cfg, dataset_name)
        return build_reid_test_loader(cfg, test_set=test_set, num_query=num_query)
