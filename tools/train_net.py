#!/usr/bin/env python
"""Train or evaluate a fast-reid model with the LF2 plugin: fast-reid's ``tools/train_net.py`` contract.

    python tools/train_net.py --config-file configs/... [--resume] [--eval-only] [--num-gpus N] [KEY VALUE ...]

``import lf2_plugin`` registers the plugin's models and datasets and applies the fast-reid compatibility fixes;
``MODEL.META_ARCHITECTURE`` picks the trainer (fast-reid's DefaultTrainer for its own architectures).
On a machine without CUDA the job runs on the CPU, and ``--num-gpus N`` starts N gloo processes.
Before any model is built the datasets and MODEL.WEIGHTS are checked; checkpoints are written atomically and
SIGINT/SIGTERM stop with a checkpoint (exit status 130/143). See docs/RELIABILITY.md.
"""

import json
import logging
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import lf2_plugin  # noqa: E402,F401  (registration + compat fixes)
from lf2_plugin.data.validation import validate_datasets  # noqa: E402
from lf2_plugin.deploy import load_inference_model  # noqa: E402
from lf2_plugin.engine import launch, setup, trainer_class_for  # noqa: E402
from lf2_plugin.engine.reliability import TrainingInterrupted, explain_non_finite_loss, protect_training  # noqa: E402

from fastreid.engine import default_argument_parser  # noqa: E402
from fastreid.evaluation import rank as fastreid_rank  # noqa: E402
from fastreid.utils import comm  # noqa: E402


def check_weights_file(cfg, args):
    """MODEL.WEIGHTS must name a file when it will be read (fast-reid would fail only after building the model)."""
    path = cfg.MODEL.WEIGHTS
    if args.eval_only and not path:
        raise FileNotFoundError("--eval-only needs MODEL.WEIGHTS to name a checkpoint file; got ''")
    resuming = args.resume and os.path.isfile(os.path.join(cfg.OUTPUT_DIR, "last_checkpoint"))
    if path and "://" not in path and not os.path.isfile(path) and not resuming:
        what = (
            "--eval-only needs MODEL.WEIGHTS to name a checkpoint file"
            if args.eval_only
            else "MODEL.WEIGHTS names no file"
        )
        raise FileNotFoundError(f"{what}; got {path!r} (absolute: {os.path.abspath(path)})")


def main(args):
    cfg = setup(args)
    check_weights_file(cfg, args)
    validate_datasets(cfg, eval_only=args.eval_only)  # before any model is built
    trainer_cls = trainer_class_for(cfg)
    if args.eval_only:
        logger = logging.getLogger("fastreid")
        model = load_inference_model(cfg)  # refuses weights that leave part of the eval path unset
        logger.info(
            "Ranking with the %s ranker",
            "compiled Cython" if fastreid_rank.IS_CYTHON_AVAI else "pure-Python (slow: run `make rank-cylib`)",
        )
        results = trainer_cls.test(cfg, model)
        if comm.is_main_process():
            with open(os.path.join(cfg.OUTPUT_DIR, "eval_results.json"), "w") as f:
                json.dump(results, f, indent=1, default=float)
        return results

    trainer = protect_training(trainer_cls(cfg))
    trainer.resume_or_load(resume=args.resume)
    try:
        return trainer.train()
    except FloatingPointError as error:  # fast-reid's non-finite loss check
        raise explain_non_finite_loss(trainer, error) from None


def cli(argv=None):
    args = default_argument_parser().parse_args(argv)
    print("Command Line Args:", args)
    try:
        return launch(
            main,
            args.num_gpus,
            num_machines=args.num_machines,
            machine_rank=args.machine_rank,
            dist_url=args.dist_url,
            args=(args,),
        )
    except TrainingInterrupted as stop:  # the checkpoint is written; 130 for Ctrl-C, 143 for SIGTERM
        print(f"{stop}; exit status {stop.exit_code}", file=sys.stderr)
        sys.exit(stop.exit_code)


if __name__ == "__main__":
    cli()
