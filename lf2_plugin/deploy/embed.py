"""Descriptors of a folder of person crops, saved with their file names (``tools/embed.py``).

Images are read and resized by fast-reid's test transform and its test loader, and encoded by
:class:`~lf2_plugin.deploy.descriptor.DescriptorModel`: the vectors are the ones evaluation ranks with.
Identities and cameras are parsed from fast-reid's file naming (``<pid>_c<camera>...``, Market-1501 and
DukeMTMC-reID; -1 where a name does not follow it) so that searches can be scored where they are known.
"""

import json
import os
import re
from dataclasses import dataclass

import numpy as np
import torch
from tqdm import tqdm

from ..data.pseudo_labels import build_clustering_loader
from .descriptor import DescriptorModel, descriptor_layout

__all__ = [
    "IMAGE_EXTENSIONS",
    "Embeddings",
    "embed_images",
    "identity_from_name",
    "list_images",
    "load_embeddings",
    "save_embeddings",
]

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
# fast-reid's Market1501 / DukeMTMC pattern: 0002_c1s1_000451_03.jpg, -1_c3s2_..., 0001_c2_f0046182.jpg
_REID_NAME = re.compile(r"^(-?\d+)_c(\d+)")


@dataclass
class Embeddings:
    """L2-normalised descriptors [N, D] and, per row, the file (relative to ``root``), identity and camera
    (-1 where unknown). ``model`` says what made them (config text, weights, flip, layout)."""

    features: np.ndarray
    paths: list
    pids: np.ndarray
    camids: np.ndarray
    root: str
    model: dict

    def absolute_paths(self):
        return [os.path.join(self.root, p) for p in self.paths]


def identity_from_name(file_name):
    """(pid, camid) from a fast-reid style file name, (-1, -1) if it does not follow it."""
    match = _REID_NAME.match(os.path.basename(file_name))
    return (int(match.group(1)), int(match.group(2))) if match else (-1, -1)


def list_images(path):
    """Image files under ``path`` (a folder, searched recursively, or one image), sorted."""
    if os.path.isfile(path):
        return [os.path.abspath(path)]
    if not os.path.isdir(path):
        raise FileNotFoundError(f"{path!r} is neither an image file nor a folder")
    found = sorted(
        os.path.join(folder, name)
        for folder, _, names in os.walk(path)
        for name in names
        if name.lower().endswith(IMAGE_EXTENSIONS)
    )
    if not found:
        raise FileNotFoundError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) under {path!r}")
    return [os.path.abspath(p) for p in found]


@torch.no_grad()
def embed_images(cfg, model, path, *, flip=None, progress=True, weights=None):
    """:class:`Embeddings` of the images under ``path`` with ``model`` (built and loaded from ``cfg``).

    ``flip`` (default ``TEST.FLIP.ENABLED``) averages each image with its mirror, as evaluation does.
    """
    flip = cfg.TEST.FLIP.ENABLED if flip is None else flip
    files = list_images(path)
    root = os.path.dirname(files[0]) if os.path.isfile(path) else os.path.abspath(path)
    identities = [identity_from_name(f) for f in files]
    items = [(f, pid, camid) for f, (pid, camid) in zip(files, identities)]
    descriptor_model = DescriptorModel(model, flip=flip)
    chunks = []
    for batch in tqdm(build_clustering_loader(cfg, items), desc="embedding", disable=not progress, mininterval=2):
        chunks.append(descriptor_model(batch["images"].to(model.device)).float().cpu())
    features = torch.cat(chunks).numpy()
    return Embeddings(
        features=features,
        paths=[os.path.relpath(f, root) for f in files],
        pids=np.array([pid for pid, _ in identities], dtype=np.int64),
        camids=np.array([camid for _, camid in identities], dtype=np.int64),
        root=root,
        model={
            "config": cfg.dump(),
            "weights": os.path.abspath(weights or cfg.MODEL.WEIGHTS),
            "flip": bool(flip),
            "layout": descriptor_layout(model, features.shape[1]),
        },
    )


def save_embeddings(embeddings, out_path):
    """One ``.npz``: features, paths, pids, camids, root and the model description (JSON)."""
    os.makedirs(os.path.dirname(os.path.abspath(out_path)), exist_ok=True)
    np.savez(
        out_path,
        features=embeddings.features,
        paths=np.array(embeddings.paths),
        pids=embeddings.pids,
        camids=embeddings.camids,
        root=np.array(embeddings.root),
        model=np.array(json.dumps(embeddings.model)),
    )
    return out_path


def load_embeddings(path):
    """The :class:`Embeddings` saved by :func:`save_embeddings`."""
    with np.load(path, allow_pickle=False) as data:
        missing = {"features", "paths", "pids", "camids", "root", "model"} - set(data.files)
        if missing:
            raise ValueError(f"{path} is not an embedding file of tools/embed.py (no {sorted(missing)})")
        return Embeddings(
            features=data["features"].astype(np.float32),
            paths=[str(p) for p in data["paths"]],
            pids=data["pids"],
            camids=data["camids"],
            root=str(data["root"]),
            model=json.loads(str(data["model"])),
        )
