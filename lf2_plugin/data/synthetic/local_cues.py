"""Does a model tell local-cue group members apart? Rank-1 confusions on a generated test set.

Members of a local-cue group (:func:`build_identities`) differ only in the garment of one body half, so a query
whose rank-1 gallery match is a group-mate was confused on exactly the part-level cue LF2's stripes are meant to
catch. :func:`rank1_confusions` counts those confusions and :func:`pair_co_clustering` asks the same of pseudo
labels (are group-mates merged, on which level?); ``tools/analyze_local_cues.py`` runs both on a checkpoint.
"""

import numpy as np

from .layout import plan_domain, read_sidecar


def local_cue_groups(dataset_dir):
    """{pid: (split, group, differing half)} for every identity of a generated domain in a local-cue group.

    The groups are re-planned from the ``synthetic.json`` sidecar (generation is keyed, so this is exact).
    """
    sidecar = read_sidecar(dataset_dir)
    if sidecar is None:
        raise FileNotFoundError(f"{dataset_dir} has no synthetic.json: not a generated synthetic domain")
    plan = plan_domain(
        sidecar["domain"], num_ids=sidecar["num_ids"], seed=sidecar["seed"], images_per_cam=sidecar["images_per_cam"]
    )
    groups = {}
    for image in plan.images:
        ident = image.identity
        if ident.group >= 0 and ident.pid > 0:
            split = "train" if image.split == "bounding_box_train" else "test"
            groups[ident.pid] = (split, ident.group, ident.differing_half)
    return groups


def rank1_confusions(query, gallery, groups):
    """Rank-1 errors of ``query`` against ``gallery`` and how many of them fall on a local-cue group-mate.

    ``query`` / ``gallery`` are (features [N, D], pids [N], camids [N]). Cosine distance; gallery images of the
    query's own pid and camera are left out, as in fast-reid's evaluation. Returns counts and rates:
    ``grouped_queries`` (queries of a grouped identity), ``group_mate_errors`` (their rank-1 is a group-mate),
    ``group_mate_error_rate`` = group_mate_errors / grouped_queries and ``share_of_errors_on_group_mates``.
    """
    q_feat, q_pids, q_cams = (np.asarray(x) for x in query)
    g_feat, g_pids, g_cams = (np.asarray(x) for x in gallery)
    q_feat = q_feat / np.linalg.norm(q_feat, axis=1, keepdims=True).clip(min=1e-12)
    g_feat = g_feat / np.linalg.norm(g_feat, axis=1, keepdims=True).clip(min=1e-12)
    similarity = q_feat @ g_feat.T
    similarity[(q_pids[:, None] == g_pids[None]) & (q_cams[:, None] == g_cams[None])] = -np.inf
    top_pids = g_pids[similarity.argmax(axis=1)]
    errors = top_pids != q_pids
    grouped = np.array([pid in groups for pid in q_pids])
    on_mate = np.array(
        [
            bool(err) and pid in groups and top in groups and groups[top][:2] == groups[pid][:2]
            for pid, top, err in zip(q_pids.tolist(), top_pids.tolist(), errors)
        ]
    )
    num_errors, num_grouped, num_on_mate = int(errors.sum()), int(grouped.sum()), int(on_mate.sum())
    return {
        "queries": len(q_pids),
        "rank1_errors": num_errors,
        "grouped_queries": num_grouped,
        "group_mate_errors": num_on_mate,
        "rank1_error_rate": num_errors / max(len(q_pids), 1),
        "grouped_rank1_error_rate": int((errors & grouped).sum()) / max(num_grouped, 1),
        "ungrouped_rank1_error_rate": int((errors & ~grouped).sum()) / max(len(q_pids) - num_grouped, 1),
        "group_mate_error_rate": num_on_mate / max(num_grouped, 1),
        "share_of_errors_on_group_mates": num_on_mate / max(num_errors, 1),
    }


def pair_co_clustering(pids, labels, groups):
    """Fraction of image pairs that share a pseudo label, by kind of pair: same identity, local-cue group-mates
    (split by the half in which they differ) and unrelated identities. ``labels`` < 0 (outliers) share nothing.

    A level that sees the differing half should merge group-mates no more often than unrelated people.
    """
    pids, labels = np.asarray(pids), np.asarray(labels)
    upper = np.triu(np.ones((len(pids), len(pids)), dtype=bool), k=1)
    together = (labels[:, None] == labels[None]) & (labels[:, None] >= 0)
    entries = [groups.get(int(pid)) for pid in pids]
    group_ids = {}  # (split, group) -> index; ungrouped identities get -1
    group_index = np.array([-1 if e is None else group_ids.setdefault(e[:2], len(group_ids)) for e in entries])
    half_of = np.array(["" if e is None else e[2] for e in entries])
    same_id = pids[:, None] == pids[None]
    mates = (group_index[:, None] == group_index[None]) & (group_index[:, None] >= 0) & ~same_id
    kinds = {
        "same_identity": same_id,
        "group_mates": mates,
        "group_mates_differing_upper": mates & (half_of[:, None] == "upper"),
        "group_mates_differing_lower": mates & (half_of[:, None] == "lower"),
        "unrelated": ~same_id & ~mates,
    }
    rates = {}
    for kind, mask in kinds.items():
        pairs = mask & upper
        rates[kind] = float(together[pairs].mean()) if pairs.any() else float("nan")
    return rates


def target_train_groups(cfg, items):
    """``(pids, groups)`` of the target train ``items`` (``DATASETS.NAMES``, in the trainer's order): each image's
    identity number and the train split's local-cue groups, or ``(None, None)`` when a target is not a generated
    synthetic domain (no sidecar)."""
    import os

    import fastreid.data.build as data_build
    from fastreid.data.datasets import DATASET_REGISTRY

    groups = {}
    for name in cfg.DATASETS.NAMES:
        dataset = DATASET_REGISTRY.get(name)(root=data_build._root)
        # fast-reid's Market1501 reads from data_dir (the versioned subfolder), DukeMTMC from dataset_dir
        dataset_dir = getattr(dataset, "data_dir", dataset.dataset_dir)
        if read_sidecar(dataset_dir) is None:
            return None, None
        groups.update({pid: g for pid, g in local_cue_groups(dataset_dir).items() if g[0] == "train"})
    pids = [int(os.path.basename(path).split("_")[0]) for path, _, _ in items]
    return pids, groups
