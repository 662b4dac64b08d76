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

from lf2_plugin.engine import build_config
from lf2_plugin.experiments.local_cues import local_cue_report


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
    text = json.dumps(local_cue_report(cfg), indent=1, default=float)
    print(text)
    if args.out:
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        with open(args.out, "w") as f:
            f.write(text)


if __name__ == "__main__":
    main()
