"""Train transforms of the LF2 adaptation loaders: fast-reid's, with the official random erasing if asked.

fast-reid's ``INPUT.REA`` is torchvision's ``RandomErasing`` (area 0.02-0.33 of the image, log-uniform aspect
ratio in [0.3, 3.3]). The official code uses open-reid's ``RandomErasing`` (``reid/utils/data/transforms.py``):
area uniform in [0.02, 0.4], aspect ratio uniform in [0.3, 1/0.3], up to 100 tries; its boxes are larger and
mostly taller than wide. ``INPUT.REA.STYLE`` chooses; the fill is ``INPUT.REA.VALUE`` either way.
"""

import math
import random

import torch
import torchvision.transforms as T

from fastreid.data.transforms import build_transforms

__all__ = ["RandomErasingBox", "build_train_transforms", "REA_STYLES"]

REA_STYLES = ("official", "torchvision")


class RandomErasingBox:
    """Random erasing (Zhong et al., 2020) as the official LF2 code does it, on a C×H×W tensor in place.

    With probability ``p``: draw an area ``U(area[0], area[1])·H·W`` and an aspect ratio ``U(min_aspect,
    1/min_aspect)`` (uniform, not log-uniform), ``h = round(√(area·r))``, ``w = round(√(area/r))``; the first
    draw with ``h < H`` and ``w < W`` (of at most ``attempts``) fills a box at a uniform position with ``value``
    per channel. ``random`` is python's, as the official transform's.
    """

    def __init__(self, p=0.5, value=(0.0, 0.0, 0.0), area=(0.02, 0.4), min_aspect=0.3, attempts=100):
        self.p, self.value, self.area = p, tuple(value), tuple(area)
        self.min_aspect, self.attempts = min_aspect, attempts

    def __call__(self, image):
        if random.uniform(0, 1) >= self.p:
            return image
        height, width = image.shape[-2:]
        for _ in range(self.attempts):
            area = random.uniform(*self.area) * height * width
            aspect = random.uniform(self.min_aspect, 1 / self.min_aspect)
            h, w = int(round(math.sqrt(area * aspect))), int(round(math.sqrt(area / aspect)))
            if h < height and w < width:
                top, left = random.randint(0, height - h), random.randint(0, width - w)
                fill = torch.tensor(self.value[: image.shape[0]], dtype=image.dtype).view(-1, 1, 1)
                image[:, top : top + h, left : left + w] = fill
                return image
        return image

    def __repr__(self):
        return f"{type(self).__name__}(p={self.p}, value={self.value}, area={self.area}, min_aspect={self.min_aspect})"


def build_train_transforms(cfg):
    """fast-reid's train transforms; with ``INPUT.REA.STYLE`` "official" its ``RandomErasing`` becomes
    :class:`RandomErasingBox` with the same probability and fill."""
    style = str(cfg.INPUT.REA.STYLE).lower()
    if style not in REA_STYLES:
        raise ValueError(f"INPUT.REA.STYLE must be one of {REA_STYLES}, got {cfg.INPUT.REA.STYLE!r}")
    transforms = build_transforms(cfg, is_train=True)
    if style == "official":
        transforms.transforms = [
            RandomErasingBox(p=cfg.INPUT.REA.PROB, value=cfg.INPUT.REA.VALUE) if isinstance(t, T.RandomErasing) else t
            for t in transforms.transforms
        ]
    return transforms
