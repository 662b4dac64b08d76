"""The LF2 meta-architecture (student + mean teacher + Fusion Module) and the source-stage Baseline."""

import copy
import logging

import torch
import torch.nn.functional as F
from torch import nn

from fastreid.config import configurable
from fastreid.modeling.backbones import build_backbone
from fastreid.modeling.heads import build_heads
from fastreid.modeling.losses import log_accuracy
from fastreid.modeling.meta_arch import META_ARCH_REGISTRY, Baseline
from fastreid.utils import events

from ..compat import normalized_images
from .feature_map import check_lf2_feature_map
from .fusion import FusionModule, PooledMap
from .head import EVAL_FEATURES, LF2Head, split_stripes
from .losses import batch_hard_triplet_loss, label_smooth_cross_entropy

logger = logging.getLogger(__name__)

BN_UPDATE_POLICIES = ("forward", "ema")


def _log_accuracy(logits, targets):
    """fast-reid's ``cls_accuracy`` scalar, only when an EventStorage is active (plain scripts have none)."""
    if events._CURRENT_STORAGE_STACK:
        log_accuracy(logits.detach(), targets)


class MeanTeacher(nn.Module):
    """The teacher network: a copy of the student's backbone and head, updated only by :meth:`LF2.ema_update`."""

    def __init__(self, backbone, heads):
        super().__init__()
        self.backbone = copy.deepcopy(backbone)
        self.heads = copy.deepcopy(heads)
        self.requires_grad_(False)


