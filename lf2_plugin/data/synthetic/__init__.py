"""Procedural two-domain person re-ID benchmark (numpy + OpenCV; seeded, byte-deterministic).

Stands in for Market-1501 / DukeMTMC-reID, which cannot be downloaded here: a labelled source domain and an
unlabelled target domain with a visible domain gap, whose identities partly differ only in part-level detail.

Public API::

    generate_domain(root, domain, num_ids=256, seed=0, images_per_cam=3, force=False) -> str
        Render domain "market", "duke" or "hard" under ``root`` and return the dataset dir:
        ``root/Market-1501-v15.09.15`` or ``root/DukeMTMC-reID``, each with bounding_box_train/, query/,
        bounding_box_test/ and a ``synthetic.json`` sidecar (generator version, seed, sizes, counts).
        fast-reid's own ``Market1501(root=root)`` / ``DukeMTMC(root=root)`` read it unchanged.
        ``num_ids`` labelled identities are split evenly into disjoint train and test sets; each identity
        is seen by 2-4 cameras with ``images_per_cam`` images per camera. A matching copy is reused;
        a stale one (other version/seed/sizes) is regenerated. Tiny domains for unit tests, e.g.
        ``generate_domain(tmp_path, "duke", num_ids=8, images_per_cam=2)``, take well under a second.
    plan_domain(domain, num_ids, seed, images_per_cam) -> DomainPlan
        The same decisions without pixels: identities, cameras, splits and file names of every image.
    write_preview(path, domain, seed=0, num_ids=256, rows=12) -> path
        PNG contact sheet, identities x cameras.
    render_person(identity, camera, pose, rng) -> uint8 (128, 64, 3) RGB

Determinism: every random choice comes from a ``numpy.random.Generator`` keyed by (seed, domain, purpose,
pid, camera, image index), never from global RNG state or generation order; JPEG settings are fixed.
The fast-reid registry classes ``SynthMarket`` / ``SynthDuke`` live in :mod:`lf2_plugin.data.datasets`.
"""

from .appearance import Identity, build_identities
from .layout import (
    DATASET_DIRS,
    DEFAULT_IMAGES_PER_CAM,
    DEFAULT_NUM_IDS,
    GENERATOR_VERSION,
    SIDECAR,
    DomainPlan,
    generate_domain,
    plan_domain,
    read_sidecar,
    render_image,
    sidecar_mismatch,
)
from .preview import contact_sheet, write_preview
from .render import render_person
from .scene import DOMAINS, make_camera, sample_pose

__all__ = [
    "DATASET_DIRS",
    "DEFAULT_IMAGES_PER_CAM",
    "DEFAULT_NUM_IDS",
    "DOMAINS",
    "GENERATOR_VERSION",
    "SIDECAR",
    "DomainPlan",
    "Identity",
    "build_identities",
    "contact_sheet",
    "generate_domain",
    "make_camera",
    "plan_domain",
    "read_sidecar",
    "render_image",
    "render_person",
    "sample_pose",
    "sidecar_mismatch",
    "write_preview",
]
