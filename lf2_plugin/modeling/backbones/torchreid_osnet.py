"""torchreid's OSNet-AIN and OSNet-IBN as fast-reid backbones (optional extra: ``pip install .[torchreid]``).

The builders are always registered, so a config naming them fails with a clear message when torchreid is missing.
``MODEL.BACKBONE.DEPTH`` picks the width (``x1_0``, ``x0_75``, ``x0_5``, ``x0_25``; OSNet-IBN exists only as
``x1_0``), ``MODEL.BACKBONE.FEAT_DIM`` must be its channel count (512 for x1_0, 128 for x0_25). ``PRETRAIN``
downloads torchreid's ImageNet weights (Google Drive, needs ``gdown``); ``PRETRAIN_PATH`` loads a torchreid
state dict instead. ``MODEL.BACKBONE.LAST_STRIDE``/``NORM``/``WITH_*`` do not apply.
"""

import logging

import torch
from torch import nn

from fastreid.modeling.backbones import BACKBONE_REGISTRY

logger = logging.getLogger(__name__)

OSNET_CHANNELS = {"x1_0": 512, "x0_75": 384, "x0_5": 256, "x0_25": 128}
INSTALL_HINT = "pip install .[torchreid]  (from the lf2_plugin checkout; installs torchreid==0.2.5, gdown, six)"


def import_torchreid_models():
    """``torchreid.reid.models``, or an ImportError saying how to install the extra."""
    try:
        from torchreid.reid import models
    except ImportError as error:
        raise ImportError(f"MODEL.BACKBONE.NAME needs the optional torchreid extra: {INSTALL_HINT}") from error
    return models


class TorchreidFeatureMaps(nn.Module):
    """A torchreid OSNet reduced to its convolutional trunk: ``forward`` returns the last feature map."""

    def __init__(self, osnet):
        super().__init__()
        # the pooling, fc and classifier of the torchreid model are not part of a fast-reid backbone
        osnet.global_avgpool = osnet.fc = osnet.classifier = None
        self.net = osnet

    def forward(self, images):
        return self.net.featuremaps(images)


def _build(cfg, arch, depths):
    depth = cfg.MODEL.BACKBONE.DEPTH
    if depth not in depths:
        raise ValueError(f"{arch}: MODEL.BACKBONE.DEPTH must be one of {depths}, got {depth!r}")
    if cfg.MODEL.BACKBONE.FEAT_DIM != OSNET_CHANNELS[depth]:
        raise ValueError(
            f"{arch}_{depth} outputs {OSNET_CHANNELS[depth]} channels: set MODEL.BACKBONE.FEAT_DIM "
            f"{OSNET_CHANNELS[depth]} (got {cfg.MODEL.BACKBONE.FEAT_DIM})"
        )
    models = import_torchreid_models()
    download = cfg.MODEL.BACKBONE.PRETRAIN and not cfg.MODEL.BACKBONE.PRETRAIN_PATH
    osnet = models.build_model(f"{arch}_{depth}", num_classes=1, pretrained=download)
    if cfg.MODEL.BACKBONE.PRETRAIN and cfg.MODEL.BACKBONE.PRETRAIN_PATH:
        state_dict = torch.load(cfg.MODEL.BACKBONE.PRETRAIN_PATH, map_location="cpu")
        state_dict = state_dict.get("state_dict", state_dict)
        incompatible = osnet.load_state_dict(state_dict, strict=False)
        missing = [k for k in incompatible.missing_keys if not k.startswith(("fc.", "classifier."))]
        if missing:
            raise RuntimeError(
                f"{cfg.MODEL.BACKBONE.PRETRAIN_PATH} lacks {len(missing)} {arch} tensors, e.g. {missing[:5]}"
            )
        logger.info("Loaded %s_%s weights from %s", arch, depth, cfg.MODEL.BACKBONE.PRETRAIN_PATH)
    return TorchreidFeatureMaps(osnet)


@BACKBONE_REGISTRY.register()
def build_torchreid_osnet_ain_backbone(cfg):
    """torchreid ``osnet_ain_<DEPTH>`` (instance norm in the stem and some blocks; Zhou et al., TPAMI 2021)."""
    return _build(cfg, "osnet_ain", tuple(OSNET_CHANNELS))


@BACKBONE_REGISTRY.register()
def build_torchreid_osnet_ibn_backbone(cfg):
    """torchreid ``osnet_ibn_x1_0`` (IBN-style instance norm in OSNet)."""
    return _build(cfg, "osnet_ibn", ("x1_0",))
