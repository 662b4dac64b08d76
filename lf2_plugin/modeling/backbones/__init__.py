"""Backbones the plugin adds to fast-reid's BACKBONE_REGISTRY (registered on import)."""

from .resnet_torchvision_stem import build_resnet_torchvision_stem_backbone
from .torchreid_osnet import build_torchreid_osnet_ain_backbone, build_torchreid_osnet_ibn_backbone

__all__ = [
    "build_resnet_torchvision_stem_backbone",
    "build_torchreid_osnet_ain_backbone",
    "build_torchreid_osnet_ibn_backbone",
]
