#!/usr/bin/env python
"""Search a gallery embedded by tools/embed.py with query images; one rank-list picture per query.

    python tools/search.py --gallery gallery.npz --query datasets/SynthMarket/query/0005_c1s1_000012_01.jpg \
        --topk 10 --out ranks/

Query images are embedded with the gallery's model (its config and weights are recorded in the .npz); a .npz
from tools/embed.py is taken as it is. Borders: blue query, green / red same / other identity where the file
names carry one (fast-reid naming), grey where not. See docs/DEPLOY.md.
"""

import argparse

import lf2_plugin  # noqa: F401  (registration + compat fixes)
from lf2_plugin.deploy.search import run_search


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gallery", required=True, help=".npz written by tools/embed.py")
    parser.add_argument("--query", required=True, help="an image, a folder of images, or a .npz of tools/embed.py")
    parser.add_argument("--topk", type=int, default=10)
    parser.add_argument("--out", default="ranks", help="folder for the rank-list pictures and ranks.json")
    args = parser.parse_args(argv)
    pictures = run_search(args.gallery, args.query, args.topk, args.out)
    print(f"{len(pictures)} rank lists -> {args.out}")


if __name__ == "__main__":
    main()
