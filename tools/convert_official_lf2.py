#!/usr/bin/env python
"""Convert a checkpoint of the official LF2 code (DJEddyking/LF2) into a fast-reid checkpoint of this plugin.

    python tools/convert_official_lf2.py logs_d2m_clusters_700/model_best.pth.tar lf2_d2m.pth
    python tools/train_net.py --config-file configs/<direction>.yml --eval-only MODEL.WEIGHTS lf2_d2m.pth \
        MODEL.HEADS.NUM_CLASSES 700 MODEL.LF2.EXPERT concat

An ``Encoder`` checkpoint of target training (student ``model.*``, teacher ``model_ema.*``, ``fuse_net.*``)
becomes an ``LF2`` checkpoint; a source-stage checkpoint (``resnet50_source``) becomes an ``LF2SourceBaseline``
(fast-reid Baseline layout) checkpoint. Use ``MODEL.BACKBONE.NAME: build_resnet_torchvision_stem_backbone`` (the
Base-LF2 configs do) so the backbone computes what torchvision's ResNet computes.
"""

import argparse
import os
import sys

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir))

from lf2_plugin.modeling.checkpoint import convert_official_state_dict, load_checkpoint_file  # noqa: E402


def convert(in_path, out_path):
    """Convert ``in_path`` to ``out_path``; returns the conversion info dict."""
    state_dict, info = convert_official_state_dict(load_checkpoint_file(in_path))
    torch.save({"model": state_dict}, out_path)
    return info


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("input", help="official checkpoint (model_best.pth.tar)")
    parser.add_argument("output", help="fast-reid checkpoint to write (.pth)")
    args = parser.parse_args(argv)
    info = convert(args.input, args.output)
    print(f"wrote {args.output} ({info['layout']} layout)")
    if info["dropped"]:
        print(
            f"dropped {len(info['dropped'])} tensors the LF2 forward never uses: "
            f"{sorted({k.rsplit('.', 1)[0] for k in info['dropped']})}"
        )
    if info["layout"] == "lf2":
        print(
            "config for this checkpoint: MODEL.META_ARCHITECTURE LF2 MODEL.LF2.NUM_PARTS 2 "
            f"MODEL.HEADS.NUM_CLASSES {info['num_classes']} MODEL.BACKBONE.FEAT_DIM {info['feat_dim']} "
            f"MODEL.LF2.EXPERT {info['expert']}"
        )
    else:
        print("config for this checkpoint: MODEL.META_ARCHITECTURE LF2SourceBaseline (configs/Base-LF2-source.yml)")
    return info


if __name__ == "__main__":
    main()
