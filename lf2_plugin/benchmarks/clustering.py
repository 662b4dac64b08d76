"""``tools/benchmark_clustering.py``: LF2's pseudo-label clustering against the reference pipeline on synthetic
re-ID-like features, every implementation in its own memory-capped subprocess (``python -m`` this module).
"""

import json
import os
import resource
import subprocess
import sys
import tempfile
import time

import numpy as np

from ..experiments.runs import ROOT

__all__ = [
    "KNOWN_IDENTITIES",
    "KMEANS_K",
    "DBSCAN_IMPLS",
    "KMEANS_IMPLS",
    "make_features",
    "run_impl",
    "run_clustering_benchmark",
    "markdown_table",
]

# identities in the real train sets, used as the number of generating clusters for those sizes
KNOWN_IDENTITIES = {12936: 751, 16522: 702, 32621: 1041}
# LF2's k per target (D->M 700, M->D 900); MSMT17 was not reported by LF2, its identity count is used
KMEANS_K = {12936: 700, 16522: 900, 32621: 1041}
# scale of the per-image nuisance (64-d subspace) and isotropic noise, relative to unit-variance centres
NUISANCE, NOISE = 0.25, 0.5
DBSCAN_IMPLS = ("reference", "knn_floor", "lf2_dbscan", "lf2_dbscan_fast")
KMEANS_IMPLS = ("sklearn_minibatch", "lf2_kmeans", "lf2_faiss_kmeans")


