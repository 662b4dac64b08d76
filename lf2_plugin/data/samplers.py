"""The official LF2 P x K sampler, infinite and sharded as fast-reid's samplers are.

The official code (and MMT / SpCL before it) draws its batches with open-reid's ``RandomMultipleGallerySampler``
(``reid/utils/data/sampler.py``). fast-reid's ``BalancedIdentitySampler`` follows the same rule for identities
of two or more images but differs for an identity of one image: fast-reid repeats it K times, the official
sampler emits it once, so every later identity of the pass starts K - 1 positions earlier and batches no longer
hold whole identities. With k-means pseudo labels one-image clusters are common, hence this port.
"""

import random
from collections import defaultdict

import numpy as np
import torch
from torch.utils.data.sampler import Sampler

from fastreid.utils import comm

__all__ = ["RandomMultipleGallerySampler"]


class RandomMultipleGallerySampler(Sampler):
    """Official ``RandomMultipleGallerySampler`` passes, cut into batches the way the official loader cuts them.

    One pass visits every identity once, in random order: an anchor image drawn uniformly, then K - 1 companions
    drawn among the identity's images from *other* cameras (without replacement if there are at least K of them,
    else with), or, when all its images share the anchor's camera, among its other images; an identity of one
    image contributes that image alone. The pass is cut into batches of ``mini_batch_size x world size`` and its
    incomplete last batch dropped (the official ``DataLoader(drop_last=True)`` restarted by ``IterLoader``).
    Each rank yields its contiguous slice of every batch, as ``DataParallel`` splits a batch across GPUs.

    The random draws are the official ones made on private generators seeded with ``seed`` (torch ``randperm``
    for the identity order, python ``random.choice`` for the anchor, numpy ``RandomState.choice`` for the
    companions): with the official global RNGs seeded alike, a pass is the official pass index for index.
    Identities keep the order of their first image in ``data_source``, as the official dictionary does.
    """

    def __init__(self, data_source, mini_batch_size, num_instances, seed=None):
        self.data_source = data_source
        self.num_instances = int(num_instances)
        self.mini_batch_size = int(mini_batch_size)
        self._rank, self._world_size = comm.get_rank(), comm.get_world_size()
        self.batch_size = self.mini_batch_size * self._world_size
        self.pid_cams, self.pid_indices = defaultdict(list), defaultdict(list)
        for index, item in enumerate(data_source):
            self.pid_cams[item[1]].append(item[2])
            self.pid_indices[item[1]].append(index)
        self.pids = list(self.pid_indices)
        per_pass = sum(1 if len(v) == 1 else self.num_instances for v in self.pid_indices.values())
        if per_pass < self.batch_size:
            raise ValueError(
                f"RandomMultipleGallerySampler: one pass over {len(self.pids)} identities gives "
                f"{per_pass} images, fewer than one batch of {self.batch_size}"
            )
        self._seed = int(comm.shared_random_seed() if seed is None else seed)

    def __iter__(self):
        start = self._rank * self.mini_batch_size
        for batch in self._batches():
            yield from batch[start : start + self.mini_batch_size]

    def _batches(self):
        generators = (
            torch.Generator().manual_seed(self._seed),
            random.Random(self._seed),
            np.random.RandomState(self._seed % 2**32),
        )
        while True:
            stream = self.one_pass(*generators)
            for start in range(0, len(stream) - self.batch_size + 1, self.batch_size):
                yield stream[start : start + self.batch_size]

    def one_pass(self, torch_generator, python_random, numpy_random):
        """The indices of one official pass over every identity, drawn from the three generators."""
        stream = []
        for position in torch.randperm(len(self.pids), generator=torch_generator).tolist():
            pid = self.pids[position]
            indices, cams = self.pid_indices[pid], self.pid_cams[pid]
            anchor = python_random.choice(indices)
            stream.append(anchor)
            anchor_cam = self.data_source[anchor][2]
            candidates = [j for j, cam in enumerate(cams) if cam != anchor_cam]
            if not candidates:  # every image in the anchor's camera: its other images
                candidates = [j for j, index in enumerate(indices) if index != anchor]
            if not candidates:  # one image: the identity contributes the anchor alone
                continue
            chosen = numpy_random.choice(
                candidates, size=self.num_instances - 1, replace=len(candidates) < self.num_instances
            )
            stream.extend(indices[j] for j in chosen)
        return stream
