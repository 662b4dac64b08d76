"""One LF2 iteration, run by :class:`~lf2_plugin.engine.trainer.LF2Trainer` in place of fast-reid's SimpleTrainer."""

import time

from torch.nn.parallel import DistributedDataParallel

from fastreid.engine.train_loop import SimpleTrainer, TrainerBase
from fastreid.utils import comm
from fastreid.utils.events import get_event_storage

__all__ = ["LF2StepRunner", "unwrap_model"]


def unwrap_model(model):
    """The module a DistributedDataParallel wraps, or ``model`` itself."""
    return model.module if isinstance(model, DistributedDataParallel) else model


class LF2StepRunner(SimpleTrainer):
    """One LF2 iteration: a batch from each level's loader, the LF2 losses, a step, then the EMA update."""

    def __init__(self, model, optimizer):
        TrainerBase.__init__(self)
        model.train()
        self.model = model
        self.optimizer = optimizer
        self.param_wrapper = None
        self.data_loaders, self._iterators = [], []

    @property
    def data_loader(self):
        return self.data_loaders[0] if self.data_loaders else None

    def set_data_loaders(self, loaders):
        for old in self.data_loaders:
            getattr(old, "shutdown", lambda: None)()  # DataLoaderX's prefetch thread on GPU
        self.data_loaders = list(loaders)
        self._iterators = [iter(loader) for loader in self.data_loaders]

    def skip_batches(self, count):
        """Draw and drop ``count`` batches from every level's loader (a resumed epoch's steps already trained)."""
        for _ in range(count):
            for iterator in self._iterators:
                next(iterator)

    def run_step(self):
        assert self.model.training, "[LF2StepRunner] model was changed to eval mode!"
        if not self._iterators:
            raise RuntimeError("no pseudo-labelled loaders: the clustering hook must run before the first step")
        start = time.perf_counter()
        batches = [next(iterator) for iterator in self._iterators]
        data_time = time.perf_counter() - start
        loss_dict = self.model(batches)
        losses = sum(loss_dict.values())
        self.optimizer.zero_grad()
        losses.backward()
        self._write_metrics(loss_dict, data_time)  # raises FloatingPointError on NaN/inf before the step
        self.optimizer.step()
        momentum = unwrap_model(self.model).ema_update(self.iter)
        if comm.is_main_process():
            get_event_storage().put_scalar("ema_momentum", momentum, smoothing_hint=False)
