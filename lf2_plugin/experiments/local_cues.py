"""``tools/analyze_local_cues.py``: does a checkpoint confuse local-cue group-mates, in its rank-1 matches on the
test sets and in the pseudo labels it saved? The counting is :mod:`lf2_plugin.data.synthetic.local_cues`."""

import numpy as np
import torch

import fastreid.data.build as data_build
from fastreid.data.datasets import DATASET_REGISTRY
from fastreid.evaluation.evaluator import DatasetEvaluator, inference_on_dataset

from ..data.synthetic.local_cues import local_cue_groups, pair_co_clustering, rank1_confusions, target_train_groups
from ..engine import trainer_class_for
from ..engine.checkpoint import AtomicCheckpointer
from ..engine.trainer import LF2Trainer
from ..modeling.checkpoint import load_checkpoint_file

__all__ = ["FeatureCollector", "synthetic_dataset", "pseudo_label_pairs", "analyze", "local_cue_report"]


class FeatureCollector(DatasetEvaluator):
    """Keeps the features, pids and camids fast-reid's evaluator would rank."""

    def reset(self):
        self.features, self.pids, self.camids = [], [], []

    def process(self, inputs, outputs):
        self.features.append(outputs.cpu())
        self.pids.append(inputs["targets"].cpu())
        self.camids.append(inputs["camids"].cpu())

    def evaluate(self):
        return {}

    def split(self, num_query):
        features, pids, camids = (torch.cat(x).numpy() for x in (self.features, self.pids, self.camids))
        return (
            (features[:num_query], pids[:num_query], camids[:num_query]),
            (features[num_query:], pids[num_query:], camids[num_query:]),
        )


def synthetic_dataset(dataset_name):
    """A registered synthetic dataset and its {pid: (split, group, half)} local-cue groups."""
    dataset = DATASET_REGISTRY.get(dataset_name)(root=data_build._root)
    # fast-reid's Market1501 reads from data_dir (the versioned subfolder), DukeMTMC from dataset_dir
    return dataset, local_cue_groups(getattr(dataset, "data_dir", dataset.dataset_dir))


def pseudo_label_pairs(cfg):
    """Per level, :func:`pair_co_clustering` of the pseudo labels saved in the MODEL.WEIGHTS checkpoint."""
    labels = load_checkpoint_file(cfg.MODEL.WEIGHTS).get("pseudo_labels") or []
    if not labels:
        return None  # not an LF2 checkpoint
    items, _ = LF2Trainer.load_target_train_set(cfg)  # the order the labels were saved in
    pids, groups = target_train_groups(cfg, items)
    if groups is None:
        raise FileNotFoundError(f"{list(cfg.DATASETS.NAMES)}: not a generated synthetic domain (no synthetic.json)")
    return [pair_co_clustering(pids, np.asarray(level), groups) for level in labels]


def analyze(cfg, dataset_name):
    """:func:`rank1_confusions` of the MODEL.WEIGHTS model on one test set, features as evaluation extracts them."""
    trainer_cls = trainer_class_for(cfg)
    model = trainer_cls.build_model(cfg)
    AtomicCheckpointer(model, "").load(cfg.MODEL.WEIGHTS)
    loader, num_query = trainer_cls.build_test_loader(cfg, dataset_name)
    collector = FeatureCollector()
    collector.reset()
    inference_on_dataset(model, loader, collector, flip_test=cfg.TEST.FLIP.ENABLED)
    _, groups = synthetic_dataset(dataset_name)
    return rank1_confusions(*collector.split(num_query), groups)


def local_cue_report(cfg):
    """Rank-1 confusions on every ``DATASETS.TESTS`` set and, for an LF2 checkpoint, its pseudo-label pairs."""
    return {
        "rank1": {name: analyze(cfg, name) for name in cfg.DATASETS.TESTS},
        "pseudo_label_pairs": pseudo_label_pairs(cfg),
    }
