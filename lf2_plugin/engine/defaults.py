"""Job set-up shared by ``tools/train_net.py`` and the other tools: config, device, logging, seeding."""

import contextlib
import difflib
import logging
import os
import random
import re

import numpy as np
import torch

from fastreid.config import get_cfg
from fastreid.engine import default_setup
from fastreid.utils import comm
from fastreid.utils.logger import setup_logger

from ..config import add_lf2_config

__all__ = ["build_config", "setup", "seed_everything", "UnknownConfigKeyError"]

logger = logging.getLogger(__name__)


def build_config(config_file="", opts=()):
    """fast-reid's default config + the plugin's keys, merged with a yaml file and ``KEY VALUE`` overrides.

    Falls back to ``MODEL.DEVICE=cpu`` (with a warning) when the config asks for CUDA and none is available.
    """
    cfg = get_cfg()
    add_lf2_config(cfg)
    if config_file:
        with _naming_unknown_keys(cfg, f"config file {config_file}"):
            cfg.merge_from_file(config_file)
    with _naming_unknown_keys(cfg, "command-line override"):
        cfg.merge_from_list(list(opts or []))
    if cfg.MODEL.DEVICE.startswith("cuda") and not torch.cuda.is_available():
        logging.getLogger("fastreid").warning(
            "MODEL.DEVICE=%s but CUDA is not available: running on the CPU (MODEL.DEVICE=cpu).", cfg.MODEL.DEVICE
        )
        cfg.MODEL.DEVICE = "cpu"
    return cfg


class UnknownConfigKeyError(KeyError):
    """A config file or override names a key that neither fast-reid nor the plugin defines."""

    def __str__(self):  # KeyError would print the message quoted, on one line
        return str(self.args[0])


def _all_keys(node, prefix=""):
    for key, value in node.items():
        yield from _all_keys(value, f"{prefix}{key}.") if isinstance(value, dict) else [prefix + key]


@contextlib.contextmanager
def _naming_unknown_keys(cfg, source):
    """Turn yacs' "Non-existent (config) key: X" (KeyError from files, AssertionError from overrides) into an
    :class:`UnknownConfigKeyError` naming the source and the closest valid keys."""
    try:
        yield
    except (KeyError, AssertionError) as error:
        match = re.search(r"Non-existent (?:config )?key: (\S+)", str(error))
        if match is None:
            raise
        key = match.group(1).strip("'\"")
        close = difflib.get_close_matches(key, list(_all_keys(cfg)), n=3, cutoff=0.8)
        hint = f"; did you mean {' or '.join(close)}?" if close else " (see docs/MODEL.md and fast-reid's defaults)"
        raise UnknownConfigKeyError(f"unknown config key {key} in the {source}{hint}") from None


def seed_everything(seed):
    """Seed python, numpy and torch in this process."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    os.environ["PYTHONHASHSEED"] = str(seed)


def setup(args, cfg=None):
    """Build the frozen config (unless given) and run fast-reid's ``default_setup``, then seed from ``SEED``.

    fast-reid reseeds every process randomly; here every rank is seeded with ``SEED + rank`` so a run can be
    repeated. With ``SEED < 0`` a random base seed is drawn on rank 0, shared with all ranks, and logged.
    """
    if cfg is None:
        cfg = build_config(args.config_file, args.opts)
        cfg.freeze()
    default_setup(cfg, args)
    # The plugin's own loggers (lf2_plugin.*) write to the same console and OUTPUT_DIR/log.txt as fast-reid's.
    setup_logger(cfg.OUTPUT_DIR, distributed_rank=comm.get_rank(), name="lf2_plugin", abbrev_name="lf2")
    base_seed = cfg.SEED
    if base_seed < 0:
        base_seed = comm.all_gather(int.from_bytes(os.urandom(4), "little") % 2**31)[0]
    seed_everything(base_seed + comm.get_rank())
    # The seed fast-reid's samplers draw (comm.shared_random_seed); equal on all ranks by construction.
    shared = comm.shared_random_seed()
    logging.getLogger("fastreid").info(
        "Seeds: SEED=%d, this rank (%d) seeded with %d, shared sampler seed %d",
        base_seed,
        comm.get_rank(),
        base_seed + comm.get_rank(),
        shared,
    )
    return cfg
