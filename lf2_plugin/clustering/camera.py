"""Per-camera centring of clustering features (``MODEL.LF2.CLUSTER.CAMERA_CENTERING``; not in LF2).

A camera adds the same shift to every image it takes (colour rendition, illumination, background), which pulls a
camera's images together in feature space and splits an identity across cameras. Subtracting each camera's mean
feature before clustering removes that shift, as camera-aware UDA methods (e.g. CAP, ICE) normalise per camera.
"""

import numpy as np

from .algorithms import compute_centroids

__all__ = ["camera_centered", "centroids_of_members"]


def camera_centered(features, camids):
    """Features [N, d] with each camera's mean feature subtracted, L2-normalised again (float32 copy)."""
    features = np.asarray(features, np.float32).copy()
    camids = np.asarray(camids)
    if camids.shape != (features.shape[0],):
        raise ValueError(f"{camids.shape[0] if camids.ndim else 0} camera ids for {features.shape[0]} features")
    for camera in np.unique(camids):
        rows = camids == camera
        features[rows] -= features[rows].mean(axis=0, keepdims=True)
    norms = np.linalg.norm(features, axis=1, keepdims=True)
    return features / np.maximum(norms, 1e-12)


def centroids_of_members(features, result):
    """``result``'s centroids recomputed as the L2-normalised member mean of ``features`` (the model's own,
    uncentred features, which the classifier initialised from the centroids scores); rows of clusters without
    members keep ``result``'s centroid."""
    centroids = np.array(result.centroids, np.float32, copy=True)
    means = compute_centroids(np.asarray(features, np.float32), result.labels)
    filled = np.flatnonzero(np.linalg.norm(means, axis=1) > 0)
    filled = filled[filled < centroids.shape[0]]
    centroids[filled] = means[filled]
    return centroids
