"""LF2's Fusion Module (paper Sec. III-B, Eq. 5, Fig. 3) and the building blocks it shares with the head.

The Fusion Module combines the *teacher's* global feature map ``T`` with the *student's* attended stripe descriptors
``Z_j`` (Eq. 5): ``phi_0 = BN_0(pool(T))`` and ``phi_j = BN_j(pool(T ⊙ Z_j))``. ``Z_j`` is one non-negative value per
channel, so ``pool(T ⊙ Z_j) = Z_j ⊙ pool(T)`` and the module works on pooled vectors (exact; see
docs/MODEL.md). Negative ``Z_j`` (a backbone whose map is not post-ReLU) is handled exactly too:
``max(T·z) = z·min(T)`` when ``z < 0``.
"""

import torch
import torch.nn.functional as F
from torch import nn

from fastreid.layers import get_norm

POOL_TYPES = ("avg+max", "avg", "max")


class PooledMap:
    """Per-channel average, max and min of a feature map [B, C, H, W], computed once and reused."""

    def __init__(self, feature_map):
        flat = feature_map.flatten(2)
        self.avg = flat.mean(dim=2)
        self.max = flat.amax(dim=2)
        self._flat = flat

    @property
    def min(self):
        return self._flat.amin(dim=2)

    def pooled(self, pool_type):
        """``pool(map)`` as a [B, C] vector for a pool type of :data:`POOL_TYPES`."""
        if pool_type == "avg+max":
            return self.avg + self.max
        if pool_type == "avg":
            return self.avg
        if pool_type == "max":
            return self.max
        raise ValueError(f"MODEL.LF2.POOL must be one of {POOL_TYPES}, got {pool_type!r}")

    def pooled_scaled(self, scale, pool_type):
        """``pool(map ⊙ scale)`` for a per-channel ``scale`` [B, C], without forming the scaled map."""
        avg = scale * self.avg
        if pool_type == "avg":
            return avg
        # max over space of z·t is z·max(t) for z >= 0 and z·min(t) for z < 0
        max_ = torch.where(scale >= 0, scale * self.max, scale * self.min)
        return max_ if pool_type == "max" else avg + max_


class FeatureNorm(nn.Module):
    """A fast-reid norm layer (``MODEL.HEADS.NORM``) on [B, C] vectors: weight 1, bias 0 and frozen.

    This is how the official code initialises every 1-d BN of LF2 (BN_g, BN_u, BN_l, the Fusion Module's bn_1..3).
    """

    def __init__(self, norm_type, dim):
        super().__init__()
        self.norm = get_norm(norm_type, dim, bias_freeze=True)

    def forward(self, vectors):
        return self.norm(vectors[..., None, None])[..., 0, 0]


class ChannelAttention(nn.Module):
    """CBAM channel attention on one stripe: ``a = sigmoid(MLP(GMP(S)) + MLP(GAP(S)))``, MLP = C -> C/r -> C.

    The MLP is shared between the max- and avg-pooled inputs, has no biases and a ReLU in between (official
    ``ChannelAttention(2048, reduction=4)``; its 1×1 convolutions are the Linear layers here).
    """

    def __init__(self, channels, reduction=4):
        super().__init__()
        if channels // reduction < 1:
            raise ValueError(f"channel attention: {channels} channels cannot be reduced by {reduction}")
        self.fc1 = nn.Linear(channels, channels // reduction, bias=False)
        self.fc2 = nn.Linear(channels // reduction, channels, bias=False)

    def mlp(self, vectors):
        return self.fc2(F.relu(self.fc1(vectors)))

    def forward(self, max_pooled, avg_pooled):
        """Attention weights [B, C] in (0, 1) from the stripe's max- and avg-pooled vectors [B, C]."""
        return torch.sigmoid(self.mlp(max_pooled) + self.mlp(avg_pooled))


class FusionModule(nn.Module):
    """Fusion Module, paper Eq. 5: ``phi_0 = BN_0(pool(T))``, ``phi_j = BN_j(pool(T ⊙ Z_j))`` for j = 1..K.

    ``T`` is the teacher's backbone map, ``Z_j`` the student's attended descriptor of stripe j
    (:meth:`LF2Head.forward` ``"attended"``). It has K+1 norm layers (official ``Fuse.bn_1..bn_3`` for K = 2) and
    no other parameters. Its outputs are the clustering features of the K+1 levels.
    """

    def __init__(self, feat_dim, num_parts, pool_type="avg+max", norm_type="BN"):
        super().__init__()
        if pool_type not in POOL_TYPES:
            raise ValueError(f"MODEL.LF2.POOL must be one of {POOL_TYPES}, got {pool_type!r}")
        self.pool_type = pool_type
        self.bns = nn.ModuleList(FeatureNorm(norm_type, feat_dim) for _ in range(num_parts + 1))

    @property
    def num_parts(self):
        return len(self.bns) - 1

    def forward(self, teacher_map, attended):
        """K+1 fused features [B, C]: level 0 from ``teacher_map`` alone, level j from ``attended[j-1]``."""
        if len(attended) != self.num_parts:
            raise ValueError(f"Fusion Module: expected {self.num_parts} attended descriptors, got {len(attended)}")
        pooled = PooledMap(teacher_map)
        fused = [pooled.pooled(self.pool_type)]
        fused += [pooled.pooled_scaled(z, self.pool_type) for z in attended]
        return [bn(vectors) for bn, vectors in zip(self.bns, fused)]
