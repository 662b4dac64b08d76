#!/usr/bin/env python
"""Export a trained model (LF2: its teacher, as evaluation uses it) as one graph from images to descriptors.

    python tools/export.py --config-file configs/SynthDuke2SynthMarket/lf2.yml \
        MODEL.WEIGHTS logs/demo/lf2/model_final.pth --format onnx --out exported/

Writes ``<out>/<name>.onnx`` (or ``.torchscript.pt``) and ``<out>/<name>.<format>.json`` (input size, channel order,
mean/std, descriptor layout, the config). Input: RGB images [B, 3, H, W], 0-255, resized to INPUT.SIZE_TEST;
output: L2-normalised descriptors [B, D]. See docs/DEPLOY.md.
"""

import argparse

import lf2_plugin  # noqa: F401  (registration + compat fixes)
from lf2_plugin.deploy import FORMATS, export_descriptor_model, model_from_arguments


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config-file", required=True, help="the config the weights were trained with")
    parser.add_argument("--format", choices=sorted(FORMATS), default="onnx")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--name", default="model", help="file name stem (default: model)")
    flip = parser.add_mutually_exclusive_group()
    flip.add_argument(
        "--flip",
        dest="flip",
        action="store_true",
        default=None,
        help="average with the mirrored image inside the graph (default: TEST.FLIP.ENABLED)",
    )
    flip.add_argument("--no-flip", dest="flip", action="store_false")
    parser.add_argument("opts", nargs="*", help="config overrides KEY VALUE ..., e.g. MODEL.WEIGHTS path.pth")
    args = parser.parse_intermixed_args(argv)
    cfg, model = model_from_arguments(args.config_file, args.opts)
    metadata = export_descriptor_model(cfg, model, args.out, fmt=args.format, name=args.name, flip=args.flip)
    print(
        f"{args.out}/{metadata['file']}: images {metadata['input']['shape']} RGB 0-255 -> descriptors "
        f"{metadata['output']['shape']} ({', '.join(s['name'] for s in metadata['output']['layout'])}), "
        f"flip averaged {metadata['flip_averaged']}; max |diff| to PyTorch "
        f"{max(metadata['verified']['max_abs_difference_to_pytorch'].values()):.2g}"
    )


if __name__ == "__main__":
    main()
