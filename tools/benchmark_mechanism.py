#!/usr/bin/env python
"""Paired mechanism benchmark of LF2's part levels and Fusion Module (lf2_plugin/experiments/mechanism.py).

    python tools/benchmark_mechanism.py [--out logs/mechanism] [--seeds 1 2 3 4] [--epochs 1 3 5]
        [--variants lf2 global_only_mt lf2_no_fusion lf2_fusion_loss] [--json docs/benchmarks/mechanism.json]
        [--finished-only] [KEY VALUE ...]

Per seed a source model and one LF2 run give the starting states (the source model and the run after each of
--epochs); from every state each variant clusters, trains one epoch and is scored; then every variant is
differenced against lf2 state by state. Finished steps under --out are kept, so an interrupted run continues;
--finished-only runs nothing and summarises what is there. Trailing KEY VALUE pairs go to every LF2 run.
"""

import argparse
import json
import os


def main():
    # datasets next to the repository unless told otherwise: fast-reid reads this when lf2_plugin is imported,
    # so the package is imported only after it is set
    os.environ.setdefault(
        "FASTREID_DATASETS", os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "datasets")
    )
    from lf2_plugin.experiments.mechanism import format_table, run_benchmark
    from lf2_plugin.experiments.runs import FIDELITY_VARIANTS, ROOT, VARIANTS, datasets_env

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=os.path.join("logs", "mechanism"))
    parser.add_argument("--config-dir", default=os.path.join(ROOT, "configs", "SynthDuke2SynthMarket"))
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3, 4])
    parser.add_argument(
        "--epochs",
        type=int,
        nargs="*",
        default=[1, 3, 5],
        help="LF2 epochs after which a state is taken (the source model is always one)",
    )
    parser.add_argument(
        "--variants",
        nargs="+",
        choices=[*VARIANTS, *FIDELITY_VARIANTS],
        default=list(VARIANTS),
        help="LF2 variants (lf2 is the baseline of every difference); the lf2_* fidelity variants "
        "put back one pre-official training choice each",
    )
    parser.add_argument("--json", help="also write the summary here")
    parser.add_argument("--finished-only", action="store_true", help="run nothing: summarise the finished branches")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="KEY VALUE overrides for every LF2 run")
    args = parser.parse_args()
    opts = args.opts[1:] if args.opts[:1] == ["--"] else args.opts
    if len(opts) % 2:
        parser.error(f"KEY VALUE pairs expected after the options; got {opts}")
    if "lf2" not in args.variants:
        parser.error("--variants must include lf2: every variant is compared with it")
    summary = run_benchmark(
        os.path.abspath(args.out),
        args.config_dir,
        args.seeds,
        args.epochs,
        args.variants,
        datasets_env(),
        opts,
        run=not args.finished_only,
    )
    if args.json:
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        with open(args.json, "w") as f:
            json.dump(summary, f, indent=1)
    print(format_table(summary))


if __name__ == "__main__":
    main()
