"""LF2 modeling: importing this registers LF2 / LF2SourceBaseline (META_ARCH), LF2Head (HEADS) and the plugin's
backbones in fast-reid's registries."""

from . import backbones  # noqa: F401  (registers backbones)
from .checkpoint import convert_official_state_dict, is_lf2_state_dict, load_source_weights
from .fusion import ChannelAttention, FusionModule
from .head import LF2Head
from .losses import batch_hard_triplet_loss, label_smooth_cross_entropy
from .meta_arch import LF2, LF2SourceBaseline, MeanTeacher

__all__ = [
    "LF2",
    "LF2SourceBaseline",
    "MeanTeacher",
    "LF2Head",
    "ChannelAttention",
    "FusionModule",
    "batch_hard_triplet_loss",
    "label_smooth_cross_entropy",
    "convert_official_state_dict",
    "is_lf2_state_dict",
    "load_source_weights",
]
