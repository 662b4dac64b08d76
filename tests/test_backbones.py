"""LF2 with every backbone in fast-reid's BACKBONE_REGISTRY (fast-reid's and the plugin's), read from the registry.

Each builds LF2 with K = 2 and K = 3 at a small input, takes one training step whose weights change, and gives the
(K+1)·C eval descriptor and K+1 clustering features; a backbone LF2 cannot use is refused when the model is built,
with an error that names the reason and the fix. The outcome of each is printed at the end of the run.
"""

import functools

import pytest
import torch
from test_modeling import one_torch_thread  # noqa: F401  (autouse fixture: tiny models, one thread)

from lf2_plugin.config import add_lf2_config
from lf2_plugin.modeling.backbones import registered_backbone_names
from lf2_plugin.modeling.feature_map import probe_output_shape

from fastreid.config import get_cfg
from fastreid.modeling import build_model
from fastreid.modeling.backbones import build_backbone

INPUT_SIZE = (128, 64)
BATCH = 8  # 4 identities x 2 images
# The smallest variant of each, for speed only: a name not listed is built with fast-reid's default DEPTH.
SMALLEST_DEPTH = {
    "build_effnet_backbone": "b0",
    "build_mobilenetv2_backbone": "0.1x",
    "build_mobilenetv3_backbone": "Small",
    "build_osnet_backbone": "x0_25",
    "build_regnet_backbone": "200x",
    "build_repvgg_backbone": "A0",
    "build_resnet_backbone": "18x",
    "build_resnet_torchvision_stem_backbone": "18x",
    "build_shufflenetv2_backbone": "0.5x",
    "build_torchreid_osnet_ain_backbone": "x0_25",
    "build_torchreid_osnet_ibn_backbone": "x1_0",
    "build_vit_backbone": "small",
    "build_vit_patch_backbone": "small",
}
# Builders that check MODEL.BACKBONE.FEAT_DIM themselves need it to build; the others' channels are read from a forward.
BUILDER_FEAT_DIM = {"build_torchreid_osnet_ain_backbone": 128, "build_torchreid_osnet_ibn_backbone": 512}
# Backbones LF2 cannot use, and the text its error must contain (the fix it names).
REFUSED = {"build_vit_backbone": "use MODEL.BACKBONE.NAME build_vit_patch_backbone"}


def lf2_cfg(name, num_parts, feat_dim):
    cfg = add_lf2_config(get_cfg())
    cfg.merge_from_list(
        [
            *("MODEL.DEVICE", "cpu", "MODEL.META_ARCHITECTURE", "LF2", "MODEL.HEADS.NAME", "LF2Head"),
            *("MODEL.HEADS.NUM_CLASSES", 4, "MODEL.LF2.NUM_PARTS", num_parts),
            *("MODEL.BACKBONE.NAME", name, "MODEL.BACKBONE.PRETRAIN", False, "MODEL.BACKBONE.FEAT_DIM", feat_dim),
            *("INPUT.SIZE_TRAIN", list(INPUT_SIZE), "INPUT.SIZE_TEST", list(INPUT_SIZE)),
        ]
    )
    if name in SMALLEST_DEPTH:
        cfg.MODEL.BACKBONE.DEPTH = SMALLEST_DEPTH[name]
    return cfg


@functools.cache
def output_channels(name):
    """The channels of the backbone's output, read from one forward (FEAT_DIM is not in the registry)."""
    cfg = lf2_cfg(name, 0, BUILDER_FEAT_DIM.get(name, 0))
    return probe_output_shape(build_backbone(cfg), INPUT_SIZE)[1]


