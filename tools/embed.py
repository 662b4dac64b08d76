#!/usr/bin/env python
"""Embed a folder of person crops with a trained model: one .npz of L2-normalised descriptors and file names.

    python tools/embed.py --config-file configs/SynthDuke2SynthMarket/lf2.yml \
        MODEL.WEIGHTS logs/demo/lf2/model_final.pth --images datasets/SynthMarket/bounding_box_test --out gallery.npz

The descriptors are the ones evaluation ranks with (flip-averaged when TEST.FLIP.ENABLED). See docs/DEPLOY.md.
"""

import argparse

import lf2_plugin  # noqa: F401  (registration + compat fixes)
from lf2_plugin.deploy import embed_images, model_from_arguments, save_embeddings


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config-file", required=True, help="the config the weights were trained with")
    parser.add_argument("--images", required=True, help="a folder (searched recursively) or one image")
    parser.add_argument("--out", required=True, help="output .npz")
    parser.add_argument("opts", nargs="*", help="config overrides KEY VALUE ..., e.g. MODEL.WEIGHTS path.pth")
    args = parser.parse_intermixed_args(argv)
    cfg, model = model_from_arguments(args.config_file, args.opts)
    embeddings = embed_images(cfg, model, args.images)
    save_embeddings(embeddings, args.out)
    print(f"{len(embeddings.paths)} descriptors of {embeddings.features.shape[1]} values -> {args.out}")


if __name__ == "__main__":
    main()
