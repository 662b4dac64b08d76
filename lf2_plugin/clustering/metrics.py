"""Statistics of a pseudo labelling and, when true identities are known, its quality.

Public API::

    clustering_statistics(labels) -> dict
    clustering_quality(labels, true_ids) -> dict

True identities are for logging only; they must never reach training.

Outliers (label -1) in :func:`clustering_quality`: every outlier counts as its own singleton cluster, so NMI and
ARI are computed on all N points (a method cannot look better by discarding hard images), and an outlier forms
no predicted pair (it lowers pairwise recall, never precision). ``coverage`` reports the clustered fraction.
Pairwise scores count unordered pairs: precision = pairs in the same cluster and of the same identity / pairs in
the same cluster; recall = the same / pairs of the same identity; F1 their harmonic mean. A ratio with an empty
denominator is reported as 0.0.
"""

import numpy as np
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score
from sklearn.metrics.cluster import contingency_matrix


def cluster_sizes(labels):
    """Sizes of the non-empty clusters of ``labels`` (int, -1 = outlier), in cluster-id order."""
    labels = np.asarray(labels, dtype=np.int64)
    sizes = np.bincount(labels[labels >= 0])
    return sizes[sizes > 0]


def clustering_statistics(labels):
    """Counts and cluster-size distribution of ``labels`` (int, -1 = outlier).

    Returns a dict: ``num_samples``, ``num_clusters``, ``num_outliers``, ``num_singletons`` (clusters of one
    point), ``size_min``, ``size_median``, ``size_mean``, ``size_max`` (over clusters; 0 without clusters) and
    ``largest_cluster_fraction`` (largest cluster / num_samples).
    """
    labels = np.asarray(labels, dtype=np.int64)
    sizes = cluster_sizes(labels)
    has = sizes.size > 0
    return {
        "num_samples": int(labels.size),
        "num_clusters": int(sizes.size),
        "num_outliers": int((labels < 0).sum()),
        "num_singletons": int((sizes == 1).sum()),
        "size_min": int(sizes.min()) if has else 0,
        "size_median": float(np.median(sizes)) if has else 0.0,
        "size_mean": float(sizes.mean()) if has else 0.0,
        "size_max": int(sizes.max()) if has else 0,
        "largest_cluster_fraction": float(sizes.max() / labels.size) if has else 0.0,
    }


def _outliers_as_singletons(labels):
    labels = np.asarray(labels, dtype=np.int64).copy()
    outliers = labels < 0
    labels[outliers] = labels.max(initial=-1) + 1 + np.arange(int(outliers.sum()))
    return labels


def _pairs(counts):
    counts = np.asarray(counts, dtype=np.float64)
    return float((counts * (counts - 1) / 2).sum())


def clustering_quality(labels, true_ids):
    """NMI, ARI and pairwise precision / recall / F1 of ``labels`` against ``true_ids`` (see module docstring).

    Returns a dict: ``nmi``, ``ari``, ``pairwise_precision``, ``pairwise_recall``, ``pairwise_f1``,
    ``coverage`` (fraction of points not outliers).
    """
    labels = np.asarray(labels, dtype=np.int64)
    true_ids = np.asarray(true_ids)
    if labels.shape != true_ids.shape:
        raise ValueError(f"labels {labels.shape} and true_ids {true_ids.shape} differ in shape")
    if labels.size == 0:
        return {
            "nmi": 0.0,
            "ari": 0.0,
            "pairwise_precision": 0.0,
            "pairwise_recall": 0.0,
            "pairwise_f1": 0.0,
            "coverage": 0.0,
        }
    predicted = _outliers_as_singletons(labels)
    table = contingency_matrix(true_ids, predicted, sparse=True)
    same_both = _pairs(table.data)
    same_cluster = _pairs(np.asarray(table.sum(axis=0)).ravel())
    same_identity = _pairs(np.asarray(table.sum(axis=1)).ravel())
    precision = same_both / same_cluster if same_cluster else 0.0
    recall = same_both / same_identity if same_identity else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {
        "nmi": float(normalized_mutual_info_score(true_ids, predicted)),
        "ari": float(adjusted_rand_score(true_ids, predicted)),
        "pairwise_precision": float(precision),
        "pairwise_recall": float(recall),
        "pairwise_f1": float(f1),
        "coverage": float((labels >= 0).mean()),
    }
