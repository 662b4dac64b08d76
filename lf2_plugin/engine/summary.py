"""The end-of-training report of an LF2 run: the last epoch's metrics, the best epoch only beside them."""

import json
import logging
import numbers
import os

__all__ = ["flat_metrics", "write_summary"]

# LF2Trainer's logger: the summary closes the trainer's log, under its name.
logger = logging.getLogger("lf2_plugin.engine.trainer")


def flat_metrics(results):
    """fast-reid's evaluation results as one flat dict of floats (``"<dataset>/<metric>"`` for several test sets)."""
    # ReidEvaluator's metrics are numpy scalars (np.float32 is no python float, but is a numbers.Real)
    flat = {}
    for key, value in results.items():
        if isinstance(value, dict):
            flat.update({f"{key}/{k}": float(v) for k, v in value.items() if isinstance(v, numbers.Real)})
        elif isinstance(value, numbers.Real):
            flat[key] = float(value)
    return flat


def _format_metrics(record):
    return ", ".join(f"{k}={v:.2f}" for k, v in record.items() if k != "epoch")


def write_summary(output_dir, eval_history, storage):
    """Log the last epoch's metrics and write them to ``summary.json`` and ``metrics.json`` in ``output_dir``; the
    best epoch (chosen on the test set) only beside them. ``eval_history`` holds one :func:`flat_metrics` record
    per evaluation, with its ``"epoch"``; ``storage`` is the trainer's EventStorage. None without evaluations."""
    if not eval_history:
        return None
    last = eval_history[-1]
    best = max(eval_history, key=lambda r: r.get("mAP", -1))
    losses = [(int(it), float(v)) for v, it in storage.history("total_loss").values()]
    summary = {"last": last, "best_on_test_set": best, "history": eval_history, "total_loss": losses}
    logger.info("Final (last epoch %d): %s", last["epoch"], _format_metrics(last))
    logger.info(
        "Best epoch on the test set (%d, for reference only, not model selection): %s",
        best["epoch"],
        _format_metrics(best),
    )
    with open(os.path.join(output_dir, "summary.json"), "w") as f:
        json.dump(summary, f, indent=1)
    with open(os.path.join(output_dir, "metrics.json"), "a") as f:
        f.write(json.dumps({"summary": "last", **last}) + "\n")
        f.write(json.dumps({"summary": "best_on_test_set", **best}) + "\n")
    return summary
