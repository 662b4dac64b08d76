"""Split BatchNorm: per-replica BN statistics of a multi-GPU DataParallel run, reproduced on one device.

The official LF2 trains with ``nn.DataParallel`` on 2 GPUs: every BN layer normalises each GPU's 32 images with
their own statistics, and only GPU 0's running statistics survive (DataParallel re-broadcasts device 0's buffers).
Single-GPU runs of these methods lose several mAP points because BN sees 64 images at once. ``MODEL.BN_SPLITS = s``
splits every training batch into ``s`` chunks for every BN layer, normalises each chunk with its own statistics and
updates the running statistics from the first chunk only, which is exactly that behaviour.
"""

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["SplitBatchNormMixin", "convert_split_batchnorm"]


class SplitBatchNormMixin:
    """Mixed into an existing BatchNorm class (``convert_split_batchnorm``); weights and buffers are unchanged."""

    num_splits = 1

    def forward(self, x):
        if not self.training or self.num_splits == 1 or x.size(0) % self.num_splits:
            return super().forward(x)
        self.num_batches_tracked += 1
        momentum = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
        chunks = x.chunk(self.num_splits)
        return torch.cat(
            [
                F.batch_norm(
                    chunk,
                    self.running_mean if i == 0 else None,
                    self.running_var if i == 0 else None,
                    self.weight,
                    self.bias,
                    True,
                    momentum,
                    self.eps,
                )
                for i, chunk in enumerate(chunks)
            ]
        )


def convert_split_batchnorm(module, num_splits):
    """Make every BatchNorm1d/2d in ``module`` a split BN with ``num_splits`` chunks (in place); returns module."""
    if num_splits <= 1:
        return module
    for child in module.modules():
        if isinstance(child, nn.modules.batchnorm._BatchNorm) and not isinstance(child, SplitBatchNormMixin):
            cls = type(child)
            child.__class__ = type(f"Split{cls.__name__}", (SplitBatchNormMixin, cls), {})
            child.num_splits = num_splits
    return module
