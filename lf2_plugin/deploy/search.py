"""Search a gallery of descriptors with query images and draw the rank lists (``tools/search.py``).

Exact inner-product search with faiss (the descriptors are L2-normalised, so this is cosine similarity, as the
evaluator's ``TEST.METRIC: cosine``). A query found in the gallery (same file) is left out of its own list.
"""

import json
import os

import faiss
import numpy as np

from ..visualization import MATCH, MISMATCH, QUERY, UNKNOWN, Tile, draw_rows

__all__ = ["draw_rank_lists", "embed_like", "rank_list_summary", "run_search", "search_gallery"]


def search_gallery(gallery, queries, topk):
    """(scores, indices) [Q, topk] of the ``topk`` most similar gallery rows per query (:class:`Embeddings`),
    best first; -1 indices where the gallery is smaller than ``topk``."""
    if gallery.features.shape[1] != queries.features.shape[1]:
        raise ValueError(
            f"gallery descriptors have {gallery.features.shape[1]} values, queries "
            f"{queries.features.shape[1]}: embed both with the same model"
        )
    index = faiss.IndexFlatIP(gallery.features.shape[1])
    index.add(np.ascontiguousarray(gallery.features, dtype=np.float32))
    gallery_files = {path: i for i, path in enumerate(gallery.absolute_paths())}
    self_hits = np.array([gallery_files.get(p, -1) for p in queries.absolute_paths()])
    extra = int((self_hits >= 0).any())
    scores, indices = index.search(
        np.ascontiguousarray(queries.features, dtype=np.float32), min(topk + extra, len(gallery.paths))
    )
    kept_scores, kept_indices = np.full((len(indices), topk), -np.inf, np.float32), np.full((len(indices), topk), -1)
    for q, (row_scores, row_indices) in enumerate(zip(scores, indices)):
        keep = (row_indices != self_hits[q]) & (row_indices >= 0)
        n = min(topk, int(keep.sum()))
        kept_scores[q, :n], kept_indices[q, :n] = row_scores[keep][:n], row_indices[keep][:n]
    return kept_scores, kept_indices


def _match_colour(query_pid, gallery_pid):
    if query_pid < 0:
        return UNKNOWN
    return MATCH if gallery_pid == query_pid else MISMATCH


def rank_list_summary(gallery, queries, scores, indices):
    """Per query: its file, identity and the ranked gallery files with scores and (where known) whether each
    shares the query's identity."""
    summary = []
    for q, (row_scores, row_indices) in enumerate(zip(scores, indices)):
        ranked = [
            {
                "file": gallery.absolute_paths()[g],
                "score": float(s),
                "pid": int(gallery.pids[g]),
                "match": None if queries.pids[q] < 0 else bool(gallery.pids[g] == queries.pids[q]),
            }
            for s, g in zip(row_scores, row_indices)
            if g >= 0
        ]
        summary.append({"query": queries.absolute_paths()[q], "pid": int(queries.pids[q]), "ranked": ranked})
    return summary


def draw_rank_lists(gallery, queries, scores, indices, out_dir, cell_size=(128, 64)):
    """One picture per query in ``out_dir`` (query in blue, then the top-k; borders green / red where the
    identities are known, grey where not) and ``ranks.json``; returns the picture paths."""
    os.makedirs(out_dir, exist_ok=True)
    pictures = []
    query_files = queries.absolute_paths()
    gallery_files = gallery.absolute_paths()
    for q, (row_scores, row_indices) in enumerate(zip(scores, indices)):
        row = [Tile(query_files[q], QUERY, "query")]
        row += [
            Tile(gallery_files[g], _match_colour(queries.pids[q], gallery.pids[g]), f"{k + 1}: {s:.3f}")
            for k, (s, g) in enumerate(zip(row_scores, row_indices))
            if g >= 0
        ]
        stem = os.path.splitext(queries.paths[q].replace(os.sep, "__"))[0]
        pictures.append(
            draw_rows(
                [row],
                os.path.join(out_dir, f"{stem}.jpg"),
                titles=[os.path.basename(query_files[q])],
                cell_size=cell_size,
            )
        )
    with open(os.path.join(out_dir, "ranks.json"), "w") as f:
        json.dump(rank_list_summary(gallery, queries, scores, indices), f, indent=1)
    return pictures


def _config_from_text(text):
    from fastreid.config import get_cfg

    from ..config import add_lf2_config

    cfg = get_cfg()
    add_lf2_config(cfg)
    cfg.merge_from_other_cfg(cfg.load_cfg(text))
    return cfg


def embed_like(gallery, path, progress=True):
    """The images under ``path`` embedded by the model that embedded ``gallery`` (its recorded config, weights
    and flip setting)."""
    from .descriptor import load_inference_model
    from .embed import embed_images

    cfg = _config_from_text(gallery.model["config"])
    model = load_inference_model(cfg, gallery.model["weights"])
    return embed_images(
        cfg, model, path, flip=gallery.model["flip"], progress=progress, weights=gallery.model["weights"]
    )


def run_search(gallery_file, query, topk, out_dir):
    """``tools/search.py``: rank lists of ``query`` (images, a folder, or a ``.npz``) against ``gallery_file``."""
    from .embed import load_embeddings

    gallery = load_embeddings(gallery_file)
    queries = load_embeddings(query) if query.endswith(".npz") else embed_like(gallery, query)
    scores, indices = search_gallery(gallery, queries, topk)
    return draw_rank_lists(gallery, queries, scores, indices, out_dir)
