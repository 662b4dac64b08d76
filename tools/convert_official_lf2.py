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

from lf2_plugin.modeling.official_conversion import conversion_report, convert_official_checkpoint


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("input", help="official checkpoint (model_best.pth.tar)")
    parser.add_argument("output", help="fast-reid checkpoint to write (.pth)")
    args = parser.parse_args(argv)
    info = convert_official_checkpoint(args.input, args.output)
    print(conversion_report(args.output, info))
    return info


if __name__ == "__main__":
    main()
