"""Contact sheet of a synthetic domain: rows are identities, columns are the domain's cameras.

Rows are the first training identities in pid order, so local-cue group members (which get consecutive
pids) sit on neighbouring rows, labelled ``g<group> up``/``g<group> low`` by the half in which they differ.
Every camera is shown for every identity, including cameras in which that identity is never recorded,
so the sheet shows both what identifies a person and what each camera does to them.
"""

from __future__ import annotations

import cv2
import numpy as np

from .layout import DEFAULT_IMAGES_PER_CAM, DEFAULT_NUM_IDS, ImageSpec, plan_domain, render_image
from .scene import CROP_H, CROP_W, make_camera

_LABEL_W, _HEADER_H, _ZOOM = 110, 28, 2


def _text(canvas, text, org, scale=0.45):
    cv2.putText(canvas, text, org, cv2.FONT_HERSHEY_SIMPLEX, scale, (20, 20, 20), 1, cv2.LINE_AA)


def contact_sheet(domain: str, seed: int = 0, num_ids: int = DEFAULT_NUM_IDS, rows: int = 12) -> np.ndarray:
    """RGB uint8 contact sheet (``rows`` identities x all cameras), each crop zoomed 2x."""
    plan = plan_domain(domain, num_ids=num_ids, seed=seed, images_per_cam=DEFAULT_IMAGES_PER_CAM)
    identities = {}
    for image in plan.images:
        if image.split == "bounding_box_train":
            identities.setdefault(image.pid, image.identity)
    shown = [identities[pid] for pid in sorted(identities)[:rows]]
    cams = [make_camera(plan.domain, cam, seed) for cam in range(1, plan.domain.num_cams + 1)]
    cell_h, cell_w = CROP_H * _ZOOM, CROP_W * _ZOOM
    sheet = np.full((_HEADER_H + len(shown) * cell_h, _LABEL_W + len(cams) * cell_w, 3), 255, np.uint8)
    for col, cam in enumerate(cams):
        _text(sheet, f"cam {cam.cam}", (_LABEL_W + col * cell_w + 30, 19))
    for row, ident in enumerate(shown):
        y = _HEADER_H + row * cell_h
        _text(sheet, f"pid {ident.pid}", (6, y + cell_h // 2 - 8))
        if ident.group >= 0:
            _text(
                sheet, f"g{ident.group} {'up' if ident.differing_half == 'upper' else 'low'}", (6, y + cell_h // 2 + 14)
            )
        for col, cam in enumerate(cams):
            spec = ImageSpec("preview", "", ident.pid, cam.cam, ident, (seed, plan.domain.code, 99, ident.pid, cam.cam))
            crop = render_image(spec, plan.domain, cam)
            x = _LABEL_W + col * cell_w
            sheet[y : y + cell_h, x : x + cell_w] = cv2.resize(crop, (cell_w, cell_h), interpolation=cv2.INTER_NEAREST)
    return sheet


def write_preview(path: str, domain: str, seed: int = 0, num_ids: int = DEFAULT_NUM_IDS, rows: int = 12) -> str:
    """Write :func:`contact_sheet` as a PNG to ``path`` and return the path."""
    sheet = contact_sheet(domain, seed=seed, num_ids=num_ids, rows=rows)
    if not cv2.imwrite(path, cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR)):
        raise OSError(f"could not write {path}")
    return path
