"""Pseudo-label clustering of one feature level: k-means (sklearn / faiss), DBSCAN on the sparse Jaccard distance.

Public API::

    cluster_features(features, cfg, level=0, *, seed=None, min_clusters=None) -> ClusterResult
    run_minibatch_kmeans(features, k, *, max_iter=100, batch_size=300, init_size=1500, n_init=3, seed=0,
                         return_centers=False) -> labels (, centers)
    run_faiss_kmeans(features, k, *, niter=10, max_points_per_centroid=16, seed=0, use_gpu=True,
                     init="kmeans++", init_size=0, return_centers=False) -> labels (, centers)
    run_dbscan(features, *, eps=0.6, min_samples=4, k1=30, k2=6, knn="exact", timings=None) -> labels
    compute_centroids(features, labels) -> np.ndarray (C, d) float32, L2-normalised
    level_algorithm(cfg, level) -> str

``cfg`` is the ``MODEL.LF2.CLUSTER`` node (a yacs CfgNode, or any nested dict with the same keys; missing keys
take the defaults of ``lf2_plugin.config._add_cluster_config``). ``level`` is the feature level: 0 = global
(k-means ``INIT_SIZE``), >= 1 = part levels (``PART_INIT_SIZE``; LF2 uses 1500 and 900). See docs/CLUSTERING.md.

Degenerate results never raise. After DBSCAN, ``cluster_features`` checks three conditions, and when one holds it
logs a warning with the numbers and, if ``FALLBACK.ALGORITHM`` is a k-means variant, re-clusters with it
(k = ``FALLBACK.NUM_CLUSTERS`` or ``NUM_CLUSTERS``, at least ``min_clusters``):

* every point an outlier;
* fewer clusters than ``min_clusters`` (the identities per batch P = IMS_PER_BATCH / NUM_INSTANCE; a P x K sampler
  cannot fill a batch from fewer);
* one giant cluster: the largest cluster holds more than ``FALLBACK.GIANT_CLUSTER_FRACTION`` of all points
  (re-clustered only if ``FALLBACK.ON_GIANT_CLUSTER == "fallback"``, else only warned).

With ``FALLBACK.ALGORITHM == "none"`` the DBSCAN labels are kept (all-outlier results become singletons so the
labelling stays usable). k-means results are only warned about (k is clamped to [min_clusters, N]).
"""

import functools
import logging
import time
import warnings
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp

from .jaccard import compute_jaccard_distance_sparse, filter_csr

logger = logging.getLogger(__name__)

ALGORITHMS = ("kmeans", "faiss_kmeans", "dbscan")


@dataclass
class ClusterResult:
    """Pseudo labels of one level.

    labels: int64 [N]; -1 = outlier (DBSCAN with KEEP_OUTLIERS off), else 0..num_clusters-1.
    num_clusters: classes the labels index: k for k-means with ``KMEANS.CENTROIDS`` "kmeans" (empty clusters
        included), else the distinct labels >= 0 (kept outliers count, as singleton clusters).
    num_outliers: points DBSCAN left unclustered (also when they were then kept as singletons).
    centroids: float32 [num_clusters, d], L2-normalised: the k-means centres ("kmeans"), or the mean of each
        cluster's features ("mean", DBSCAN).
    warnings: human-readable notes on degenerate results and fallbacks taken.
    seconds: wall time of the whole call.
    algorithm: algorithm that produced ``labels`` (differs from the configured one after a fallback).
    fallback_reason: why the fallback ran, or "".
    timings: seconds per phase (k-NN, Jaccard, DBSCAN, ...).
    """

    labels: np.ndarray
    num_clusters: int
    num_outliers: int
    centroids: np.ndarray
    warnings: list = field(default_factory=list)
    seconds: float = 0.0
    algorithm: str = ""
    fallback_reason: str = ""
    timings: dict = field(default_factory=dict)


def _lookup(cfg, dotted_key):
    node = cfg
    for part in dotted_key.split("."):
        if node is None:
            break
        if isinstance(node, dict):  # yacs CfgNode is a dict subclass
            node = node.get(part)
        else:
            node = getattr(node, part, None)
    return node


@functools.lru_cache(maxsize=1)
def _defaults():
    from ..config import default_cluster_config

    defaults = default_cluster_config()
    defaults.freeze()
    return defaults


def cfg_get(cfg, dotted_key):
    """``cfg.A.B`` for ``"A.B"`` on a CfgNode or nested dict, or its default (``lf2_plugin.config``) when absent."""
    node = _lookup(cfg, dotted_key)
    if node is None:
        node = _lookup(_defaults(), dotted_key)
        if node is None:
            raise KeyError(f"MODEL.LF2.CLUSTER.{dotted_key} is not a clustering key")
    return node


