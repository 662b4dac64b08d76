"""LF2 meta-architecture, head, Fusion Module, losses and source-weight loading (issue 4)."""

import logging
import math
import sys

import pytest
import torch
import torch.nn.functional as F

import lf2_plugin  # noqa: F401  (compat fixes + registration)
from lf2_plugin.config import add_lf2_config
from lf2_plugin.modeling import (
    LF2,
    FusionModule,
    batch_hard_triplet_loss,
    is_lf2_state_dict,
    label_smooth_cross_entropy,
    load_source_weights,
)
from lf2_plugin.modeling.backbones import torchreid_osnet
from lf2_plugin.modeling.fusion import PooledMap

from fastreid.config import get_cfg
from fastreid.modeling import build_model
from fastreid.modeling.losses import cross_entropy_loss, triplet_loss
from fastreid.utils.events import EventStorage

BACKBONES = {
    "resnet18": [
        "MODEL.BACKBONE.NAME",
        "build_resnet_backbone",
        "MODEL.BACKBONE.DEPTH",
        "18x",
        "MODEL.BACKBONE.FEAT_DIM",
        512,
    ],
    "osnet": [
        "MODEL.BACKBONE.NAME",
        "build_osnet_backbone",
        "MODEL.BACKBONE.DEPTH",
        "x0_25",
        "MODEL.BACKBONE.FEAT_DIM",
        128,
    ],
    "torchreid_osnet_ain": [
        "MODEL.BACKBONE.NAME",
        "build_torchreid_osnet_ain_backbone",
        "MODEL.BACKBONE.DEPTH",
        "x0_25",
        "MODEL.BACKBONE.FEAT_DIM",
        128,
    ],
}
BATCH = 8  # 4 identities x 2 images


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    """Tiny CPU models run ~50x faster single-threaded on a shared 2-core machine (no OpenMP contention)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def make_cfg(num_parts=2, backbone="resnet18", meta="LF2", extra=()):
    cfg = add_lf2_config(get_cfg())
    cfg.merge_from_list(
        [
            "MODEL.DEVICE",
            "cpu",
            "MODEL.META_ARCHITECTURE",
            meta,
            "MODEL.HEADS.NAME",
            "LF2Head",
            "MODEL.HEADS.NUM_CLASSES",
            4,
            "MODEL.BACKBONE.PRETRAIN",
            False,
            "MODEL.LF2.NUM_PARTS",
            num_parts,
            "MODEL.LOSSES.CE.EPSILON",
            0.1,
            "MODEL.LOSSES.TRI.MARGIN",
            0.0,
            "MODEL.LOSSES.TRI.HARD_MINING",
            True,
            *BACKBONES[backbone],
            *extra,
        ]
    )
    return cfg


def make_model(num_parts=2, backbone="resnet18", extra=(), seed=0):
    torch.manual_seed(seed)
    return build_model(make_cfg(num_parts, backbone, extra=extra))


def make_batch(num_levels, seed=1):
    generator = torch.Generator().manual_seed(seed)
    images = torch.rand(BATCH, 3, 64, 32, generator=generator) * 255
    # level j groups the 8 images into 4 pairs differently, so every level has its own labels
    targets = torch.stack([torch.arange(BATCH).roll(level) // 2 for level in range(num_levels)], dim=1)
    return {"images": images, "targets": targets}


def grad_names(model):
    return {name for name, p in model.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}


# ------------------------------------------------------------------------------------------------------------
# shapes
# ------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("backbone", ["resnet18", "osnet"])
@pytest.mark.parametrize("num_parts", [1, 2, 3])
def test_shapes_for_any_number_of_stripes(backbone, num_parts):
    model = make_model(num_parts, backbone)
    channels = model.heads.feat_dim
    batch = make_batch(num_parts + 1)

    losses = model(batch)
    assert set(losses) == {"loss_cls", "loss_triplet", "loss_part_triplet"}
    assert all(v.dim() == 0 and torch.isfinite(v) for v in losses.values())

    model.eval()
    with torch.no_grad():
        descriptor = model(batch)
    assert descriptor.shape == (BATCH, (num_parts + 1) * channels)
    features = model.clustering_features(batch)
    assert [tuple(f.shape) for f in features] == [(BATCH, channels)] * (num_parts + 1)
    assert not model.training  # clustering_features restores the mode it found


def test_eval_feature_selects_global_or_parts_of_the_concatenated_descriptor():
    batch = make_batch(3)
    descriptors = {}
    for feature in ("concat", "global", "parts"):
        # raw descriptors: the slices of the concatenation (each is L2-normalised on its own otherwise)
        model = make_model(extra=["MODEL.LF2.EVAL_FEATURE", feature, "MODEL.LF2.EVAL_NORMALIZE", False]).eval()
        with torch.no_grad():
            descriptors[feature] = model(batch)
    assert torch.equal(descriptors["concat"], torch.cat([descriptors["global"], descriptors["parts"]], dim=1))
    assert descriptors["global"].shape == (BATCH, 512) and descriptors["parts"].shape == (BATCH, 1024)
    with pytest.raises(ValueError, match="EVAL_FEATURE must be one of .* got 'parts' with 0 parts"):
        make_model(num_parts=0, extra=["MODEL.LF2.EVAL_FEATURE", "parts"])
    with pytest.raises(ValueError, match="got 'part'"):
        make_model(extra=["MODEL.LF2.EVAL_FEATURE", "part"])


def test_num_parts_zero_is_a_global_only_mean_teacher():
    model = make_model(num_parts=0)
    batch = make_batch(1)
    assert set(model(batch)) == {"loss_cls", "loss_triplet"}
    assert set(model([{"images": batch["images"], "targets": batch["targets"][:, 0]}])) == {"loss_cls", "loss_triplet"}
    assert len(model.clustering_features(batch)) == 1
    model.eval()
    assert model(batch).shape == (BATCH, 512)


def test_list_of_level_batches_equals_one_batch_with_all_levels():
    model = make_model(num_parts=2)
    batch = make_batch(3)
    per_level = [{"images": batch["images"], "targets": batch["targets"][:, j]} for j in range(3)]
    together, separately = model(batch), model(per_level)
    assert together.keys() == separately.keys()
    for name in together:
        torch.testing.assert_close(together[name], separately[name], rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="3 batches"):
        model(per_level[:2])


# ------------------------------------------------------------------------------------------------------------
# gradients
# ------------------------------------------------------------------------------------------------------------
def test_official_setting_trains_neither_teacher_nor_fusion_nor_attention():
    model = make_model(num_parts=2)
    sum(model(make_batch(3)).values()).backward()
    expected = {
        n
        for n, p in model.named_parameters()
        if p.requires_grad and n.startswith(("backbone.", "heads.")) and not n.startswith("heads.attentions.")
    }
    assert grad_names(model) == expected
    assert "heads.weight" in expected and "heads.experts.1.fc.weight" in expected
    assert not any(p.requires_grad for p in model.teacher.parameters())
    # frozen BN biases, as the official BN_g/BN_u/BN_l/fuse BNs
    assert not model.heads.bn_global.norm.bias.requires_grad and not model.fusion.bns[0].norm.bias.requires_grad


def test_fusion_loss_trains_attention_and_fusion_but_never_the_teacher():
    model = make_model(num_parts=2, extra=["MODEL.LF2.FUSION.LOSS_WEIGHT", 1.0])
    losses = model(make_batch(3))
    assert "loss_fusion_triplet" in losses
    sum(losses.values()).backward()
    names = grad_names(model)
    assert not any(n.startswith("teacher.") for n in names)
    for j in range(2):
        assert {f"heads.attentions.{j}.fc1.weight", f"heads.attentions.{j}.fc2.weight"} <= names
    assert {f"fusion.bns.{j}.norm.weight" for j in range(3)} <= names


def test_fusion_loss_requires_the_fusion_module():
    with pytest.raises(ValueError, match="FUSION.ENABLED"):
        make_model(extra=["MODEL.LF2.FUSION.LOSS_WEIGHT", 1.0, "MODEL.LF2.FUSION.ENABLED", False])


# ------------------------------------------------------------------------------------------------------------
# loss values
# ------------------------------------------------------------------------------------------------------------
def test_label_smoothing_is_the_official_formula_not_fastreids():
    logits = torch.tensor([[2.0, 0.0, 0.0]])
    targets = torch.tensor([0])
    log_z = math.log(math.exp(2) + 2)
    log_p = [2 - log_z, -log_z, -log_z]
    # official: q = 0.9 * onehot + 0.1 / 3
    official = -((0.9 + 0.1 / 3) * log_p[0] + (0.1 / 3) * (log_p[1] + log_p[2]))
    assert label_smooth_cross_entropy(logits, targets, 0.1).item() == pytest.approx(official, rel=1e-6)
    assert official == pytest.approx(0.3728781, abs=1e-6)
    # fast-reid spreads eps over the k-1 wrong classes instead
    fastreid = -(0.9 * log_p[0] + 0.05 * (log_p[1] + log_p[2]))
    assert cross_entropy_loss(logits, targets, 0.1).item() == pytest.approx(fastreid, rel=1e-6)


def test_soft_triplet_on_a_hand_computed_case():
    # labels 0,0,1,1; hardest (positive, negative) distances per anchor: (3,4), (3,5), (6,4), (6,5)
    features = torch.tensor([[0.0, 0.0], [3.0, 0.0], [0.0, 4.0], [6.0, 4.0]])
    targets = torch.tensor([0, 0, 1, 1])
    expected = sum(math.log1p(math.exp(d)) for d in (-1, -2, 2, 1)) / 4
    assert expected == pytest.approx(0.9700949, abs=1e-6)
    assert batch_hard_triplet_loss(features, targets).item() == pytest.approx(expected, rel=1e-5)
    assert triplet_loss(features, targets, 0.0, False, True).item() == pytest.approx(expected, rel=1e-5)


def test_soft_triplet_does_not_switch_loss_on_overflow():
    # d_ap - d_an = 200: fast-reid's log(1+exp(x)) overflows and it silently falls back to a margin-0.3 hinge
    features = torch.tensor([[0.0], [200.0], [0.0], [200.0]])
    targets = torch.tensor([0, 0, 1, 1])
    assert batch_hard_triplet_loss(features, targets).item() == pytest.approx(200.0)
    assert triplet_loss(features, targets, 0.0, False, True).item() == pytest.approx(200.3)


def test_total_loss_is_ce_plus_triplet_plus_gamma_times_part_triplets():
    batch = make_batch(3)
    results = {}
    for gamma in (0.5, 1.0):
        model = make_model(num_parts=2, extra=["MODEL.LF2.PART_TRIPLET_WEIGHT", gamma])
        results[gamma] = model(batch)
    student = model.heads(model.backbone(model.preprocess_image(batch)))
    targets = batch["targets"]
    parts = sum(batch_hard_triplet_loss(student["parts"][j], targets[:, j + 1]) for j in range(2))
    torch.testing.assert_close(results[1.0]["loss_part_triplet"], parts)
    torch.testing.assert_close(results[0.5]["loss_part_triplet"], 0.5 * parts)
    torch.testing.assert_close(
        results[1.0]["loss_cls"], label_smooth_cross_entropy(student["logits"], targets[:, 0], 0.1)
    )
    torch.testing.assert_close(results[1.0]["loss_triplet"], batch_hard_triplet_loss(student["global"], targets[:, 0]))


def test_accuracy_is_logged_with_an_event_storage_and_optional_without():
    model = make_model(num_parts=1)
    with EventStorage(0) as storage:
        model(make_batch(2))
    assert "cls_accuracy" in storage.histories()
    model(make_batch(2))  # no storage: no error


# ------------------------------------------------------------------------------------------------------------
# Fusion Module (Eq. 5)
# ------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("pool_type", ["avg+max", "avg", "max"])
def test_fusion_on_pooled_vectors_equals_pooling_the_fused_map(pool_type):
    torch.manual_seed(0)
    teacher_map = torch.randn(4, 6, 4, 2)
    attended = [torch.rand(4, 6), torch.randn(4, 6)]  # the second one has negative entries
    fusion = FusionModule(6, 2, pool_type).eval()
    fusion.bns[1].norm.running_mean.normal_()

    def pool(fused_map):
        avg, max_ = fused_map.mean(dim=(2, 3)), fused_map.amax(dim=(2, 3))
        return {"avg+max": avg + max_, "avg": avg, "max": max_}[pool_type]

    expected = [pool(teacher_map)] + [pool(teacher_map * z[:, :, None, None]) for z in attended]
    expected = [bn(e) for bn, e in zip(fusion.bns, expected)]
    for got, want in zip(fusion(teacher_map, attended), expected):
        torch.testing.assert_close(got, want)


def test_clustering_features_fuse_teacher_map_with_student_stripes():
    model = make_model(num_parts=2)
    model.teacher.backbone.conv1.weight.data.mul_(-1)  # teacher != student
    batch = make_batch(3)
    model.eval()
    with torch.no_grad():
        images = model.preprocess_image(batch)
        teacher_pooled = PooledMap(model.teacher.backbone(images)).pooled("avg+max")
        attended = model.heads(model.backbone(images))["attended"]
    features = model.clustering_features(batch)
    torch.testing.assert_close(features[0], model.fusion.bns[0](teacher_pooled))
    torch.testing.assert_close(features[2], model.fusion.bns[2](attended[1] * teacher_pooled))


def test_without_fusion_module_levels_are_the_teachers_pooled_stripes():
    model = make_model(num_parts=2, extra=["MODEL.LF2.FUSION.ENABLED", False])
    batch = make_batch(3)
    model.eval()
    with torch.no_grad():
        teacher_map = model.teacher.backbone(model.preprocess_image(batch))
    features = model.clustering_features(batch)
    lower = teacher_map[:, :, teacher_map.size(2) // 2 :]
    torch.testing.assert_close(features[2], lower.mean(dim=(2, 3)) + lower.amax(dim=(2, 3)))


# ------------------------------------------------------------------------------------------------------------
# mean teacher
# ------------------------------------------------------------------------------------------------------------
def _fill(module, value):
    with torch.no_grad():
        for p in module.parameters():
            p.fill_(value)


def test_ema_formula():
    model = make_model(num_parts=1)
    assert model.ema_momentum(0) == 0.0 and model.ema_momentum(1) == 0.5
    assert model.ema_momentum(10_000) == 0.999  # min(1 - 1/10001, alpha)

    for student in (model.backbone, model.heads):
        _fill(student, 4.0)
    _fill(model.teacher, 2.0)
    assert model.ema_update(0) == 0.0
    assert all(torch.all(p == 4.0) for p in model.teacher.parameters())  # step 0: a copy of the student

    _fill(model.teacher, 2.0)
    model.ema_update(1)
    assert all(torch.all(p == 3.0) for p in model.teacher.parameters())
    model.ema_update(10_000)
    assert all(torch.allclose(p, torch.tensor(0.999 * 3.0 + 0.001 * 4.0)) for p in model.teacher.parameters())


def test_teacher_bn_forward_policy_updates_stats_by_forwarding():
    model = make_model(num_parts=1)
    running_mean = model.teacher.backbone.bn1.running_mean.clone()
    fusion_mean = model.fusion.bns[1].norm.running_mean.clone()
    model(make_batch(2))
    assert not torch.equal(running_mean, model.teacher.backbone.bn1.running_mean)
    assert not torch.equal(fusion_mean, model.fusion.bns[1].norm.running_mean)  # official: fuse BNs follow batches
    before = model.teacher.backbone.bn1.running_mean.clone()
    model.ema_update(5)
    assert torch.equal(before, model.teacher.backbone.bn1.running_mean)  # parameters only


def test_teacher_bn_ema_policy_averages_buffers_and_keeps_teacher_in_eval():
    model = make_model(num_parts=1, extra=["MODEL.LF2.TEACHER.BN_UPDATE", "ema"])
    model.train()
    assert not model.teacher.training and model.backbone.training
    teacher_mean = model.teacher.backbone.bn1.running_mean.clone()
    model(make_batch(2))
    assert torch.equal(teacher_mean, model.teacher.backbone.bn1.running_mean)
    model.ema_update(1)  # m = 0.5
    torch.testing.assert_close(
        model.teacher.backbone.bn1.running_mean, 0.5 * teacher_mean + 0.5 * model.backbone.bn1.running_mean
    )
    assert model.teacher.backbone.bn1.num_batches_tracked == model.backbone.bn1.num_batches_tracked


def test_reset_classifier_resizes_student_and_teacher():
    model = make_model(num_parts=1)
    centroids = F.normalize(torch.randn(7, 512), dim=1)
    model.reset_classifier(centroids)
    assert torch.equal(model.heads.weight, centroids) and torch.equal(model.teacher.heads.weight, centroids)
    assert model.heads.weight.requires_grad and not model.teacher.heads.weight.requires_grad
    batch = make_batch(2)
    batch["targets"][:, 0] = torch.arange(BATCH) % 7
    model(batch)
    model.ema_update(3)
    with pytest.raises(ValueError):
        model.reset_classifier(torch.randn(7, 100))


# ------------------------------------------------------------------------------------------------------------
# inputs, training step
# ------------------------------------------------------------------------------------------------------------
def test_inputs_are_never_modified_in_place():
    model = make_model(num_parts=2)
    batch = make_batch(3)
    images, targets = batch["images"].clone(), batch["targets"].clone()
    model(batch)
    model.clustering_features(batch)
    model.eval()
    model(batch)
    assert torch.equal(batch["images"], images) and torch.equal(batch["targets"], targets)


@pytest.mark.parametrize("fusion_weight", [0.0, 0.5])
def test_one_training_step_lowers_the_loss_on_a_fixed_batch(fusion_weight):
    model = make_model(num_parts=2, extra=["MODEL.LF2.FUSION.LOSS_WEIGHT", fusion_weight])
    batch = make_batch(3)
    # a small plain gradient step: Adam's first step moves every weight by ~lr whatever its gradient
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    before = sum(model(batch).values())
    optimizer.zero_grad()
    before.backward()
    optimizer.step()
    after = sum(model(batch).values())
    assert after.item() < before.item()


# ------------------------------------------------------------------------------------------------------------
# source stage
# ------------------------------------------------------------------------------------------------------------
def make_source_model():
    cfg = make_cfg(
        meta="LF2SourceBaseline",
        extra=[
            "MODEL.HEADS.NAME",
            "EmbeddingHead",
            "MODEL.HEADS.WITH_BNNECK",
            True,
            "MODEL.HEADS.NUM_CLASSES",
            9,
            "MODEL.LOSSES.NAME",
            ("CrossEntropyLoss", "TripletLoss"),
        ],
    )
    torch.manual_seed(5)
    model = build_model(cfg)
    with torch.no_grad():
        model.heads.bottleneck[0].running_mean.normal_()
    return model


def test_source_baseline_uses_official_losses_and_keeps_inputs():
    model = make_source_model()
    batch = make_batch(1)
    batch["targets"] = batch["targets"][:, 0]
    images = batch["images"].clone()
    losses = model(batch)
    assert torch.equal(batch["images"], images)
    features = model.backbone(model.preprocess_image(batch))
    outputs = model.heads(features, batch["targets"])
    torch.testing.assert_close(
        losses["loss_cls"], label_smooth_cross_entropy(outputs["cls_outputs"], batch["targets"], 0.1)
    )
    torch.testing.assert_close(losses["loss_triplet"], batch_hard_triplet_loss(outputs["features"], batch["targets"]))


def test_source_checkpoint_fills_student_and_teacher_backbones(caplog):
    source = make_source_model().state_dict()
    assert not is_lf2_state_dict(source)
    model = make_model(num_parts=2, seed=3)
    assert is_lf2_state_dict(model.state_dict())
    with caplog.at_level(logging.INFO, logger="lf2_plugin.modeling.checkpoint"):
        report = model.load_source_checkpoint({"model": source})
    for name, tensor in model.backbone.state_dict().items():
        assert torch.equal(tensor, source["backbone." + name])
        assert torch.equal(model.teacher.backbone.state_dict()[name], source["backbone." + name])
    assert not any(k.startswith(("backbone.", "teacher.backbone.")) for k in report["fresh"])
    assert "heads.experts.0.fc.weight" in report["fresh"] and "fusion.bns.0.norm.weight" in report["fresh"]
    assert "heads.weight" in report["unused"] and "heads.bottleneck.0.running_mean" in report["unused"]
    assert "fresh" in caplog.text and "heads.experts.0.fc" in caplog.text
    assert not torch.equal(model.heads.bn_global.norm.running_mean, source["heads.bottleneck.0.running_mean"])

    load_source_weights(model, source, bnneck_to_global_bn=True)
    for prefix in ("", "teacher."):
        assert torch.equal(
            model.state_dict()[prefix + "heads.bn_global.norm.running_mean"], source["heads.bottleneck.0.running_mean"]
        )


def test_source_checkpoint_must_fill_the_backbone():
    source = make_source_model().state_dict()
    model = make_model(num_parts=1)
    del source["backbone.layer4.1.conv2.weight"]
    with pytest.raises(RuntimeError, match="layer4.1.conv2.weight"):
        load_source_weights(model, source)
    with pytest.raises(ValueError, match="LF2 checkpoint"):
        load_source_weights(model, model.state_dict())


# ------------------------------------------------------------------------------------------------------------
# torchreid backbones (optional extra)
# ------------------------------------------------------------------------------------------------------------
def test_torchreid_backbone_without_the_extra_names_the_install_command(monkeypatch):
    monkeypatch.setitem(sys.modules, "torchreid", None)
    monkeypatch.setitem(sys.modules, "torchreid.reid", None)
    with pytest.raises(ImportError, match=r"pip install \.\[torchreid\]"):
        torchreid_osnet.import_torchreid_models()
    with pytest.raises(ImportError, match="torchreid"):
        make_model(num_parts=1, backbone="torchreid_osnet_ain")


@pytest.mark.parametrize("num_parts", [1, 2])
def test_lf2_on_torchreid_osnet_ain(num_parts):
    pytest.importorskip("torchreid")
    model = make_model(num_parts, backbone="torchreid_osnet_ain")
    assert isinstance(model, LF2)
    losses = model(make_batch(num_parts + 1))
    sum(losses.values()).backward()
    assert any(n.startswith("backbone.net.conv1") for n in grad_names(model))
    model.eval()
    assert model(make_batch(num_parts + 1)).shape == (BATCH, (num_parts + 1) * 128)


def test_torchreid_backbone_checks_feat_dim():
    with pytest.raises(ValueError, match="FEAT_DIM 128"):
        make_model(num_parts=1, backbone="torchreid_osnet_ain", extra=["MODEL.BACKBONE.FEAT_DIM", 512])
