"""Checks of the datasets a config names, run by ``tools/train_net.py`` before any model is built.

A run on real data lasts hours; a wrong folder, a badly named file or one corrupt JPEG must stop it at the start
with a message that says what to fix, not after the first epoch (or at the end, in the evaluation). For every
dataset of ``DATASETS.NAMES`` / ``TESTS`` / ``TARGET_BN_ADAPT`` (and ``TEST.PRECISE_BN.DATASET`` when enabled):

1. the name is registered (closest registered names suggested);
2. Market-1501 / DukeMTMC-reID style folders: every ``*.jpg`` name parses the way fast-reid parses it;
3. the dataset class loads (a missing folder names the expected path, the class and ``$FASTREID_DATASETS``);
4. the train set holds at least one batch, test sets have a query and a gallery;
5. every image decodes. An unreadable one is an error naming it, or with ``DATASETS.SKIP_UNREADABLE_IMAGES``
   it is counted, logged and left out of every dataset the plugin's trainers build in this process
   (:mod:`lf2_plugin.data.build`).
"""

import difflib
import logging
import os
import re
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from PIL import Image

from fastreid.data.datasets import DATASET_REGISTRY
from fastreid.data.datasets.dukemtmcreid import DukeMTMC
from fastreid.data.datasets.market1501 import Market1501
from fastreid.data.datasets.msmt17 import MSMT17
from fastreid.utils import comm

from .build import exclude_images, without_excluded
from .datasets import _GeneratedOnFirstUse

__all__ = ["DatasetError", "DatasetReport", "validate_datasets", "find_unreadable_images", "exclude_images"]

logger = logging.getLogger(__name__)

# Folder layout each fast-reid class expects under $FASTREID_DATASETS (for the error messages).
EXPECTED_LAYOUTS = {
    Market1501: "Market-1501-v15.09.15/{bounding_box_train,query,bounding_box_test}/*.jpg",
    DukeMTMC: "DukeMTMC-reID/{bounding_box_train,query,bounding_box_test}/*.jpg",
    MSMT17: "MSMT17_V1/{train,test,list_train.txt,list_val.txt,list_query.txt,list_gallery.txt} "
    "(or MSMT17_V2/{mask_train_v2,mask_test_v2,list_*.txt})",
}

# How fast-reid's Market1501 / DukeMTMC parse a file name: regex, camera range, pid range, an example name.
_NAME_PATTERN = re.compile(r"([-\d]+)_c(\d)")
NAMING = {
    Market1501: {"cameras": (1, 6), "pids": (-1, 1501), "example": "0002_c1s1_000451_03.jpg"},
    DukeMTMC: {"cameras": (1, 8), "pids": None, "example": "0001_c2_f0046182.jpg"},
}
_SPLIT_DIRS = ("bounding_box_train", "query", "bounding_box_test")
_NAMES_SHOWN = 5


class DatasetError(RuntimeError):
    """A dataset the config names cannot be used as it is on disk; the message says what to fix."""


@dataclass
class DatasetReport:
    """What :func:`validate_datasets` found: images per dataset and split, and the unreadable images skipped."""

    counts: dict = field(default_factory=dict)  # name -> {"train": n, "query": n, "gallery": n}
    images_checked: int = 0
    check_seconds: float = 0.0
    skipped: list = field(default_factory=list)  # [(path, reason)]


def _family(cls, table):
    return next((base for base in table if issubclass(cls, base)), None)


def _describe(cls, root):
    layout = EXPECTED_LAYOUTS.get(_family(cls, EXPECTED_LAYOUTS))
    where = (
        f"{cls.__module__}.{cls.__name__} reads <$FASTREID_DATASETS>/{layout}"
        if layout
        else f"{cls.__module__}.{cls.__name__}"
    )
    return (
        f"{where}; FASTREID_DATASETS={os.environ.get('FASTREID_DATASETS', '<unset>')!r} "
        f"(datasets root used: {os.path.abspath(root)})"
    )


def _lookup(name, key):
    try:
        return DATASET_REGISTRY.get(name)
    except KeyError:
        registered = sorted(DATASET_REGISTRY._obj_map)
        close = difflib.get_close_matches(name, registered, n=3, cutoff=0.5)
        hint = f"; did you mean {' or '.join(close)}?" if close else ""
        raise DatasetError(
            f"{key} names {name!r}, which is not a registered dataset{hint} (registered: {', '.join(registered)})"
        ) from None


