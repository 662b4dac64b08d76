"""The domain gap of one adaptation direction, measured with its own source-stage recipe.

Three numbers bound what an unsupervised method can do on a direction (``configs/<Direction>/``): the source model
on its own test set (*source in-domain*), the same model on the target test set (*direct transfer*, where
adaptation starts) and the source recipe trained on the target's own labels (*target supervised*, the room it
has). All three use the direction's ``source.yml`` at the resolution the direction trains at; the supervised run
trains on the target's train set without target-BN adaptation (it *is* the target).

The synthetic benchmark's gap as a whole (:func:`measure_synthetic_domain_gap`) is the 2x2 (train domain x test
domain) table of fast-reid's supervised Baseline (``configs/Synthetic``), plus an untrained network of the same
architecture as the no-learning reference row.
"""

import os
import subprocess
import sys
import time

from ..engine import build_config, seed_everything
from .runs import ROOT, TRAIN_NET, config_tuple, metrics_row, read_json, train_net, write_json

__all__ = [
    "direction_datasets",
    "measure_direction_gap",
    "format_direction_gap",
    "measure_synthetic_domain_gap",
    "domain_gap_table",
]

SYNTHETIC_CONFIG_DIR = os.path.join(ROOT, "configs", "Synthetic")
# (generator domain, registered dataset) of the 2x2 table, in its row and column order
BASELINE_DOMAINS = (("market", "SynthMarket"), ("duke", "SynthDuke"))
BASELINE_TESTS = [name for _, name in BASELINE_DOMAINS]


def direction_datasets(config_dir):
    """(source, target) dataset names of a direction: ``source.yml``'s DATASETS.NAMES[0], ``lf2.yml``'s."""
    source = build_config(os.path.join(config_dir, "source.yml")).DATASETS.NAMES[0]
    target = build_config(os.path.join(config_dir, "lf2.yml")).DATASETS.NAMES[0]
    return source, target


def _evaluate(config, run_dir, weights, test, seed, env, reuse):
    train_net(
        config,
        run_dir,
        "MODEL.WEIGHTS",
        weights,
        "DATASETS.TESTS",
        config_tuple([test]),
        "SEED",
        str(seed),
        flags=("--eval-only",),
        env=env,
        reuse_if=reuse and "eval_results.json",
    )
    return read_json(os.path.join(run_dir, "eval_results.json"))


def measure_direction_gap(config_dir, out, seed, env, reuse=True):
    """Train (or reuse) the source model and the target-supervised model under ``out``; returns the gap report:
    ``rows`` (source_in_domain, direct_transfer, target_supervised: mAP and ranks), the datasets, and
    ``room`` = target supervised mAP / direct transfer mAP."""
    source, target = direction_datasets(config_dir)
    config = os.path.join(config_dir, "source.yml")
    source_dir, supervised_dir = os.path.join(out, "source"), os.path.join(out, "target_supervised")
    train_net(config, source_dir, "SEED", str(seed), env=env, reuse_if=reuse and "model_final.pth")
    train_net(
        config,
        supervised_dir,
        "SEED",
        str(seed),
        "DATASETS.NAMES",
        config_tuple([target]),
        "DATASETS.TESTS",
        config_tuple([target]),
        "DATASETS.TARGET_BN_ADAPT",
        "",
        env=env,
        reuse_if=reuse and "model_final.pth",
    )
    runs = {
        "source_in_domain": (source_dir, source),
        "direct_transfer": (source_dir, target),
        "target_supervised": (supervised_dir, target),
    }
    rows = [
        metrics_row(
            name,
            _evaluate(
                config,
                os.path.join(out, f"eval_{name}"),
                os.path.join(run_dir, "model_final.pth"),
                test,
                seed,
                env,
                reuse,
            ),
        )
        for name, (run_dir, test) in runs.items()
    ]
    direct, supervised = rows[1]["mAP"], rows[2]["mAP"]
    return {
        "direction": os.path.basename(os.path.normpath(config_dir)),
        "source": source,
        "target": target,
        "seed": seed,
        "rows": rows,
        "room": round(supervised / direct, 2) if direct else None,
    }


def format_direction_gap(report):
    """The lines ``tools/measure_domain_gap.py --direction`` prints for a :func:`measure_direction_gap` report."""
    lines = [f"{report['direction']} ({report['source']} -> {report['target']}, seed {report['seed']}):"]
    for row in report["rows"]:
        lines.append(f"  {row['name']:<18} mAP {row['mAP']:5.1f}  Rank-1 {row['Rank-1']:5.1f}")
    lines.append(f"  target supervised / direct transfer mAP: {report['room']}")
    return "\n".join(lines)


