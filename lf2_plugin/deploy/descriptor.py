"""A trained model as one function from images to retrieval descriptors: what evaluation ranks with.

fast-reid's evaluation computes ``(model(x) + model(flip(x))) / 2`` per image (``TEST.FLIP.ENABLED``) and the
evaluator L2-normalises it (``TEST.METRIC: cosine``). :class:`DescriptorModel` is exactly that, as one module, so
that the exported graphs, ``tools/embed.py`` and the evaluator give the same vector for the same image.
"""

import logging

import torch
import torch.nn.functional as F
from torch import nn

from ..modeling.checkpoint import (
    IncompleteCheckpointError,
    checkpoint_state_dict,
    describe_config_model,
    describe_saved_model,
    describe_unfit,
    load_checkpoint_file,
    unfit_tensors,
)

__all__ = [
    "DescriptorModel",
    "descriptor_layout",
    "inference_state_keys",
    "load_inference_model",
    "IncompleteCheckpointError",
]

logger = logging.getLogger(__name__)


class DescriptorModel(nn.Module):
    """images [B, 3, H, W] (RGB, 0-255 floats, resized to ``INPUT.SIZE_TEST``) → L2-normalised descriptors [B, D].

    ``model`` is any fast-reid meta-architecture whose eval forward takes an image tensor and normalises the
    pixels itself (LF2: the teacher's concat(g, f_1..f_K), ``MODEL.LF2.EVAL_FEATURE`` respected; Baseline: the
    BNNeck feature). ``flip`` averages the image's and its mirror's outputs before the normalisation, as
    fast-reid's evaluation with ``TEST.FLIP.ENABLED``.
    """

    def __init__(self, model, flip=True):
        super().__init__()
        self.model = model
        self.flip = flip
        self.eval()

    def train(self, mode=True):
        """Always eval mode: the descriptor is the eval forward's (BN running statistics, no dropout)."""
        return super().train(False)

    def forward(self, images):
        descriptors = self.model(images)
        if self.flip:
            descriptors = (descriptors + self.model(images.flip(dims=[3]))) / 2
        return F.normalize(descriptors, dim=1)


def descriptor_layout(model, dim):
    """Which slice of a ``dim``-wide descriptor is what: ``[{"name", "start", "stop"}]`` ("global", "part1" =
    the top stripe, ..., "partK" = the bottom one). Non-LF2 models: one "global" slice."""
    heads = getattr(model, "teacher", model).heads
    eval_feature = getattr(model, "eval_feature", None)
    if eval_feature is None:
        return [{"name": "global", "start": 0, "stop": dim}]
    names = {
        "concat": ["global"] + [f"part{j}" for j in range(1, heads.num_parts + 1)],
        "global": ["global"],
        "parts": [f"part{j}" for j in range(1, heads.num_parts + 1)],
    }[eval_feature]
    width = heads.feat_dim
    if width * len(names) != dim:
        raise ValueError(f"descriptor of {dim} values does not fit {len(names)} slices of {width}")
    return [{"name": name, "start": i * width, "stop": (i + 1) * width} for i, name in enumerate(names)]


def inference_state_keys(model, example):
    """The state-dict keys the eval forward of ``model`` on ``example`` reads.

    Parameters: those the output has a gradient for (a classifier the eval path skips is not among them, nor is
    LF2's student). Buffers: the persistent ones of every module that ran.
    """
    ran = set()
    handles = [module.register_forward_hook(lambda m, i, o: ran.add(m)) for module in model.modules()]
    saved_flags = {p: p.requires_grad for p in model.parameters()}
    try:
        model.eval()
        for param in model.parameters():
            param.requires_grad_(True)
            param.grad = None
        with torch.enable_grad():
            model(example).sum().backward()
        keys = {name for name, param in model.named_parameters() if param.grad is not None}
        for module_name, module in model.named_modules():
            if module in ran:
                prefix = f"{module_name}." if module_name else ""
                keys.update(
                    prefix + name
                    for name, _ in module.named_buffers(recurse=False)
                    if name not in module._non_persistent_buffers_set
                )
    finally:
        for handle in handles:
            handle.remove()
        for param, flag in saved_flags.items():
            param.requires_grad_(flag)
            param.grad = None
    return keys


def load_inference_model(cfg, weights=None):
    """Build ``cfg``'s model (as ``tools/train_net.py --eval-only`` does) and load ``weights`` (default
    ``MODEL.WEIGHTS``) into it, refusing a checkpoint that leaves any tensor of the eval path unset.

    fast-reid's Checkpointer only logs missing or mis-shaped keys and goes on with random values; a descriptor
    from such a model is worse than an error. Returns the model in eval mode on ``MODEL.DEVICE``.
    """
    from ..engine import trainer_class_for
    from ..engine.checkpoint import AtomicCheckpointer

    weights = weights or cfg.MODEL.WEIGHTS
    if not weights:
        raise FileNotFoundError("no weights: give MODEL.WEIGHTS (a checkpoint of this config's model)")
    cfg = cfg.clone()
    cfg.defrost()
    cfg.MODEL.BACKBONE.PRETRAIN = False
    model = trainer_class_for(cfg).build_model(cfg).eval()
    checkpoint = load_checkpoint_file(weights)
    stored = checkpoint_state_dict(checkpoint)
    example = torch.zeros(1, 3, *cfg.INPUT.SIZE_TEST, device=model.device)
    expected = model.state_dict()
    needed = inference_state_keys(model, example)
    missing, misfit = unfit_tensors(stored, expected, needed)
    if missing or misfit:
        raise IncompleteCheckpointError(
            f"{weights} does not cover this model's eval path: {len(missing)} of {len(needed)} tensors missing, "
            f"{len(misfit)} of another shape ({describe_unfit(stored, expected, missing, misfit)}). It was saved "
            f"from {describe_saved_model(checkpoint)}; the config builds {describe_config_model(cfg)}: use the "
            "config the checkpoint was trained with."
        )
    AtomicCheckpointer(model, "").load(weights)
    return model.eval()
