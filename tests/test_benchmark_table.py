"""tools/benchmark_table.py (lf2_plugin.experiments.baseline_table): LF2 beside fast-reid's baselines."""

import json
import os

import pytest

from lf2_plugin.experiments import baseline_table
from lf2_plugin.experiments.runs import ROOT

CONFIG_DIR = os.path.join(ROOT, "configs", "SynthDuke2SynthMarket")
METRICS = {"mAP": 40.0, "Rank-1": 50.0, "Rank-5": 70.0, "Rank-10": 80.0}
# the offset of each row's metrics over METRICS, and the seconds its run took
FAKE_ROWS = {
    "bot_direct": (0.0, 60.0),
    "sbs_direct": (2.0, 66.0),
    "direct_transfer": (1.0, 70.0),
    "lf2": (15.0, 150.0),
    "direct_transfer_osnet": (-3.0, 90.0),
    "lf2_osnet": (10.0, 210.0),
    "target_supervised": (35.0, 60.0),
}


def write_json(path, obj):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        json.dump(obj, f)


def finished_seed(out, seed):
    """The files a finished seed leaves (seed 2 scores one point more on every row)."""
    seed_dir = os.path.join(out, f"seed{seed}")

    def metrics(name):
        return {k: v + FAKE_ROWS[name][0] + (seed - 1) for k, v in METRICS.items()}

    for name in ("bot_direct", "sbs_direct", "target_supervised"):
        write_json(os.path.join(seed_dir, name, "model_final.pth"), {})
        write_json(os.path.join(seed_dir, name, "seconds.json"), {"seconds": FAKE_ROWS[name][1], "resumed": False})
        write_json(os.path.join(seed_dir, name, "eval_target", "eval_results.json"), metrics(name))
    for folder, (direct, lf2) in {
        "resnet": ("direct_transfer", "lf2"),
        "osnet": ("direct_transfer_osnet", "lf2_osnet"),
    }.items():
        run = os.path.join(seed_dir, folder)
        write_json(os.path.join(run, "source", "model_final.pth"), {})
        write_json(os.path.join(run, "source", "seconds.json"), {"seconds": FAKE_ROWS[direct][1], "resumed": False})
        write_json(os.path.join(run, "direct_transfer", "eval_results.json"), metrics(direct))
        write_json(os.path.join(run, "lf2", "summary.json"), {"last": metrics(lf2)})
        write_json(os.path.join(run, "lf2", "seconds.json"), {"seconds": FAKE_ROWS[lf2][1], "resumed": False})


def test_table_pools_finished_seeds_pairs_them_and_keeps_each_runs_seconds(tmp_path):
    out = str(tmp_path)
    for seed in (1, 2):
        finished_seed(out, seed)
    summary = baseline_table.run_table(out, CONFIG_DIR, (1, 2), reuse=True)  # everything is reused: no training
    rows = {row["name"]: row for row in summary["rows"]}
    assert list(rows) == list(baseline_table.ROWS)
    assert rows["lf2"]["mAP"] == 55.5 and [s["mAP"] for s in rows["lf2"]["seeds"]] == [55.0, 56.0]
    assert rows["lf2_osnet"]["seconds_per_run"] == 210.0 and rows["target_supervised"]["seconds_per_run"] == 60.0
    pairs = {(p["a"], p["b"]): p for p in summary["paired"]}
    assert set(pairs) == set(baseline_table.TABLE_PAIRS)
    assert pairs[("lf2", "bot_direct")]["per_seed"] == [15.0, 15.0] and pairs[("lf2", "bot_direct")]["ci95"] == [
        15.0,
        15.0,
    ]
    assert pairs[("target_supervised", "lf2")]["mean"] == 20.0
    with open(os.path.join(out, "summary.json")) as f:
        assert json.load(f)["paired"] == summary["paired"]
    table = baseline_table.format_table(summary)
    assert "| lf2 | 55.5 ± 0.7 | 65.5 ± 0.7 | 2 | 2.5 |" in table
    assert "- lf2 − bot_direct: +15.0 mAP, 95% CI [+15.0, +15.0], n = 2, lf2 higher in 2/2" in table


def test_rows_subset_keeps_rows_recorded_earlier_and_pairs_over_shared_seeds(tmp_path):
    """--rows without the OSNet pair: seed 1's OSNet rows (recorded by an earlier call) stay in its table; seed 2 runs
    and lists only the rows asked for; a row on fewer seeds is pooled and paired over the seeds it has."""
    out = str(tmp_path)
    for seed in (1, 2):
        finished_seed(out, seed)
    baseline_table.run_table(out, CONFIG_DIR, (1,), reuse=True)  # the earlier call: every row of seed 1
    rows = [name for name in baseline_table.ROWS if "osnet" not in name]
    summary = baseline_table.run_table(out, CONFIG_DIR, (1, 2), reuse=True, rows=rows)
    by_name = {row["name"]: row for row in summary["rows"]}
    assert list(by_name) == list(baseline_table.ROWS)
    assert [s["seed"] for s in by_name["lf2_osnet"]["seeds"]] == [1] and by_name["lf2_osnet"]["mAP"] == 50.0
    assert [s["seed"] for s in by_name["lf2"]["seeds"]] == [1, 2]
    with open(os.path.join(out, "seed2", "rows.json")) as f:
        assert [row["name"] for row in json.load(f)] == rows
    pairs = {(p["a"], p["b"]): p for p in summary["paired"]}
    assert pairs[("lf2_osnet", "lf2")]["n"] == 1 and pairs[("lf2_osnet", "lf2")]["ci95"] is None
    assert pairs[("lf2", "bot_direct")]["n"] == 2
    assert "| lf2_osnet | 50.0 ± 0.0 | 60.0 ± 0.0 | 1 |" in baseline_table.format_table(summary)


@pytest.mark.parametrize(
    "opts, meta, cls_layer, pool",
    [
        (baseline_table.BOT_OPTS, "Baseline", "Linear", "GlobalAvgPool"),
        (
            [*baseline_table.SBS_OPTS, "SOLVER.DELAY_EPOCHS", "6"],
            "Baseline",
            "CircleSoftmax",
            "GeneralizedMeanPoolingP",
        ),
        (baseline_table.SECOND_BACKBONE, "LF2SourceBaseline", "Linear", "GlobalAvgPool"),
    ],
)
def test_baseline_recipes_build_fastreids_models_from_the_direction_config(opts, meta, cls_layer, pool):
    from lf2_plugin.engine import build_config, trainer_class_for

    cfg = build_config(os.path.join(CONFIG_DIR, "source.yml"), list(opts))
    model = trainer_class_for(cfg).build_model(cfg)
    assert type(model).__name__ == meta and cfg.MODEL.HEADS.CLS_LAYER == cls_layer
    assert type(model.heads.pool_layer).__name__ == pool
    if meta == "Baseline":  # fast-reid's recipe: no target-BN adaptation, fast-reid's trainer and sampler
        assert cfg.DATASETS.TARGET_BN_ADAPT == "" and cfg.DATALOADER.SAMPLER_TRAIN == "NaiveIdentitySampler"
        assert trainer_class_for(cfg).__module__.startswith("fastreid.")
