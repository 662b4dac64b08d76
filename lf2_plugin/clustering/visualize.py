"""Pictures of one epoch's pseudo labels: a montage of clusters per level and the cluster-size histograms.

Montage rows are clusters, ordered by size (largest first, then evenly down the size ranking to the smallest), each
row its members sorted by true identity; a border's colour is the member's true identity where the dataset has
one (:func:`lf2_plugin.visualization.identity_colour`), so a merge is a row of several colours and a split is one
colour in several rows. True identities are drawn only, never used for training.
"""

import os

import numpy as np
from matplotlib.figure import Figure

from ..visualization import Tile, draw_rows, identity_colour
from .metrics import cluster_sizes

__all__ = ["save_cluster_montage", "save_size_histograms", "montage_clusters"]


def montage_clusters(labels, num_rows):
    """Up to ``num_rows`` cluster ids (outliers -1 excluded): the largest, then evenly spaced down the size ranking."""
    ids, sizes = np.unique(labels[labels >= 0], return_counts=True)
    ranked = ids[np.lexsort((ids, -sizes))]
    if len(ranked) <= num_rows:
        return [int(c) for c in ranked]
    picks = np.unique(np.round(np.linspace(0, len(ranked) - 1, num_rows)).astype(int))
    return [int(ranked[i]) for i in picks]


def save_cluster_montage(labels, image_paths, path, *, true_ids=None, num_rows=8, num_members=12, seed=0, title=""):
    """Save the montage of ``labels`` (one level) to ``path``; returns it."""
    labels = np.asarray(labels)
    names = None
    if true_ids is not None:  # fast-reid names train identities "<dataset>_<pid>": number them for colours
        names = [str(i).rsplit("_", 1)[-1] for i in true_ids]
        true_ids = np.unique(np.asarray(true_ids), return_inverse=True)[1].reshape(-1)
    rng = np.random.default_rng(seed)
    rows, titles = [], []
    for cluster in montage_clusters(labels, num_rows):
        members = np.flatnonzero(labels == cluster)
        shown = np.sort(rng.choice(members, size=min(num_members, len(members)), replace=False))
        heading = f"{title}cluster {cluster}: {len(members)} images"
        if true_ids is not None:
            shown = shown[np.argsort(true_ids[shown], kind="stable")]
            values, counts = np.unique(true_ids[members], return_counts=True)
            heading += (
                f", {len(values)} {'identity' if len(values) == 1 else 'identities'}, purity "
                f"{counts.max() / len(members):.2f}"
            )
        rows.append(
            [
                Tile(
                    image_paths[i],
                    identity_colour(None if true_ids is None else int(true_ids[i])),
                    "" if names is None else f"id {names[i]}",
                )
                for i in shown
            ]
        )
        titles.append(heading)
    return draw_rows(rows, path, titles=titles, cell_size=(96, 48), border=3)


def save_size_histograms(results, path, title=""):
    """One histogram of cluster sizes per level (:class:`ClusterResult` list) in one figure; returns ``path``."""
    fig = Figure(figsize=(4 * len(results), 3))
    axes = fig.subplots(1, len(results), squeeze=False)
    for level, (ax, result) in enumerate(zip(axes[0], results)):
        labels = np.asarray(result.labels)
        sizes = cluster_sizes(labels)
        ax.hist(sizes, bins=np.arange(1, sizes.max() + 2) - 0.5 if len(sizes) else 10, color="tab:blue")
        ax.set_title(
            f"level {level}: {len(sizes)} clusters, {int((sizes == 1).sum())} singletons"
            + (f", {int((labels < 0).sum())} outliers" if (labels < 0).any() else ""),
            fontsize=9,
        )
        ax.set_xlabel("cluster size (images)")
        ax.set_ylabel("clusters")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=90)
    return path
