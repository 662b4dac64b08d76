"""The mechanism benchmark's pieces: a branch continues its state exactly, paired statistics, the paired table."""

import json

import pytest
import torch
from conftest import LF2_TINY_CONFIG, run_train_net

from lf2_plugin.experiments import mechanism
from lf2_plugin.experiments.paired import format_interval, paired_difference


def test_a_branch_from_an_epoch_checkpoint_is_the_run_itself(uninterrupted, tiny_duke_root, tmp_path):
    """Branching (checkpoint without optimizer and scheduler, --resume for one epoch) from the run's epoch-0
    checkpoint gives exactly the run's epoch 1: same weights, same metrics."""
    out, _ = uninterrupted
    mechanism.branch_checkpoint(str(out / "model_0000.pth"), str(tmp_path), 0)
    stored = torch.load(tmp_path / "model_0000.pth", weights_only=False)
    assert "optimizer" not in stored and (tmp_path / "last_checkpoint").read_text() == "model_0000.pth"
    proc = run_train_net(
        ["--config-file", LF2_TINY_CONFIG, "--resume", "OUTPUT_DIR", str(tmp_path), "SOLVER.MAX_EPOCH", "2"],
        tiny_duke_root,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    run = torch.load(out / "model_0001.pth", weights_only=False)
    branch = torch.load(tmp_path / "model_final.pth", weights_only=False)
    assert all(torch.equal(run["model"][k], branch["model"][k]) for k in run["model"])
    history = json.loads((out / "summary.json").read_text())["history"]
    assert json.loads((tmp_path / "summary.json").read_text())["last"] == history[1]


def test_a_branch_checkpoint_must_be_of_the_named_epoch(uninterrupted, tmp_path):
    out, _ = uninterrupted
    with pytest.raises(ValueError, match="checkpoint of epoch 0, not 1"):
        mechanism.branch_checkpoint(str(out / "model_0000.pth"), str(tmp_path), 1)


def test_branching_needs_a_reset_optimizer_and_a_constant_rate():
    from lf2_plugin.engine import build_config

    mechanism._check_branchable(build_config(LF2_TINY_CONFIG))
    for opts in (["SOLVER.RESET_OPTIMIZER_EACH_EPOCH", False], ["SOLVER.WARMUP_ITERS", 10], ["SOLVER.STEPS", [1]]):
        with pytest.raises(ValueError, match="constant learning rate"):
            mechanism._check_branchable(build_config(LF2_TINY_CONFIG, opts))


def test_paired_difference_mean_interval_and_count():
    pair = paired_difference(
        "x", "y", "mAP", [52.0, 50.0, 61.0], [54.0, 47.0, 53.0], ["s1", "s2", "s3"], unit_key="per_state"
    )
    assert pair["per_state"] == [-2.0, 3.0, 8.0] and pair["units"] == ["s1", "s2", "s3"]
    assert (pair["mean"], pair["std"], pair["n"], pair["better_in"]) == (3.0, 5.0, 3, "2/3")
    half = 4.302653 * 5.0 / 3**0.5  # t(0.975, 2 degrees of freedom) from a table
    assert pair["ci95"] == pytest.approx([3.0 - half, 3.0 + half], abs=0.01)
    with pytest.raises(ValueError, match="3 units"):
        paired_difference("x", "y", "mAP", [1.0], [2.0], ["s1", "s2", "s3"])
    single = paired_difference("x", "y", "mAP", [1.0], [2.0], ["s1"])
    assert single["ci95"] is None and json.loads(json.dumps(single, allow_nan=False)) == single  # valid JSON
    assert format_interval(single["ci95"]) == "-" and format_interval(pair["ci95"]) == "[-9.4, +15.4]"


def fake_result(map_, f1s):
    return {
        "metrics": {"mAP": map_, "Rank-1": map_ + 10},
        "labels": [{k: f1 for k in mechanism.LABEL_METRICS} for f1 in f1s],
        "next_labels": [{k: f1 + 0.1 for k in mechanism.LABEL_METRICS} for f1 in f1s],
    }


def test_paired_table_compares_only_the_levels_both_variants_have():
    results = {
        f"seed{s}/epoch1": {
            "lf2": fake_result(50.0 + s, [0.4, 0.3, 0.5]),
            "global_only_mt": fake_result(49.0 + s, [0.4]),
            "lf2_no_fusion": fake_result(50.0 + s, [0.4, 0.35, 0.45]),
        }
        for s in (1, 2)
    }
    pairs = {
        (p["a"], p["metric"]): p for p in mechanism.paired_table(results, ["lf2", "global_only_mt", "lf2_no_fusion"])
    }
    assert pairs[("global_only_mt", "mAP")]["per_state"] == [-1.0, -1.0]
    assert ("global_only_mt", "labels/0/pairwise_f1") in pairs
    assert ("global_only_mt", "labels/1/pairwise_f1") not in pairs  # one level only
    assert pairs[("lf2_no_fusion", "labels/1/pairwise_f1")]["mean"] == pytest.approx(0.05)
    assert pairs[("lf2_no_fusion", "next_labels/2/group_mates")]["mean"] == pytest.approx(-0.05)


def test_keep_final_weights_only(tmp_path):
    """What the demo keeps: model_final's weights (loadable as before), nothing to resume from, no other file."""
    from lf2_plugin.experiments.runs import keep_final_weights_only

    model = torch.nn.Linear(3, 2)
    optimizer = torch.optim.Adam(model.parameters())
    model(torch.ones(1, 3)).sum().backward()
    optimizer.step()
    state = {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "rng": {"x": 1}, "epoch": 7}
    for name in ("model_0005.pth", "model_best.pth", "model_final.pth"):
        torch.save(state, tmp_path / name)
    (tmp_path / "last_checkpoint").write_text("model_0005.pth")
    assert keep_final_weights_only(str(tmp_path)) > 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last_checkpoint", "model_final.pth"]
    kept = torch.load(tmp_path / "model_final.pth", weights_only=False)
    assert set(kept) == {"model", "epoch"} and all(
        torch.equal(kept["model"][k], v) for k, v in model.state_dict().items()
    )
    assert (tmp_path / "last_checkpoint").read_text() == "model_final.pth"
    (tmp_path / "model_final.pth").unlink()
    with pytest.raises(FileNotFoundError, match="no model_final.pth"):
        keep_final_weights_only(str(tmp_path))


def test_an_unfinished_step_is_resumed_a_finished_one_kept(tmp_path, monkeypatch):
    from lf2_plugin.experiments import runs

    commands = []
    monkeypatch.setattr(
        runs.subprocess, "run", lambda cmd, **kw: commands.append(cmd) or type("Done", (), {"returncode": 0})()
    )
    fresh, unfinished, finished = (tmp_path / name for name in ("fresh", "unfinished", "finished"))
    unfinished.mkdir()
    (unfinished / "last_checkpoint").write_text("model_0003.pth")
    finished.mkdir()
    (finished / "summary.json").write_text("{}")
    for out in (fresh, unfinished, finished):
        runs.train_net("lf2.yml", str(out), "SEED", 1, reuse_if="summary.json")
    assert len(commands) == 2  # the finished step is kept
    assert "--resume" not in commands[0] and "--resume" in commands[1]
    assert commands[1][-2:] == ["SEED", "1"] and str(unfinished) in commands[1]


def test_score_labels_against_the_true_ids_and_the_local_cue_groups():
    """True ids as labels: F1 1, no group-mates merged; one label for a group's two people: group-mates merged."""
    items = [(f"{pid:04d}_c1_{i}.jpg", pid, 1) for pid in (1, 2, 3) for i in range(2)]
    target = mechanism.TargetTruth(
        items, [1, 1, 2, 2, 3, 3], [1, 1, 2, 2, 3, 3], {1: ("train", 0, "upper"), 2: ("train", 0, "upper")}
    )
    (perfect,) = mechanism.score_labels(target, [[0, 0, 1, 1, 2, 2]])
    assert perfect["pairwise_f1"] == 1.0 and perfect["group_mates"] == 0.0 and perfect["unrelated"] == 0.0
    (merged,) = mechanism.score_labels(target, [[0, 0, 0, 0, 2, 2]])
    assert merged["group_mates"] == 1.0 and merged["unrelated"] == 0.0 and merged["pairwise_precision"] < 1
    (without_groups,) = mechanism.score_labels(
        mechanism.TargetTruth(items, target.true_ids, None, None), [[0, 0, 1, 1, 2, 2]]
    )
    assert "group_mates" not in without_groups
