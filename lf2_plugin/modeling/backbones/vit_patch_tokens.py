"""fast-reid's Vision Transformer with its patch tokens as the feature map, so LF2 can cut stripes over patch rows.

fast-reid's ``build_vit_backbone`` returns the class token as a [B, C, 1, 1] map: a global vector, nothing to cut
into stripes. ``build_vit_patch_backbone`` is the same network (same parameters and state-dict keys, the same
``DEPTH``/``STRIDE_SIZE``/``DROP_*``/``PRETRAIN_PATH`` handling, since fast-reid's builder makes it) whose output is
the final-norm patch tokens reshaped into their ``num_y`` × ``num_x`` grid, [B, C, num_y, num_x], row-major as the
patch embedding flattens them. LF2's K stripes are then groups of patch rows.

The global feature is LF2's ``g = BN_g(pool(M))`` over all patch tokens, not the class token. Eq. 5 pools the
teacher's *map*: ``phi_0 = BN_0(pool(T))`` and ``phi_j = BN_j(pool(T ⊙ Z_j))``; with g taken from the class token, the
level-0 pseudo labels would come from a feature (pooled patches) that the global branch never trains, and the
stripes would live in another space than g. The class token still takes part in every attention layer; its final
state is simply not output. A source model trained with ``build_vit_backbone`` (class-token head) loads into this
backbone unchanged; its BNNeck does not carry over to ``BN_g`` (other statistics).

Camera embeddings (SIE): fast-reid's builder always makes the ViT with ``camera=0`` and its Baseline passes no camera
ids, so ``MODEL.BACKBONE.SIE_COE`` has no effect there; this backbone keeps that behaviour.
"""

import torch

from fastreid.modeling.backbones import BACKBONE_REGISTRY
from fastreid.modeling.backbones.vision_transformer import VisionTransformer, build_vit_backbone


class PatchTokenViT(VisionTransformer):
    """:class:`VisionTransformer` whose forward returns the patch-token grid [B, C, num_y, num_x]."""

    def tokens(self, images, camera_id=None):
        """All final-norm tokens [B, 1 + num_y·num_x, C], the class token first (fast-reid's forward, unpooled)."""
        patches = self.patch_embed(images)
        tokens = torch.cat((self.cls_token.expand(patches.size(0), -1, -1), patches), dim=1)
        if self.cam_num > 0:
            tokens = tokens + self.pos_embed + self.sie_xishu * self.sie_embed[camera_id]
        else:
            tokens = tokens + self.pos_embed
        tokens = self.pos_drop(tokens)
        for block in self.blocks:
            tokens = block(tokens)
        return self.norm(tokens)

    def forward(self, images, camera_id=None):
        patches = self.tokens(images, camera_id)[:, 1:]
        batch, _, channels = patches.shape
        return patches.transpose(1, 2).reshape(batch, channels, self.patch_embed.num_y, self.patch_embed.num_x)


@BACKBONE_REGISTRY.register()
def build_vit_patch_backbone(cfg):
    """fast-reid's ``build_vit_backbone(cfg)`` re-classed as :class:`PatchTokenViT` (no new state; only the forward
    differs, the way ``torch.nn.utils.parametrize`` re-classes a module)."""
    model = build_vit_backbone(cfg)
    model.__class__ = PatchTokenViT
    return model
