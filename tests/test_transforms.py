"""LF2 adaptation transforms: INPUT.REA.STYLE picks the official random-erasing boxes or torchvision's."""

import os
import random

import pytest
import torch
import torchvision.transforms as T
from conftest import ROOT


def lf2_cfg(*opts):
    from lf2_plugin.engine import build_config

    return build_config(os.path.join(ROOT, "configs", "Base-LF2.yml"), list(opts))


def erasing(transforms):
    return [t for t in transforms.transforms if "Erasing" in type(t).__name__]


def test_style_selects_the_random_erasing_transform():
    from lf2_plugin.data.transforms import RandomErasingBox, build_train_transforms

    official = erasing(build_train_transforms(lf2_cfg()))
    assert len(official) == 1 and isinstance(official[0], RandomErasingBox)
    assert official[0].p == 0.5 and official[0].value == (151.9966, 142.3267, 126.8243)
    plain = erasing(build_train_transforms(lf2_cfg("INPUT.REA.STYLE", "torchvision")))
    assert len(plain) == 1 and isinstance(plain[0], T.RandomErasing)
    with pytest.raises(ValueError, match="INPUT.REA.STYLE"):
        build_train_transforms(lf2_cfg("INPUT.REA.STYLE", "cutout"))


def box_statistics(transform, draws=600, size=(128, 64)):
    areas, tall = [], 0
    for i in range(draws):
        random.seed(i)
        torch.manual_seed(i)
        mask = transform(torch.zeros(3, *size))[0] != 0
        rows, cols = mask.any(1).sum().item(), mask.any(0).sum().item()
        areas.append(mask.float().mean().item())
        tall += rows > cols
    return sum(areas) / draws, tall / draws


def test_official_boxes_are_larger_and_mostly_tall():
    """Area U(0.02, 0.4) and a uniform aspect ratio in [0.3, 3.33]: mean area ~0.204 of the image, ~81% of the
    boxes taller than wide (torchvision's: ~0.164 and ~56%)."""
    from lf2_plugin.data.transforms import RandomErasingBox

    area, tall = box_statistics(RandomErasingBox(p=1.0, value=(1.0, 2.0, 3.0)))
    assert 0.19 < area < 0.22 and tall > 0.75, (area, tall)
    area_tv, tall_tv = box_statistics(T.RandomErasing(p=1.0, value=(1.0, 2.0, 3.0)))
    assert area_tv < 0.18 and tall_tv < 0.65, (area_tv, tall_tv)
    image = RandomErasingBox(p=1.0, value=(1.0, 2.0, 3.0))(torch.zeros(3, 64, 32))
    assert {tuple(image[:, r, c].tolist()) for r, c in (image[0] != 0).nonzero().tolist()} == {(1.0, 2.0, 3.0)}
    untouched = torch.zeros(3, 64, 32)
    assert torch.equal(RandomErasingBox(p=0.0)(untouched.clone()), untouched)