def level_algorithm(cfg, level):
    """Algorithm of ``level``: ``LEVEL_ALGORITHMS[level]`` when that list is long enough, else ``ALGORITHM``."""
    per_level = list(cfg_get(cfg, "LEVEL_ALGORITHMS") or [])
    name = per_level[level] if level < len(per_level) else cfg_get(cfg, "ALGORITHM")
    name = str(name).lower()
    if name not in ALGORITHMS:
        raise ValueError(f"MODEL.LF2.CLUSTER algorithm {name!r} not in {ALGORITHMS}")
    return name


def compact_labels(labels):
    """Renumber labels >= 0 to 0..C-1 in order of first appearance of their sorted values; -1 stays."""
    labels = np.asarray(labels, dtype=np.int64)
    out = np.full_like(labels, -1)
    clustered = labels >= 0
    if clustered.any():
        _, out[clustered] = np.unique(labels[clustered], return_inverse=True)
    return out


def compute_centroids(features, labels):
    """L2-normalised mean feature of each cluster 0..max(labels) (outliers ignored), float32 (C, d)."""
    labels = np.asarray(labels)
    num = int(labels.max()) + 1 if labels.size and labels.max() >= 0 else 0
    if num == 0:
        return np.zeros((0, features.shape[1]), np.float32)
    members = np.flatnonzero(labels >= 0)
    onehot = sp.csr_matrix(
        (np.ones(members.size, np.float32), (labels[members], members)), shape=(num, features.shape[0])
    )
    sums = np.asarray(onehot @ features, dtype=np.float32)
    norms = np.linalg.norm(sums, axis=1, keepdims=True)
    return sums / np.maximum(norms, 1e-12)


def run_minibatch_kmeans(
    features, k, *, max_iter=100, batch_size=300, init_size=1500, n_init=3, seed=0, return_centers=False
):
    """sklearn ``MiniBatchKMeans`` with LF2's settings; returns int64 labels (possibly with empty clusters) and,
    with ``return_centers``, its k cluster centres."""
    from sklearn.cluster import MiniBatchKMeans

    n = features.shape[0]
    model = MiniBatchKMeans(
        n_clusters=k,
        max_iter=max_iter,
        batch_size=min(batch_size, n),
        init_size=min(init_size, n) if init_size else None,
        n_init=n_init,
        random_state=seed,
    )
    with warnings.catch_warnings():  # init_size < k is raised by sklearn itself; nothing to act on
        warnings.simplefilter("ignore", RuntimeWarning)
        labels = model.fit(features).labels_.astype(np.int64)
    return (labels, model.cluster_centers_) if return_centers else labels


def kmeans_plusplus_centroids(features, k, *, sample_size=0, project_dim=256, seed=0):
    """k-means++ seeds: sklearn ``kmeans_plusplus`` on a seeded sample of ``sample_size`` rows (0 = all).

    The seeding runs on a seeded Gaussian random projection of the sample to ``project_dim`` dimensions (0 = none):
    sklearn's k-means++ does k tiny distance products one after another, 42 s for 2,100 x 2048-d points and k = 700
    on the loaded 2-core machine, ~1 s at 256-d. The chosen sample rows, in full dimension, are the seeds.
    """
    from sklearn.cluster import kmeans_plusplus
    from threadpoolctl import threadpool_limits

    n, d = features.shape
    rng = np.random.default_rng(seed)
    if 0 < sample_size < n:
        sample = features[np.sort(rng.choice(n, size=max(int(sample_size), k), replace=False))]
    else:
        sample = features
    projected = sample
    if 0 < project_dim < d:
        basis = rng.standard_normal((d, int(project_dim)), dtype=np.float32) / np.float32(np.sqrt(project_dim))
        projected = sample @ basis
    with threadpool_limits(1):  # its products are tiny; BLAS threads only add wake-ups
        _, chosen = kmeans_plusplus(projected, k, random_state=int(rng.integers(2**31 - 1)))
    return np.ascontiguousarray(sample[chosen], dtype=np.float32)


