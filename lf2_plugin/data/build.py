"""fast-reid's datasets as the plugin's trainers read them: without the images :func:`exclude_images` left out.

:func:`~lf2_plugin.data.validation.validate_datasets` excludes the images that do not decode when
``DATASETS.SKIP_UNREADABLE_IMAGES`` is set. The trainers of :mod:`lf2_plugin.engine` build their train, target,
BN-adaptation, precise-BN and test sets here, so none of them reads an excluded image. While nothing is excluded
the datasets are fast-reid's own and the ``readable_*`` builders return None: fast-reid's loaders then build their
sets themselves, as without the plugin.
"""

import fastreid.data.build as data_build
from fastreid.data.common import CommDataset
from fastreid.data.datasets import DATASET_REGISTRY
from fastreid.data.datasets.bases import ImageDataset
from fastreid.data.transforms import build_transforms
from fastreid.utils import comm

__all__ = [
    "exclude_images",
    "images_excluded",
    "without_excluded",
    "build_dataset",
    "train_items",
    "readable_train_set",
    "readable_test_set",
]

_EXCLUDED_IMAGES = set()


def exclude_images(paths):
    """Leave ``paths`` out of every dataset built through this module afterwards in this process."""
    _EXCLUDED_IMAGES.update(paths)


def images_excluded():
    """Whether :func:`exclude_images` left any image out."""
    return bool(_EXCLUDED_IMAGES)


def without_excluded(items):
    """``items`` (``(path, pid, camid)`` tuples) without the excluded images; ``items`` itself when none are."""
    if not _EXCLUDED_IMAGES:
        return items
    return [item for item in items if item[0] not in _EXCLUDED_IMAGES]


def build_dataset(name, **kwargs):
    """fast-reid's registered dataset ``name`` (``kwargs`` to its class), read from the datasets root of fast-reid's
    loaders, without the excluded images."""
    dataset = DATASET_REGISTRY.get(name)(root=data_build._root, **kwargs)
    if not _EXCLUDED_IMAGES:
        return dataset
    # A dataset of the same class name: fast-reid titles its show_train / show_test tables with it.
    readable = type(type(dataset).__name__, (ImageDataset,), {})
    return readable(*(without_excluded(getattr(dataset, split)) for split in ("train", "query", "gallery")))


def train_items(cfg, **kwargs):
    """The train items of ``DATASETS.NAMES`` (``kwargs`` to the dataset classes, e.g. ``combineall``), without the
    excluded images; each dataset's table is logged on rank 0, as fast-reid's train loader does."""
    items = []
    for name in cfg.DATASETS.NAMES:
        dataset = build_dataset(name, **kwargs)
        if comm.is_main_process():
            dataset.show_train()
        items.extend(dataset.train)
    return items


def readable_train_set(cfg, **kwargs):
    """fast-reid's train set of ``DATASETS.NAMES`` (train transforms, relabelled ids) without the excluded images,
    for ``build_reid_train_loader(cfg, train_set=...)``; None while nothing is excluded."""
    if not _EXCLUDED_IMAGES:
        return None
    return CommDataset(train_items(cfg, **kwargs), build_transforms(cfg, is_train=True), relabel=True)


def readable_test_set(cfg, dataset_name):
    """``(test set, number of query images)`` of ``dataset_name`` as fast-reid builds them (query then gallery,
    test transforms) without the excluded images; None while nothing is excluded."""
    if not _EXCLUDED_IMAGES:
        return None
    dataset = build_dataset(dataset_name)
    if comm.is_main_process():
        dataset.show_test()
    test_set = CommDataset(dataset.query + dataset.gallery, build_transforms(cfg, is_train=False), relabel=False)
    return test_set, len(dataset.query)
