"""``tools/sweep_clustering.py``: one checkpoint's target features, many clusterings, one table.

The checkpoint is loaded strictly (:func:`lf2_plugin.deploy.load_inference_model`); the target is the config's
``DATASETS.TARGET_BN_ADAPT`` (a source-stage config) or its first ``DATASETS.NAMES`` (an LF2 config), or the
dataset named. Features: an LF2 model's clustering features of one level (the Fusion Module's, as training
clusters them), any other model's retrieval descriptor; both flip-averaged and L2-normalised, as training does.
"""

import json
import logging
import os
import time

import numpy as np

from ..clustering.features import extract_clustering_features
from ..clustering.sweep import check_grid, reestimate_bn_statistics, sweep_features, sweep_table
from ..data.pseudo_labels import build_clustering_loader

__all__ = ["run_clustering_sweep", "target_dataset_name", "write_sweep_report"]

logger = logging.getLogger(__name__)


def target_dataset_name(cfg):
    """The unlabelled target of a config: ``DATASETS.TARGET_BN_ADAPT`` if set, else the first ``DATASETS.NAMES``."""
    return cfg.DATASETS.TARGET_BN_ADAPT or cfg.DATASETS.NAMES[0]


def _target_train_items(name):
    import fastreid.data.build as data_build
    from fastreid.data.datasets import DATASET_REGISTRY

    return DATASET_REGISTRY.get(name)(root=data_build._root).train


def _features(model, loader, level):
    import torch

    from ..deploy import DescriptorModel

    if hasattr(model, "clustering_features"):
        levels = extract_clustering_features(model, loader, flip=True)
        if not 0 <= level < len(levels):
            raise ValueError(f"--level {level}: the model has {len(levels)} clustering levels (0 = global)")
        return levels[level]
    descriptor = DescriptorModel(model, flip=True)
    with torch.no_grad():
        return torch.cat([descriptor(batch["images"].to(model.device)).cpu() for batch in loader]).numpy()


def run_clustering_sweep(
    cfg,
    model,
    *,
    dataset=None,
    kmeans_k=(),
    dbscan_eps=(),
    dbscan_min_samples=(4,),
    camera_norm=(False, True),
    target_bn=(False, True),
    level=0,
    seed=0,
):
    """The sweep's report (dict with ``rows``) for ``model`` (loaded from ``cfg``) on ``dataset``'s train images."""
    check_grid(kmeans_k, dbscan_eps, dbscan_min_samples)
    name = dataset or target_dataset_name(cfg)
    items = _target_train_items(name)
    true_ids = np.unique([item[1] for item in items], return_inverse=True)[1]
    camids = np.unique([item[2] for item in items], return_inverse=True)[1]
    loader = build_clustering_loader(cfg, items)
    report = {
        "dataset": name,
        "weights": os.path.abspath(cfg.MODEL.WEIGHTS),
        "num_images": len(items),
        "num_identities": int(true_ids.max()) + 1,
        "num_cameras": int(camids.max()) + 1,
        "level": level,
        "feature_seconds": {},
        "rows": [],
    }
    for adapt_bn in sorted(set(target_bn)):  # as saved first: re-estimating changes the model
        start = time.perf_counter()
        if adapt_bn:
            reestimate_bn_statistics(model, loader)
        features = _features(model, loader, level)
        feature_name = f"BN {'re-estimated on the target' if adapt_bn else 'as saved'}"
        report["feature_seconds"][feature_name] = round(time.perf_counter() - start, 1)
        report["rows"] += sweep_features(
            features,
            true_ids,
            camids,
            cfg.MODEL.LF2.CLUSTER,
            kmeans_k=kmeans_k,
            dbscan_eps=dbscan_eps,
            dbscan_min_samples=dbscan_min_samples,
            camera_norm=camera_norm,
            seed=seed,
            feature_name=feature_name,
        )
    return report


def write_sweep_report(report, out_path):
    """``out_path`` (JSON) and the Markdown table beside it (``.md``); returns the table."""
    os.makedirs(os.path.dirname(os.path.abspath(out_path)), exist_ok=True)
    with open(out_path, "w") as f:
        json.dump(report, f, indent=1)
    table = sweep_table(report["rows"])
    with open(os.path.splitext(out_path)[0] + ".md", "w") as f:
        f.write(table + "\n")
    return table
