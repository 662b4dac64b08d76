"""Pseudo-label quality of many clustering choices on one set of target features (``tools/sweep_clustering.py``).

One feature pass per feature variant (BN statistics as saved or re-estimated on the target; per-camera mean
removed or not), then every clustering of the grid (k-means k; Jaccard + DBSCAN eps x min-samples, the Jaccard
distance computed once per variant) is scored against the target's true identities: pairwise precision / recall /
F1, ARI, NMI and the fraction of images kept (``coverage``; DBSCAN's outliers are dropped in training unless
``DBSCAN.KEEP_OUTLIERS``, and count as singletons in every score either way, so keeping them only raises coverage).

The true identities make this a diagnostic: training never sees them. It tells which clustering a source model's
features support before any adaptation run, on a benchmark or on a small labelled sample of a new target.
"""

import logging
import time

import numpy as np
import torch

from .algorithms import cluster_features, dbscan_graph, dbscan_on_graph
from .camera import camera_centered
from .jaccard import compute_jaccard_distance_sparse
from .metrics import clustering_quality, clustering_statistics

__all__ = ["check_grid", "reestimate_bn_statistics", "sweep_features", "sweep_table"]

logger = logging.getLogger(__name__)


def check_grid(kmeans_k, dbscan_eps, dbscan_min_samples):
    """Raise ValueError on a grid that sweeps nothing or holds values the algorithms cannot take."""
    if not list(kmeans_k) and not list(dbscan_eps):
        raise ValueError("nothing to sweep: give k-means k values and/or DBSCAN eps values")
    bad_k = [k for k in kmeans_k if int(k) < 2]
    if bad_k:
        raise ValueError(f"k-means k must be >= 2, got {bad_k}")
    bad_eps = [e for e in dbscan_eps if not 0.0 < float(e) < 1.0]
    if bad_eps:
        raise ValueError(f"DBSCAN eps is a Jaccard distance and must lie in (0, 1), got {bad_eps}")
    if dbscan_eps and (not list(dbscan_min_samples) or min(int(m) for m in dbscan_min_samples) < 1):
        raise ValueError(f"DBSCAN min-samples must be >= 1, got {list(dbscan_min_samples)}")


@torch.no_grad()
def reestimate_bn_statistics(model, data_loader):
    """Replace the running statistics of every BatchNorm on ``model``'s eval path by the mean and variance of the
    ``data_loader`` images (AdaBN): the eval forward runs with only the BNs in train mode and cumulative averaging.
    Returns the number of BN layers updated."""
    norms = [
        m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm) and m.track_running_stats
    ]
    saved = [(m, m.momentum) for m in norms]
    model.eval()
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None  # cumulative moving average over all batches
        norm.train()
    try:
        for batch in data_loader:
            model(batch)
    finally:
        for norm, momentum in saved:
            norm.momentum = momentum
        model.eval()
    return len(norms)


def _kmeans_rows(features, true_ids, kmeans_k, cluster_cfg, seed):
    rows = []
    for k in kmeans_k:
        cfg = cluster_cfg.clone()
        cfg.defrost()
        cfg.NUM_CLUSTERS, cfg.MIN_CLUSTERS, cfg.LEVEL_ALGORITHMS = int(k), 1, []
        if cfg.ALGORITHM == "dbscan":
            cfg.ALGORITHM = "kmeans"
        result = cluster_features(features, cfg, level=0, seed=seed)
        rows.append(_row(f"{cfg.ALGORITHM} k={int(k)}", result.labels, true_ids, result.seconds))
    return rows


def _dbscan_rows(features, true_ids, eps_values, min_samples_values, k1, k2):
    start = time.perf_counter()
    distances = compute_jaccard_distance_sparse(features, k1=k1, k2=k2)
    jaccard_seconds = time.perf_counter() - start
    rows = []
    for eps in eps_values:
        graph = dbscan_graph(distances, float(eps))
        for min_samples in min_samples_values:
            start = time.perf_counter()
            labels = dbscan_on_graph(graph, float(eps), int(min_samples))
            rows.append(
                _row(
                    f"dbscan eps={float(eps):g} min_samples={int(min_samples)}",
                    labels,
                    true_ids,
                    time.perf_counter() - start + jaccard_seconds / len(eps_values) / len(min_samples_values),
                )
            )
    return rows


def _row(clustering, labels, true_ids, seconds):
    stats = clustering_statistics(labels)
    return {
        "clustering": clustering,
        **clustering_quality(labels, true_ids),
        "num_clusters": int(stats["num_clusters"]),
        "num_singletons": int(stats["num_singletons"]),
        "largest_cluster_fraction": float(stats["largest_cluster_fraction"]),
        "seconds": round(seconds, 3),
    }


def sweep_features(
    features,
    true_ids,
    camids,
    cluster_cfg,
    *,
    kmeans_k=(),
    dbscan_eps=(),
    dbscan_min_samples=(4,),
    camera_norm=(False,),
    seed=0,
    feature_name="",
):
    """Score every clustering of the grid on ``features`` [N, d] (L2-normalised), for each ``camera_norm``
    option. ``cluster_cfg`` is a ``MODEL.LF2.CLUSTER`` node (k-means settings, Jaccard k1/k2). Returns rows
    (dicts: ``features``, ``clustering``, the scores of :func:`clustering_quality`, cluster counts, seconds)."""
    check_grid(kmeans_k, dbscan_eps, dbscan_min_samples)
    rows = []
    for normalise in camera_norm:
        variant = camera_centered(features, camids) if normalise else np.asarray(features, np.float32)
        name = f"{feature_name}{', ' if feature_name else ''}camera mean {'removed' if normalise else 'kept'}"
        found = _kmeans_rows(variant, true_ids, kmeans_k, cluster_cfg, seed)
        if dbscan_eps:
            found += _dbscan_rows(
                variant,
                true_ids,
                dbscan_eps,
                dbscan_min_samples,
                int(cluster_cfg.DBSCAN.K1),
                int(cluster_cfg.DBSCAN.K2),
            )
        rows += [{"features": name, **row} for row in found]
        best = max(found, key=lambda r: r["pairwise_f1"])
        logger.info("%s: best pairwise F1 %.3f (%s)", name, best["pairwise_f1"], best["clustering"])
    return rows


def sweep_table(rows, top=None):
    """Markdown table of ``rows``, best pairwise F1 first (``top``: only that many)."""
    ordered = sorted(rows, key=lambda r: -r["pairwise_f1"])[:top]
    lines = [
        "| features | clustering | pairwise P | pairwise R | pairwise F1 | ARI | NMI | kept | clusters |",
        "|---|---|--:|--:|--:|--:|--:|--:|--:|",
    ]
    lines += [
        f"| {r['features']} | {r['clustering']} | {r['pairwise_precision']:.3f} | {r['pairwise_recall']:.3f} | "
        f"{r['pairwise_f1']:.3f} | {r['ari']:.3f} | {r['nmi']:.3f} | {r['coverage']:.2f} | "
        f"{r['num_clusters']} |"
        for r in ordered
    ]
    return "\n".join(lines)