def generate_baseline_domains(root):
    """Generate SynthMarket and SynthDuke under ``root`` (if missing); returns the seconds each took."""
    from ..data.datasets import synthetic_root
    from ..data.synthetic import generate_domain

    seconds = {}
    for domain, _ in BASELINE_DOMAINS:
        start = time.time()
        generate_domain(synthetic_root(root, domain), domain)
        seconds[domain] = round(time.time() - start, 1)
    return seconds


def evaluate_on_both_domains(config_file, opts, output_dir, weights=None):
    """Results on both test sets of the config's model: loaded from ``weights``, or freshly initialised
    (seeded by SEED) when ``weights`` is None -- the 'no learning' reference row."""
    from fastreid.engine import DefaultTrainer
    from fastreid.utils.checkpoint import Checkpointer
    from fastreid.utils.logger import setup_logger

    setup_logger(name="fastreid")
    cfg = build_config(config_file, list(opts) + ["OUTPUT_DIR", output_dir])
    if weights is None:
        cfg.MODEL.HEADS.NUM_CLASSES = 1  # the classifier is not used for retrieval features
    seed_everything(cfg.SEED if cfg.SEED >= 0 else 0)
    model = DefaultTrainer.build_model(cfg)
    if weights is not None:
        Checkpointer(model).load(weights)
    results = DefaultTrainer.test(cfg, model)
    return {name: {k: float(results[name][k]) for k in ("mAP", "Rank-1")} for name in BASELINE_TESTS}


def train_baseline_and_evaluate(domain, opts, output_dir, reuse):
    """Train with tools/train_net.py (the documented command, its output shown), then evaluate its final
    checkpoint; returns the results and the training minutes (None when ``reuse`` kept a finished run)."""
    run_dir = os.path.join(output_dir, f"baseline_{domain}")
    config_file = os.path.join(SYNTHETIC_CONFIG_DIR, f"baseline_{domain}.yml")
    weights = os.path.join(run_dir, "model_final.pth")
    minutes = None
    if not (reuse and os.path.isfile(weights)):
        command = [sys.executable, TRAIN_NET, "--config-file", config_file, "OUTPUT_DIR", run_dir, *opts]
        print("+", " ".join(command), flush=True)
        start = time.time()
        subprocess.run(command, check=True)
        minutes = round((time.time() - start) / 60, 1)
    return evaluate_on_both_domains(config_file, opts, run_dir, weights), minutes


def measure_synthetic_domain_gap(output_dir, opts, dataset_root, skip_training=False, reuse=False):
    """Generate both domains, evaluate an untrained network and (unless ``skip_training``) train and evaluate a
    Baseline per domain. Writes ``domain_gap.md`` and ``domain_gap.json`` into ``output_dir``; returns the report
    (dataset root, generation seconds, overrides, training minutes, rows) and the Markdown table."""
    report = {"dataset_root": dataset_root, "generation_seconds": generate_baseline_domains(dataset_root), "opts": opts}
    base_config = os.path.join(SYNTHETIC_CONFIG_DIR, "Base-synth-baseline.yml")
    rows = [("untrained (random init)", "-", evaluate_on_both_domains(base_config, opts, output_dir))]
    if not skip_training:
        report["training_minutes"] = {}
        for domain, name in BASELINE_DOMAINS:
            results, minutes = train_baseline_and_evaluate(domain, opts, output_dir, reuse)
            report["training_minutes"][domain] = minutes
            rows.append(("Baseline R18", name, results))
    report["rows"] = [{"model": m, "trained_on": t, "results": r} for m, t, r in rows]
    table = domain_gap_table(report["rows"])
    with open(os.path.join(output_dir, "domain_gap.md"), "w", encoding="utf-8") as f:
        f.write(table + "\n")
    write_json(os.path.join(output_dir, "domain_gap.json"), report, indent=2)
    return report, table


def domain_gap_table(rows):
    """The report's rows as a Markdown table: mAP and Rank-1 of each model on both test sets."""
    lines = [
        "| Model | Trained on | SynthMarket mAP | SynthMarket Rank-1 | SynthDuke mAP | SynthDuke Rank-1 |",
        "|:--|:--|--:|--:|--:|--:|",
    ]
    for row in rows:
        cells = [f"{row['results'][n]['mAP']:.1f} | {row['results'][n]['Rank-1']:.1f}" for n in BASELINE_TESTS]
        lines.append(f"| {row['model']} | {row['trained_on']} | {' | '.join(cells)} |")
    return "\n".join(lines)
