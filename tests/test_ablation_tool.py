"""tools/ablation.py (lf2_plugin.experiments.ablation): mean ± std over seeds, per-level pseudo-label quality, and
--reuse of finished steps."""

import json
import os
import subprocess
import sys

import pytest

from lf2_plugin.experiments import ablation
from lf2_plugin.experiments.runs import ROOT

METRICS = {"mAP": 50.0, "Rank-1": 60.0, "Rank-5": 80.0, "Rank-10": 90.0}


def write_json(path, obj, lines=False):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write("\n".join(json.dumps(o) for o in obj) if lines else json.dumps(obj))


def finished_seed(out, seed, offset):
    """The files a finished seed leaves: source model, direct-transfer results, each variant's summary + clustering."""
    seed_dir = os.path.join(out, f"seed{seed}")
    write_json(os.path.join(seed_dir, "source", "model_final.pth"), {})
    write_json(os.path.join(seed_dir, "direct_transfer", "eval_results.json"), {k: v - 20 for k, v in METRICS.items()})
    for i, name in enumerate(ablation.VARIANTS):
        write_json(
            os.path.join(seed_dir, name, "summary.json"), {"last": {k: v + i + offset for k, v in METRICS.items()}}
        )
        level = {"nmi": 0.8 + 0.01 * offset, "pairwise_precision": 0.5, "pairwise_recall": 0.4, "pairwise_f1": 0.45}
        first = dict(level, nmi=0.1, pairwise_f1=0.3 + 0.05 * offset)
        epochs = [{"epoch": 0, "levels": [first] * 3}, {"epoch": 1, "levels": [level] * 3}]
        write_json(os.path.join(seed_dir, name, "clustering.jsonl"), epochs, lines=True)


def test_reuse_aggregates_finished_runs_without_training(tmp_path, monkeypatch):
    out = str(tmp_path)
    for seed, offset in ((1, 0.0), (2, 2.0)):
        finished_seed(out, seed, offset)
    per_seed = {
        seed: ablation.run_seed(out, "configs/SynthDuke2SynthMarket", seed, env={}, reuse=True) for seed in (1, 2)
    }
    rows = {row["name"]: row for row in ablation.aggregate(per_seed)}
    assert list(rows) == ["direct_transfer", *ablation.VARIANTS]
    assert rows["direct_transfer"]["mAP"] == 30.0 and rows["direct_transfer"]["std"]["mAP"] == 0.0
    assert rows["lf2"]["mAP"] == 51.0 and rows["lf2"]["std"]["mAP"] == pytest.approx(1.41, abs=0.01)
    assert [s["mAP"] for s in rows["global_only_mt"]["seeds"]] == [51.0, 53.0]
    quality = ablation.aggregate_pseudo_labels(out, (1, 2))
    assert [level["level"] for level in quality["lf2"]] == [0, 1, 2]
    assert quality["lf2"][0]["nmi"] == pytest.approx(0.81)  # the last epoch, not the first
    assert quality["lf2"][0]["std"]["pairwise_f1"] == 0.0


def test_global_f1_per_epoch_and_its_paired_change(tmp_path):
    """Per seed the global level's pairwise F1 in epoch order; last − first is paired over seeds (0.15, 0.05)."""
    for seed, offset in ((1, 0.0), (2, 2.0)):
        finished_seed(str(tmp_path), seed, offset)
    resumed = os.path.join(str(tmp_path), "seed1", "lf2", "clustering.jsonl")
    with open(resumed) as f:
        lines = f.read().splitlines()
    with open(resumed, "w") as f:  # resumed at epoch 1's start: its clustering is logged twice
        f.write("\n".join([*lines, lines[-1]]))
    entry = ablation.global_f1_per_epoch(str(tmp_path), (1, 2))["lf2"]
    assert entry["per_seed"] == {"1": [0.3, 0.45], "2": [0.4, 0.45]}
    assert entry["mean"] == [0.35, 0.45]
    change = entry["last_minus_first"]
    assert change["per_seed"] == [0.15, 0.05] and change["mean"] == 0.1 and change["n"] == 2
    assert change["ci95"][0] < 0.1 < change["ci95"][1]


