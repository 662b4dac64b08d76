"""What LF2 needs from a backbone, checked when the model is built rather than at the first step hours later.

LF2's head pools a map [B, C, H, W] into g and cuts it into K horizontal stripes, so a backbone must return a
4-d map with ``MODEL.BACKBONE.FEAT_DIM`` channels and at least K rows at ``INPUT.SIZE_TRAIN``. One forward of a
blank image in eval mode (no statistics change, no random numbers drawn) tells all three.
"""

import torch

# Backbones that return a pooled vector, and the registered backbone that gives the same network as a map.
MAP_ALTERNATIVES = {"build_vit_backbone": "build_vit_patch_backbone"}


@torch.no_grad()
def probe_output_shape(backbone, input_size):
    """The shape of ``backbone``'s output for one blank image of ``input_size`` (H, W), in eval mode."""
    was_training = backbone.training
    backbone.eval()
    try:
        parameter = next(backbone.parameters(), None)
        device = parameter.device if parameter is not None else torch.device("cpu")
        output = backbone(torch.zeros(1, 3, *input_size, device=device))
    finally:
        backbone.train(was_training)
    if not torch.is_tensor(output):
        return None
    return tuple(output.shape)


def check_lf2_feature_map(backbone, cfg):
    """Raise ValueError, naming the reason and the config change that fixes it, if LF2 cannot use ``backbone`` at
    ``INPUT.SIZE_TRAIN`` or ``INPUT.SIZE_TEST``. Returns the map shape at the training size."""
    shapes = {}
    for key in ("SIZE_TRAIN", "SIZE_TEST"):
        size = tuple(getattr(cfg.INPUT, key))
        if size not in shapes.values():
            shapes[key] = _checked_map_shape(backbone, cfg, key, size)
    return shapes["SIZE_TRAIN"]


def _checked_map_shape(backbone, cfg, size_key, size):
    name = cfg.MODEL.BACKBONE.NAME
    at = f"at INPUT.{size_key} {list(size)}"
    num_parts = cfg.MODEL.LF2.NUM_PARTS
    try:
        shape = probe_output_shape(backbone, size)
    except Exception as exc:  # the backbone's own error, with the size that caused it
        raise ValueError(f"MODEL.BACKBONE.NAME {name} fails {at}: {exc}") from exc
    if shape is None or len(shape) != 4:
        got = "a non-tensor output" if shape is None else list(shape)
        raise ValueError(f"MODEL.BACKBONE.NAME {name} returns {got} {at}; LF2 needs one feature map [B, C, H, W]")
    _, channels, height, width = shape
    if height == 1 and width == 1 and num_parts > 0:
        alternative = MAP_ALTERNATIVES.get(name)
        fix = (
            f"use MODEL.BACKBONE.NAME {alternative} (the same network and weights, its output as an H×W map)"
            if alternative
            else "use a backbone that returns its last spatial map, or MODEL.LF2.NUM_PARTS 0"
        )
        raise ValueError(
            f"MODEL.BACKBONE.NAME {name} returns a pooled vector [B, {channels}, 1, 1] {at}: LF2 cuts "
            f"{num_parts} stripes from a spatial map; {fix}"
        )
    if channels != cfg.MODEL.BACKBONE.FEAT_DIM:
        raise ValueError(
            f"MODEL.BACKBONE.NAME {name} (DEPTH {cfg.MODEL.BACKBONE.DEPTH}) outputs {channels} channels: set "
            f"MODEL.BACKBONE.FEAT_DIM {channels} (got {cfg.MODEL.BACKBONE.FEAT_DIM})"
        )
    if height < num_parts:
        raise ValueError(
            f"MODEL.BACKBONE.NAME {name} gives a {height}×{width} map {at}: too few rows for "
            f"MODEL.LF2.NUM_PARTS {num_parts} stripes; use a taller input size, MODEL.BACKBONE.LAST_STRIDE 1 "
            f"(where the backbone has it) or fewer parts"
        )
    return shape
