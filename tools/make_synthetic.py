#!/usr/bin/env python
"""Generate a synthetic re-ID domain in Market-1501 / DukeMTMC-reID layout, and/or a preview contact sheet.

    python tools/make_synthetic.py --root DIR --domain market|duke|hard|both [--ids N] [--seed S]
                                   [--images-per-cam K] [--force] [--preview FILE.png]

``DIR/Market-1501-v15.09.15`` (or ``DIR/DukeMTMC-reID``) is then readable by fast-reid's own ``Market1501(root=DIR)``
(``DukeMTMC(root=DIR)``). The registered ``SynthMarket``/``SynthDuke`` datasets generate the default sizes into
``$FASTREID_DATASETS/synthetic/<domain>`` by themselves; this tool is for other sizes, seeds and previews.
See docs/DATASETS.md.
"""

import argparse

from lf2_plugin.data.synthetic import DEFAULT_IMAGES_PER_CAM, DEFAULT_NUM_IDS, DOMAINS
from lf2_plugin.data.synthetic.make import make_domains


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--root", help="folder to write the dataset into (fast-reid's dataset root)")
    parser.add_argument("--domain", choices=sorted(DOMAINS) + ["both"], required=True)
    parser.add_argument(
        "--ids",
        type=int,
        default=DEFAULT_NUM_IDS,
        help="labelled identities, split evenly into train and test (default %(default)s)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--images-per-cam",
        type=int,
        default=DEFAULT_IMAGES_PER_CAM,
        help="images of an identity per camera that sees it (default %(default)s)",
    )
    parser.add_argument("--force", action="store_true", help="regenerate even if a matching copy exists")
    parser.add_argument(
        "--preview",
        metavar="FILE.png",
        help="also write a contact sheet (identities x cameras); with --domain both, "
        "one per domain with the domain name appended",
    )
    parser.add_argument("--preview-rows", type=int, default=12)
    args = parser.parse_args(argv)
    if args.root is None and args.preview is None:
        parser.error("give --root (generate) and/or --preview (contact sheet)")
    make_domains(
        # "both" is the mild pair: "hard" writes the same DukeMTMC-reID folder as "duke" and needs its own --root
        ["duke", "market"] if args.domain == "both" else [args.domain],
        args.root,
        args.preview,
        num_ids=args.ids,
        seed=args.seed,
        images_per_cam=args.images_per_cam,
        force=args.force,
        preview_rows=args.preview_rows,
    )


if __name__ == "__main__":
    main()
