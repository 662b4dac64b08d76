"""Source stage: the target-BN adaptation hook moves BN statistics only, and train_net selects it from config."""

import copy
import os
import types

import torch
from compat_checks import RESNET18_CPU_OPTS
from conftest import ROOT


def test_target_batches_adapt_bn_statistics_without_touching_weights():
    """Each training forward is followed by a target forward (BN statistics only); eval forwards are not, and
    after training the model forwards alone again."""
    from lf2_plugin.engine import build_config
    from lf2_plugin.engine.source import TargetBNAdaptationHook

    from fastreid.modeling import build_model

    cfg = build_config(
        os.path.join(ROOT, "configs", "Base-LF2-source.yml"),
        [*RESNET18_CPU_OPTS, "MODEL.HEADS.NUM_CLASSES", "5"],
    )
    model = build_model(cfg).train()
    params = {k: v.detach().clone() for k, v in model.named_parameters()}
    bn_mean = model.backbone.bn1.running_mean.clone()
    neck_mean = model.heads.bottleneck[0].running_mean.clone()
    source = {"images": torch.rand(4, 3, 64, 32) * 255, "targets": torch.tensor([1, 1, 2, 2])}
    target = [{"images": torch.rand(4, 3, 64, 32) * 255 + 40, "targets": torch.tensor([7, 7, 9, 9])}]
    pixels = target[0]["images"].clone()
    alone = copy.deepcopy(model)
    alone(source)
    hook = TargetBNAdaptationHook(iter(target))
    hook.trainer = types.SimpleNamespace(model=model)
    hook.before_train()
    model.eval()(source)  # no target batch is drawn for an eval forward (the iterator holds one)
    model.train()
    model(source)
    assert not torch.equal(model.backbone.bn1.running_mean, alone.backbone.bn1.running_mean)
    assert not torch.equal(model.heads.bottleneck[0].running_mean, alone.heads.bottleneck[0].running_mean)
    assert not torch.equal(model.backbone.bn1.running_mean, bn_mean)
    assert not torch.equal(model.heads.bottleneck[0].running_mean, neck_mean)
    assert all(torch.equal(v, params[k]) for k, v in model.named_parameters())
    assert torch.equal(target[0]["images"], pixels)
    hook.after_train()
    model(source)  # the exhausted target iterator is not touched any more


def test_trainer_selection_follows_the_config():
    from lf2_plugin.engine import build_config, trainer_class_for
    from lf2_plugin.engine.source import SourceTrainer
    from lf2_plugin.engine.trainer import LF2Trainer

    from fastreid.engine import DefaultTrainer

    assert trainer_class_for(build_config(os.path.join(ROOT, "configs", "Base-LF2.yml"))) is LF2Trainer
    source = os.path.join(ROOT, "configs", "Base-LF2-source.yml")
    assert trainer_class_for(build_config(source)) is SourceTrainer  # official epoch length and warm-up
    plain = [
        "MODEL.META_ARCHITECTURE",
        "Baseline",
        "SOLVER.ITERS_PER_EPOCH",
        0,
        "SOLVER.WARMUP_PER_EPOCH",
        False,
        "DATALOADER.SAMPLER_TRAIN",
        "BalancedIdentitySampler",
    ]
    assert trainer_class_for(build_config(source, plain)) is DefaultTrainer
    official_sampler = [*plain, "DATALOADER.SAMPLER_TRAIN", "RandomMultipleGallerySampler"]
    assert trainer_class_for(build_config(source, official_sampler)) is SourceTrainer  # fast-reid cannot build it
    assert trainer_class_for(build_config(source, [*plain, "DATASETS.TARGET_BN_ADAPT", "DukeMTMC"])) is SourceTrainer
    assert trainer_class_for(build_config(source, plain[2:])) is SourceTrainer  # LF2SourceBaseline