def run_faiss_kmeans(
    features,
    k,
    *,
    niter=10,
    max_points_per_centroid=16,
    seed=0,
    use_gpu=True,
    init="kmeans++",
    init_size=0,
    return_centers=False,
):
    """``faiss.Kmeans`` (Lloyd iterations, optionally on a subsample), then every point to its nearest centroid.

    ``init="kmeans++"`` starts Lloyd from sklearn ``kmeans_plusplus`` seeds drawn on a seeded sample of
    ``init_size`` points (0 = ``max(3 k, 1500)``; see :func:`kmeans_plusplus_centroids`), as MiniBatchKMeans
    seeds; ``"random"`` is faiss's own start (k random training points).
    """
    import faiss

    from .knn import _gpu_available

    n, d = features.shape
    init = str(init).lower()
    if init not in ("kmeans++", "random"):
        raise ValueError(f"faiss k-means init {init!r} not in ('kmeans++', 'random')")
    init_centroids = None
    if init == "kmeans++" and 1 < k < n:
        init_centroids = kmeans_plusplus_centroids(features, k, sample_size=init_size or max(3 * k, 1500), seed=seed)
    gpu = _gpu_available(use_gpu)
    kwargs = dict(
        niter=niter,
        seed=seed,
        max_points_per_centroid=max_points_per_centroid,
        min_points_per_centroid=1,
        verbose=False,
    )
    try:
        kmeans = faiss.Kmeans(d, k, gpu=gpu, **kwargs)
        kmeans.train(features, init_centroids=init_centroids)
    except Exception as exc:  # GPU path never exercised on the CPU-only development machine
        if not gpu:
            raise
        logger.warning("faiss GPU k-means failed (%s); falling back to CPU", exc)
        kmeans = faiss.Kmeans(d, k, gpu=False, **kwargs)
        kmeans.train(features, init_centroids=init_centroids)
    _, assignment = kmeans.index.search(features, 1)
    labels = assignment[:, 0].astype(np.int64)
    return (labels, kmeans.centroids) if return_centers else labels


def dbscan_graph(distances, eps):
    """Radius graph for sklearn DBSCAN(metric="precomputed"): entries <= eps, diagonal stored, rows sorted by value."""
    graph = filter_csr(distances, distances.data <= eps)
    n = graph.shape[0]
    rows = np.repeat(np.arange(n), np.diff(graph.indptr))
    has_diag = np.zeros(n, bool)
    has_diag[rows[graph.indices == rows]] = True
    if not has_diag.all():  # a point is always its own neighbour at distance 0
        missing = np.flatnonzero(~has_diag)
        rows = np.concatenate([rows, missing])
        cols = np.concatenate([graph.indices, missing])
        data = np.concatenate([graph.data, np.zeros(missing.size, graph.data.dtype)])
    else:
        cols, data = graph.indices, graph.data
    # sklearn re-sorts unsorted rows in a Python loop (with an EfficiencyWarning); sort them vectorised instead
    order = np.lexsort((data, rows))
    indptr = np.concatenate([[0], np.cumsum(np.bincount(rows, minlength=n))])
    return sp.csr_matrix((data[order], cols[order], indptr), shape=(n, n))


def dbscan_on_graph(graph, eps, min_samples):
    """sklearn DBSCAN on a radius graph of :func:`dbscan_graph`; int64 labels, -1 = outlier."""
    from sklearn.cluster import DBSCAN

    return DBSCAN(eps=eps, min_samples=min_samples, metric="precomputed").fit_predict(graph).astype(np.int64)


def run_dbscan(features, *, eps=0.6, min_samples=4, k1=30, k2=6, knn="exact", timings=None):
    """sklearn DBSCAN on the sparse k-reciprocal Jaccard distance; returns int64 labels, -1 = outlier."""
    timings = timings if timings is not None else {}
    distances = compute_jaccard_distance_sparse(features, k1=k1, k2=k2, knn=knn, timings=timings)
    start = time.perf_counter()
    graph = dbscan_graph(distances, eps)
    del distances
    labels = dbscan_on_graph(graph, eps, min_samples)
    timings["dbscan"] = time.perf_counter() - start
    return labels


def _knn_options(cfg, seed):
    return {
        "mode": str(cfg_get(cfg, "KNN.MODE")).lower(),
        "hnsw_m": int(cfg_get(cfg, "KNN.HNSW_M")),
        "hnsw_ef_construction": int(cfg_get(cfg, "KNN.HNSW_EF_CONSTRUCTION")),
        "hnsw_ef_search": int(cfg_get(cfg, "KNN.HNSW_EF_SEARCH")),
        "ivf_nlist": int(cfg_get(cfg, "KNN.IVF_NLIST")),
        "ivf_nprobe": int(cfg_get(cfg, "KNN.IVF_NPROBE")),
        "ivf_query_probes": int(cfg_get(cfg, "KNN.IVF_QUERY_PROBES")),
        "use_gpu": bool(cfg_get(cfg, "KNN.USE_GPU")),
        "num_threads": int(cfg_get(cfg, "KNN.NUM_THREADS")),
        "seed": int(seed),
    }


