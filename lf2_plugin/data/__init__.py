"""Datasets of the LF2 plugin. Importing this package registers ``SynthMarket`` and ``SynthDuke`` in
fast-reid's ``DATASET_REGISTRY`` (see :mod:`lf2_plugin.data.datasets`; generator: :mod:`.synthetic`)."""

from . import datasets, synthetic  # noqa: F401  (registration happens on import)
from .datasets import SynthDuke, SynthMarket

__all__ = ["SynthDuke", "SynthMarket", "datasets", "synthetic"]
