"""The official RandomMultipleGallerySampler port: its pass rule, batch cutting, rank slices and seeding.

Index-for-index equality with the official sampler is tests/test_official_parity.py's sampler case.
"""

import itertools
from collections import Counter

import pytest

from lf2_plugin.data import samplers
from lf2_plugin.data.samplers import RandomMultipleGallerySampler


def items():
    """Identity 0: 6 images over 3 cameras; 1: 5 images in camera 0; 2: one image; 3..12: 4 images, 2 cameras."""
    data = [(f"a{i}", 0, i % 3) for i in range(6)] + [(f"b{i}", 1, 0) for i in range(5)] + [("c", 2, 1)]
    data += [(f"d{p}_{i}", p, i % 2) for p in range(3, 13) for i in range(4)]
    return data


def take(sampler, n):
    return list(itertools.islice(iter(sampler), n))


def test_a_pass_follows_the_official_rule():
    data = items()
    sampler = RandomMultipleGallerySampler(data, 16, 4, seed=3)
    stream = sampler.one_pass(*sampler_generators(3))
    assert len(stream) == 12 * 4 + 1  # the one-image identity contributes its image once
    groups, position = [], 0
    while position < len(stream):  # a group = an anchor and its companions, all of one identity
        pid = data[stream[position]][1]
        size = 1 if pid == 2 else 4
        groups.append(stream[position : position + size])
        position += size
    assert sorted(data[g[0]][1] for g in groups) == list(range(13))
    for group in groups:
        assert len({data[i][1] for i in group}) == 1
        anchor_cam, pid = data[group[0]][2], data[group[0]][1]
        if pid == 1:  # one camera: companions are its other images
            assert group[0] not in group[1:]
        elif pid != 2:  # companions from the other cameras only
            assert all(data[i][2] != anchor_cam for i in group[1:])


def sampler_generators(seed):
    import random

    import numpy as np
    import torch

    return torch.Generator().manual_seed(seed), random.Random(seed), np.random.RandomState(seed)


def test_passes_are_cut_into_full_batches_and_the_remainder_dropped():
    data = items()
    sampler = RandomMultipleGallerySampler(data, 16, 4, seed=5)
    generators = sampler_generators(5)
    passes = [sampler.one_pass(*generators) for _ in range(3)]
    expected = list(itertools.chain.from_iterable(p[: len(p) // 16 * 16] for p in passes))
    assert len(expected) == 3 * 48
    assert take(sampler, len(expected)) == expected


def test_ranks_take_contiguous_slices_of_the_same_batches(monkeypatch):
    data = items()
    whole = take(RandomMultipleGallerySampler(data, 16, 4, seed=7), 96)
    monkeypatch.setattr(samplers.comm, "get_world_size", lambda: 2)
    shards = []
    for rank in (0, 1):
        monkeypatch.setattr(samplers.comm, "get_rank", lambda rank=rank: rank)
        shards.append(take(RandomMultipleGallerySampler(data, 8, 4, seed=7), 48))
    rebuilt = list(itertools.chain.from_iterable(shards[0][i : i + 8] + shards[1][i : i + 8] for i in range(0, 48, 8)))
    assert rebuilt == whole


def test_the_seed_decides_the_order():
    data = items()
    first = take(RandomMultipleGallerySampler(data, 16, 4, seed=1), 64)
    assert first == take(RandomMultipleGallerySampler(data, 16, 4, seed=1), 64)
    assert first != take(RandomMultipleGallerySampler(data, 16, 4, seed=2), 64)
    assert Counter(data[i][1] for i in first)[2] <= 2  # the one-image identity: at most once per pass


def test_too_few_images_for_a_batch_is_an_error():
    with pytest.raises(ValueError, match="fewer than one batch of 64"):
        RandomMultipleGallerySampler(items(), 64, 4, seed=0)


def test_pseudo_label_loaders_use_it_from_the_config(tmp_path):
    """Base-LF2.yml names the official sampler; the LF2 loaders build it and yield full batches."""
    import os

    from conftest import ROOT
    from PIL import Image

    from lf2_plugin.data.pseudo_labels import build_pseudo_label_loaders
    from lf2_plugin.engine import build_config

    cfg = build_config(
        os.path.join(ROOT, "configs", "Base-LF2.yml"),
        ["SOLVER.IMS_PER_BATCH", 16, "DATALOADER.NUM_WORKERS", 0, "INPUT.SIZE_TRAIN", [32, 16]],
    )
    assert cfg.DATALOADER.SAMPLER_TRAIN == "RandomMultipleGallerySampler"
    data = items()
    for path, _, _ in data:
        Image.new("RGB", (16, 32), (10, 20, 30)).save(tmp_path / f"{path}.jpg")
    data = [(str(tmp_path / f"{path}.jpg"), pid, cam) for path, pid, cam in data]
    (loader,) = build_pseudo_label_loaders(cfg, data, [[pid for _, pid, _ in data]])
    assert isinstance(loader.batch_sampler.sampler, RandomMultipleGallerySampler)
    batch = next(iter(loader))
    assert batch["images"].shape[0] == 16


def test_source_trainer_builds_it_for_the_source_stage(tiny_market_root, monkeypatch):
    """fast-reid's build_reid_train_loader knows only its own sampler names: SourceTrainer builds the official
    one over fast-reid's train set (Base-LF2-source.yml names it)."""
    import os

    from conftest import ROOT

    from lf2_plugin.engine import build_config
    from lf2_plugin.engine.source import SourceTrainer

    from fastreid.data import build as fastreid_build

    monkeypatch.setattr(fastreid_build, "_root", tiny_market_root)
    cfg = build_config(
        os.path.join(ROOT, "configs", "Base-LF2-source.yml"),
        [
            "DATASETS.NAMES",
            ("Market1501",),
            "SOLVER.IMS_PER_BATCH",
            16,
            "DATALOADER.NUM_WORKERS",
            0,
            "INPUT.SIZE_TRAIN",
            [32, 16],
        ],
    )
    loader = SourceTrainer.build_train_loader(cfg)
    sampler = loader.batch_sampler.sampler
    assert isinstance(sampler, RandomMultipleGallerySampler) and len(sampler.pids) == 12  # the train half
    batch = next(iter(loader))
    assert batch["images"].shape[0] == 16 and len(set(batch["targets"].tolist())) == 4