CENTROID_MODES = ("kmeans", "mean")


def _run_kmeans_variant(name, features, k, cfg, level, seed):
    """(labels, L2-normalised centroids) of a k-means variant, as ``KMEANS.CENTROIDS`` says: "kmeans" keeps the
    algorithm's k labels and centres (empty clusters included, as the official classifier update), "mean"
    renumbers the non-empty clusters and takes their members' mean."""
    mode = str(cfg_get(cfg, "KMEANS.CENTROIDS")).lower()
    if mode not in CENTROID_MODES:
        raise ValueError(f"MODEL.LF2.CLUSTER.KMEANS.CENTROIDS must be one of {CENTROID_MODES}, got {mode!r}")
    if name == "kmeans":
        init_key = "KMEANS.INIT_SIZE" if level == 0 else "KMEANS.PART_INIT_SIZE"
        labels, centers = run_minibatch_kmeans(
            features,
            k,
            max_iter=int(cfg_get(cfg, "KMEANS.MAX_ITER")),
            batch_size=int(cfg_get(cfg, "KMEANS.BATCH_SIZE")),
            init_size=int(cfg_get(cfg, init_key)),
            n_init=int(cfg_get(cfg, "KMEANS.N_INIT")),
            seed=seed,
            return_centers=True,
        )
    else:
        labels, centers = run_faiss_kmeans(
            features,
            k,
            niter=int(cfg_get(cfg, "KMEANS.FAISS_NITER")),
            max_points_per_centroid=int(cfg_get(cfg, "KMEANS.FAISS_MAX_POINTS_PER_CENTROID")),
            seed=seed,
            use_gpu=bool(cfg_get(cfg, "KNN.USE_GPU")),
            init=str(cfg_get(cfg, "KMEANS.FAISS_INIT")),
            init_size=int(cfg_get(cfg, "KMEANS.FAISS_INIT_SIZE")),
            return_centers=True,
        )
    if mode == "mean":
        labels = compact_labels(labels)
        return labels, compute_centroids(features, labels)
    centers = np.asarray(centers, dtype=np.float32)
    return labels, centers / np.maximum(np.linalg.norm(centers, axis=1, keepdims=True), 1e-12)


def _kmeans_k(requested, min_clusters, n, notes):
    k = int(requested)
    if k < min_clusters:
        notes.append(f"NUM_CLUSTERS={k} < min_clusters={min_clusters}; using k={min_clusters}")
        k = min_clusters
    if k > n:
        notes.append(f"k={k} > number of points {n}; using k={n}")
        k = n
    return max(k, 1)


def _degenerate_reason(labels, min_clusters, giant_fraction):
    """(kind, message) of the first degenerate condition found, or (None, "")."""
    n = labels.size
    clustered = labels[labels >= 0]
    num_clusters = int(clustered.max()) + 1 if clustered.size else 0
    num_outliers = n - clustered.size
    if num_clusters == 0:
        return "all_outliers", f"all {n} points are outliers (0 clusters)"
    if num_clusters < min_clusters:
        return "too_few", (
            f"{num_clusters} clusters < min_clusters={min_clusters} (identities per batch); {num_outliers}/{n} outliers"
        )
    largest = int(np.bincount(clustered).max())
    if largest > giant_fraction * n:
        return "giant", (
            f"giant cluster: {largest}/{n} points ({largest / n:.1%}) in one cluster "
            f"(> {giant_fraction:.0%}); {num_clusters} clusters, {num_outliers} outliers"
        )
    return None, ""


