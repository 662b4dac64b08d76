#!/usr/bin/env python
"""Train or evaluate a fast-reid model with the LF2 plugin: fast-reid's ``tools/train_net.py`` contract.

    python tools/train_net.py --config-file configs/... [--resume] [--eval-only] [--num-gpus N] [KEY VALUE ...]

``import lf2_plugin`` (done by importing its engine) registers the plugin's models and datasets and applies the
fast-reid compatibility fixes; ``MODEL.META_ARCHITECTURE`` picks the trainer (fast-reid's DefaultTrainer for its
own architectures). On a machine without CUDA the job runs on the CPU, and ``--num-gpus N`` starts N gloo
processes. Before any model is built the datasets and MODEL.WEIGHTS are checked; checkpoints are written
atomically and SIGINT/SIGTERM stop with a checkpoint (exit status 130/143). The job is
:mod:`lf2_plugin.engine.run`; see docs/RELIABILITY.md.
"""

import sys

from lf2_plugin.engine.checkpoint import CheckpointWriteError
from lf2_plugin.engine.launch import WorkerFailed
from lf2_plugin.engine.output_lock import OutputDirInUse
from lf2_plugin.engine.reliability import TrainingInterrupted
from lf2_plugin.engine.run import run

from fastreid.engine import default_argument_parser


def cli(argv=None):
    args = default_argument_parser().parse_args(argv)
    print("Command Line Args:", args)
    try:
        return run(args)
    except OutputDirInUse as busy:  # nothing was written: the other run's files are untouched
        print(f"OutputDirInUse: {busy}", file=sys.stderr)
        sys.exit(1)
    except (CheckpointWriteError, WorkerFailed) as failed:  # a full disk, a dead worker: the last checkpoint is intact
        print(f"{type(failed).__name__}: {failed}", file=sys.stderr)
        sys.exit(1)
    except TrainingInterrupted as stop:  # the checkpoint is written; 130 for Ctrl-C, 143 for SIGTERM
        print(f"{stop}; exit status {stop.exit_code}", file=sys.stderr)
        sys.exit(stop.exit_code)


if __name__ == "__main__":
    cli()