def make_features(n, dim, seed=0):
    """Synthetic re-ID-like features: (n, dim) float32 L2-normalised and their generating identity labels.

    Identities come in look-alike groups of about 3 (shared group component) with Gamma-distributed image
    counts. An image is its identity centre + one of 6 camera offsets + nuisance variation (pose, background)
    drawn in a shared 64-dimensional subspace + small isotropic noise; 2% of the images are junk (pure noise,
    each its own identity). CNN re-ID features vary mostly along few directions, hence the low-rank nuisance.
    """
    rng = np.random.default_rng(seed)
    num_ids = KNOWN_IDENTITIES.get(n, max(2, n // 20))
    group = rng.integers(0, max(1, num_ids // 3), num_ids)
    group_centres = rng.standard_normal((group.max() + 1, dim)).astype(np.float32)
    centres = 0.8 * group_centres[group] + 0.6 * rng.standard_normal((num_ids, dim)).astype(np.float32)
    cameras = 0.5 * rng.standard_normal((6, dim)).astype(np.float32)
    nuisance_basis = rng.standard_normal((64, dim)).astype(np.float32)
    weights = rng.gamma(2.0, 1.0, num_ids)
    ids = rng.choice(num_ids, size=n, p=weights / weights.sum())
    features = np.empty((n, dim), np.float32)
    for start in range(0, n, 4096):  # bounded temporaries
        sl = slice(start, min(n, start + 4096))
        block_ids = ids[sl]
        m = len(block_ids)
        nuisance = rng.standard_normal((m, 64), dtype=np.float32) @ nuisance_basis / 8.0  # unit variance per dim
        noise = rng.standard_normal((m, dim), dtype=np.float32)
        features[sl] = centres[block_ids] + cameras[rng.integers(0, 6, m)] + NUISANCE * nuisance + NOISE * noise
    junk = rng.random(n) < 0.02
    features[junk] = rng.standard_normal((int(junk.sum()), dim), dtype=np.float32)
    ids = ids.astype(np.int64)
    ids[junk] = -1 - np.arange(int(junk.sum()))  # every junk image is its own identity
    features /= np.linalg.norm(features, axis=1, keepdims=True)
    return features, ids


def _rss_mb():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _peak_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _fast_knn(spec):
    mode, _, params = spec.partition(":")
    options = {"mode": mode}
    for item in filter(None, params.split(",")):
        key, value = item.split("=")
        options[key] = int(value)
    return options


def run_impl(impl, data, result, k, fast_knn):
    """Run one implementation on the features saved in ``data``; write its row (with labels path) to ``result``."""
    import lf2_plugin  # noqa: F401  (fast-reid shims)
    from lf2_plugin.clustering import cluster_features, run_dbscan
    from lf2_plugin.clustering.knn import knn_search

    features = np.load(data)
    n = features.shape[0]
    baseline = _rss_mb()
    start = time.perf_counter()
    timings, labels = {}, None
    if impl == "reference":
        import torch
        from sklearn.cluster import DBSCAN

        from fastreid.utils.compute_dist import compute_jaccard_distance

        dist = compute_jaccard_distance(torch.from_numpy(features), k1=30, k2=6, search_option=3)
        timings["jaccard"] = time.perf_counter() - start
        labels = DBSCAN(eps=0.6, min_samples=4, metric="precomputed", n_jobs=-1).fit_predict(dist)
    elif impl == "knn_floor":
        knn_search(features, 30, mode="exact", use_gpu=False)
    elif impl in ("lf2_dbscan", "lf2_dbscan_fast"):
        knn = _fast_knn(fast_knn) if impl == "lf2_dbscan_fast" else {"mode": "exact"}
        labels = run_dbscan(
            features, eps=0.6, min_samples=4, k1=30, k2=6, knn=dict(knn, use_gpu=False), timings=timings
        )
    elif impl == "sklearn_minibatch":
        from sklearn.cluster import MiniBatchKMeans

        labels = MiniBatchKMeans(
            n_clusters=k, max_iter=100, batch_size=300, init_size=1500, n_init=3, random_state=1
        ).fit_predict(features)
    elif impl in ("lf2_kmeans", "lf2_faiss_kmeans"):
        algorithm = "kmeans" if impl == "lf2_kmeans" else "faiss_kmeans"
        cfg = {"ALGORITHM": algorithm, "NUM_CLUSTERS": k, "SEED": 1, "KNN": {"USE_GPU": False}}
        cluster_result = cluster_features(features, cfg, level=0)
        labels, timings = cluster_result.labels, cluster_result.timings
    seconds = time.perf_counter() - start
    row = {
        "n": n,
        "impl": impl,
        "seconds": round(seconds, 3),
        "peak_mb": round(_peak_mb() - baseline, 1),
        "process_peak_mb": round(_peak_mb(), 1),
        "status": "ok",
        "timings": {key: round(value, 3) for key, value in timings.items()},
    }
    if labels is not None:
        np.save(result + ".labels.npy", np.asarray(labels, np.int64))
        row["labels"] = result + ".labels.npy"
    with open(result, "w") as f:
        json.dump(row, f)


def _run_worker(impl, data, n, k, fast_knn, mem_cap_gb, workdir):
    """:func:`run_impl` in a fresh subprocess capped at ``mem_cap_gb`` of address space; its row."""
    result = os.path.join(workdir, f"{impl}_{n}.json")
    cmd = [sys.executable, "-m", __name__, impl, data, result, str(k), fast_knn]
    cap = int(mem_cap_gb * 2**30)

    def limit():
        resource.setrlimit(resource.RLIMIT_AS, (cap, cap))

    start = time.perf_counter()
    proc = subprocess.run(cmd, preexec_fn=limit, capture_output=True, text=True, cwd=ROOT)
    if proc.returncode == 0 and os.path.exists(result):
        with open(result) as f:
            return json.load(f)
    tail = (proc.stderr or "").strip().splitlines()[-3:]
    out_of_memory = any(
        "MemoryError" in line or "Unable to allocate" in line or "std::bad_alloc" in line
        for line in (proc.stderr or "").splitlines()
    ) or proc.returncode in (-9, 137)
    return {
        "n": n,
        "impl": impl,
        "seconds": round(time.perf_counter() - start, 3),
        "peak_mb": None,
        "status": "out_of_memory" if out_of_memory else f"failed (exit {proc.returncode})",
        "note": f"did not finish under a {mem_cap_gb:g} GB address-space cap: " + " | ".join(tail),
    }


def _score(size_rows, ids, k):
    """Add NMI (k-means rows) or cluster counts and ARIs (DBSCAN rows) to the rows of one size, in place."""
    from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

    labels = {impl: np.load(row["labels"]) for impl, row in size_rows.items() if row.get("labels")}
    for impl, row in size_rows.items():
        if impl not in labels:
            continue
        if impl in KMEANS_IMPLS:
            row["nmi"] = round(float(normalized_mutual_info_score(ids, labels[impl])), 4)
            row["k"] = k
            continue
        pred = labels[impl]
        row["num_clusters"] = int(pred.max()) + 1
        row["num_outliers"] = int((pred < 0).sum())
        row["ari_vs_truth"] = round(float(adjusted_rand_score(ids, pred)), 4)
        if impl != "reference":
            if "reference" in labels:
                row["ari_vs_reference"] = round(float(adjusted_rand_score(labels["reference"], pred)), 5)
            elif impl != "lf2_dbscan" and "lf2_dbscan" in labels:
                row["ari_vs_exact"] = round(float(adjusted_rand_score(labels["lf2_dbscan"], pred)), 5)


def run_clustering_benchmark(sizes, dim, impls, out, *, fast_knn="grouped_ivf", mem_cap_gb=12.0, seed=0):
    """Every implementation on the features of every size; prints each row as it finishes and rewrites ``out``
    (a JSON list of rows) after every size, so a later failure keeps earlier rows. Returns the rows."""
    rows = []
    with tempfile.TemporaryDirectory(prefix="lf2_bench_") as workdir:
        for n in sizes:
            features, ids = make_features(n, dim, seed=seed)
            data = os.path.join(workdir, f"features_{n}.npy")
            np.save(data, features)
            del features
            k = KMEANS_K.get(n, KNOWN_IDENTITIES.get(n, max(2, n // 20)))
            size_rows = {}
            for impl in impls:
                row = _run_worker(impl, data, n, k, fast_knn, mem_cap_gb, workdir)
                size_rows[impl] = row
                print(json.dumps({key: value for key, value in row.items() if key != "labels"}), flush=True)
            _score(size_rows, ids, k)
            for row in size_rows.values():
                row.pop("labels", None)
                rows.append(row)
            os.remove(data)
            with open(out, "w") as f:
                json.dump(rows, f, indent=1)
    return rows


def markdown_table(rows):
    """The rows of a benchmark JSON file as the markdown table of docs/BENCHMARKS.md."""
    lines = [
        "| N | impl | seconds | peak MB (process) | ARI vs reference | ARI vs truth | NMI "
        "| clusters / outliers | status |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        peak = "-" if r.get("peak_mb") is None else f"{r['peak_mb']:.0f} ({r.get('process_peak_mb', 0):.0f})"
        ari = r.get("ari_vs_reference", r.get("ari_vs_exact"))
        ari = "-" if ari is None else (f"{ari}" if "ari_vs_reference" in r else f"{ari} (vs lf2_dbscan)")
        clusters = (
            f"{r['num_clusters']} / {r['num_outliers']}"
            if "num_clusters" in r
            else (f"k={r['k']}" if "k" in r else "-")
        )
        lines.append(
            f"| {r['n']} | {r['impl']} | {r['seconds']:.1f} | {peak} | {ari} | {r.get('ari_vs_truth', '-')} "
            f"| {r.get('nmi', '-')} | {clusters} | {r.get('status', 'ok')} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    # the subprocess of _run_worker: IMPL DATA RESULT K FAST_KNN
    impl, data, result, k, fast_knn = sys.argv[1:]
    run_impl(impl, data, result, int(k), fast_knn)
