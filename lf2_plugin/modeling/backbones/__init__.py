"""Backbones the plugin adds to fast-reid's BACKBONE_REGISTRY (registered on import)."""

from .resnet_torchvision_stem import build_resnet_torchvision_stem_backbone
from .torchreid_osnet import build_torchreid_osnet_ain_backbone, build_torchreid_osnet_ibn_backbone
from .vit_patch_tokens import build_vit_patch_backbone


def registered_backbone_names():
    """Every name in fast-reid's BACKBONE_REGISTRY (fast-reid's and the plugin's), sorted."""
    from fastreid.modeling.backbones import BACKBONE_REGISTRY

    return sorted(BACKBONE_REGISTRY._obj_map)  # fast-reid's Registry has no public listing


__all__ = [
    "build_resnet_torchvision_stem_backbone",
    "build_torchreid_osnet_ain_backbone",
    "build_torchreid_osnet_ibn_backbone",
    "build_vit_patch_backbone",
    "registered_backbone_names",
]
