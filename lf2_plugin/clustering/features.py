"""Clustering features of the whole target train set: K+1 levels, flip-averaged and L2-normalised."""

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from fastreid.utils import comm

__all__ = ["extract_clustering_features"]


@torch.no_grad()
def extract_clustering_features(model, data_loader, flip=True, progress=True):
    """This rank's shard of the K+1 clustering features, in ``data_loader`` order.

    ``model.clustering_features(batch)`` gives the Fusion Module's K+1 outputs of one view; as in the official
    code, the features of the image and its horizontal flip are summed, then L2-normalised per level.
    Returns a list of K+1 float32 arrays [n_local, C].
    """
    per_level = None
    bar = tqdm(
        data_loader,
        desc="clustering features",
        disable=not (progress and comm.is_main_process()),
        leave=False,
        mininterval=5,
    )
    for batch in bar:
        views = model.clustering_features(batch)
        if flip:
            flipped = model.clustering_features({**batch, "images": batch["images"].flip(dims=[3])})
            views = [a + b for a, b in zip(views, flipped)]
        if per_level is None:
            per_level = [[] for _ in views]
        for level, feats in enumerate(views):
            per_level[level].append(F.normalize(feats.float(), dim=1).cpu())
    if per_level is None:
        raise ValueError("the clustering loader yielded no images")
    return [torch.cat(chunks).numpy().astype(np.float32, copy=False) for chunks in per_level]