@META_ARCH_REGISTRY.register()
class LF2(nn.Module):
    """LF2 (Ding & Zhou, ICPR 2022): a student, its mean teacher and the Fusion Module in one module.

    Attributes (state-dict prefixes): ``backbone`` and ``heads`` (the student, an :class:`LF2Head`), ``teacher``
    (:class:`MeanTeacher` with ``teacher.backbone``/``teacher.heads``; ``requires_grad=False``, so fast-reid's
    optimizer leaves it out), ``fusion`` (:class:`FusionModule`, the K+1 BNs of the official ``Encoder.fuse_net``;
    it sits beside the networks as in the official code, not inside the head), ``pixel_mean``/``pixel_std``
    (0-255 scale).

    Contract with the trainer and the clustering hook:

    - Training forward ``model(batches)``: ``batches`` is a list of K+1 fast-reid batch dicts (batch j carries the
      level-j pseudo labels in ``"targets"``; the official code draws one batch per level) or one dict whose
      ``"targets"`` is [B, K+1] (all levels on one batch; a 1-d [B] tensor is used for every level). Each batch
      goes through the student, the teacher (no grad) and the Fusion Module. Returns fast-reid's loss dict, the
      paper's total loss ``L = α(L_cls + λ L_tri) + γ Σ_j L_tri^{Pj}``:
      ``loss_cls`` (label-smoothed CE on the global logits of batch 0, × ``MODEL.LOSSES.CE.SCALE`` = α),
      ``loss_triplet`` (triplet on g of batch 0, × ``MODEL.LOSSES.TRI.SCALE``), ``loss_part_triplet``
      (γ Σ_j triplet on f_j of batch j with level-j labels; K >= 1 only) and, when
      ``MODEL.LF2.FUSION.LOSS_WEIGHT`` > 0, ``loss_fusion_triplet`` (weight × Σ_{j=0..K} triplet on the fused
      feature φ_j with level-j labels). Logs ``cls_accuracy`` when an EventStorage is active.
    - Teacher BN statistics (``MODEL.LF2.TEACHER.BN_UPDATE``): ``"forward"`` (official) runs the teacher in train
      mode on every training batch so its BN running stats follow the data; ``"ema"`` keeps the teacher in eval
      mode and :meth:`ema_update` also averages its BN buffers. The Fusion Module's BNs always run in the model's
      mode, so their running stats come from the training batches, as in the official code.
    - Eval forward (``model.eval()``; ``model(batch)``): the teacher's concat(g, f_1..f_K), [B, (K+1)·C], not
      normalised unless ``MODEL.LF2.EVAL_NORMALIZE``; ``MODEL.LF2.EVAL_FEATURE`` "global" / "parts" keeps only g /
      only the parts.
    - :meth:`ema_update` after every optimizer step; :meth:`clustering_features` for the clustering hook;
      :meth:`reset_classifier` after clustering; :meth:`load_source_checkpoint` for source-stage weights.
    - Checkpoints: an LF2 checkpoint has ``teacher.*`` keys (load it with fast-reid's Checkpointer); one without
      them is a source-stage checkpoint (:func:`lf2_plugin.modeling.checkpoint.is_lf2_state_dict`).
    """

    # The global classifiers: :meth:`reset_classifier` sets them, sized by the clusters, before every epoch's first
    # step, so a checkpoint whose classifiers have another number of rows still resumes exactly.
    CLUSTER_SIZED_KEYS = ("heads.weight", "teacher.heads.weight")

    @configurable
    def __init__(
        self,
        *,
        backbone,
        heads,
        fusion,
        pixel_mean,
        pixel_std,
        ema_alpha=0.999,
        teacher_bn_update="forward",
        fusion_enabled=True,
        fusion_loss_weight=0.0,
        part_triplet_weight=0.5,
        eval_normalize=False,
        eval_feature="concat",
        source_bnneck_to_global_bn=False,
        loss_kwargs=None,
    ):
        super().__init__()
        if not isinstance(heads, LF2Head):
            raise TypeError(f"LF2 needs MODEL.HEADS.NAME: LF2Head, got {type(heads).__name__}")
        if teacher_bn_update not in BN_UPDATE_POLICIES:
            raise ValueError(
                f"MODEL.LF2.TEACHER.BN_UPDATE must be one of {BN_UPDATE_POLICIES}, got {teacher_bn_update!r}"
            )
        if fusion_loss_weight > 0 and not fusion_enabled:
            raise ValueError("MODEL.LF2.FUSION.LOSS_WEIGHT > 0 needs MODEL.LF2.FUSION.ENABLED: True")
        # checked here, not at the first evaluation hours into training
        if eval_feature not in EVAL_FEATURES or (eval_feature == "parts" and heads.num_parts == 0):
            raise ValueError(
                f"MODEL.LF2.EVAL_FEATURE must be one of {EVAL_FEATURES} ('parts' needs "
                f"MODEL.LF2.NUM_PARTS >= 1), got {eval_feature!r} with {heads.num_parts} parts"
            )
        if fusion.num_parts != heads.num_parts:
            raise ValueError(f"Fusion Module has {fusion.num_parts} parts, the head {heads.num_parts}")
        self.backbone = backbone
        self.heads = heads
        self.teacher = MeanTeacher(backbone, heads)
        self.fusion = fusion
        self.register_buffer("pixel_mean", torch.tensor(pixel_mean, dtype=torch.float32).view(1, -1, 1, 1), False)
        self.register_buffer("pixel_std", torch.tensor(pixel_std, dtype=torch.float32).view(1, -1, 1, 1), False)
        self.ema_alpha = ema_alpha
        self.teacher_bn_update = teacher_bn_update
        self.fusion_enabled = fusion_enabled
        self.fusion_loss_weight = fusion_loss_weight
        self.part_triplet_weight = part_triplet_weight
        self.eval_normalize = eval_normalize
        self.eval_feature = eval_feature
        self.source_bnneck_to_global_bn = source_bnneck_to_global_bn
        self.loss_kwargs = loss_kwargs or {
            "ce": {"eps": 0.1, "alpha": 0.2, "scale": 1.0},
            "tri": {"margin": 0.0, "norm_feat": False, "hard_mining": True, "scale": 1.0},
        }
        self.train(self.training)

    @classmethod
    def from_config(cls, cfg):
        lf2 = cfg.MODEL.LF2
        backbone = build_backbone(cfg)
        check_lf2_feature_map(backbone, cfg)
        return {
            "backbone": backbone,
            "heads": build_heads(cfg),
            "fusion": FusionModule(cfg.MODEL.BACKBONE.FEAT_DIM, lf2.NUM_PARTS, lf2.POOL, cfg.MODEL.HEADS.NORM),
            "pixel_mean": cfg.MODEL.PIXEL_MEAN,
            "pixel_std": cfg.MODEL.PIXEL_STD,
            "ema_alpha": lf2.TEACHER.EMA_ALPHA,
            "teacher_bn_update": lf2.TEACHER.BN_UPDATE,
            "fusion_enabled": lf2.FUSION.ENABLED,
            "fusion_loss_weight": lf2.FUSION.LOSS_WEIGHT,
            "part_triplet_weight": lf2.PART_TRIPLET_WEIGHT,
            "eval_normalize": lf2.EVAL_NORMALIZE,
            "eval_feature": lf2.EVAL_FEATURE,
            "source_bnneck_to_global_bn": lf2.SOURCE_BNNECK_TO_GLOBAL_BN,
            "loss_kwargs": {
                "ce": {
                    "eps": cfg.MODEL.LOSSES.CE.EPSILON,
                    "alpha": cfg.MODEL.LOSSES.CE.ALPHA,
                    "scale": cfg.MODEL.LOSSES.CE.SCALE,
                },
                "tri": {
                    "margin": cfg.MODEL.LOSSES.TRI.MARGIN,
                    "norm_feat": cfg.MODEL.LOSSES.TRI.NORM_FEAT,
                    "hard_mining": cfg.MODEL.LOSSES.TRI.HARD_MINING,
                    "scale": cfg.MODEL.LOSSES.TRI.SCALE,
                },
            },
        }

    @property
    def device(self):
        return self.pixel_mean.device

    @property
    def num_parts(self):
        return self.heads.num_parts

    def train(self, mode=True):
        super().train(mode)
        if self.teacher_bn_update == "ema":
            self.teacher.train(False)  # its BN statistics come from ema_update, never from batches
        return self

    def preprocess_image(self, batched_inputs):
        """Normalised copy of the batch's images on the model's device (the input is left untouched)."""
        return normalized_images(batched_inputs, self.pixel_mean, self.pixel_std)

    # ---------------------------------------------------------------------------------------------------------
    # forward
    # ---------------------------------------------------------------------------------------------------------
    def forward(self, batched_inputs):
        if not self.training:
            return self.inference(batched_inputs)
        loss_dict = {}
        for batch, level_targets in self._split_levels(batched_inputs):
            for name, value in self._level_losses(batch, level_targets).items():
                loss_dict[name] = loss_dict[name] + value if name in loss_dict else value
        return loss_dict

    def inference(self, batched_inputs):
        """The teacher's concat(g, f_1, ..., f_K) descriptor, [B, (K+1)·C] (``MODEL.LF2.EVAL_FEATURE``: or g, or
        the parts alone)."""
        images = self.preprocess_image(batched_inputs)
        teacher_outputs = self.teacher.heads(self.teacher.backbone(images), with_logits=False, with_attention=False)
        descriptor = self.teacher.heads.descriptor(teacher_outputs, self.eval_feature)
        return F.normalize(descriptor, dim=1) if self.eval_normalize else descriptor

    def _split_levels(self, batched_inputs):
        """[(batch, {level: targets})]: one entry per batch, each with the levels it is labelled for."""
        num_levels = self.num_parts + 1
        if isinstance(batched_inputs, (list, tuple)):
            if len(batched_inputs) != num_levels:
                raise ValueError(
                    f"LF2 with K={self.num_parts} stripes needs {num_levels} batches (one per level), "
                    f"got {len(batched_inputs)}"
                )
            return [
                (batch, {level: batch["targets"].to(self.device).view(-1)})
                for level, batch in enumerate(batched_inputs)
            ]
        targets = batched_inputs["targets"].to(self.device)
        if targets.dim() == 1:
            return [(batched_inputs, {level: targets for level in range(num_levels)})]
        if targets.dim() != 2 or targets.size(1) != num_levels:
            raise ValueError(
                f"targets must be [B] or [B, {num_levels}] for K={self.num_parts}, got {tuple(targets.shape)}"
            )
        return [(batched_inputs, {level: targets[:, level] for level in range(num_levels)})]

    def _level_losses(self, batch, level_targets):
        images = self.preprocess_image(batch)
        student = self.heads(self.backbone(images), with_logits=0 in level_targets, with_attention=self.fusion_enabled)
        with torch.no_grad():
            teacher_map = self.teacher.backbone(images)
            if self.teacher.training:
                # only to update the teacher head's BN running stats, as the official full teacher forward does
                self.teacher.heads(teacher_map, with_logits=False, with_attention=False)
        with torch.set_grad_enabled(self.fusion_loss_weight > 0):
            fused = self._fused_features(teacher_map, student.get("attended"))

        ce, tri = self.loss_kwargs["ce"], self.loss_kwargs["tri"]

        def triplet(features, targets):
            return batch_hard_triplet_loss(features, targets, tri["margin"], tri["norm_feat"], tri["hard_mining"])

        losses = {}
        if 0 in level_targets:
            _log_accuracy(student["logits"], level_targets[0])
            losses["loss_cls"] = (
                label_smooth_cross_entropy(student["logits"], level_targets[0], ce["eps"]) * ce["scale"]
            )
            losses["loss_triplet"] = triplet(student["global"], level_targets[0]) * tri["scale"]
        part_levels = [level for level in level_targets if level > 0]
        if part_levels:
            losses["loss_part_triplet"] = self.part_triplet_weight * sum(
                triplet(student["parts"][level - 1], level_targets[level]) for level in part_levels
            )
        if self.fusion_loss_weight > 0:
            losses["loss_fusion_triplet"] = self.fusion_loss_weight * sum(
                triplet(fused[level], targets) for level, targets in level_targets.items()
            )
        return losses

    def _fused_features(self, teacher_map, attended):
        """The K+1 clustering features: Fusion Module outputs, or for "w/o FM" the teacher's pooled stripes."""
        if self.fusion_enabled:
            return self.fusion(teacher_map, attended)
        pool_type = self.heads.pool_type
        fused = [self.fusion.bns[0](PooledMap(teacher_map).pooled(pool_type))]
        if self.num_parts:
            fused += [PooledMap(s).pooled(pool_type) for s in split_stripes(teacher_map, self.num_parts)]
        return fused

    # ---------------------------------------------------------------------------------------------------------
    # trainer / clustering-hook API
    # ---------------------------------------------------------------------------------------------------------
    @torch.no_grad()
    def clustering_features(self, batched_inputs):
        """K+1 tensors [B, C] for one view, in eval mode: φ_0 = BN_0(pool(T)), φ_j = BN_j(pool(T ⊙ Z_j)) (Eq. 5).

        With ``MODEL.LF2.FUSION.ENABLED: False`` level j is pool(stripe j of T) instead. Not normalised, not
        flip-averaged (the hook does both).
        """
        was_training = self.training
        self.eval()
        try:
            images = self.preprocess_image(batched_inputs)
            teacher_map = self.teacher.backbone(images)
            attended = None
            if self.fusion_enabled and self.num_parts:
                attended = self.heads(self.backbone(images), with_logits=False)["attended"]
            return self._fused_features(teacher_map, attended or [])
        finally:
            self.train(was_training)

    def ema_momentum(self, step):
        """m = min(1 - 1/(step+1), alpha): 0 at step 0, so the teacher starts as a copy of the student."""
        return min(1.0 - 1.0 / (step + 1), self.ema_alpha)

    @torch.no_grad()
    def ema_update(self, step):
        """θ_t ← m θ_t + (1 − m) θ_s over all parameters (and, for BN_UPDATE "ema", float buffers; integer
        buffers are copied). Returns m."""
        momentum = self.ema_momentum(step)
        student = {"backbone": self.backbone, "heads": self.heads}
        tensor_pairs = [("parameters", self.teacher.named_parameters(), "named_parameters")]
        if self.teacher_bn_update == "ema":
            tensor_pairs.append(("buffers", self.teacher.named_buffers(), "named_buffers"))
        for kind, teacher_tensors, accessor in tensor_pairs:
            student_tensors = {
                f"{prefix}.{name}": tensor
                for prefix, module in student.items()
                for name, tensor in getattr(module, accessor)()
            }
            for name, teacher_tensor in teacher_tensors:
                student_tensor = student_tensors[name]
                if teacher_tensor.shape != student_tensor.shape:
                    raise RuntimeError(
                        f"EMA: teacher {kind[:-1]} {name} {tuple(teacher_tensor.shape)} != student "
                        f"{tuple(student_tensor.shape)}"
                    )
                if teacher_tensor.is_floating_point():
                    teacher_tensor.mul_(momentum).add_(student_tensor, alpha=1.0 - momentum)
                else:
                    teacher_tensor.copy_(student_tensor)
        return momentum

    @torch.no_grad()
    def reset_classifier(self, centroids):
        """Student and teacher global classifiers ← ``centroids`` [k, C] (used as given; pass them L2-normalised).

        Both become new ``nn.Parameter`` objects of k rows: rebuild or patch the optimizer afterwards.
        """
        weight = self.heads.weight
        if centroids.dim() != 2 or centroids.size(1) != weight.size(1):
            raise ValueError(f"centroids must be [k, {weight.size(1)}], got {tuple(centroids.shape)}")
        centroids = centroids.detach().to(device=weight.device, dtype=weight.dtype)
        self.heads.weight = nn.Parameter(centroids.clone())
        self.teacher.heads.weight = nn.Parameter(centroids.clone(), requires_grad=False)

    def load_source_checkpoint(self, state_dict_or_path):
        """Fill student and teacher backbones from a source-stage checkpoint; see
        :func:`lf2_plugin.modeling.checkpoint.load_source_weights`."""
        from .checkpoint import load_source_weights

        return load_source_weights(self, state_dict_or_path)


