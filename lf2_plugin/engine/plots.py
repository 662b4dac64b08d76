"""PNG plots of a run's OUTPUT_DIR: test metrics per epoch and per-level clustering statistics per epoch."""

import json
import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

__all__ = ["plot_run"]

CLUSTER_PANELS = (
    ("num_clusters", "clusters"),
    ("num_outliers", "outliers"),
    ("nmi", "NMI vs true ids"),
    ("pairwise_f1", "pairwise F1 vs true ids"),
)


def _read_jsonl(path):
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def plot_run(output_dir, out_file=None):
    """Write ``<output_dir>/metrics.png`` (or ``out_file``) from summary.json and clustering.jsonl; returns it."""
    summary_path = os.path.join(output_dir, "summary.json")
    clustering_path = os.path.join(output_dir, "clustering.jsonl")
    if not os.path.isfile(summary_path) and not os.path.isfile(clustering_path):
        raise FileNotFoundError(f"{output_dir} has neither summary.json nor clustering.jsonl (not an LF2 run?)")
    fig, axes = plt.subplots(1, 1 + len(CLUSTER_PANELS), figsize=(4 * (1 + len(CLUSTER_PANELS)), 3.4))
    if os.path.isfile(summary_path):
        with open(summary_path) as f:
            history = json.load(f)["history"]
        epochs = [r["epoch"] + 1 for r in history]
        for key in ("mAP", "Rank-1"):
            axes[0].plot(epochs, [r.get(key, float("nan")) for r in history], marker="o", label=key)
        axes[0].set_title("target test set (teacher)")
        axes[0].set_xlabel("epoch")
        axes[0].legend()
    records = _read_jsonl(clustering_path) if os.path.isfile(clustering_path) else []
    for ax, (key, title) in zip(axes[1:], CLUSTER_PANELS):
        if records:
            for level in range(len(records[0]["levels"])):
                ax.plot(
                    [r["epoch"] + 1 for r in records],
                    [r["levels"][level].get(key, float("nan")) for r in records],
                    marker=".",
                    label="global" if level == 0 else f"part {level}",
                )
            ax.legend(fontsize=8)
        ax.set_title(title)
        ax.set_xlabel("epoch")
    fig.tight_layout()
    out_file = out_file or os.path.join(output_dir, "metrics.png")
    fig.savefig(out_file, dpi=90)
    plt.close(fig)
    return out_file