def _split_dirs(cls, root):
    """The folders fast-reid's Market1501 / DukeMTMC list, or [] for other classes and generated ones."""
    family = _family(cls, NAMING)
    if family is None or issubclass(cls, _GeneratedOnFirstUse):
        return []
    data_dir = os.path.join(root, cls.dataset_dir)
    if family is Market1501 and os.path.isdir(os.path.join(data_dir, "Market-1501-v15.09.15")):
        data_dir = os.path.join(data_dir, "Market-1501-v15.09.15")
    return [os.path.join(data_dir, split) for split in _SPLIT_DIRS]


def _name_problem(file_name, naming):
    match = _NAME_PATTERN.search(file_name)
    if match is None:
        return "no <pid>_c<camera>"
    pid, camera = int(match.group(1)), int(match.group(2))
    low, high = naming["cameras"]
    if not low <= camera <= high:
        return f"camera {camera} not in {low}-{high}"
    if naming["pids"] and not naming["pids"][0] <= pid <= naming["pids"][1]:
        return f"pid {pid} not in {naming['pids'][0]}-{naming['pids'][1]}"
    return ""


def check_file_names(name, cls, root):
    """Raise :class:`DatasetError` listing the first ``*.jpg`` names fast-reid's parser would reject."""
    naming = NAMING.get(_family(cls, NAMING))
    for folder in _split_dirs(cls, root):
        if not os.path.isdir(folder):
            continue  # the dataset class reports missing folders with their path
        files = sorted(f for f in os.listdir(folder) if f.endswith(".jpg"))
        bad = [(f, problem) for f in files for problem in [_name_problem(f, naming)] if problem]
        if bad:
            shown = ", ".join(f"{f} ({problem})" for f, problem in bad[:_NAMES_SHOWN])
            raise DatasetError(
                f"{name}: {len(bad)} of {len(files)} image names in {folder} do not follow the naming "
                f"<pid>_c<camera>... (e.g. {naming['example']}; fast-reid parses r'{_NAME_PATTERN.pattern}', "
                f"cameras {naming['cameras'][0]}-{naming['cameras'][1]}): {shown}. Rename or remove them."
            )


def _load(name, cls, root):
    try:
        return cls(root=root)
    except Exception as error:  # any failure of a fast-reid dataset class is a data problem to report
        missing = re.match(r'"(.*)" is not found', str(error))
        problem = f"missing {missing.group(1)}" if missing else f"{type(error).__name__}: {error}"
        raise DatasetError(f"dataset {name}: {problem}. {_describe(cls, root)}") from error


def _decode_error(path):
    """'' if ``path`` decodes as an image, else why not (a full decode: ``verify()`` misses truncated JPEGs)."""
    try:
        with Image.open(path) as image:
            image.load()
        return ""
    except Exception as error:  # PIL raises OSError, SyntaxError, ValueError... for broken files
        return f"{type(error).__name__}: {error}"


def find_unreadable_images(paths, num_threads=4):
    """``[(path, reason)]`` for every path PIL cannot decode, in the order given."""
    with ThreadPoolExecutor(max_workers=num_threads) as pool:  # PIL decodes without the GIL
        reasons = list(pool.map(_decode_error, paths, chunksize=64))
    return [(path, reason) for path, reason in zip(paths, reasons) if reason]


def _dataset_roles(cfg, eval_only):
    roles = {}  # name -> config keys naming it
    if not eval_only:
        for name in cfg.DATASETS.NAMES:
            roles.setdefault(name, []).append("DATASETS.NAMES")
            if cfg.DATASETS.COMBINEALL:  # query and gallery are trained on too
                roles[name].append("DATASETS.COMBINEALL")
        if cfg.DATASETS.TARGET_BN_ADAPT:
            roles.setdefault(cfg.DATASETS.TARGET_BN_ADAPT, []).append("DATASETS.TARGET_BN_ADAPT")
        if cfg.TEST.PRECISE_BN.ENABLED:
            roles.setdefault(cfg.TEST.PRECISE_BN.DATASET, []).append("TEST.PRECISE_BN.DATASET")
    for name in cfg.DATASETS.TESTS:
        roles.setdefault(name, []).append("DATASETS.TESTS")
    return roles


