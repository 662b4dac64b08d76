"""fast-reid's ResNet with torchvision's stem max-pool, so torchvision-layout weights compute identical maps.

fast-reid's ``build_resnet_backbone`` pools the stem with ``MaxPool2d(3, 2, ceil_mode=True)``; torchvision (and so
the official LF2 code and its checkpoints) uses ``MaxPool2d(3, 2, padding=1)``. Output sizes agree but the windows
are shifted by one pixel, so converted official weights only reproduce the official features with this stem.
Every other block, key and option (DEPTH, LAST_STRIDE, WITH_IBN/SE/NL, NORM, PRETRAIN) is fast-reid's.
"""

from torch import nn

from fastreid.modeling.backbones import BACKBONE_REGISTRY
from fastreid.modeling.backbones.resnet import build_resnet_backbone


@BACKBONE_REGISTRY.register()
def build_resnet_torchvision_stem_backbone(cfg):
    """``build_resnet_backbone(cfg)`` with the stem max-pool of torchvision's ResNet (padding 1, floor)."""
    model = build_resnet_backbone(cfg)
    model.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
    return model
