"""What keeps a long run's work when it is stopped: atomic checkpoints, SIGTERM / Ctrl-C, non-finite losses.

``protect_training(trainer)`` (called by :func:`lf2_plugin.engine.run.main`, the job of ``tools/train_net.py``, for
every trainer, fast-reid's own included):

- applies ``SOLVER.CHECKPOINT_KEEP`` to the trainer's :class:`~lf2_plugin.engine.checkpoint.AtomicCheckpointer`
  (LF2Trainer builds one, fast-reid's DefaultTrainer too once :mod:`lf2_plugin.compat` is applied), with which a
  process killed while saving leaves the previous checkpoint and ``last_checkpoint`` intact;
- registers :class:`InterruptCheckpointHook`: on SIGINT or SIGTERM the current step (or clustering, or
  evaluation) finishes, ``model_interrupted.pth`` is written and tagged as the last checkpoint, and
  :class:`TrainingInterrupted` ends the run; ``tools/train_net.py`` exits with 128 + the signal number (130 for
  Ctrl-C, 143 for SIGTERM). A second signal stops at once, without a checkpoint.

``--resume`` continues from ``model_interrupted.pth``: stopped at an epoch boundary, exactly as an uninterrupted
run; stopped mid-epoch, an LF2 run goes on from the step it stopped at, exactly
(:mod:`~lf2_plugin.engine.mid_epoch`), other trainers restart the interrupted epoch with the weights reached (see
docs/RELIABILITY.md).
"""

import logging
import os
import re
import signal
import threading
import time

from fastreid.engine.train_loop import HookBase
from fastreid.utils import comm

from ..modeling.checkpoint import model_provenance
from .checkpoint import AtomicCheckpointer

__all__ = [
    "TrainingInterrupted",
    "InterruptCheckpointHook",
    "protect_training",
    "INTERRUPTED_CHECKPOINT",
    "explain_non_finite_loss",
]

logger = logging.getLogger(__name__)

INTERRUPTED_CHECKPOINT = "model_interrupted"


class TrainingInterrupted(BaseException):
    """Training stopped by a signal after writing a checkpoint. A BaseException, like KeyboardInterrupt, so
    fast-reid's loop does not log it as a training failure."""

    def __init__(self, signum, checkpoint):
        self.signum, self.checkpoint = signum, checkpoint
        self.exit_code = 128 + signum
        super().__init__(f"training stopped by {signal.Signals(signum).name}; checkpoint {checkpoint}")


class InterruptCheckpointHook(HookBase):
    """On SIGINT / SIGTERM: finish the current step, write ``model_interrupted.pth``, raise
    :class:`TrainingInterrupted`. Register it last, after the PeriodicCheckpointer."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)
    # A signal this soon after the first is the same stop delivered twice (a terminal's Ctrl-C or a scheduler's
    # SIGTERM reaches the workers directly and through the launcher), not a user asking to stop at once.
    DUPLICATE_SECONDS = 2.0

    def __init__(self):
        self._received = None
        self._received_at = 0.0
        self._previous = {}

    def _handle(self, signum, frame):
        if self._received is not None and time.monotonic() - self._received_at < self.DUPLICATE_SECONDS:
            return
        if self._received is not None:  # second signal: the user does not want to wait
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
            return
        self._received, self._received_at = signum, time.monotonic()
        logger.warning(
            "Received %s: stopping after the current step and writing a checkpoint (send it again to "
            "stop at once, without one)",
            signal.Signals(signum).name,
        )

    def before_train(self):
        if threading.current_thread() is not threading.main_thread():
            logger.info("Not in the main thread: SIGINT/SIGTERM will not write a checkpoint")
            return
        self._previous = {signum: signal.signal(signum, self._handle) for signum in self.SIGNALS}
        logger.info("SIGINT (Ctrl-C) / SIGTERM now stop training with a checkpoint (%s.pth)", INTERRUPTED_CHECKPOINT)

    def after_train(self):
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous = {}

    def _stop_requested(self):
        received = self._received or 0
        if comm.get_world_size() > 1:  # every rank stops at the same step, whichever got the signal
            received = max(comm.all_gather(received))
        return received

    def _stop(self, epoch_complete, step_done=False):
        signum = self._stop_requested()
        if not signum:
            return
        trainer = self.trainer
        done = trainer.epoch if epoch_complete else trainer.epoch - 1
        path = os.path.join(trainer.cfg.OUTPUT_DIR, INTERRUPTED_CHECKPOINT + ".pth")
        where = {}
        if not epoch_complete:  # how far into the epoch, for a trainer that resumes there (LF2Trainer)
            where["epoch_steps_done"] = trainer.iter + int(step_done) - trainer.epoch * trainer.iters_per_epoch
        trainer.checkpointer.save(
            INTERRUPTED_CHECKPOINT,
            epoch=done,
            iteration=trainer.iter,
            interrupted=signal.Signals(signum).name,
            interrupted_mid_epoch=not epoch_complete,
            **where,
        )
        comm.synchronize()
        where = (
            f"after epoch {trainer.epoch}"
            if epoch_complete
            else f"in epoch {trainer.epoch} at iteration {trainer.iter}"
        )
        logger.warning(
            "Stopped by %s %s; checkpoint %s written and tagged in last_checkpoint: --resume continues from it",
            signal.Signals(signum).name,
            where,
            path,
        )
        raise TrainingInterrupted(signum, path)

    def before_step(self):  # a signal during clustering (before_epoch)
        self._stop(epoch_complete=False)

    def after_step(self):
        self._stop(epoch_complete=False, step_done=True)

    def after_epoch(self):  # runs after evaluation and the epoch checkpoint
        self._stop(epoch_complete=True)


def protect_training(trainer):
    """``SOLVER.CHECKPOINT_KEEP``, the model's provenance in every checkpoint (``"built_with"``) and
    :class:`InterruptCheckpointHook` for any fast-reid ``DefaultTrainer`` (call it
    after building the trainer, before ``resume_or_load``). Returns the trainer."""
    checkpointer = trainer.checkpointer
    if isinstance(checkpointer, AtomicCheckpointer):  # fast-reid's own Checkpointer when LF2_COMPAT_SKIP names it
        checkpointer.keep_last = int(trainer.cfg.SOLVER.get("CHECKPOINT_KEEP", 0))
        checkpointer.built_with = model_provenance(trainer.cfg)
    trainer.register_hooks([InterruptCheckpointHook()])
    return trainer


def explain_non_finite_loss(trainer, error):
    """fast-reid's FloatingPointError (iteration, loss terms as numpy reprs) restated with plain values, the epoch,
    the checkpoint to go back to and what to change."""
    message = str(error)
    match = re.match(r"Loss became infinite or NaN at iteration=(\d+)!\s*loss_dict = \{(.*)\}", message, re.S)
    if match:
        terms = re.findall(r"'(\w+)': (?:np\.float\d+\()?([^,)}]+)", match.group(2))
        message = f"Loss became infinite or NaN at iteration {match.group(1)} (epoch {trainer.epoch}): " + ", ".join(
            f"{name}={value}" for name, value in terms
        )
    checkpointer = trainer.checkpointer
    last = checkpointer.get_checkpoint_file() if checkpointer.has_checkpoint() else ""
    back = (
        f"the last checkpoint, {last}, is intact: change the settings and --resume from it"
        if last
        else "no checkpoint was written yet"
    )
    return FloatingPointError(
        f"{message}.\nTraining stopped; {back}. Usual causes: SOLVER.BASE_LR too high, a "
        f"loss weight too large, or corrupt input."
    )
