"""fast-reid hooks that the plugin's trainers use in place of fast-reid's own."""

from fastreid.engine import hooks

__all__ = ["BestMetricCheckpointer", "with_best_metric"]


class BestMetricCheckpointer(hooks.PeriodicCheckpointer):
    """fast-reid's ``PeriodicCheckpointer`` with ``model_best`` chosen on ``TEST.BEST_METRIC``: fast-reid's own
    ``"metric"`` is (mAP + Rank-1) / 2, the official LF2 code keeps the best mAP."""

    def __init__(self, checkpointer, period, metric="mAP"):
        super().__init__(checkpointer, period)
        self.metric = metric

    def before_train(self):
        super().before_train()
        tests = self.trainer.cfg.DATASETS.TESTS
        self.metric_name = self.metric if len(tests) == 1 else f"{tests[0]}/{self.metric}"


def with_best_metric(hook_list, cfg):
    """``hook_list`` with fast-reid's ``PeriodicCheckpointer`` replaced by :class:`BestMetricCheckpointer`."""
    return [
        BestMetricCheckpointer(h.checkpointer, h.period, cfg.TEST.BEST_METRIC)
        if type(h) is hooks.PeriodicCheckpointer
        else h
        for h in hook_list
    ]
