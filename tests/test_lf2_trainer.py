"""LF2 adaptation end to end through tools/train_net.py on a tiny synthetic target (fast-reid's DukeMTMC class
reads it): pseudo labels every epoch, EMA teacher, weights and losses move, exact resume, 2-process gloo."""

import json
import re

import pytest
import torch
from conftest import LF2_TINY_CONFIG as CONFIG
from conftest import LF2_TINY_EPOCHS as EPOCHS
from conftest import run_train_net


def train(out, root, *opts, flags=()):
    proc = run_train_net(
        ["--config-file", CONFIG, *flags, "OUTPUT_DIR", str(out), "SOLVER.MAX_EPOCH", str(EPOCHS), *opts], root
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def load(path):
    return torch.load(path, map_location="cpu", weights_only=True)


def test_pseudo_labels_every_epoch_for_every_level(uninterrupted):
    out, _ = uninterrupted
    records = [json.loads(line) for line in (out / "clustering.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == list(range(EPOCHS))
    for record in records:
        assert len(record["levels"]) == 3  # global + K=2 parts
        for level in record["levels"]:
            assert level["num_samples"] == 62 and level["num_clusters"] == 6
            assert 0.0 <= level["nmi"] <= 1.0  # scored against the true ids, which training never sees
    final = load(out / "model_final.pth")
    assert [len(labels) for labels in final["pseudo_labels"]] == [62, 62, 62]


def test_teacher_is_the_ema_of_the_student(uninterrupted):
    out, _ = uninterrupted
    first, final = load(out / "model_0000.pth")["model"], load(out / "model_final.pth")["model"]
    key = "backbone.conv1.weight"
    assert not torch.equal(first[key], final[key]), "student backbone did not change"
    assert not torch.equal(first["teacher." + key], final["teacher." + key]), "teacher did not follow"
    assert not torch.equal(final[key], final["teacher." + key]), "teacher equals the student after many steps"
    assert all(not v.requires_grad for v in final.values())
    metrics = [json.loads(line) for line in (out / "metrics.json").read_text().splitlines()]
    ema = [(m["iteration"], m["ema_momentum"]) for m in metrics if "ema_momentum" in m]
    assert ema, "EMA momentum never logged"
    for iteration, momentum in ema:  # m = min(1 - 1/(step+1), alpha) with the global step
        assert momentum == pytest.approx(min(1 - 1 / (iteration + 1), 0.999))


def test_losses_fall_and_last_epoch_is_reported(uninterrupted):
    out, proc = uninterrupted
    summary = json.loads((out / "summary.json").read_text())
    losses = [v for _, v in summary["total_loss"]]
    assert len(losses) == 3 * EPOCHS
    first, last = sum(losses[:3]) / 3, sum(losses[-3:]) / 3
    assert last < first, losses
    assert summary["last"]["epoch"] == EPOCHS - 1
    assert "Final (last epoch 2)" in proc.stdout + proc.stderr


def test_resume_reaches_the_same_result(uninterrupted, tiny_duke_root, tmp_path):
    out, _ = uninterrupted
    train(tmp_path, tiny_duke_root, "SOLVER.MAX_EPOCH", "1")
    proc = run_train_net(
        ["--config-file", CONFIG, "--resume", "OUTPUT_DIR", str(tmp_path), "SOLVER.MAX_EPOCH", str(EPOCHS)],
        tiny_duke_root,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Starting training from epoch 1" in proc.stdout + proc.stderr
    full = json.loads((out / "summary.json").read_text())["last"]
    resumed = json.loads((tmp_path / "summary.json").read_text())["last"]
    assert resumed == full
    a, b = load(out / "model_final.pth")["model"], load(tmp_path / "model_final.pth")["model"]
    assert all(torch.equal(a[k], b[k]) for k in a), "resumed weights differ from the uninterrupted run"


def test_two_process_gloo_adaptation_trains_on_identical_labels(tiny_duke_root, tmp_path):
    train(tmp_path, tiny_duke_root, "SOLVER.MAX_EPOCH", "1", flags=("--num-gpus", "2", "--dist-url", "auto"))
    logs = [(tmp_path / "log.txt").read_text(), (tmp_path / "log.txt.rank1").read_text()]
    digests = [re.findall(r"epoch (\d+) pseudo-label digest (\w+)", log) for log in logs]
    assert digests[0] and digests[0] == digests[1], digests
