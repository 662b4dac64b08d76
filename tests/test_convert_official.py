"""tools/convert_official_lf2.py: official checkpoints give the official features in the plugin (issue 4, item 6).

The official modules (DJEddyking/LF2 ``reid/models/resnet.py``: torchvision ResNet ``base``, ``BN_g``,
``adativeFC_*``/``BN_u``/``BN_l``, ``ca_upper``/``ca_low``, ``Fuse``) are re-stated here as plain functions of a
state dict in the official key layout; nothing is imported from the official code.
"""

import os

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import torchvision
from test_modeling import make_cfg, one_torch_thread  # noqa: F401  (autouse fixture)

import lf2_plugin  # noqa: F401
from lf2_plugin.modeling import convert_official_state_dict
from lf2_plugin.modeling.official_conversion import conversion_report, convert_official_checkpoint

from fastreid.modeling import build_model
from fastreid.utils.checkpoint import Checkpointer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BASE_CHILDREN = {"0": "conv1", "1": "bn1", "4": "layer1", "5": "layer2", "6": "layer3", "7": "layer4"}
PIXEL_MEAN = torch.tensor([123.675, 116.28, 103.53]).view(1, 3, 1, 1)
PIXEL_STD = torch.tensor([58.395, 57.12, 57.375]).view(1, 3, 1, 1)
CHANNELS, NUM_CLASSES = 512, 5


# ------------------------------------------------------------------------------------------------------------
# the official network, re-stated
# ------------------------------------------------------------------------------------------------------------
def torchvision_resnet(depth):
    """torchvision ResNet with the official last-stride-1 patch (conv2 of a Bottleneck, conv1 of a BasicBlock)."""
    net = {18: torchvision.models.resnet18, 50: torchvision.models.resnet50}[depth](weights=None)
    block = net.layer4[0]
    (block.conv2 if depth == 50 else block.conv1).stride = (1, 1)
    block.downsample[0].stride = (1, 1)
    return net


def randomize_batchnorms(module, generator):
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)):
                m.weight.uniform_(0.5, 1.5, generator=generator)
                m.bias.normal_(0, 0.1, generator=generator)
                m.running_mean.normal_(0, 0.1, generator=generator)
                m.running_var.uniform_(0.5, 1.5, generator=generator)


def random_bn(prefix, generator, dim=CHANNELS):
    return {
        f"{prefix}.weight": torch.rand(dim, generator=generator) + 0.5,
        f"{prefix}.bias": torch.randn(dim, generator=generator) * 0.1,
        f"{prefix}.running_mean": torch.randn(dim, generator=generator) * 0.1,
        f"{prefix}.running_var": torch.rand(dim, generator=generator) + 0.5,
        f"{prefix}.num_batches_tracked": torch.tensor(7),
    }


