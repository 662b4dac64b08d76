"""LF2 (Learning Feature Fusion, Ding & Zhou, ICPR 2022) as a fast-reid plugin.

``import lf2_plugin`` makes PyPI fastreid 1.4.0 usable on Python 3.11 / torch 2 / CPU (:mod:`lf2_plugin.compat`)
and registers the plugin's datasets, meta-architectures, heads, backbones in fast-reid's registries, the way
fast-reid's own projects do (``from fastdistill import *``).
"""

from . import compat

compat.apply()

from . import clustering, data, engine, modeling  # noqa: E402,F401  (registration happens on import)
from .config import add_lf2_config  # noqa: E402

__version__ = "0.1.0"
__all__ = ["add_lf2_config", "compat"]
