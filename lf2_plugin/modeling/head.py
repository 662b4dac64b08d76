"""LF2Head: the global branch, the K stripe experts and the per-stripe channel attention (paper Fig. 2).

Registered in fast-reid's ``REID_HEADS_REGISTRY`` (``MODEL.HEADS.NAME: LF2Head``). Official counterpart:
``reid/models/resnet.py::ResNet`` of DJEddyking/LF2 (``BN_g``, ``classifier``, ``adativeFC_upper/low``,
``BN_u/BN_l``, ``ca_upper/ca_low``), generalised from K = 2 to any K >= 0.
"""

import torch
import torch.nn.functional as F
from torch import nn

from fastreid.config import configurable
from fastreid.modeling.heads import REID_HEADS_REGISTRY

from .fusion import POOL_TYPES, ChannelAttention, FeatureNorm, PooledMap

EXPERT_TYPES = ("concat", "sum")
EVAL_FEATURES = ("concat", "global", "parts")


def split_stripes(feature_map, num_parts):
    """K horizontal stripes of a map [B, C, H, W], top to bottom, covering every row.

    For H divisible by K this is the official ``x[:, :, H//K*s : H//K*(s+1), :]``; otherwise the first H % K stripes
    get one extra row (the official slicing would drop the last rows).
    """
    height = feature_map.size(2)
    if num_parts > height:
        raise ValueError(f"MODEL.LF2.NUM_PARTS={num_parts} stripes do not fit a feature map of height {height}")
    return list(torch.tensor_split(feature_map, num_parts, dim=2))


class Expert(nn.Module):
    """One local branch ("Expert-j"): ``f_j = BN_j(Linear_j(x))``.

    ``x`` is concat(GAP(S_j), GMP(S_j)) for ``"concat"`` (released code, 2C -> C) or GAP(S_j) + GMP(S_j) for
    ``"sum"`` (first upload, C -> C). Linear init: kaiming-normal fan-out, bias 0 (official).
    """

    def __init__(self, feat_dim, expert_type="concat", norm_type="BN"):
        super().__init__()
        if expert_type not in EXPERT_TYPES:
            raise ValueError(f"MODEL.LF2.EXPERT must be one of {EXPERT_TYPES}, got {expert_type!r}")
        self.expert_type = expert_type
        in_dim = 2 * feat_dim if expert_type == "concat" else feat_dim
        self.fc = nn.Linear(in_dim, feat_dim)
        self.bn = FeatureNorm(norm_type, feat_dim)
        nn.init.kaiming_normal_(self.fc.weight, mode="fan_out")
        nn.init.zeros_(self.fc.bias)

    def forward(self, stripe: PooledMap):
        if self.expert_type == "concat":
            inputs = torch.cat((stripe.avg, stripe.max), dim=1)
        else:
            inputs = stripe.avg + stripe.max
        return self.bn(self.fc(inputs))


@REID_HEADS_REGISTRY.register()
class LF2Head(nn.Module):
    """LF2 head on a backbone map M [B, C, H, W] (student and teacher have one each).

    - global: ``g = BN_g(pool(M))``, logits ``= g W^T`` (no bias; ``weight`` [k, C], init N(0, 0.001²));
    - stripes S_1..S_K (:func:`split_stripes`): ``f_j = Expert_j(S_j)``;
    - attention: ``a_j = ChannelAttention_j(GMP(S_j), GAP(S_j))``, ``Z_j = pool(S_j) ⊙ a_j`` (the Fusion Module's
      input; paper Eq. 5, official ``channel_embed_upper_1``).
    """

    @configurable
    def __init__(
        self,
        *,
        feat_dim,
        num_classes,
        num_parts=2,
        expert_type="concat",
        pool_type="avg+max",
        reduction=4,
        norm_type="BN",
    ):
        super().__init__()
        if pool_type not in POOL_TYPES:
            raise ValueError(f"MODEL.LF2.POOL must be one of {POOL_TYPES}, got {pool_type!r}")
        if num_parts < 0:
            raise ValueError(f"MODEL.LF2.NUM_PARTS must be >= 0, got {num_parts}")
        self.feat_dim = feat_dim
        self.num_parts = num_parts
        self.pool_type = pool_type
        self.bn_global = FeatureNorm(norm_type, feat_dim)
        # fast-reid's name for the classifier matrix (EmbeddingHead.weight), so HEADS_LR_FACTOR etc. apply
        self.weight = nn.Parameter(torch.empty(num_classes, feat_dim))
        nn.init.normal_(self.weight, std=0.001)
        self.experts = nn.ModuleList(Expert(feat_dim, expert_type, norm_type) for _ in range(num_parts))
        self.attentions = nn.ModuleList(ChannelAttention(feat_dim, reduction) for _ in range(num_parts))

    @classmethod
    def from_config(cls, cfg):
        return {
            "feat_dim": cfg.MODEL.BACKBONE.FEAT_DIM,
            "num_classes": cfg.MODEL.HEADS.NUM_CLASSES,
            "num_parts": cfg.MODEL.LF2.NUM_PARTS,
            "expert_type": cfg.MODEL.LF2.EXPERT,
            "pool_type": cfg.MODEL.LF2.POOL,
            "reduction": cfg.MODEL.LF2.FUSION.REDUCTION,
            "norm_type": cfg.MODEL.HEADS.NORM,
        }

    @property
    def num_classes(self):
        return self.weight.size(0)

    def forward(self, feature_map, with_logits=True, with_attention=True):
        """Head outputs as a dict.

        ``"global"`` g [B, C]; ``"parts"`` [f_1..f_K]; ``"logits"`` [B, k] if ``with_logits``; ``"attended"``
        [Z_1..Z_K] if ``with_attention``; ``"stripes"`` the :class:`PooledMap` of each stripe.
        """
        if feature_map.size(1) != self.feat_dim:
            raise ValueError(
                f"LF2Head expects {self.feat_dim} channels (MODEL.BACKBONE.FEAT_DIM), got {feature_map.size(1)}"
            )
        outputs = {"global": self.bn_global(PooledMap(feature_map).pooled(self.pool_type))}
        if with_logits:
            outputs["logits"] = F.linear(outputs["global"], self.weight)
        stripes = [PooledMap(s) for s in split_stripes(feature_map, self.num_parts)] if self.num_parts else []
        outputs["stripes"] = stripes
        outputs["parts"] = [expert(stripe) for expert, stripe in zip(self.experts, stripes)]
        if with_attention:
            outputs["attended"] = [
                stripe.pooled(self.pool_type) * attention(stripe.max, stripe.avg)
                for attention, stripe in zip(self.attentions, stripes)
            ]
        return outputs

    def descriptor(self, outputs, feature="concat"):
        """The retrieval descriptor of :meth:`forward`'s outputs: ``feature`` "concat" = [g, f_1, ..., f_K]
        [B, (K+1)·C] (paper), "global" = g [B, C], "parts" = [f_1, ..., f_K] [B, K·C]."""
        if feature not in EVAL_FEATURES:
            raise ValueError(f"MODEL.LF2.EVAL_FEATURE must be one of {EVAL_FEATURES}, got {feature!r}")
        if feature == "parts" and not outputs["parts"]:
            raise ValueError("MODEL.LF2.EVAL_FEATURE 'parts' needs MODEL.LF2.NUM_PARTS >= 1")
        selected = {
            "concat": [outputs["global"]] + outputs["parts"],
            "global": [outputs["global"]],
            "parts": outputs["parts"],
        }[feature]
        return torch.cat(selected, dim=1)
