"""Distributed clustering: 2 gloo processes gather to rank 0, cluster there, and get identical labels."""

import os
import socket

import numpy as np
import torch.distributed as dist
import torch.multiprocessing as mp

import lf2_plugin  # noqa: F401
from lf2_plugin.clustering import cluster_features, distributed_cluster_features, distributed_cluster_levels

WORLD = 2


def make_data():
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((12, 24))
    x = centres[rng.integers(0, 12, 360)] + 0.4 * rng.standard_normal((360, 24))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


SETTINGS = {
    "ALGORITHM": "dbscan",
    "NUM_CLUSTERS": 12,
    "KNN": {"USE_GPU": False},
    "LEVEL_ALGORITHMS": ["dbscan", "kmeans", "faiss_kmeans"],
}


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank, port, out_dir):
    from fastreid.utils import comm

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", world_size=WORLD, rank=rank)
    comm._LOCAL_PROCESS_GROUP = dist.group.WORLD
    try:
        data = make_data()
        shard = np.array_split(data, WORLD)[rank]
        # a different seed per rank: only rank 0's must be used
        single = distributed_cluster_features(shard, SETTINGS, level=0, seed=1 + rank)
        levels = distributed_cluster_levels([shard, shard[:, ::-1].copy(), shard * 1.0], SETTINGS, seed=7 + rank)
        gathered = distributed_cluster_features(data, SETTINGS, level=1, seed=5 + rank, already_gathered=True)
        np.savez(
            os.path.join(out_dir, f"rank{rank}.npz"),
            single=single.labels,
            centroids=single.centroids,
            gathered=gathered.labels,
            **{f"level{i}": r.labels for i, r in enumerate(levels)},
        )
    finally:
        dist.barrier()  # no rank tears its gloo group down while the other still uses it
        dist.destroy_process_group()


def test_labels_identical_across_ranks(tmp_path):
    mp.spawn(_worker, args=(_free_port(), str(tmp_path)), nprocs=WORLD, join=True)
    ranks = [np.load(tmp_path / f"rank{r}.npz") for r in range(WORLD)]
    for key in ranks[0].files:
        np.testing.assert_array_equal(ranks[0][key], ranks[1][key], err_msg=key)
    data = make_data()
    # the result is rank 0's clustering of the shards concatenated in rank order
    np.testing.assert_array_equal(ranks[0]["single"], cluster_features(data, SETTINGS, level=0, seed=1).labels)
    np.testing.assert_array_equal(ranks[0]["gathered"], cluster_features(data, SETTINGS, level=1, seed=5).labels)
    np.testing.assert_array_equal(ranks[0]["level2"], cluster_features(data * 1.0, SETTINGS, level=2, seed=7).labels)
    assert ranks[0]["single"].shape == (360,) and ranks[0]["single"].max() >= 5


def test_single_process_runs_locally():
    data = make_data()
    result = distributed_cluster_features(data, SETTINGS, level=0, seed=1)
    np.testing.assert_array_equal(result.labels, cluster_features(data, SETTINGS, level=0, seed=1).labels)
