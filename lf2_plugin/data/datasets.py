"""fast-reid ``DATASET_REGISTRY`` entries for the synthetic benchmark: ``SynthMarket``, ``SynthDuke``, ``SynthHard``.

They subclass fast-reid's own ``Market1501`` and ``DukeMTMC``, so folder discovery, file-name parsing, the
pid/camera assertions and junk handling are exactly the code that reads the real datasets. The only
additions: on first use the domain is generated into ``<root>/synthetic/<domain>/`` (``root`` is
``$FASTREID_DATASETS`` when built from a config), and a copy whose ``synthetic.json`` sidecar does not match
the requested generator version/settings/seed/sizes is regenerated rather than mixed. Train pids/camids are prefixed
``synthmarket_``/``synthduke_``/``synthhard_`` so they never collide with the real sets' labels when combined.

Non-default sizes (``num_ids``, ``seed``, ``images_per_cam``) are constructor arguments, e.g. for tests:
``SynthDuke(root=tmp_dir, num_ids=8, images_per_cam=2)``.
"""

import os

from fastreid.data.datasets import DATASET_REGISTRY
from fastreid.data.datasets.dukemtmcreid import DukeMTMC
from fastreid.data.datasets.market1501 import Market1501

from .synthetic import DEFAULT_IMAGES_PER_CAM, DEFAULT_NUM_IDS, generate_domain

SYNTHETIC_SUBDIR = "synthetic"


def synthetic_root(root: str, domain: str) -> str:
    """Folder that holds the generated copy of ``domain`` for a fast-reid dataset ``root``."""
    return os.path.join(root, SYNTHETIC_SUBDIR, domain)


class _GeneratedOnFirstUse:
    """Mixin placed before a fast-reid dataset class: generate ``synthetic_domain`` if needed, then let the
    real dataset class read it from ``<root>/synthetic/<domain>``."""

    synthetic_domain = ""

    def __init__(
        self, root="datasets", num_ids=DEFAULT_NUM_IDS, seed=0, images_per_cam=DEFAULT_IMAGES_PER_CAM, **kwargs
    ):
        domain_root = synthetic_root(root, self.synthetic_domain)
        generate_domain(domain_root, self.synthetic_domain, num_ids=num_ids, seed=seed, images_per_cam=images_per_cam)
        super().__init__(root=domain_root, **kwargs)


@DATASET_REGISTRY.register()
class SynthMarket(_GeneratedOnFirstUse, Market1501):
    """Synthetic 'market' domain (6 cameras, bright, plain backgrounds) read by fast-reid's Market1501."""

    synthetic_domain = "market"
    dataset_name = "synthmarket"


@DATASET_REGISTRY.register()
class SynthDuke(_GeneratedOnFirstUse, DukeMTMC):
    """Synthetic 'duke' domain (8 cameras, dim colour-cast, cluttered, blurred) read by fast-reid's DukeMTMC."""

    synthetic_domain = "duke"
    dataset_name = "synthduke"


@DATASET_REGISTRY.register()
class SynthHard(_GeneratedOnFirstUse, DukeMTMC):
    """Synthetic 'hard' domain (6 cameras, each with its own colour rendition; degraded, compressed, occluded,
    look-alike clothing) in DukeMTMC-reID's layout, read by fast-reid's DukeMTMC."""

    synthetic_domain = "hard"
    dataset_name = "synthhard"
