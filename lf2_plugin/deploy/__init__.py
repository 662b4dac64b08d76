"""Using an adapted model: export it (ONNX / TorchScript), embed images with it, search a gallery.

Every route encodes images with :class:`DescriptorModel`, the function fast-reid's evaluation ranks with.
"""

from .descriptor import (
    DescriptorModel,
    IncompleteCheckpointError,
    descriptor_layout,
    inference_state_keys,
    load_inference_model,
)
from .embed import Embeddings, embed_images, identity_from_name, list_images, load_embeddings, save_embeddings
from .export import FORMATS, export_descriptor_model, load_exported
from .search import draw_rank_lists, rank_list_summary, search_gallery

__all__ = [
    "DescriptorModel",
    "Embeddings",
    "FORMATS",
    "IncompleteCheckpointError",
    "descriptor_layout",
    "draw_rank_lists",
    "embed_images",
    "export_descriptor_model",
    "identity_from_name",
    "inference_state_keys",
    "list_images",
    "load_embeddings",
    "load_exported",
    "load_inference_model",
    "model_from_arguments",
    "rank_list_summary",
    "save_embeddings",
    "search_gallery",
]


def model_from_arguments(config_file, opts):
    """(cfg, model) for a tool's ``--config-file CFG KEY VALUE ...``: the config with the plugin's keys, fast-reid's
    logger on the console, the model loaded strictly from ``MODEL.WEIGHTS``."""
    from fastreid.utils.logger import setup_logger

    from ..engine import build_config

    setup_logger(name="fastreid")
    setup_logger(name="lf2_plugin", abbrev_name="lf2")
    cfg = build_config(config_file, opts)
    return cfg, load_inference_model(cfg)
