"""Distributed pseudo labelling: gather features to rank 0, cluster there, broadcast the results.

Public API::

    gather_to_rank0(local_features) -> np.ndarray on rank 0 (shards concatenated in rank order), None elsewhere
    broadcast_cluster_results(results, src=0) -> the ``src`` rank's ``results`` on every rank
    distributed_cluster_levels(features_per_level, cfg, *, seed=None, min_clusters=None,
                               already_gathered=False, camids=None) -> list[ClusterResult]
    distributed_cluster_features(features, cfg, level=0, *, seed=None, min_clusters=None,
                                 already_gathered=False) -> ClusterResult

Every rank must call these functions (they are collectives). ``already_gathered=False``: each rank passes its own
shard and the clustered set is the concatenation of the shards in rank order (rank 0's rows first);
``already_gathered=True``: every rank holds the full feature matrix (e.g. after fast-reid's evaluator gathered
it) and only rank 0's copy is used. The ``ClusterResult`` objects every rank returns are rank 0's, so all ranks
train on identical labels. Objects travel through a gloo group (``torch.distributed`` pickling); with an NCCL
default group a gloo group is created once, as fastreid.utils.comm does. Without an initialised process group,
or with one process, the functions cluster locally.
"""

import dataclasses
import functools

import numpy as np
import torch.distributed as dist

from .algorithms import cluster_features
from .camera import camera_centered, centroids_of_members


def _world():
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size(), dist.get_rank()
    return 1, 0


@functools.lru_cache
def _gloo_group():
    """A gloo group over all ranks (object collectives on CPU whatever the default backend)."""
    if dist.get_backend() == "gloo":
        return dist.group.WORLD
    return dist.new_group(backend="gloo")


def gather_to_rank0(local_features):
    """Concatenate every rank's ``local_features`` (rank order) on rank 0; other ranks get None."""
    world_size, rank = _world()
    if hasattr(local_features, "detach"):
        local_features = local_features.detach().cpu().numpy()
    local_features = np.asarray(local_features, dtype=np.float32)
    if world_size == 1:
        return local_features
    shards = [None] * world_size if rank == 0 else None
    dist.gather_object(local_features, shards, dst=0, group=_gloo_group())
    return np.concatenate(shards, axis=0) if rank == 0 else None


def broadcast_cluster_results(results, src=0):
    """Return rank ``src``'s ``results`` (any picklable object, e.g. a ClusterResult or a list) on every rank."""
    world_size, _ = _world()
    if world_size == 1:
        return results
    box = [results]
    dist.broadcast_object_list(box, src=src, group=_gloo_group())
    return box[0]


def distributed_cluster_levels(
    features_per_level, cfg, *, seed=None, min_clusters=None, already_gathered=False, camids=None
):
    """Cluster level l's features with ``cluster_features(..., level=l)`` on rank 0; identical results everywhere.

    ``camids`` (the camera of every row of the gathered features, known to rank 0): cluster each level's
    :func:`camera_centered` features; the centroids are then the member means of the features as given."""
    world_size, rank = _world()
    if world_size > 1 and not already_gathered:
        features_per_level = [gather_to_rank0(features) for features in features_per_level]
    results = None
    if rank == 0:
        results = [
            _cluster_level(features, cfg, level, seed, min_clusters, camids)
            for level, features in enumerate(features_per_level)
        ]
    return broadcast_cluster_results(results, src=0)


def _cluster_level(features, cfg, level, seed, min_clusters, camids):
    if camids is None:
        return cluster_features(features, cfg, level=level, seed=seed, min_clusters=min_clusters)
    result = cluster_features(camera_centered(features, camids), cfg, level=level, seed=seed, min_clusters=min_clusters)
    return dataclasses.replace(result, centroids=centroids_of_members(features, result))


def distributed_cluster_features(features, cfg, level=0, *, seed=None, min_clusters=None, already_gathered=False):
    """One level of :func:`distributed_cluster_levels` (``level`` selects the level's settings)."""
    world_size, rank = _world()
    if world_size > 1 and not already_gathered:
        features = gather_to_rank0(features)
    result = None
    if rank == 0:
        result = cluster_features(features, cfg, level=level, seed=seed, min_clusters=min_clusters)
    return broadcast_cluster_results(result, src=0)
