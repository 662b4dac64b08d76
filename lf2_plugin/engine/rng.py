"""The python, numpy and torch random states of this process, as checkpoint entries.

Tensors and plain numbers only, so ``torch.load(..., weights_only=True)`` reads them back.
"""

import random

import numpy as np
import torch

__all__ = ["rng_state", "set_rng_state"]


def rng_state():
    """The random states of python, numpy and torch, as a checkpointable dict."""
    np_state = np.random.get_state()
    return {
        "python": random.getstate(),
        "numpy": {
            "keys": torch.from_numpy(np_state[1].astype(np.int64)),
            "pos": int(np_state[2]),
            "has_gauss": int(np_state[3]),
            "cached_gaussian": float(np_state[4]),
        },
        "torch": torch.get_rng_state(),
    }


def set_rng_state(state):
    """Restore the random states :func:`rng_state` returned (after a checkpoint round trip)."""
    random.setstate(tuple(x if not isinstance(x, list) else tuple(x) for x in state["python"]))
    n = state["numpy"]
    np.random.set_state(
        ("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached_gaussian"])
    )
    torch.set_rng_state(state["torch"])
