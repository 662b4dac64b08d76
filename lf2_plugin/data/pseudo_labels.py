"""Pseudo-labelled views of an unlabelled target train set, and their P x K loaders.

Kept apart from the clustering that produces the labels (as OpenUnReID keeps label generators apart from the loop
that consumes them): these functions only turn per-level label arrays into fast-reid datasets and loaders.
"""

import logging

import numpy as np

from fastreid.data import build_reid_test_loader, build_reid_train_loader, samplers
from fastreid.data.common import CommDataset
from fastreid.data.transforms import build_transforms
from fastreid.utils import comm

from .samplers import RandomMultipleGallerySampler
from .transforms import build_train_transforms

__all__ = ["pseudo_labelled_items", "build_pseudo_label_loaders", "build_clustering_loader", "TRAIN_SAMPLERS"]

logger = logging.getLogger(__name__)

# Identity samplers that accept pseudo labels: the official RandomMultipleGallerySampler (anchor + K-1
# companions preferably from other cameras) and fast-reid's P x K samplers; BalancedIdentitySampler is the
# official rule except for one-image identities (repeated K times instead of emitted once).
TRAIN_SAMPLERS = {
    "RandomMultipleGallerySampler": RandomMultipleGallerySampler,
    "BalancedIdentitySampler": samplers.BalancedIdentitySampler,
    "NaiveIdentitySampler": samplers.NaiveIdentitySampler,
}


def pseudo_labelled_items(items, labels):
    """``[(path, label, camid)]`` for the items whose label is not -1 (an outlier); labels become python ints.

    ``items`` are fast-reid train tuples ``(path, pid, camid)``; their ground-truth pid is dropped.
    """
    labels = np.asarray(labels)
    if len(labels) != len(items):
        raise ValueError(f"{len(labels)} labels for {len(items)} images")
    return [(item[0], int(label), item[2]) for item, label in zip(items, labels) if label >= 0]


def build_pseudo_label_loaders(cfg, items, labels_per_level):
    """One infinite P x K train loader per level, over the images that level's clustering kept.

    Labels are used as targets unchanged (``relabel=False``), so target c is the classifier row initialised from
    cluster c's centroid.
    """
    sampler_name = cfg.DATALOADER.SAMPLER_TRAIN
    if sampler_name not in TRAIN_SAMPLERS:
        raise ValueError(
            f"DATALOADER.SAMPLER_TRAIN={sampler_name!r}: LF2 needs an identity sampler, one of {sorted(TRAIN_SAMPLERS)}"
        )
    transforms = build_train_transforms(cfg)
    mini_batch = cfg.SOLVER.IMS_PER_BATCH // comm.get_world_size()
    loaders = []
    for level, labels in enumerate(labels_per_level):
        level_items = pseudo_labelled_items(items, labels)
        if len(level_items) < mini_batch:
            raise ValueError(
                f"level {level}: {len(level_items)} pseudo-labelled images, fewer than one batch "
                f"({mini_batch}); lower SOLVER.IMS_PER_BATCH or check the clustering settings"
            )
        dataset = CommDataset(level_items, transforms, relabel=False)
        sampler = TRAIN_SAMPLERS[sampler_name](dataset.img_items, mini_batch, cfg.DATALOADER.NUM_INSTANCE)
        loaders.append(
            build_reid_train_loader(
                dataset,
                sampler=sampler,
                total_batch_size=cfg.SOLVER.IMS_PER_BATCH,
                num_workers=cfg.DATALOADER.NUM_WORKERS,
            )
        )
    return loaders


def build_clustering_loader(cfg, items):
    """A test-transform loader over ``items`` in their order, sharded across ranks (fast-reid's InferenceSampler)."""
    dataset = CommDataset(items, build_transforms(cfg, is_train=False), relabel=False)
    loader, _ = build_reid_test_loader(
        dataset, test_batch_size=cfg.TEST.IMS_PER_BATCH, num_query=0, num_workers=cfg.DATALOADER.NUM_WORKERS
    )
    return loader