def _images(dataset, split):
    """The items of ``split`` the plugin's trainers read: those not excluded."""
    return without_excluded(getattr(dataset, split))


def _splits_used(keys):
    splits = ["train"] if set(keys) - {"DATASETS.TESTS"} else []
    return splits + (["query", "gallery"] if {"DATASETS.TESTS", "DATASETS.COMBINEALL"} & set(keys) else [])


def _check_sizes(cfg, datasets, roles, eval_only, root):
    for name, keys in roles.items():
        if "DATASETS.TESTS" not in keys:
            continue
        query, gallery = _images(datasets[name], "query"), _images(datasets[name], "gallery")
        if not (query and gallery):
            raise DatasetError(
                f"test set {name} has {len(query)} query and {len(gallery)} gallery images; evaluation needs both. "
                f"{_describe(type(datasets[name]), root)}"
            )
    batch = cfg.SOLVER.IMS_PER_BATCH
    groups = [] if eval_only else [("DATASETS.NAMES", list(cfg.DATASETS.NAMES))]
    if not eval_only and cfg.DATASETS.TARGET_BN_ADAPT:
        groups.append(("DATASETS.TARGET_BN_ADAPT", [cfg.DATASETS.TARGET_BN_ADAPT]))
    for key, names in groups:
        sizes = {name: len(_images(datasets[name], "train")) for name in names}
        if sum(sizes.values()) < batch:
            folders = ", ".join(
                f"{name}: {n} in {getattr(datasets[name], 'train_dir', '?')}" for name, n in sizes.items()
            )
            raise DatasetError(
                f"the train set of {key}={tuple(names)} has {sum(sizes.values())} images ({folders}), fewer than "
                f"one batch (SOLVER.IMS_PER_BATCH={batch}): an epoch would have 0 iterations (fast-reid divides by "
                f"zero). Check the folder or lower SOLVER.IMS_PER_BATCH."
            )


def _check_images(cfg, datasets, roles, report):
    paths = sorted(
        {
            item[0]
            for name, keys in roles.items()
            for split in _splits_used(keys)
            for item in _images(datasets[name], split)
        }
    )
    start = time.perf_counter()
    unreadable = find_unreadable_images(paths) if comm.is_main_process() else None
    if comm.get_world_size() > 1:  # rank 0 decodes, every rank decides the same way
        unreadable = comm.all_gather(unreadable)[0]
    report.images_checked, report.check_seconds = len(paths), time.perf_counter() - start
    logger.info(
        "Checked that %d images decode in %.1f s: %d unreadable", len(paths), report.check_seconds, len(unreadable)
    )
    if not unreadable:
        return
    shown = "; ".join(f"{path} ({reason})" for path, reason in unreadable[:_NAMES_SHOWN])
    if not cfg.DATASETS.SKIP_UNREADABLE_IMAGES:
        raise DatasetError(
            f"{len(unreadable)} of {len(paths)} images cannot be read: {shown}. Replace or delete "
            f"them, or set DATASETS.SKIP_UNREADABLE_IMAGES True to leave them out."
        )
    logger.warning(
        "DATASETS.SKIP_UNREADABLE_IMAGES: skipping %d unreadable images of %d: %s", len(unreadable), len(paths), shown
    )
    report.skipped = unreadable
    exclude_images(path for path, _ in unreadable)


def validate_datasets(cfg, eval_only=False):
    """Check every dataset ``cfg`` uses (see the module docstring); raises :class:`DatasetError`.

    With ``DATASETS.SKIP_UNREADABLE_IMAGES`` the unreadable images are excluded (:func:`exclude_images`) and the
    sizes checked without them. Returns a :class:`DatasetReport`.
    """
    import fastreid.data.build as data_build

    root = data_build._root
    roles = _dataset_roles(cfg, eval_only)
    classes = {name: _lookup(name, keys[0]) for name, keys in roles.items()}
    for name, cls in classes.items():
        check_file_names(name, cls, root)
    datasets = {name: _load(name, cls, root) for name, cls in classes.items()}
    report = DatasetReport()
    _check_images(cfg, datasets, roles, report)
    _check_sizes(cfg, datasets, roles, eval_only, root)
    report.counts = {
        name: {split: len(_images(dataset, split)) for split in _splits_used(roles[name])}
        for name, dataset in datasets.items()
    }
    return report
