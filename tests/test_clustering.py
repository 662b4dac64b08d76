"""Clustering core (issue 5): sparse Jaccard vs fast-reid, DBSCAN / k-means paths, fallbacks, metrics."""

import numpy as np
import pytest
import torch
from sklearn.cluster import DBSCAN

import lf2_plugin  # noqa: F401  (fast-reid shims)
from lf2_plugin.clustering import (
    algorithms,
    cluster_features,
    clustering_quality,
    clustering_statistics,
    compute_jaccard_distance_sparse,
    knn_search,
    resolve_min_clusters,
    run_dbscan,
)

from fastreid.utils.compute_dist import compute_jaccard_distance


def normalise(x):
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def clustered(n, d, num_ids, noise, seed=0, sizes=None):
    """Gaussian blobs on the sphere; ``sizes`` forces the cluster sizes."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((num_ids, d))
    ids = np.repeat(np.arange(num_ids), sizes) if sizes is not None else rng.integers(0, num_ids, n)
    x = centres[ids] + noise * rng.standard_normal((ids.size, d))
    return normalise(x), ids


def dense(sparse_dist):
    out = np.ones(sparse_dist.shape, np.float32)
    coo = sparse_dist.tocoo()
    out[coo.row, coo.col] = coo.data
    return out


def cfg(**overrides):
    """A CLUSTER config as a nested dict; keys not given take the defaults."""
    node = {"KNN": {"USE_GPU": False}}
    for key, value in overrides.items():
        parts = key.split("__")
        target = node
        for part in parts[:-1]:
            target = target.setdefault(part, {})
        target[parts[-1]] = value
    return node


# ---------------------------------------------------------------- sparse Jaccard against fast-reid's reference


@pytest.mark.parametrize(
    "kind,k1,k2", [("random", 30, 6), ("clustered", 30, 6), ("clustered", 20, 1), ("clustered", 13, 3)]
)
def test_sparse_jaccard_equals_fastreid_reference(kind, k1, k2):
    if kind == "random":
        x = normalise(np.random.default_rng(1).standard_normal((300, 16)))
    else:
        x, _ = clustered(400, 48, 25, 0.6, seed=2)
    reference = compute_jaccard_distance(torch.from_numpy(x), k1=k1, k2=k2, search_option=3)
    sparse = compute_jaccard_distance_sparse(x, k1=k1, k2=k2)
    ours = dense(sparse)
    below = reference < 1
    assert below.sum() > x.shape[0]  # more than the diagonal: the comparison is not vacuous
    np.testing.assert_allclose(ours[below], reference[below], atol=2e-6)
    # every pair not stored is one the reference puts at distance >= 1
    assert np.all(reference[ours >= 1] >= 1 - 1e-6)
    assert np.all(sparse.data < 1)
    assert abs(sparse - sparse.T).max() < 1e-6


def test_sparse_jaccard_stores_zero_distances_explicitly():
    x, _ = clustered(200, 32, 10, 0.5, seed=3)
    x[7] = x[3]  # a duplicated image: distance 0 to its twin
    dist = compute_jaccard_distance_sparse(x, k1=20, k2=6)
    for i, j in [(3, 7), (7, 3), (0, 0), (5, 5)]:
        row = dist.indices[dist.indptr[i] : dist.indptr[i + 1]]
        assert j in row, (i, j)
    assert dist[3, 7] == 0 and dist[3, 3] == 0
    assert np.all(np.diff(dist.indptr) > 0)


def test_dbscan_labels_equal_reference_dbscan():
    x, _ = clustered(500, 48, 30, 0.7, seed=4)
    x[:20] = normalise(np.random.default_rng(0).standard_normal((20, 48)))  # junk images: some outliers
    reference = DBSCAN(eps=0.6, min_samples=4, metric="precomputed").fit_predict(
        compute_jaccard_distance(torch.from_numpy(x), k1=30, k2=6, search_option=3)
    )
    ours = run_dbscan(x, eps=0.6, min_samples=4, k1=30, k2=6)
    assert reference.max() >= 5 and (reference == -1).any()
    np.testing.assert_array_equal(ours, reference)


# ---------------------------------------------------------------- k-NN modes


def test_knn_exact_matches_flat_index_and_approximate_modes_find_self():
    x, _ = clustered(600, 32, 20, 0.5, seed=5)
    exact = knn_search(x, 10, use_gpu=False)
    assert exact.indices.shape == (600, 10) and np.all(exact.indices[:, 0] == np.arange(600))
    np.testing.assert_allclose(exact.distances[:, 1], ((x - x[exact.indices[:, 1]]) ** 2).sum(1), atol=1e-5)
    # grouped IVF probing every cell is an exact search
    full = knn_search(x, 10, mode="grouped_ivf", ivf_nlist=8, ivf_nprobe=8, use_gpu=False)
    assert all(set(a) == set(b) for a, b in zip(full.indices, exact.indices))
    # ... and so is one whose points each probe every cell themselves (per-query probes), whatever ivf_nprobe
    per_query = knn_search(x, 10, mode="grouped_ivf", ivf_nlist=8, ivf_nprobe=1, ivf_query_probes=8, use_gpu=False)
    assert all(set(a) == set(b) for a, b in zip(per_query.indices, exact.indices))
    recalls = {}
    for probes in (0, 3):  # per-query probes only add cells to search: recall never drops
        approx = knn_search(
            x, 10, mode="grouped_ivf", ivf_nlist=8, ivf_nprobe=2, ivf_query_probes=probes, use_gpu=False
        )
        recalls[probes] = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(approx.indices, exact.indices)])
    assert recalls[3] >= recalls[0], recalls
    for mode in ("grouped_ivf", "ivf", "hnsw"):
        approx = knn_search(x, 10, mode=mode, ivf_nlist=8, ivf_nprobe=3, use_gpu=False)
        recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(approx.indices, exact.indices)])
        assert recall > 0.8, (mode, recall)
    with pytest.raises(ValueError):
        knn_search(x, 10, mode="nope")


def test_knn_pads_when_fewer_points_than_k():
    x = normalise(np.random.default_rng(0).standard_normal((5, 8)))
    result = knn_search(x, 8, use_gpu=False)
    assert result.indices.shape == (5, 8)
    assert np.all(result.indices[:, 5:] == -1) and np.all(np.isinf(result.distances[:, 5:]))


# ---------------------------------------------------------------- cluster_features


@pytest.mark.parametrize(
    "algorithm,centroids",
    [
        ("kmeans", "mean"),
        ("faiss_kmeans", "mean"),
        ("dbscan", "mean"),
        ("kmeans", "kmeans"),
        ("faiss_kmeans", "kmeans"),
    ],
)
def test_cluster_features_result(algorithm, centroids):
    x, ids = clustered(480, 32, 12, 0.3, seed=6)
    result = cluster_features(
        x, cfg(ALGORITHM=algorithm, NUM_CLUSTERS=12, FALLBACK__ALGORITHM="none", KMEANS__CENTROIDS=centroids), level=0
    )
    assert result.labels.dtype == np.int64 and result.labels.shape == (480,)
    assert result.algorithm == algorithm and not result.fallback_reason
    assert result.num_clusters == result.labels.max() + 1 == result.centroids.shape[0]
    np.testing.assert_allclose(np.linalg.norm(result.centroids, axis=1), 1, atol=1e-5)
    members = x[result.labels == 0].mean(0)
    members /= np.linalg.norm(members)
    if centroids == "mean":
        np.testing.assert_allclose(result.centroids[0], members, atol=1e-5)
    else:  # the k-means centre of a blob is close to its mean, not equal
        assert result.centroids[0] @ members > 0.99
    assert clustering_quality(result.labels, ids)["nmi"] > 0.9


def test_kmeans_centroids_are_the_kmeans_centres_and_labels_keep_empty_clusters():
    """KMEANS.CENTROIDS "kmeans" (the official classifier update): sklearn's centres, L2-normalised, for all k
    labels, which are left as sklearn gives them."""
    from sklearn.cluster import MiniBatchKMeans

    x, _ = clustered(600, 16, 8, 0.5, seed=2)
    settings = cfg(NUM_CLUSTERS=30, KMEANS__CENTROIDS="kmeans", KMEANS__INIT_SIZE=200)
    result = cluster_features(x, settings, seed=4)
    reference = MiniBatchKMeans(
        n_clusters=30, max_iter=100, batch_size=300, init_size=200, n_init=3, random_state=4
    ).fit(x)
    np.testing.assert_array_equal(result.labels, reference.labels_)
    centres = reference.cluster_centers_ / np.linalg.norm(reference.cluster_centers_, axis=1, keepdims=True)
    np.testing.assert_allclose(result.centroids, centres, atol=1e-6)
    assert result.num_clusters == 30
    mean_mode = cluster_features(x, cfg(NUM_CLUSTERS=30, KMEANS__CENTROIDS="mean", KMEANS__INIT_SIZE=200), seed=4)
    assert not np.allclose(mean_mode.centroids[:5], result.centroids[:5], atol=1e-3)
    with pytest.raises(ValueError, match="CENTROIDS"):
        cluster_features(x, cfg(KMEANS__CENTROIDS="median"))


def test_level_selects_init_size_and_algorithm(monkeypatch):
    calls = []
    monkeypatch.setattr(
        algorithms,
        "run_minibatch_kmeans",
        lambda features, k, **kw: (
            calls.append(kw) or (np.arange(features.shape[0]) % k, np.ones((k, features.shape[1])))
        ),
    )
    x, _ = clustered(100, 16, 5, 0.3)
    settings = cfg(
        NUM_CLUSTERS=5,
        KMEANS__INIT_SIZE=1500,
        KMEANS__PART_INIT_SIZE=900,
        LEVEL_ALGORITHMS=["kmeans", "kmeans", "faiss_kmeans"],
    )
    cluster_features(x, settings, level=0)
    cluster_features(x, settings, level=1)
    assert [c["init_size"] for c in calls] == [1500, 900]
    assert cluster_features(x, settings, level=2).algorithm == "faiss_kmeans"


def test_kmeans_is_seeded():
    x, _ = clustered(300, 16, 10, 0.5)
    for algorithm in ("kmeans", "faiss_kmeans"):
        a = cluster_features(x, cfg(ALGORITHM=algorithm, NUM_CLUSTERS=10), seed=3).labels
        b = cluster_features(x, cfg(ALGORITHM=algorithm, NUM_CLUSTERS=10), seed=3).labels
        np.testing.assert_array_equal(a, b)


def test_faiss_kmeans_plusplus_seeds_are_seeded_and_used(monkeypatch):
    x, _ = clustered(600, 32, 20, 0.4, seed=4)
    a = algorithms.kmeans_plusplus_centroids(x, 20, sample_size=200, seed=5)
    b = algorithms.kmeans_plusplus_centroids(x, 20, sample_size=200, seed=5)
    c = algorithms.kmeans_plusplus_centroids(x, 20, sample_size=200, seed=6)
    np.testing.assert_array_equal(a, b)
    assert a.shape == (20, 32) and a.dtype == np.float32 and not np.array_equal(a, c)
    assert all((np.abs(x - row).sum(1) == 0).any() for row in a)  # seeds are data points, in full dimension
    # equal k-means++ seeds -> equal labels, whatever faiss's own seed; the seeds really reach faiss.Kmeans.train
    seen = []
    original = algorithms.kmeans_plusplus_centroids
    monkeypatch.setattr(
        algorithms,
        "kmeans_plusplus_centroids",
        lambda *args, **kw: seen.append(kw) or original(x, 20, sample_size=200, seed=5),
    )
    first = algorithms.run_faiss_kmeans(x, 20, niter=0, seed=1, use_gpu=False)
    second = algorithms.run_faiss_kmeans(x, 20, niter=0, seed=2, use_gpu=False)
    np.testing.assert_array_equal(first, second)
    nearest = np.argmin(((x[:, None, :] - a[None]) ** 2).sum(-1), axis=1)  # niter=0: labels = nearest seed
    np.testing.assert_array_equal(first, nearest)
    assert len(seen) == 2 and seen[0]["sample_size"] == 1500  # default init size max(3k, 1500)
    algorithms.run_faiss_kmeans(x, 20, seed=1, use_gpu=False, init="random")
    assert len(seen) == 2  # random init does not seed with k-means++
    with pytest.raises(ValueError):
        algorithms.run_faiss_kmeans(x, 20, use_gpu=False, init="bogus")


def test_faiss_kmeans_plusplus_at_least_as_good_as_random_init():
    # unequal cluster sizes: random starts put several centroids in the big clusters, k-means++ spreads them
    sizes = np.r_[np.full(5, 200), np.full(35, 12)]
    x, ids = clustered(int(sizes.sum()), 32, 40, 0.3, seed=7, sizes=sizes)
    nmi = {}
    for init in ("kmeans++", "random"):
        scores = [
            clustering_quality(algorithms.run_faiss_kmeans(x, 40, seed=s, use_gpu=False, init=init), ids)["nmi"]
            for s in range(3)
        ]
        nmi[init] = float(np.mean(scores))
    assert nmi["kmeans++"] >= nmi["random"], nmi
    assert nmi["kmeans++"] > nmi["random"] + 0.05 and nmi["kmeans++"] > 0.9, nmi  # 0.93 vs 0.83


# ---------------------------------------------------------------- degenerate results never crash


def test_all_outliers_falls_back_to_kmeans():
    x, _ = clustered(200, 16, 10, 0.3)
    result = cluster_features(x, cfg(ALGORITHM="dbscan", DBSCAN__MIN_SAMPLES=1000, NUM_CLUSTERS=10))
    assert result.fallback_reason == "all_outliers" and result.algorithm == "faiss_kmeans"
    assert result.num_outliers == 200 and result.num_clusters == 10 and (result.labels >= 0).all()
    assert any("all 200 points are outliers" in w for w in result.warnings)


def test_all_outliers_without_fallback_become_singletons():
    x, _ = clustered(200, 16, 10, 0.3)
    result = cluster_features(x, cfg(ALGORITHM="dbscan", DBSCAN__MIN_SAMPLES=1000, FALLBACK__ALGORITHM="none"))
    assert result.algorithm == "dbscan" and result.num_clusters == 200
    np.testing.assert_array_equal(np.sort(result.labels), np.arange(200))
    assert any("singleton" in w for w in result.warnings)


def test_too_few_clusters_falls_back_with_at_least_min_clusters():
    x, _ = clustered(300, 16, 5, 0.2, sizes=[60] * 5)
    settings = cfg(ALGORITHM="dbscan", NUM_CLUSTERS=4, FALLBACK__ALGORITHM="kmeans")
    result = cluster_features(x, settings, min_clusters=8)
    assert result.fallback_reason == "too_few" and result.algorithm == "kmeans"
    assert result.num_clusters >= 8
    assert any("5 clusters < min_clusters=8" in w for w in result.warnings)
    # enough clusters: DBSCAN's labels are kept
    kept = cluster_features(x, settings, min_clusters=4)
    assert kept.algorithm == "dbscan" and kept.num_clusters == 5 and not kept.warnings


def test_giant_cluster_warns_and_falls_back_or_keeps():
    x, _ = clustered(300, 16, 4, 0.2, sizes=[210, 30, 30, 30])
    result = cluster_features(x, cfg(ALGORITHM="dbscan", NUM_CLUSTERS=10))
    assert result.fallback_reason == "giant" and result.num_clusters == 10
    assert any("giant cluster" in w and "/300 points" in w and "k=10" in w for w in result.warnings)
    kept = cluster_features(x, cfg(ALGORITHM="dbscan", FALLBACK__ON_GIANT_CLUSTER="warn"))
    assert kept.algorithm == "dbscan" and not kept.fallback_reason
    assert np.bincount(kept.labels[kept.labels >= 0]).max() > 150
    assert any("giant cluster" in w for w in kept.warnings)


def test_keep_outliers_assigns_singletons():
    x, _ = clustered(300, 16, 6, 0.3)
    x[:10] = normalise(np.random.default_rng(9).standard_normal((10, 16)))  # isolated points
    dropped = cluster_features(x, cfg(ALGORITHM="dbscan", FALLBACK__ALGORITHM="none"))
    assert dropped.num_outliers > 0 and (dropped.labels == -1).sum() == dropped.num_outliers
    kept = cluster_features(x, cfg(ALGORITHM="dbscan", FALLBACK__ALGORITHM="none", DBSCAN__KEEP_OUTLIERS=True))
    assert (kept.labels >= 0).all() and kept.num_outliers == dropped.num_outliers
    assert kept.num_clusters == dropped.num_clusters + dropped.num_outliers


@pytest.mark.parametrize("n", [0, 1, 3])
def test_tiny_inputs_and_k_larger_than_n(n):
    x = normalise(np.random.default_rng(0).standard_normal((max(n, 1), 8)))[:n]
    for algorithm in ("kmeans", "faiss_kmeans", "dbscan"):
        result = cluster_features(x, cfg(ALGORITHM=algorithm, NUM_CLUSTERS=10), min_clusters=2)
        assert result.labels.shape == (n,)
        assert n == 0 or (result.labels >= 0).all()


def test_resolve_min_clusters():
    from lf2_plugin.config import add_lf2_config

    from fastreid.config import get_cfg

    full = add_lf2_config(get_cfg())
    full.SOLVER.IMS_PER_BATCH, full.DATALOADER.NUM_INSTANCE = 64, 4
    assert resolve_min_clusters(full) == 16
    full.MODEL.LF2.CLUSTER.MIN_CLUSTERS = 5
    assert resolve_min_clusters(full) == 5
    # the yacs node is accepted by cluster_features as is
    x, _ = clustered(120, 16, 6, 0.3)
    result = cluster_features(x, full.MODEL.LF2.CLUSTER, min_clusters=resolve_min_clusters(full))
    assert result.algorithm == "kmeans" and 16 <= result.num_clusters <= 120  # k=700 clamped to N=120
    assert any("k=700 > number of points 120" in w for w in result.warnings)


# ---------------------------------------------------------------- metrics


def test_statistics():
    stats = clustering_statistics([0, 0, 0, 1, 1, 2, -1, -1])
    assert stats == {
        "num_samples": 8,
        "num_clusters": 3,
        "num_outliers": 2,
        "num_singletons": 1,
        "size_min": 1,
        "size_median": 2.0,
        "size_mean": 2.0,
        "size_max": 3,
        "largest_cluster_fraction": 3 / 8,
    }
    assert clustering_statistics([-1, -1])["num_clusters"] == 0


def test_quality_by_hand():
    labels = [0, 0, 0, 1, 1, -1]
    truth = [5, 5, 6, 6, 6, 6]
    q = clustering_quality(labels, truth)
    # predicted pairs: 3 + 1 = 4, of which same identity: (0,1) and (3,4) = 2; true pairs: 1 + 6 = 7
    assert q["pairwise_precision"] == pytest.approx(2 / 4)
    assert q["pairwise_recall"] == pytest.approx(2 / 7)
    assert q["pairwise_f1"] == pytest.approx(2 * (1 / 2) * (2 / 7) / (1 / 2 + 2 / 7))
    assert q["coverage"] == pytest.approx(5 / 6)
    from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

    with_singleton = [0, 0, 0, 1, 1, 2]  # the outlier counts as its own cluster
    assert q["ari"] == pytest.approx(adjusted_rand_score(truth, with_singleton))
    assert q["nmi"] == pytest.approx(normalized_mutual_info_score(truth, with_singleton))
    perfect = clustering_quality([3, 3, 7], [1, 1, 2])
    assert perfect["nmi"] == pytest.approx(1) and perfect["pairwise_f1"] == pytest.approx(1)