def cluster_features(features, cfg, level=0, *, seed=None, min_clusters=None):
    """Cluster one level's features (N x d, float32, L2-normalised) as ``cfg`` (MODEL.LF2.CLUSTER) says.

    Args:
        features: (N, d) numpy array or torch tensor.
        cfg: the CLUSTER CfgNode (or nested dict); see docs/CLUSTERING.md for the keys.
        level: 0 for the global feature, 1.. for part levels (selects INIT_SIZE vs PART_INIT_SIZE and the
            entry of LEVEL_ALGORITHMS).
        seed: random seed for k-means / IVF training; defaults to ``cfg.SEED``. Pass e.g. SEED + epoch.
        min_clusters: fewest acceptable clusters; defaults to ``cfg.MIN_CLUSTERS`` (0 = no minimum). Use
            :func:`lf2_plugin.clustering.resolve_min_clusters` to derive it from the sampler.

    Returns:
        :class:`ClusterResult`. Never raises for degenerate results (see the module docstring).
    """
    start = time.perf_counter()
    if hasattr(features, "detach"):
        features = features.detach().cpu().numpy()
    features = np.ascontiguousarray(features, dtype=np.float32)
    n = features.shape[0]
    seed = int(cfg_get(cfg, "SEED") if seed is None else seed)
    min_clusters = int(cfg_get(cfg, "MIN_CLUSTERS") if min_clusters is None else min_clusters)
    algorithm = level_algorithm(cfg, level)
    notes, timings = [], {}
    fallback_reason = ""
    num_outliers = 0

    if n == 0:
        return ClusterResult(
            np.zeros(0, np.int64),
            0,
            0,
            np.zeros((0, features.shape[1]), np.float32),
            [],
            time.perf_counter() - start,
            algorithm,
        )
    if min_clusters > n:
        notes.append(f"min_clusters={min_clusters} > number of points {n}: cannot be met")
        min_clusters = n

    if algorithm in ("kmeans", "faiss_kmeans"):
        k = _kmeans_k(cfg_get(cfg, "NUM_CLUSTERS"), min_clusters, n, notes)
        labels, centroids = _run_kmeans_variant(algorithm, features, k, cfg, level, seed)
        kind, message = _degenerate_reason(labels, min_clusters, float(cfg_get(cfg, "FALLBACK.GIANT_CLUSTER_FRACTION")))
        if kind:
            notes.append(f"{algorithm} (k={k}): {message}")
    else:
        eps = float(cfg_get(cfg, "DBSCAN.EPS"))
        if eps >= 1.0:  # pairs at Jaccard distance exactly 1 are not stored in the sparse graph
            notes.append(f"DBSCAN.EPS={eps} >= 1 is not supported by the sparse distance; using 0.999999")
            eps = 0.999999
        labels = run_dbscan(
            features,
            eps=eps,
            min_samples=int(cfg_get(cfg, "DBSCAN.MIN_SAMPLES")),
            k1=int(cfg_get(cfg, "DBSCAN.K1")),
            k2=int(cfg_get(cfg, "DBSCAN.K2")),
            knn=_knn_options(cfg, seed),
            timings=timings,
        )
        num_outliers = int((labels < 0).sum())
        kind, message = _degenerate_reason(labels, min_clusters, float(cfg_get(cfg, "FALLBACK.GIANT_CLUSTER_FRACTION")))
        fallback = str(cfg_get(cfg, "FALLBACK.ALGORITHM")).lower()
        if kind == "giant" and str(cfg_get(cfg, "FALLBACK.ON_GIANT_CLUSTER")).lower() != "fallback":
            notes.append(f"dbscan: {message}; kept (FALLBACK.ON_GIANT_CLUSTER)")
        elif kind and fallback in ("kmeans", "faiss_kmeans"):
            requested = int(cfg_get(cfg, "FALLBACK.NUM_CLUSTERS")) or int(cfg_get(cfg, "NUM_CLUSTERS"))
            k = _kmeans_k(requested, min_clusters, n, notes)
            notes.append(f"dbscan: {message}; falling back to {fallback} with k={k}")
            fallback_reason = kind
            clock = time.perf_counter()
            labels, centroids = _run_kmeans_variant(fallback, features, k, cfg, level, seed)
            timings["fallback"] = time.perf_counter() - clock
            algorithm = fallback
        elif kind:
            notes.append(f"dbscan: {message}; no fallback (FALLBACK.ALGORITHM={fallback!r})")
        if (
            algorithm == "dbscan"
            and num_outliers
            and (bool(cfg_get(cfg, "DBSCAN.KEEP_OUTLIERS")) or kind == "all_outliers")
        ):
            # each outlier becomes its own cluster, numbered after the real ones
            outliers = labels < 0
            labels = labels.copy()
            labels[outliers] = labels.max(initial=-1) + 1 + np.arange(int(outliers.sum()))
            if kind == "all_outliers":
                notes.append("every point kept as a singleton cluster")

    for note in notes:
        logger.warning("clustering level %d: %s", level, note)
    if algorithm == "dbscan":
        centroids = compute_centroids(features, labels)
    return ClusterResult(
        labels=labels,
        num_clusters=int(centroids.shape[0]),
        num_outliers=num_outliers,
        centroids=centroids,
        warnings=notes,
        seconds=time.perf_counter() - start,
        algorithm=algorithm,
        fallback_reason=fallback_reason,
        timings=timings,
    )
