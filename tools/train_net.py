#!/usr/bin/env python
"""Train or evaluate a fast-reid model with the LF2 plugin: fast-reid's ``tools/train_net.py`` contract.

    python tools/train_net.py --config-file configs/... [--resume] [--eval-only] [--num-gpus N] [KEY VALUE ...]

``import lf2_plugin`` registers the plugin's models and datasets and applies the fast-reid compatibility fixes;
``MODEL.META_ARCHITECTURE`` picks the trainer (fast-reid's DefaultTrainer for its own architectures).
On a machine without CUDA the job runs on the CPU, and ``--num-gpus N`` starts N gloo processes.
"""
import json
import logging
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import lf2_plugin  # noqa: E402,F401  (registration + compat fixes)
from fastreid.engine import default_argument_parser  # noqa: E402
from fastreid.evaluation import rank as fastreid_rank  # noqa: E402
from fastreid.utils import comm  # noqa: E402
from fastreid.utils.checkpoint import Checkpointer  # noqa: E402
from lf2_plugin.engine import launch, setup, trainer_class_for  # noqa: E402


def main(args):
    cfg = setup(args)
    trainer_cls = trainer_class_for(cfg)
    if args.eval_only:
        logger = logging.getLogger("fastreid")
        cfg.defrost()
        cfg.MODEL.BACKBONE.PRETRAIN = False
        model = trainer_cls.build_model(cfg)
        if not cfg.MODEL.WEIGHTS or not os.path.isfile(cfg.MODEL.WEIGHTS):
            raise FileNotFoundError(f"--eval-only needs MODEL.WEIGHTS to name a checkpoint file; got "
                                    f"{cfg.MODEL.WEIGHTS!r}")
        Checkpointer(model).load(cfg.MODEL.WEIGHTS)
        logger.info("Ranking with the %s ranker",
                    "compiled Cython" if fastreid_rank.IS_CYTHON_AVAI else "pure-Python (slow: run `make rank-cylib`)")
        results = trainer_cls.test(cfg, model)
        if comm.is_main_process():
            with open(os.path.join(cfg.OUTPUT_DIR, "eval_results.json"), "w") as f:
                json.dump(results, f, indent=1, default=float)
        return results

    trainer = trainer_cls(cfg)
    trainer.resume_or_load(resume=args.resume)
    return trainer.train()


def cli(argv=None):
    args = default_argument_parser().parse_args(argv)
    print("Command Line Args:", args)
    return launch(main, args.num_gpus, num_machines=args.num_machines, machine_rank=args.machine_rank,
                  dist_url=args.dist_url, args=(args,))


if __name__ == "__main__":
    cli()
