"""Every shipped config parses (yacs rejects unknown keys) and builds its model on CPU; no data needed."""

import glob
import os

import pytest
import torch
from conftest import ROOT

CONFIGS = sorted(glob.glob(os.path.join(ROOT, "configs", "**", "*.yml"), recursive=True))
OFFICIAL_K = {"Market2Duke": 900, "Duke2Market": 700, "Market2MSMT": 1500, "Duke2MSMT": 1500}


@pytest.mark.parametrize("path", CONFIGS, ids=[os.path.relpath(p, ROOT) for p in CONFIGS])
def test_config_parses_and_builds(path):
    from lf2_plugin.engine import build_config, trainer_class_for

    cfg = build_config(path, ["MODEL.DEVICE", "cpu", "MODEL.BACKBONE.PRETRAIN", "False"])
    model = trainer_class_for(cfg).build_model(cfg)
    assert sum(p.numel() for p in model.parameters()) > 0
    if cfg.MODEL.META_ARCHITECTURE == "LF2":
        with torch.no_grad():
            descriptor = model.eval()({"images": torch.rand(2, 3, *cfg.INPUT.SIZE_TEST) * 255})
        assert descriptor.shape == (2, (cfg.MODEL.LF2.NUM_PARTS + 1) * cfg.MODEL.BACKBONE.FEAT_DIM)


@pytest.mark.parametrize("direction, k", sorted(OFFICIAL_K.items()))
def test_direction_configs_use_the_documented_cluster_count(direction, k):
    from lf2_plugin.engine import build_config

    cfg = build_config(os.path.join(ROOT, "configs", direction, "lf2.yml"))
    source = build_config(os.path.join(ROOT, "configs", direction, "source.yml"))
    assert cfg.MODEL.LF2.CLUSTER.NUM_CLUSTERS == cfg.MODEL.HEADS.NUM_CLASSES == k
    assert cfg.MODEL.WEIGHTS.startswith(source.OUTPUT_DIR)
    assert source.DATASETS.TARGET_BN_ADAPT == cfg.DATASETS.NAMES[0]
    assert (cfg.SOLVER.ITERS_PER_EPOCH, cfg.SOLVER.MAX_EPOCH, cfg.SOLVER.IMS_PER_BATCH) == (400, 80, 64)
    assert cfg.INPUT.REA.ENABLED and not source.INPUT.REA.ENABLED


def test_vit_direction_source_checkpoint_starts_lf2_on_the_patch_token_vit():
    """Step 1's class-token ViT checkpoint fills step 2's patch-token ViT (student and teacher), key for key."""
    from lf2_plugin.engine import build_config, trainer_class_for

    small = ["MODEL.DEVICE", "cpu", "MODEL.BACKBONE.PRETRAIN", "False", "MODEL.BACKBONE.DEPTH", "small"]
    source_cfg = build_config(os.path.join(ROOT, "configs", "Market2MSMT", "source_vit.yml"), small)
    lf2_cfg = build_config(os.path.join(ROOT, "configs", "Market2MSMT", "lf2_vit.yml"), small)
    assert lf2_cfg.MODEL.WEIGHTS.startswith(source_cfg.OUTPUT_DIR)
    assert lf2_cfg.INPUT.SIZE_TRAIN == lf2_cfg.INPUT.SIZE_TEST == source_cfg.INPUT.SIZE_TRAIN
    torch.manual_seed(0)
    source = trainer_class_for(source_cfg).build_model(source_cfg)
    lf2 = trainer_class_for(lf2_cfg).build_model(lf2_cfg)
    lf2.load_source_checkpoint({"model": source.state_dict()})
    for network in (lf2.backbone, lf2.teacher.backbone):
        for name, tensor in source.backbone.state_dict().items():
            assert torch.equal(network.state_dict()[name], tensor), name
