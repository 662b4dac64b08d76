"""The domain gap of one adaptation direction, measured with its own source-stage recipe.

Three numbers bound what an unsupervised method can do on a direction (``configs/<Direction>/``): the source model
on its own test set (*source in-domain*), the same model on the target test set (*direct transfer*, where
adaptation starts) and the source recipe trained on the target's own labels (*target supervised*, the room it
has). All three use the direction's ``source.yml`` at the resolution the direction trains at; the supervised run
trains on the target's train set without target-BN adaptation (it *is* the target).
"""

import os

from .runs import metrics_row, read_json, train_net

__all__ = ["direction_datasets", "measure_direction_gap"]


def direction_datasets(config_dir):
    """(source, target) dataset names of a direction: ``source.yml``'s DATASETS.NAMES[0], ``lf2.yml``'s."""
    from ..engine import build_config

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
        f'("{test}",)',
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
        f'("{target}",)',
        "DATASETS.TESTS",
        f'("{target}",)',
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
