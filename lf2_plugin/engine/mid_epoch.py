"""Resuming an LF2 run inside an epoch, exactly where it stopped.

A checkpoint written mid-epoch (``model_interrupted.pth`` after SIGTERM / Ctrl-C) holds, besides the weights, the
optimizer, the schedulers and the RNG state at the stop: the epoch's pseudo labels, the RNG state with which the
epoch's loaders were built (``loader_rng``) and how many of the epoch's steps were done (``epoch_steps_done``).
Resuming rebuilds the loaders from that state, draws and drops the batches already trained on, so that every
sampler and loader worker stands where it stood, then restores the RNG state at the stop. Clustering does not run
again. On CPU the run then goes on bit for bit as if never stopped.
"""

from dataclasses import dataclass

from .rng import set_rng_state

__all__ = ["MidEpochResume"]


@dataclass
class MidEpochResume:
    """Where an interrupted epoch stood: ``steps_done`` of its steps trained, its loaders built from
    ``loader_rng``, the process's RNG state ``rng`` at the stop."""

    steps_done: int
    loader_rng: dict
    rng: dict

    @classmethod
    def from_checkpoint(cls, checkpoint):
        """The resume point of a mid-epoch checkpoint, or None (an epoch checkpoint, or one written without
        ``loader_rng`` / ``epoch_steps_done``, which restarts the interrupted epoch)."""
        if not checkpoint.get("interrupted_mid_epoch"):
            return None
        if not all(key in checkpoint for key in ("loader_rng", "epoch_steps_done", "rng", "pseudo_labels")):
            return None
        return cls(int(checkpoint["epoch_steps_done"]), checkpoint["loader_rng"], checkpoint["rng"])

    def restore_loaders(self, build_loaders, step_runner):
        """``build_loaders()`` under the epoch's loader RNG state into ``step_runner``, advanced past the batches
        already trained on; then the RNG state at the stop."""
        set_rng_state(self.loader_rng)
        step_runner.set_data_loaders(build_loaders())
        step_runner.skip_batches(self.steps_done)
        set_rng_state(self.rng)
