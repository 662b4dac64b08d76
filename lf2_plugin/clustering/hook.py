"""The fast-reid hook that pseudo-labels the target train set at the start of every epoch (multi-level clustering).

It only produces labels; the trainer consumes them (``trainer.set_pseudo_labels``), as OpenUnReID keeps label
generators apart from the training loop.
"""

import json
import logging
import os
import time

import numpy as np
import torch

from fastreid.engine.train_loop import HookBase
from fastreid.utils import comm

from . import clustering_quality, clustering_statistics, distributed_cluster_levels, resolve_min_clusters
from .features import extract_clustering_features
from .metrics import cluster_sizes
from .visualize import save_cluster_montage, save_size_histograms

__all__ = ["MultiLevelClusteringHook", "cluster_camids", "epoch_cluster_seed"]

logger = logging.getLogger(__name__)


def epoch_cluster_seed(cfg, epoch):
    """The clustering seed of ``epoch``: a different k-means initialisation every epoch, and per run seed
    (``SEED``) so that seeds are independent runs."""
    return cfg.MODEL.LF2.CLUSTER.SEED + 1000 * max(cfg.SEED, 0) + epoch


def cluster_camids(cfg, camids):
    """The camera ids clustering needs: ``camids`` (one per clustered image, in loader order) when
    ``MODEL.LF2.CLUSTER.CAMERA_CENTERING`` is on, else None."""
    if not cfg.MODEL.LF2.CLUSTER.CAMERA_CENTERING:
        return None
    if camids is None:
        raise ValueError("MODEL.LF2.CLUSTER.CAMERA_CENTERING needs the camera id of every clustered image")
    return np.asarray(camids)


class MultiLevelClusteringHook(HookBase):
    """``before_epoch``: K+1 clustering features → K+1 label sets → ``trainer.set_pseudo_labels(results)``.

    Every rank extracts its shard of the features; rank 0 clusters each level (``MODEL.LF2.CLUSTER``; with
    ``CAMERA_CENTERING``, after removing each camera's mean, which needs ``camids``) and the results are
    broadcast, so all ranks train on identical labels. Per level it logs cluster statistics and, when
    ``true_ids`` are given (never used for training), NMI/ARI/pairwise P/R/F1: to the log, TensorBoard and
    metrics.json (through the trainer's event storage) and to ``OUTPUT_DIR/clustering.jsonl``; the cluster sizes
    as TensorBoard histograms; with ``MODEL.LF2.CLUSTER.VIS_EVERY`` and ``image_paths`` (the loader's images in
    order), pictures of the labels (:mod:`lf2_plugin.clustering.visualize`) in ``OUTPUT_DIR/clusters/``.
    """

    def __init__(self, cfg, data_loader, true_ids=None, image_paths=None, camids=None):
        self.cfg = cfg
        self.data_loader = data_loader
        self.true_ids = None if true_ids is None else np.asarray(true_ids)
        self.camids = cluster_camids(cfg, camids)
        self.image_paths = image_paths
        cl = cfg.MODEL.LF2.CLUSTER
        if cl.VIS_EVERY > 0 and min(cl.VIS_CLUSTERS, cl.VIS_MEMBERS) < 1:
            raise ValueError(
                f"MODEL.LF2.CLUSTER.VIS_CLUSTERS and VIS_MEMBERS must be >= 1 with VIS_EVERY "
                f"{cl.VIS_EVERY}, got {cl.VIS_CLUSTERS} and {cl.VIS_MEMBERS}"
            )
        self.min_clusters = resolve_min_clusters(cfg)
        self.history_file = os.path.join(cfg.OUTPUT_DIR, "clustering.jsonl")

    def before_epoch(self):
        trainer = self.trainer
        model = trainer.unwrapped_model
        start = time.perf_counter()
        features = extract_clustering_features(model, self.data_loader, flip=True)
        extract_seconds = time.perf_counter() - start
        results = distributed_cluster_levels(
            features,
            self.cfg.MODEL.LF2.CLUSTER,
            seed=epoch_cluster_seed(self.cfg, trainer.epoch),
            min_clusters=self.min_clusters,
            camids=self.camids,
        )
        if comm.is_main_process():
            self._log(results, extract_seconds)
            self._draw(results)
        trainer.set_pseudo_labels(results)

    def _log(self, results, extract_seconds):
        epoch = self.trainer.epoch
        record = {"epoch": epoch, "extract_seconds": round(extract_seconds, 3), "levels": []}
        scalars = {}
        for level, result in enumerate(results):
            stats = clustering_statistics(result.labels)
            stats.update(algorithm=result.algorithm, seconds=round(result.seconds, 3), fallback=result.fallback_reason)
            if self.true_ids is not None:
                stats.update(clustering_quality(result.labels, self.true_ids))
            for note in result.warnings:
                logger.warning("epoch %d, level %d clustering: %s", epoch, level, note)
            logger.info(
                "epoch %d, level %d: %s",
                epoch,
                level,
                ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in stats.items()),
            )
            record["levels"].append(stats)
            scalars.update(
                {
                    f"cluster/level{level}/{k}": float(v)
                    for k, v in stats.items()
                    if isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool)
                }
            )
        storage = self.trainer.storage
        # Before the epoch's first step the storage still holds the previous step, which the writers have written
        # already: the scalars would never reach TensorBoard. They belong to the epoch's first step.
        storage.iter = self.trainer.iter
        storage.put_scalars(**scalars, smoothing_hint=False)
        for level, result in enumerate(results):
            sizes = cluster_sizes(result.labels)
            sizes = torch.from_numpy((sizes if sizes.size else np.zeros(1)).astype(np.float32))
            storage.put_histogram(f"cluster/level{level}/sizes", sizes, bins=max(1, int(sizes.max())))
        with open(self.history_file, "a") as f:
            f.write(json.dumps(record, default=float) + "\n")

    def _draw(self, results):
        every = self.cfg.MODEL.LF2.CLUSTER.VIS_EVERY
        epoch = self.trainer.epoch
        if every <= 0 or epoch % every or self.image_paths is None:
            return
        folder = os.path.join(self.cfg.OUTPUT_DIR, "clusters")
        os.makedirs(folder, exist_ok=True)
        for level, result in enumerate(results):
            save_cluster_montage(
                result.labels,
                self.image_paths,
                os.path.join(folder, f"epoch{epoch:03d}_level{level}.jpg"),
                true_ids=self.true_ids,
                num_rows=self.cfg.MODEL.LF2.CLUSTER.VIS_CLUSTERS,
                num_members=self.cfg.MODEL.LF2.CLUSTER.VIS_MEMBERS,
                seed=epoch,
                title=f"epoch {epoch}, level {level}: ",
            )
        save_size_histograms(results, os.path.join(folder, f"epoch{epoch:03d}_sizes.png"), title=f"epoch {epoch}")
        logger.info("Pictures of the epoch %d pseudo labels in %s", epoch, folder)
