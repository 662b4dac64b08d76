#!/usr/bin/env python
"""Ablations of LF2 on the synthetic benchmark, each the mean over several seeds.

    python tools/ablation.py [--out logs/ablation] [--seeds 1 2 3] [--config-dir configs/SynthDuke2SynthMarket]
                             [--reuse] [--sources logs/ablation] [--variants lf2 global_only_mt ...]
                             [--record docs/benchmarks/ablation_long_steps] [-- KEY VALUE ...]
    python tools/ablation.py --out DIR --combine A/summary.json B/summary.json

Per seed: one source pre-training (so direct transfer varies with the seed too), then every LF2 variant from that
source model. Rows: direct_transfer, lf2, global_only_mt (NUM_PARTS 0: global-only mean teacher, single-level
clustering), lf2_no_fusion (levels 1..K cluster the teacher's own stripes), lf2_fusion_loss (FUSION.LOSS_WEIGHT
> 0). Writes ``<out>/summary.json``: {"rows": [{"name", "mAP", "Rank-1", "Rank-5", "Rank-10", "std": {...},
"seeds": [{"seed", ...}]}], "seconds", "paired": [per-seed differences of PAIRS with mean, std, 95% interval],
"pseudo_labels": {variant: [per level]}} and prints mean ± standard deviation. ``--reuse`` keeps the steps an
earlier, interrupted run finished. Trailing ``KEY VALUE`` pairs go to every LF2 variant (before the variant's own
override), e.g. a study of one hyperparameter; ``--sources DIR`` takes the source models and direct-transfer
results of an earlier ablation's seeds instead of training them again. ``--record DIR`` keeps each finished LF2
step's small result files in DIR (with the fingerprint of its source weights); with ``--reuse`` a recorded step
whose retrained source model has the same weights is taken from DIR, so a long table can grow across machines that
do not keep ``--out``. ``--combine A/summary.json B/summary.json``
trains nothing: it pools the per-seed values of earlier summaries over disjoint seeds (e.g. seeds 4-6 run later
beside seeds 1-3) into ``<out>/summary.json``, rows the summaries share only, without ``"pseudo_labels"``.
"""

import argparse
import os

from lf2_plugin.experiments.ablation import combine_ablations, format_summary, run_ablation
from lf2_plugin.experiments.runs import ROOT, VARIANTS, write_json


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=os.path.join("logs", "ablation"))
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--config-dir", default=os.path.join(ROOT, "configs", "SynthDuke2SynthMarket"))
    parser.add_argument(
        "--reuse",
        action="store_true",
        help="keep the steps an earlier run under --out finished (e.g. after an interruption)",
    )
    parser.add_argument(
        "--variants",
        nargs="+",
        choices=list(VARIANTS),
        default=list(VARIANTS),
        help="the LF2 variants to run (default: all)",
    )
    parser.add_argument(
        "--sources",
        help="an earlier ablation's --out: take its seeds' source models and direct "
        "transfer instead of training them again",
    )
    parser.add_argument(
        "--record",
        help="keep every finished LF2 step's results here and, with --reuse, restore the steps recorded from "
        "the same source weights instead of training them again",
    )
    parser.add_argument(
        "--combine",
        nargs="+",
        metavar="SUMMARY",
        help="train nothing: pool earlier summaries' per-seed values (disjoint seeds) into --out",
    )
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="KEY VALUE overrides for every LF2 variant")
    args = parser.parse_args()
    args.opts = args.opts[1:] if args.opts[:1] == ["--"] else args.opts
    if len(args.opts) % 2 or any(token.startswith("--") for token in args.opts):
        parser.error(f"options first, then KEY VALUE pairs (after `--` when --variants is last); got {args.opts}")
    out = os.path.abspath(args.out)
    if args.combine:
        summary = combine_ablations(args.combine)
    else:
        sources = os.path.abspath(args.sources) if args.sources else None
        record = os.path.abspath(args.record) if args.record else None
        summary = run_ablation(out, args.config_dir, args.seeds, args.reuse, args.variants, args.opts, sources, record)
    write_json(os.path.join(out, "summary.json"), summary)
    print(format_summary(summary))


if __name__ == "__main__":
    main()