def one_training_step(model, num_parts):
    generator = torch.Generator().manual_seed(0)
    images = torch.rand(BATCH, 3, *INPUT_SIZE, generator=generator) * 255
    targets = torch.stack([torch.arange(BATCH).roll(level) // 2 for level in range(num_parts + 1)], dim=1)
    batch = {"images": images, "targets": targets}
    before = {name: p.detach().clone() for name, p in model.named_parameters() if p.requires_grad}
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    model.train()
    losses = model(batch)
    sum(losses.values()).backward()
    optimizer.step()
    changed = {name for name, p in model.named_parameters() if name in before and not torch.equal(p, before[name])}
    return batch, before, changed


@pytest.mark.parametrize("num_parts", [2, 3])
@pytest.mark.parametrize("name", registered_backbone_names())
def test_lf2_trains_and_describes_with_every_registered_backbone(name, num_parts, backbone_outcomes):
    outcome_key = f"{name} K={num_parts}"
    torch.manual_seed(0)
    cfg = lf2_cfg(name, num_parts, output_channels(name))
    if name in REFUSED:
        with pytest.raises(ValueError, match=REFUSED[name]) as refusal:
            build_model(cfg)
        backbone_outcomes[outcome_key] = f"refused: {refusal.value}"
        return
    model = build_model(cfg)
    batch, before, changed = one_training_step(model, num_parts)
    backbone_params = {n for n in before if n.startswith("backbone.")}
    head_params = {n for n in before if n.startswith("heads.experts.")}  # attention trains with the fusion loss only
    assert head_params <= changed, sorted(head_params - changed)
    assert len(backbone_params & changed) >= 0.9 * len(backbone_params), sorted(backbone_params - changed)

    model.eval()
    channels = cfg.MODEL.BACKBONE.FEAT_DIM
    with torch.no_grad():
        descriptor = model(batch)
    assert descriptor.shape == (BATCH, (num_parts + 1) * channels) and torch.isfinite(descriptor).all()
    features = model.clustering_features(batch)
    assert [tuple(f.shape) for f in features] == [(BATCH, channels)] * (num_parts + 1)
    assert all(torch.isfinite(f).all() for f in features)
    height, width = probe_output_shape(model.backbone, INPUT_SIZE)[2:]
    backbone_outcomes[outcome_key] = (
        f"ok: {height}×{width}×{channels} map, {len(backbone_params & changed)}/{len(backbone_params)} backbone "
        f"tensors changed, descriptor {(num_parts + 1) * channels}"
    )


# ------------------------------------------------------------------------------------------------------------
# refusals that name the fix
# ------------------------------------------------------------------------------------------------------------
def test_a_map_with_fewer_rows_than_stripes_is_refused_naming_the_fixes():
    cfg = lf2_cfg("build_shufflenetv2_backbone", 3, output_channels("build_shufflenetv2_backbone"))
    cfg.INPUT.SIZE_TRAIN = cfg.INPUT.SIZE_TEST = [64, 32]  # a 2×1 map
    with pytest.raises(
        ValueError, match=r"2×1 map at INPUT.SIZE_TRAIN \[64, 32\]: too few rows for MODEL.LF2.NUM_PARTS 3"
    ):
        build_model(cfg)


def test_a_wrong_feat_dim_is_refused_naming_the_right_one():
    cfg = lf2_cfg("build_resnet_backbone", 2, 2048)
    with pytest.raises(ValueError, match="outputs 512 channels: set MODEL.BACKBONE.FEAT_DIM 512"):
        build_model(cfg)


def test_a_test_size_the_backbone_cannot_take_is_refused_when_the_model_is_built():
    cfg = lf2_cfg("build_vit_patch_backbone", 2, 768)
    cfg.INPUT.SIZE_TEST = [256, 128]  # fast-reid's ViT takes only the size it was built for
    with pytest.raises(ValueError, match=r"build_vit_patch_backbone fails at INPUT.SIZE_TEST \[256, 128\]"):
        build_model(cfg)


# ------------------------------------------------------------------------------------------------------------
# the ViT as a patch-token map
# ------------------------------------------------------------------------------------------------------------
def vit_pair(size=INPUT_SIZE):
    """fast-reid's class-token ViT and the patch-token ViT with the same weights."""
    cfg = lf2_cfg("build_vit_backbone", 2, 768)
    cfg.INPUT.SIZE_TRAIN = list(size)
    torch.manual_seed(0)
    class_token_vit = build_backbone(cfg).eval()
    cfg.MODEL.BACKBONE.NAME = "build_vit_patch_backbone"
    patch_vit = build_backbone(cfg).eval()
    patch_vit.load_state_dict(class_token_vit.state_dict(), strict=True)  # same keys, both ways
    return class_token_vit, patch_vit


def test_vit_patch_map_is_fastreids_network_with_its_patch_tokens_in_grid_order():
    class_token_vit, patch_vit = vit_pair()
    images = torch.rand(2, 3, *INPUT_SIZE)
    with torch.no_grad():
        tokens = patch_vit.tokens(images)
        patch_map = patch_vit(images)
        class_token = class_token_vit(images)
    # the same computation as fast-reid's forward: its output is our class token
    torch.testing.assert_close(tokens[:, 0], class_token.flatten(1), rtol=0, atol=1e-6)
    num_y, num_x = patch_vit.patch_embed.num_y, patch_vit.patch_embed.num_x
    assert patch_map.shape == (2, 768, num_y, num_x) == (2, 768, INPUT_SIZE[0] // 16, INPUT_SIZE[1] // 16)
    for row, col in [(0, 0), (0, num_x - 1), (1, 0), (num_y - 1, num_x - 1)]:
        torch.testing.assert_close(patch_map[:, :, row, col], tokens[:, 1 + row * num_x + col], rtol=0, atol=0)


def test_vit_stripes_follow_the_image_rows():
    """Changing the bottom quarter of the image changes the patch rows that cover it most (attention at random init
    spreads some of the change to every token)."""
    _, patch_vit = vit_pair()
    images = torch.rand(1, 3, *INPUT_SIZE)
    changed = images.clone()
    changed[:, :, -INPUT_SIZE[0] // 4 :] = torch.rand(1, 3, INPUT_SIZE[0] // 4, INPUT_SIZE[1])
    with torch.no_grad():
        difference = (patch_vit(images) - patch_vit(changed)).abs().mean(dim=(0, 1, 3))  # per patch row
    covered = len(difference) // 4
    assert difference[-covered:].min() > 1.2 * difference[:-covered].max(), difference


def test_vit_imagenet_style_checkpoint_loads_through_pretrain_path(tmp_path):
    """A timm-layout checkpoint at 224×224 (a 14×14 position grid, a classifier head) loads into the patch ViT at
    the training size: fast-reid's loader drops the head and resizes the position embeddings."""
    imagenet_vit, _ = vit_pair(size=(224, 224))
    state = {name: tensor.half() for name, tensor in imagenet_vit.state_dict().items()}
    state["head.weight"], state["head.bias"] = torch.zeros(1000, 768), torch.zeros(1000)
    path = tmp_path / "vit_imagenet.pth"
    torch.save(state, path)
    cfg = lf2_cfg("build_vit_patch_backbone", 2, 768)
    cfg.MODEL.BACKBONE.PRETRAIN, cfg.MODEL.BACKBONE.PRETRAIN_PATH = True, str(path)
    model = build_model(cfg)
    loaded = model.backbone.state_dict()
    torch.testing.assert_close(loaded["blocks.7.mlp.fc2.weight"], state["blocks.7.mlp.fc2.weight"].float())
    assert loaded["pos_embed"].shape == (1, 1 + (INPUT_SIZE[0] // 16) * (INPUT_SIZE[1] // 16), 768)
    torch.testing.assert_close(model.teacher.backbone.state_dict()["cls_token"], state["cls_token"].float())
