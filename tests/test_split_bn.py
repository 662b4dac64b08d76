"""MODEL.BN_SPLITS reproduces DataParallel's per-replica BN: each chunk normalised alone, stats from chunk 0."""

import copy

import torch
from torch import nn

from lf2_plugin.modeling.split_bn import convert_split_batchnorm


def test_split_bn_equals_separate_bn_per_chunk():
    torch.manual_seed(0)
    bn = nn.BatchNorm2d(3)
    bn.weight.data.uniform_(0.5, 1.5)
    reference = copy.deepcopy(bn)
    split = convert_split_batchnorm(copy.deepcopy(bn), 2).train()
    x = torch.randn(8, 3, 4, 2) * 3 + 1
    out = split(x)
    first = reference.train()(x[:4])
    second = copy.deepcopy(bn).train()(x[4:])
    assert torch.allclose(out, torch.cat([first, second]), atol=1e-6)
    assert torch.allclose(split.running_mean, reference.running_mean)  # replica 0's statistics only
    assert torch.allclose(split.eval()(x), reference.eval()(x), atol=1e-6)  # eval: plain BN
    assert split.state_dict().keys() == bn.state_dict().keys()


def test_conversion_reaches_every_bn_and_keeps_parameters():
    model = nn.Sequential(nn.Conv2d(3, 4, 1), nn.BatchNorm2d(4), nn.Flatten(), nn.BatchNorm1d(4 * 4))
    weight = model[1].weight
    convert_split_batchnorm(model, 4)
    assert all(getattr(m, "num_splits", 1) == 4 for m in model if isinstance(m, nn.modules.batchnorm._BatchNorm))
    assert model[1].weight is weight
    assert model(torch.randn(8, 3, 2, 2)).shape == (8, 16)