def test_without_reuse_a_missing_step_is_run(tmp_path, monkeypatch):
    finished_seed(str(tmp_path), 1, 0.0)
    commands = []

    def fake_run(cmd, **kwargs):
        commands.append(cmd)
        raise RuntimeError("stop after the first command")

    from lf2_plugin.experiments import runs

    monkeypatch.setattr(runs.subprocess, "run", fake_run)
    with pytest.raises(RuntimeError):
        ablation.run_seed(str(tmp_path), "configs/SynthDuke2SynthMarket", 1, env={}, reuse=False)
    assert "source.yml" in " ".join(commands[0])


def test_variants_common_overrides_and_sources(tmp_path, monkeypatch):
    """--variants runs only those, trailing KEY VALUE pairs reach every variant before its own override, and
    --sources takes an earlier ablation's source model and direct transfer (a missing one is named)."""
    sources, out = str(tmp_path / "base"), str(tmp_path / "study")
    finished_seed(sources, 1, 0.0)
    commands = []

    def fake_adapt(name, config_dir, run_dir, weights, seed, opts, env, reuse=False):
        commands.append((name, weights, list(opts)))
        return {"name": name, **METRICS}

    monkeypatch.setattr(ablation, "adapt", fake_adapt)
    rows = ablation.run_seed(
        out,
        "configs/SynthDuke2SynthMarket",
        1,
        env={},
        variants=["global_only_mt"],
        common_opts=["MODEL.LF2.TEACHER.EMA_ALPHA", "0.95"],
        sources=sources,
    )
    assert [row["name"] for row in rows] == ["direct_transfer", "global_only_mt"]
    assert rows[0]["mAP"] == 30.0
    assert commands == [
        (
            "global_only_mt",
            os.path.join(sources, "seed1", "source", "model_final.pth"),
            ["MODEL.LF2.TEACHER.EMA_ALPHA", "0.95", "MODEL.LF2.NUM_PARTS", "0"],
        )
    ]
    with pytest.raises(SystemExit, match=r"seed2.source.model_final\.pth does not exist"):
        ablation.run_seed(out, "configs/SynthDuke2SynthMarket", 2, env={}, sources=sources)


def test_paired_differences_per_seed_with_a_t_interval():
    def row(name, maps):
        return {"name": name, "seeds": [{"seed": seed, "mAP": m} for seed, m in zip((1, 2, 3), maps)]}

    rows = [
        row("direct_transfer", [40.0, 45.0, 50.0]),
        row("lf2", [50.0, 55.0, 60.0]),
        row("global_only_mt", [52.0, 52.0, 52.0]),
    ]
    pairs = {(p["a"], p["b"]): p for p in ablation.paired_differences(rows)}
    assert set(pairs) == {("lf2", "direct_transfer"), ("lf2", "global_only_mt"), ("global_only_mt", "direct_transfer")}
    lf2_vs_global = pairs[("lf2", "global_only_mt")]
    assert lf2_vs_global["per_seed"] == [-2.0, 3.0, 8.0] and lf2_vs_global["better_in"] == "2/3"
    assert (lf2_vs_global["mean"], lf2_vs_global["std"]) == (3.0, 5.0)
    half = 4.302653 * 5.0 / 3**0.5  # t(0.975, 2 degrees of freedom) from a table
    assert lf2_vs_global["ci95"] == pytest.approx([3.0 - half, 3.0 + half], abs=0.01)
    assert pairs[("lf2", "direct_transfer")]["ci95"] == [10.0, 10.0]  # no spread: the interval is a point