@META_ARCH_REGISTRY.register()
class LF2SourceBaseline(Baseline):
    """fast-reid's Baseline (BNNeck EmbeddingHead) with the official source-stage losses.

    Same modules and checkpoint keys as ``Baseline``; the losses are the official ``CrossEntropyLabelSmooth``
    (smoothing ``eps/k``) and ``SoftTripletLoss(margin=0)`` (:mod:`lf2_plugin.modeling.losses`) whenever
    ``MODEL.LOSSES.NAME`` asks for cross-entropy / triplet, and the classifier starts from N(0, 0.001²) as the
    official ``resnet_source.py``'s. With ``MODEL.LF2.EVAL_NORMALIZE`` the eval feature
    (the BNNeck output) is L2-normalised per view, as the official source model's. (``lf2_plugin.compat`` makes
    Baseline normalise images out of place.)
    """

    @configurable
    def __init__(self, *, eval_normalize=False, **kwargs):
        super().__init__(**kwargs)
        self.eval_normalize = eval_normalize
        if hasattr(self.heads, "weight"):  # official classifier init N(0, 0.001^2); fast-reid's is 0.01
            nn.init.normal_(self.heads.weight, std=0.001)

    @classmethod
    def from_config(cls, cfg):
        return {**Baseline.from_config(cfg), "eval_normalize": cfg.MODEL.LF2.EVAL_NORMALIZE}

    def forward(self, batched_inputs):
        outputs = super().forward(batched_inputs)
        if not self.training and self.eval_normalize:
            return F.normalize(outputs, dim=1)
        return outputs

    def losses(self, outputs, gt_labels):
        names = self.loss_kwargs["loss_names"]
        unsupported = set(names) - {"CrossEntropyLoss", "TripletLoss"}
        if unsupported:
            raise ValueError(f"LF2SourceBaseline supports CrossEntropyLoss and TripletLoss, not {sorted(unsupported)}")
        _log_accuracy(outputs["pred_class_logits"], gt_labels)
        ce, tri = self.loss_kwargs["ce"], self.loss_kwargs["tri"]
        loss_dict = {}
        if "CrossEntropyLoss" in names:
            loss_dict["loss_cls"] = (
                label_smooth_cross_entropy(outputs["cls_outputs"], gt_labels, ce["eps"]) * ce["scale"]
            )
        if "TripletLoss" in names:
            loss_dict["loss_triplet"] = (
                batch_hard_triplet_loss(
                    outputs["features"], gt_labels, tri["margin"], tri["norm_feat"], tri["hard_mining"]
                )
                * tri["scale"]
            )
        return loss_dict
