"""The job of ``tools/train_net.py``: check the inputs, then train the trainer the config names, or evaluate.

Before any model is built the datasets and ``MODEL.WEIGHTS`` are checked; training runs under
:func:`~lf2_plugin.engine.reliability.protect_training` (see docs/RELIABILITY.md).
"""

import contextlib
import json
import logging
import os

from fastreid.evaluation import rank as fastreid_rank
from fastreid.utils import comm

from ..data.validation import validate_datasets
from ..deploy import load_inference_model
from . import trainer_class_for
from .defaults import build_config, setup
from .launch import launch
from .output_lock import output_dir_lock
from .reliability import explain_non_finite_loss, protect_training

__all__ = ["check_weights_file", "main", "run"]


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
    """One process's job for fast-reid's command-line ``args``: the results of training or evaluation. The main
    process holds ``OUTPUT_DIR`` (:func:`~lf2_plugin.engine.output_lock.output_dir_lock`) before anything is
    written there, so a second run into the same folder, training or ``--eval-only``, stops at once."""
    cfg = build_config(args.config_file, args.opts)
    cfg.freeze()
    with output_dir_lock(cfg.OUTPUT_DIR) if comm.is_main_process() else contextlib.nullcontext():
        return _main(setup(args, cfg), args)


def _main(cfg, args):
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


def run(args):
    """:func:`main` in ``args.num_gpus`` processes per machine; raises
    :class:`~lf2_plugin.engine.reliability.TrainingInterrupted` when a signal stopped training."""
    return launch(
        main,
        args.num_gpus,
        num_machines=args.num_machines,
        machine_rank=args.machine_rank,
        dist_url=args.dist_url,
        args=(args,),
    )