def test_combine_pools_disjoint_seeds_of_earlier_summaries(tmp_path):
    """--combine: the per-seed values of two summaries pooled (rows both have, metrics both have: the later one kept
    mAP and Rank-1 only), paired differences over all seeds; a seed in both summaries is refused with both files
    named."""

    def summary(path, seeds, names, metrics=METRICS):
        rows = [
            {
                "name": name,
                "mAP": 0.0,
                "seeds": [{"seed": s, **{k: v + s + i for k, v in metrics.items()}} for s in seeds],
            }
            for i, name in enumerate(names)
        ]
        write_json(str(path), {"rows": rows})
        return str(path)

    first = summary(tmp_path / "a" / "summary.json", (1, 2), ["direct_transfer", "lf2", "lf2_no_fusion"])
    kept = {k: METRICS[k] for k in ("mAP", "Rank-1")}
    later = summary(tmp_path / "b" / "summary.json", (3,), ["direct_transfer", "lf2"], kept)
    out = tmp_path / "pooled"
    tool = [sys.executable, os.path.join(ROOT, "tools", "ablation.py"), "--out", str(out), "--combine", first, later]
    proc = subprocess.run(tool, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    pooled = json.loads((out / "summary.json").read_text())
    rows = {row["name"]: row for row in pooled["rows"]}
    assert list(rows) == ["direct_transfer", "lf2"]  # lf2_no_fusion is not in the later summary
    assert [s["seed"] for s in rows["lf2"]["seeds"]] == [1, 2, 3]
    assert rows["lf2"]["mAP"] == 53.0 and rows["lf2"]["std"]["mAP"] == 1.0
    assert pooled["metrics"] == ["mAP", "Rank-1"] and set(rows["lf2"]["seeds"][0]) == {"seed", "mAP", "Rank-1"}
    assert "| method | mAP | Rank-1 |" in proc.stdout
    (pair,) = pooled["paired"]
    assert (pair["a"], pair["b"], pair["per_seed"]) == ("lf2", "direct_transfer", [1.0, 1.0, 1.0])
    assert "pseudo_labels" not in pooled and pooled["combined"] == [first, later]
    assert "| lf2 − direct_transfer | +1.0, +1.0, +1.0 |" in proc.stdout
    with pytest.raises(SystemExit, match=r"seed 1 is in both .*a.summary\.json and .*a.summary\.json"):
        ablation.combine_summaries([first, first])
    no_map = summary(tmp_path / "c" / "summary.json", (4,), ["direct_transfer", "lf2"], {"Rank-1": 60.0})
    with pytest.raises(SystemExit, match=r"c.summary\.json has an mAP"):
        ablation.combine_summaries([first, no_map])


def test_record_restores_steps_only_from_the_same_source_weights(tmp_path, monkeypatch):
    """--record: a finished LF2 step is recorded; a later run in an empty --out restores it instead of training when
    its source weights are bit-for-bit the same, and trains it again when one weight differs."""
    import torch

    from lf2_plugin.experiments import runs

    sources, record = str(tmp_path / "sources"), str(tmp_path / "record")
    finished_seed(sources, 1, 0.0)
    weights = os.path.join(sources, "seed1", "source", "model_final.pth")
    torch.save({"model": {"w": torch.ones(3), "b": torch.zeros(2)}, "optimizer": {}}, weights)
    trained = []

    def fake_train(cmd, **kwargs):
        run_dir = cmd[cmd.index("OUTPUT_DIR") + 1]
        trained.append(run_dir)
        write_json(os.path.join(run_dir, "summary.json"), {"last": {k: v + len(trained) for k, v in METRICS.items()}})
        level = {"nmi": 0.8, "pairwise_precision": 0.5, "pairwise_recall": 0.4, "pairwise_f1": 0.45}
        write_json(os.path.join(run_dir, "clustering.jsonl"), [{"epoch": 0, "levels": [level] * 3}], lines=True)
        return subprocess.CompletedProcess(cmd, 0)

    monkeypatch.setattr(runs.subprocess, "run", fake_train)

    def run(out):
        rows = ablation.run_seed(
            str(tmp_path / out), "configs/SynthDuke2SynthMarket", 1, {}, True, ["lf2"], (), sources, record
        )
        return rows[1]["mAP"]

    assert run("first") == 51.0 and len(trained) == 1
    assert sorted(os.listdir(os.path.join(record, "seed1", "lf2"))) == [
        "clustering.jsonl",
        "source_weights.json",
        "summary.json",
    ]
    assert run("elsewhere") == 51.0 and len(trained) == 1  # restored: nothing trained
    assert ablation.last_epoch_pseudo_labels(str(tmp_path / "elsewhere" / "seed1" / "lf2"))[0]["nmi"] == 0.8
    torch.save({"model": {"w": torch.tensor([1.0, 1.0, 1.0 + 1e-6]), "b": torch.zeros(2)}}, weights)
    assert run("other_weights") == 52.0 and len(trained) == 2  # another source model: trained again