def official_network_state(seed, expert="concat"):
    """One official ``ResNet`` (LF2 head) state dict with random weights, K = 2, C = 512."""
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    net = torchvision_resnet(18)
    randomize_batchnorms(net, generator)
    state = {
        f"base.{index}.{key}": value
        for index, child in BASE_CHILDREN.items()
        for key, value in getattr(net, child).state_dict().items()
    }
    for bn in ("feat_bn", "BN_g", "BN_u", "BN_l"):
        state.update(random_bn(bn, generator))
    state["classifier.weight"] = torch.randn(NUM_CLASSES, CHANNELS, generator=generator) * 0.1
    expert_in = 2 * CHANNELS if expert == "concat" else CHANNELS
    for fc in ("adativeFC_upper", "adativeFC_low"):
        state[f"{fc}.weight"] = torch.randn(CHANNELS, expert_in, generator=generator) * 0.02
        state[f"{fc}.bias"] = torch.randn(CHANNELS, generator=generator) * 0.1
    for ca in ("ca_upper", "ca_low"):
        state[f"{ca}.se.0.weight"] = torch.randn(CHANNELS // 4, CHANNELS, 1, 1, generator=generator) * 0.05
        state[f"{ca}.se.2.weight"] = torch.randn(CHANNELS, CHANNELS // 4, 1, 1, generator=generator) * 0.05
    return state


def official_encoder_state(expert="concat"):
    """The official ``Encoder`` state dict: DataParallel student/teacher and ``fuse_net``."""
    state = {f"model.module.{k}": v for k, v in official_network_state(1, expert).items()}
    state.update({f"model_ema.module.{k}": v for k, v in official_network_state(2, expert).items()})
    generator = torch.Generator().manual_seed(3)
    for i in (1, 2, 3):
        state.update(random_bn(f"fuse_net.bn_{i}", generator))
    return state


def bn_eval(state, name, x):
    return F.batch_norm(
        x,
        state[f"{name}.running_mean"],
        state[f"{name}.running_var"],
        state[f"{name}.weight"],
        state[f"{name}.bias"],
        training=False,
        eps=1e-5,
    )


def official_backbone(state, images, depth=18):
    net = torchvision_resnet(depth)
    for index, child in BASE_CHILDREN.items():
        prefix = f"base.{index}."
        getattr(net, child).load_state_dict({k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)})
    net.eval()
    x = net.maxpool(net.relu(net.bn1(net.conv1(images))))
    return net.layer4(net.layer3(net.layer2(net.layer1(x))))


def official_head(state, feature_map, expert="concat"):
    """Eval-mode ``ResNet.forward`` after ``base``: ([g, f_upper, f_low], [Z_upper, Z_low])."""

    def pool_sum(x):
        return F.avg_pool2d(x, x.size()[2:]) + F.max_pool2d(x, x.size()[2:])

    def channel_attention(name, x):
        def se(v):
            return F.conv2d(F.relu(F.conv2d(v, state[f"{name}.se.0.weight"])), state[f"{name}.se.2.weight"])

        return torch.sigmoid(se(F.adaptive_max_pool2d(x, 1)) + se(F.adaptive_avg_pool2d(x, 1)))

    h = feature_map.size(2)
    features = [bn_eval(state, "BN_g", pool_sum(feature_map).flatten(1))]
    attended = []
    for s, (fc, bn, ca) in enumerate([("adativeFC_upper", "BN_u", "ca_upper"), ("adativeFC_low", "BN_l", "ca_low")]):
        stripe = feature_map[:, :, h // 2 * s : h // 2 * (s + 1), :]
        avg, max_ = F.avg_pool2d(stripe, stripe.size()[2:]), F.max_pool2d(stripe, stripe.size()[2:])
        inputs = torch.cat((avg, max_), dim=1) if expert == "concat" else avg + max_
        features.append(bn_eval(state, bn, F.linear(inputs.flatten(1), state[f"{fc}.weight"], state[f"{fc}.bias"])))
        attended.append((avg + max_) * channel_attention(ca, stripe))
    return features, attended


def official_fuse(state, teacher_map, attended):
    """``Fuse.forward``: bn_1(GMP+GAP of T), bn_{j+1}(GMP+GAP of T * Z_j) on the full maps."""
    maps = [teacher_map] + [teacher_map * z for z in attended]
    return [
        bn_eval(state, f"fuse_net.bn_{i + 1}", (F.adaptive_max_pool2d(m, 1) + F.adaptive_avg_pool2d(m, 1)).flatten(1))
        for i, m in enumerate(maps)
    ]


def network(state, prefix):
    return {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}


# ------------------------------------------------------------------------------------------------------------
# tests
# ------------------------------------------------------------------------------------------------------------
def lf2_for_official(expert, extra=()):
    cfg = make_cfg(
        num_parts=2,
        extra=[
            "MODEL.BACKBONE.NAME",
            "build_resnet_torchvision_stem_backbone",
            "MODEL.HEADS.NUM_CLASSES",
            NUM_CLASSES,
            "MODEL.LF2.EXPERT",
            expert,
            *extra,
        ],
    )
    return build_model(cfg)


@pytest.mark.parametrize("expert", ["concat", "sum"])
def test_converted_checkpoint_reproduces_the_official_teacher_and_fusion(tmp_path, expert):
    official = official_encoder_state(expert)
    checkpoint = tmp_path / "model_best.pth.tar"
    # open-reid checkpoints also pickle numpy metadata (best_mAP)
    torch.save({"state_dict": official, "epoch": 3, "best_mAP": np.float64(0.5)}, checkpoint)
    converted_path = tmp_path / "lf2.pth"
    info = convert_official_checkpoint(str(checkpoint), str(converted_path))
    assert info["expert"] == expert and info["num_classes"] == NUM_CLASSES and info["feat_dim"] == CHANNELS
    assert f"MODEL.LF2.EXPERT {expert}" in conversion_report(str(converted_path), info)
    assert {k.rsplit(".", 1)[0] for k in info["dropped"]} == {"model.module.feat_bn", "model_ema.module.feat_bn"}

    model = lf2_for_official(expert)
    converted = torch.load(converted_path, weights_only=True)["model"]
    model.load_state_dict(converted, strict=True)  # every plugin tensor comes from the official checkpoint
    model = lf2_for_official(expert)
    Checkpointer(model).load(str(converted_path))  # what tools/train_net.py --eval-only does
    model.eval()
    model.eval_normalize = False  # first the raw concat descriptor

    images = torch.rand(4, 3, 64, 32, generator=torch.Generator().manual_seed(9)) * 255
    normalized = (images - PIXEL_MEAN) / PIXEL_STD
    student, teacher = network(official, "model.module."), network(official, "model_ema.module.")
    with torch.no_grad():
        teacher_map = official_backbone(teacher, normalized)
        teacher_features, _ = official_head(teacher, teacher_map, expert)
        _, student_attended = official_head(student, official_backbone(student, normalized), expert)
        official_fused = official_fuse(official, teacher_map, student_attended)
        descriptor = model({"images": images})

    torch.testing.assert_close(descriptor, torch.cat(teacher_features, dim=1), rtol=1e-4, atol=1e-4)
    for got, want in zip(model.clustering_features({"images": images}), official_fused):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)
    model.eval_normalize = True  # the official Encoder's eval output
    with torch.no_grad():
        torch.testing.assert_close(
            model({"images": images}), F.normalize(torch.cat(teacher_features, dim=1)), rtol=1e-4, atol=1e-5
        )


def test_torchvision_stem_backbone_matches_torchvision_resnet50():
    official = {
        f"base.{index}.{key}": value
        for index, child in BASE_CHILDREN.items()
        for key, value in getattr(torchvision_resnet(50), child).state_dict().items()
    }
    cfg = make_cfg(
        extra=[
            "MODEL.BACKBONE.NAME",
            "build_resnet_torchvision_stem_backbone",
            "MODEL.BACKBONE.DEPTH",
            "50x",
            "MODEL.BACKBONE.FEAT_DIM",
            2048,
        ]
    )
    from fastreid.modeling.backbones import build_backbone

    backbone = build_backbone(cfg).eval()
    converted, _ = convert_official_state_dict(official)
    backbone.load_state_dict({k[len("backbone.") :]: v for k, v in converted.items()}, strict=True)
    images = torch.randn(2, 3, 64, 32)
    with torch.no_grad():
        torch.testing.assert_close(backbone(images), official_backbone(official, images, depth=50))


def test_official_source_checkpoint_converts_to_the_source_baseline():
    state = network(official_encoder_state(), "model.module.")
    source = {f"module.{k}": v for k, v in state.items() if k.startswith(("base.", "feat_bn.", "classifier."))}
    converted, info = convert_official_state_dict({"state_dict": source})
    assert info["layout"] == "source"
    cfg = make_cfg(
        meta="LF2SourceBaseline",
        extra=[
            "MODEL.BACKBONE.NAME",
            "build_resnet_torchvision_stem_backbone",
            "MODEL.HEADS.NAME",
            "EmbeddingHead",
            "MODEL.HEADS.WITH_BNNECK",
            True,
            "MODEL.HEADS.NUM_CLASSES",
            NUM_CLASSES,
        ],
    )
    model = build_model(cfg)
    model.load_state_dict(converted, strict=True)
    model.eval()
    images = torch.rand(2, 3, 64, 32) * 255
    with torch.no_grad():
        feature_map = official_backbone(state, (images - PIXEL_MEAN) / PIXEL_STD)
        # official resnet50_source eval: L2(feat_bn(GAP(x))) (MODEL.LF2.EVAL_NORMALIZE)
        expected = F.normalize(bn_eval(state, "feat_bn", F.adaptive_avg_pool2d(feature_map, 1).flatten(1)))
        torch.testing.assert_close(model({"images": images}), expected, rtol=1e-4, atol=1e-5)


def test_unknown_official_keys_are_an_error():
    state = official_encoder_state()
    state["model.module.extra_layer.weight"] = torch.zeros(1)
    with pytest.raises(KeyError, match="extra_layer"):
        convert_official_state_dict(state)


def test_train_net_evaluates_a_converted_checkpoint(tmp_path, tiny_market_root):
    """issue 4 'done when': tools/train_net.py --eval-only runs on a converted official checkpoint."""
    import json

    from conftest import run_train_net

    checkpoint, converted = tmp_path / "model_best.pth.tar", tmp_path / "lf2.pth"
    torch.save({"state_dict": official_encoder_state("concat")}, checkpoint)
    convert_official_checkpoint(str(checkpoint), str(converted))
    out = tmp_path / "eval"
    proc = run_train_net(
        [
            "--config-file",
            os.path.join(ROOT, "tests", "configs", "lf2_tiny.yml"),
            "--eval-only",
            "OUTPUT_DIR",
            str(out),
            "MODEL.WEIGHTS",
            str(converted),
            "MODEL.BACKBONE.NAME",
            "build_resnet_torchvision_stem_backbone",
            "MODEL.HEADS.NUM_CLASSES",
            str(NUM_CLASSES),
            "DATASETS.NAMES",
            '("Market1501",)',
            "DATASETS.TESTS",
            '("Market1501",)',
        ],
        tiny_market_root,
    )
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-3000:]
    assert "not found in the checkpoint" not in log and "Skip loading" not in log  # every tensor loaded
    assert "not used by the model" not in log
    results = json.loads((out / "eval_results.json").read_text())
    assert 0 < results["mAP"] <= 100 and 0 < results["Rank-1"] <= 100
