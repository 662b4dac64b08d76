"""Source stage: the target-BN adaptation hook moves BN statistics only, and train_net selects it from config."""
import os
import types

import torch

from conftest import ROOT


def test_target_batches_adapt_bn_statistics_without_touching_weights():
    from fastreid.modeling import build_model
    from lf2_plugin.engine import build_config
    from lf2_plugin.engine.source import TargetBNAdaptationHook

    cfg = build_config(os.path.join(ROOT, "configs", "Base-LF2-source.yml"), [
        "MODEL.DEVICE", "cpu", "MODEL.BACKBONE.NAME", "build_resnet_backbone", "MODEL.BACKBONE.DEPTH", "18x",
        "MODEL.BACKBONE.FEAT_DIM", "512", "MODEL.BACKBONE.PRETRAIN", "False", "MODEL.HEADS.NUM_CLASSES", "5"])
    model = build_model(cfg).train()
    params = {k: v.detach().clone() for k, v in model.named_parameters()}
    bn_mean = model.backbone.bn1.running_mean.clone()
    neck_mean = model.heads.bottleneck[0].running_mean.clone()
    target = [{"images": torch.rand(4, 3, 64, 32) * 255 + 40, "targets": torch.tensor([7, 7, 9, 9])}]
    pixels = target[0]["images"].clone()
    hook = TargetBNAdaptationHook(target)
    hook.trainer = types.SimpleNamespace(model=model)
    hook.after_step()
    assert not torch.equal(model.backbone.bn1.running_mean, bn_mean)
    assert not torch.equal(model.heads.bottleneck[0].running_mean, neck_mean)
    assert all(torch.equal(v, params[k]) for k, v in model.named_parameters())
    assert torch.equal(target[0]["images"], pixels)


def test_trainer_selection_follows_the_config():
    from fastreid.engine import DefaultTrainer
    from lf2_plugin.engine import build_config, trainer_class_for
    from lf2_plugin.engine.source import SourceTrainer
    from lf2_plugin.engine.trainer import LF2Trainer

    assert trainer_class_for(build_config(os.path.join(ROOT, "configs", "Base-LF2.yml"))) is LF2Trainer
    source = os.path.join(ROOT, "configs", "Base-LF2-source.yml")
    assert trainer_class_for(build_config(source)) is DefaultTrainer
    assert trainer_class_for(build_config(source, ["DATASETS.TARGET_BN_ADAPT", "DukeMTMC"])) is SourceTrainer
