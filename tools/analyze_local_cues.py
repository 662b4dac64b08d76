#!/usr/bin/env python
"""How often does a model confuse local-cue group-mates on the synthetic target? (see docs/DATASETS.md)

    python tools/analyze_local_cues.py --config-file CONFIG [--out FILE.json] MODEL.WEIGHTS RUN/model_final.pth \
        [KEY VALUE ...]

Extracts the test set's features exactly as evaluation does (same model, loader and TEST.FLIP) and reports rank-1
errors overall, for identities in a local-cue group and for the others, and how many errors land on a group-mate
(an identity that differs only in the garment of one body half). Works on any synthetic test set; combine with
MODEL.LF2.EVAL_FEATURE global / parts to see which branch separates group-mates. For an LF2 checkpoint it also
reports, per clustering level, how often its pseudo labels put group-mates together (vs same-identity and
unrelated pairs).
"""

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import numpy as np  # noqa: E402
import torch  # noqa: E402

import lf2_plugin  # noqa: E402,F401  (registration + compat fixes)
from lf2_plugin.data.synthetic.local_cues import (  # noqa: E402
    local_cue_groups,
    pair_co_clustering,
    rank1_confusions,
    target_train_groups,
)
from lf2_plugin.engine import build_config, trainer_class_for  # noqa: E402
from lf2_plugin.engine.trainer import AtomicCheckpointer, LF2Trainer  # noqa: E402
from lf2_plugin.modeling.checkpoint import load_checkpoint_file  # noqa: E402

from fastreid.data.datasets import DATASET_REGISTRY  # noqa: E402
from fastreid.evaluation.evaluator import DatasetEvaluator, inference_on_dataset  # noqa: E402


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
    dataset = DATASET_REGISTRY.get(dataset_name)(root=os.environ.get("FASTREID_DATASETS", "datasets"))
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
    trainer_cls = trainer_class_for(cfg)
    model = trainer_cls.build_model(cfg)
    AtomicCheckpointer(model, "").load(cfg.MODEL.WEIGHTS)
    loader, num_query = trainer_cls.build_test_loader(cfg, dataset_name)
    collector = FeatureCollector()
    collector.reset()
    inference_on_dataset(model, loader, collector, flip_test=cfg.TEST.FLIP.ENABLED)
    _, groups = synthetic_dataset(dataset_name)
    return rank1_confusions(*collector.split(num_query), groups)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config-file", required=True)
    parser.add_argument("--out", help="also write the result as JSON here")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="KEY VALUE config overrides (MODEL.WEIGHTS ...)")
    args = parser.parse_args()
    cfg = build_config(args.config_file, args.opts)
    cfg.defrost()
    cfg.MODEL.BACKBONE.PRETRAIN = False
    if not os.path.isfile(cfg.MODEL.WEIGHTS):
        raise SystemExit(f"MODEL.WEIGHTS names no file: {cfg.MODEL.WEIGHTS!r}")
    result = {
        "rank1": {name: analyze(cfg, name) for name in cfg.DATASETS.TESTS},
        "pseudo_label_pairs": pseudo_label_pairs(cfg),
    }
    text = json.dumps(result, indent=1, default=float)
    print(text)
    if args.out:
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        with open(args.out, "w") as f:
            f.write(text)


if __name__ == "__main__":
    main()
