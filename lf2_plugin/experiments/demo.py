"""The main job on the synthetic benchmark (``tools/demo.py``): source pre-training, direct transfer, LF2
adaptation, evaluation; every step a ``tools/train_net.py`` run (:mod:`.runs`)."""

import os
import time

from .runs import METRICS, adapt, datasets_env, keep_final_weights_only, source_and_direct_transfer, write_json

__all__ = ["run_demo", "format_table"]


def run_demo(out, config_dir, seed, lf2_opts=()):
    """Run the demo under ``out``: ``summary.json`` (rows, seconds), ``lf2/metrics.png`` and each stage's final
    weights (without what resuming needs). Returns the summary."""
    from ..engine.plots import plot_run

    start = time.perf_counter()
    env = datasets_env()
    weights, direct_row = source_and_direct_transfer(out, config_dir, seed, env)
    lf2_dir = os.path.join(out, "lf2")
    rows = [direct_row, adapt("lf2", config_dir, lf2_dir, weights, seed, lf2_opts, env)]
    summary = {"rows": rows, "seconds": round(time.perf_counter() - start, 1)}
    write_json(os.path.join(out, "summary.json"), summary)
    plot_run(lf2_dir)
    for run_dir in (os.path.dirname(weights), lf2_dir):  # a demo keeps the final weights only
        keep_final_weights_only(run_dir)
    return summary


def format_table(summary):
    """The demo's rows as a Markdown table, then its total time."""
    lines = ["| method | " + " | ".join(METRICS) + " |", "|---" * (len(METRICS) + 1) + "|"]
    for row in summary["rows"]:
        lines.append(f"| {row['name']} | " + " | ".join(f"{row[k]:.1f}" for k in METRICS) + " |")
    return "\n".join(lines) + f"\n\ntotal time: {summary['seconds']:.0f} s"
