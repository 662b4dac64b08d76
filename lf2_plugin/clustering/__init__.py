"""Pseudo-label clustering for LF2 (issue 5): the library the training hook calls once per epoch and level.

Public API (stable; the hook in ``lf2_plugin/clustering/hook.py`` uses exactly this)::

    cluster_features(features, cfg, level=0, *, seed=None, min_clusters=None) -> ClusterResult
        features: (N, d) float32, L2-normalised (numpy or torch); cfg: the MODEL.LF2.CLUSTER node;
        level 0 = global feature, >= 1 = part levels.
    ClusterResult(labels, num_clusters, num_outliers, centroids, warnings, seconds, algorithm,
                  fallback_reason, timings)
    resolve_min_clusters(cfg) -> int
        MODEL.LF2.CLUSTER.MIN_CLUSTERS, or (when 0) SOLVER.IMS_PER_BATCH // DATALOADER.NUM_INSTANCE.
    clustering_statistics(labels) -> dict
    clustering_quality(labels, true_ids) -> dict
    compute_jaccard_distance_sparse(features, k1=30, k2=6, knn="exact", timings=None) -> scipy.sparse.csr_matrix
    knn_search(features, k, mode="exact", ...) -> KnnResult
    distributed_cluster_features(features, cfg, level=0, *, seed=None, min_clusters=None,
                                 already_gathered=False) -> ClusterResult
    distributed_cluster_levels(features_per_level, cfg, *, seed=None, min_clusters=None,
                               already_gathered=False, camids=None) -> list[ClusterResult]
    camera_centered(features, camids) -> np.ndarray (each camera's mean feature removed, L2-normalised)
    gather_to_rank0(local_features) -> np.ndarray | None
    broadcast_cluster_results(results, src=0) -> results of rank src

Algorithms, configuration keys and degenerate-case fallbacks: docs/CLUSTERING.md.
"""

from .algorithms import (
    ALGORITHMS,
    ClusterResult,
    cluster_features,
    compute_centroids,
    level_algorithm,
    run_dbscan,
    run_faiss_kmeans,
    run_minibatch_kmeans,
)
from .camera import camera_centered
from .distributed import (
    broadcast_cluster_results,
    distributed_cluster_features,
    distributed_cluster_levels,
    gather_to_rank0,
)
from .jaccard import compute_jaccard_distance_sparse
from .knn import KnnResult, knn_search
from .metrics import clustering_quality, clustering_statistics


def resolve_min_clusters(cfg):
    """Fewest clusters a P x K sampler can use: CLUSTER.MIN_CLUSTERS, or IMS_PER_BATCH // NUM_INSTANCE if 0.

    ``cfg`` is the full fast-reid config.
    """
    explicit = int(cfg.MODEL.LF2.CLUSTER.get("MIN_CLUSTERS", 0))
    if explicit > 0:
        return explicit
    return max(1, int(cfg.SOLVER.IMS_PER_BATCH) // max(1, int(cfg.DATALOADER.NUM_INSTANCE)))


__all__ = [
    "ALGORITHMS",
    "ClusterResult",
    "KnnResult",
    "broadcast_cluster_results",
    "camera_centered",
    "cluster_features",
    "clustering_quality",
    "clustering_statistics",
    "compute_centroids",
    "compute_jaccard_distance_sparse",
    "distributed_cluster_features",
    "distributed_cluster_levels",
    "gather_to_rank0",
    "knn_search",
    "level_algorithm",
    "resolve_min_clusters",
    "run_dbscan",
    "run_faiss_kmeans",
    "run_minibatch_kmeans",
]