def test_source_schedule_is_the_official_per_epoch_staircase():
    """Base-LF2-source.yml through fast-reid's LRScheduler hook, 200 iterations per epoch: the learning rate of
    every iteration equals the official WarmupMultiStepLR stepped once per epoch (warm-up 10 epochs from 0.01x,
    x0.1 at epochs 40 and 70)."""
    from lf2_plugin.engine import build_config
    from lf2_plugin.engine.source import source_learning_rates

    cfg = build_config(os.path.join(ROOT, "configs", "Base-LF2-source.yml"))
    rates = source_learning_rates(cfg)
    assert len(rates) == 80 * 200
    base = 3.5e-4

    def official(epoch):
        warmup = 0.01 * (1 - epoch / 10) + epoch / 10 if epoch < 10 else 1.0
        return base * warmup * 0.1 ** sum(epoch >= m for m in (40, 70))

    expected = [official(i // 200) for i in range(80 * 200)]
    worst = max(abs(a - b) / b for a, b in zip(rates, expected))
    assert worst < 1e-12, worst


def test_source_eval_feature_is_the_normalised_bnneck_feature():
    """MODEL.LF2.EVAL_NORMALIZE: LF2SourceBaseline's eval output is the BNNeck feature, L2-normalised per view as
    the official source model's; off, it is fast-reid's raw BNNeck feature."""
    from lf2_plugin.engine import build_config

    from fastreid.modeling import build_model

    opts = [*RESNET18_CPU_OPTS, "MODEL.HEADS.NUM_CLASSES", "5"]
    source = os.path.join(ROOT, "configs", "Base-LF2-source.yml")
    torch.manual_seed(0)
    normalised = build_model(build_config(source, opts)).eval()
    raw = build_model(build_config(source, [*opts, "MODEL.LF2.EVAL_NORMALIZE", "False"])).eval()
    raw.load_state_dict(normalised.state_dict())
    images = {"images": torch.rand(3, 3, 64, 32) * 255}
    with torch.no_grad():
        a, b = normalised(images), raw(images)
    torch.testing.assert_close(a.norm(dim=1), torch.ones(3))
    torch.testing.assert_close(a, torch.nn.functional.normalize(b, dim=1))
    assert not torch.allclose(b.norm(dim=1), torch.ones(3))


def test_model_best_follows_test_best_metric():
    """TEST.BEST_METRIC mAP (official): model_best is the epoch of the best mAP, not of fast-reid's
    (mAP + Rank-1)/2 "metric"."""
    from lf2_plugin.engine.hooks import BestMetricCheckpointer

    from fastreid.utils.events import EventStorage

    saved = []
    checkpointer = types.SimpleNamespace(save=lambda name, **state: saved.append((name, state["epoch"])))
    trainer = types.SimpleNamespace(
        max_epoch=3, cfg=types.SimpleNamespace(DATASETS=types.SimpleNamespace(TESTS=("SynthMarket",)))
    )
    results = [{"mAP": 50.0, "metric": 60.0}, {"mAP": 55.0, "metric": 58.0}, {"mAP": 52.0, "metric": 59.0}]
    for metric, best_epoch in (("mAP", 1), ("metric", 0)):
        saved.clear()
        hook = BestMetricCheckpointer(checkpointer, 1, metric)
        hook.trainer = trainer
        hook.before_train()
        with EventStorage() as storage:
            for epoch, scalars in enumerate(results):
                storage.put_scalars(**scalars)
                trainer.epoch = epoch
                hook.after_epoch()
        assert [e for name, e in saved if name == "model_best"][-1] == best_epoch, (metric, saved)


def test_source_classifier_starts_as_the_official_one():
    """LF2SourceBaseline's classifier starts from N(0, 0.001²) (official resnet_source.py), not fast-reid's 0.01."""
    from lf2_plugin.engine import build_config

    from fastreid.modeling import build_model

    cfg = build_config(
        os.path.join(ROOT, "configs", "Base-LF2-source.yml"),
        [*RESNET18_CPU_OPTS, "MODEL.HEADS.NUM_CLASSES", "200"],
    )
    std = build_model(cfg).heads.weight.std().item()
    assert 0.0009 < std < 0.0011, std
