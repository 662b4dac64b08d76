"""Several domains and their contact sheets in one call, each step printed (``tools/make_synthetic.py``)."""

import os
import time

from .layout import DEFAULT_IMAGES_PER_CAM, DEFAULT_NUM_IDS, generate_domain, read_sidecar
from .preview import write_preview

__all__ = ["make_domains"]


def make_domains(
    domains,
    root=None,
    preview=None,
    *,
    num_ids=DEFAULT_NUM_IDS,
    seed=0,
    images_per_cam=DEFAULT_IMAGES_PER_CAM,
    force=False,
    preview_rows=12,
):
    """Generate each of ``domains`` under ``root`` (when given) and write its contact sheet to ``preview`` (when
    given; with several domains, one per domain with the domain name appended to the file name)."""
    for domain in domains:
        if root is not None:
            start = time.time()
            path = generate_domain(root, domain, num_ids=num_ids, seed=seed, images_per_cam=images_per_cam, force=force)
            counts = read_sidecar(path)["counts"]
            print(
                f"{domain}: {path}  train={counts['bounding_box_train']} query={counts['query']} "
                f"gallery={counts['bounding_box_test']}  ({time.time() - start:.1f} s)"
            )
        if preview is not None:
            stem, ext = os.path.splitext(preview)
            target = f"{stem}_{domain}{ext or '.png'}" if len(domains) > 1 else preview
            sheet = write_preview(target, domain, seed=seed, num_ids=num_ids, rows=preview_rows)
            print(f"{domain}: preview {sheet}")
