"""fast-reid's own Baseline trains through tools/train_net.py on CPU: weights change, loss falls, checkpoints,
--resume, --eval-only with the compiled ranker, and a 2-process gloo run with a shared seed."""

import os
import re

import pytest
import torch
from conftest import ROOT, load_train_net, run_train_net

CONFIG = os.path.join(ROOT, "tests", "configs", "baseline_tiny.yml")


def load_model_state(path):
    return torch.load(path, map_location="cpu", weights_only=True)["model"]


def mean_training_loss(cfg_opts, weights, datasets_root, monkeypatch):
    """Baseline's training loss (CE + triplet) over the tiny train set with the given weights."""
    from lf2_plugin.engine import build_config

    import fastreid.data.build as data_build
    from fastreid.modeling import build_model
    from fastreid.utils.checkpoint import Checkpointer
    from fastreid.utils.events import EventStorage

    monkeypatch.setattr(data_build, "_root", datasets_root)
    cfg = build_config(CONFIG, cfg_opts)
    cfg.DATALOADER.SAMPLER_TRAIN = "NaiveIdentitySampler"
    torch.manual_seed(0)
    loader = data_build.build_reid_train_loader(cfg)
    batches = [b for _, b in zip(range(6), loader)]
    cfg.MODEL.HEADS.NUM_CLASSES = loader.dataset.num_classes
    model = build_model(cfg)
    Checkpointer(model).load(weights)
    model.train()
    total = 0.0
    with torch.no_grad(), EventStorage(0):
        for batch in batches:
            total += float(sum(model(batch).values()))
    return total / len(batches)


@pytest.fixture(scope="module")
def trained_run(tiny_market_root, tmp_path_factory):
    out = str(tmp_path_factory.mktemp("baseline"))
    proc = run_train_net(["--config-file", CONFIG, "OUTPUT_DIR", out], tiny_market_root)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return out, proc


def test_baseline_trains_weights_change_and_loss_falls(trained_run, tiny_market_root, monkeypatch):
    out, proc = trained_run
    first, final = os.path.join(out, "model_0000.pth"), os.path.join(out, "model_final.pth")
    assert os.path.isfile(first) and os.path.isfile(final)
    s0, s1 = load_model_state(first), load_model_state(final)
    conv_keys = [k for k in s0 if k.startswith("backbone.") and k.endswith("conv1.weight")]
    assert conv_keys
    changed = [k for k in conv_keys if not torch.equal(s0[k], s1[k])]
    assert changed == conv_keys, f"backbone convolutions unchanged by training: {set(conv_keys) - set(changed)}"
    opts = ["MODEL.HEADS.NUM_CLASSES", str(s1["heads.weight"].shape[0])]
    loss_first = mean_training_loss(opts, first, tiny_market_root, monkeypatch)
    loss_final = mean_training_loss(opts, final, tiny_market_root, monkeypatch)
    assert loss_final < 0.9 * loss_first, (loss_first, loss_final)
    assert "Evaluation results" in proc.stdout + proc.stderr


def test_resume_continues_at_the_next_epoch(trained_run, tiny_market_root):
    out, _ = trained_run
    first = os.path.join(out, "model_0000.pth")
    mtime = os.path.getmtime(first)
    proc = run_train_net(
        ["--config-file", CONFIG, "--resume", "OUTPUT_DIR", out, "SOLVER.MAX_EPOCH", "5", "TEST.EVAL_PERIOD", "5"],
        tiny_market_root,
    )
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-3000:]
    assert "Starting training from epoch 4" in log
    final = torch.load(os.path.join(out, "model_final.pth"), map_location="cpu", weights_only=True)
    assert final["epoch"] == 4
    assert os.path.getmtime(first) == mtime, "resume retrained epoch 0"


def test_eval_only_ranks_with_the_compiled_ranker(trained_run, tiny_market_root, monkeypatch, tmp_path):
    import fastreid.data.build as data_build
    from fastreid.evaluation import rank

    out, _ = trained_run
    num_classes = load_model_state(os.path.join(out, "model_final.pth"))["heads.weight"].shape[0]
    calls = []
    compiled = rank.evaluate_cy

    def counting_evaluate_cy(*args, **kwargs):
        calls.append(1)
        return compiled(*args, **kwargs)

    monkeypatch.setattr(rank, "evaluate_cy", counting_evaluate_cy)
    monkeypatch.setattr(data_build, "_root", tiny_market_root)
    results = load_train_net().cli(
        [
            "--config-file",
            CONFIG,
            "--eval-only",
            "MODEL.WEIGHTS",
            os.path.join(out, "model_final.pth"),
            "OUTPUT_DIR",
            str(tmp_path),
            "MODEL.HEADS.NUM_CLASSES",
            str(num_classes),
        ]
    )
    assert calls, "evaluation did not use the compiled Cython ranker"
    assert 0 <= results["mAP"] <= 100 and 0 <= results["Rank-1"] <= 100


def test_eval_only_without_weights_names_the_problem(tiny_market_root, tmp_path):
    proc = run_train_net(
        [
            "--config-file",
            CONFIG,
            "--eval-only",
            "OUTPUT_DIR",
            str(tmp_path),
            "MODEL.WEIGHTS",
            str(tmp_path / "missing.pth"),
        ],
        tiny_market_root,
    )
    assert proc.returncode != 0 and "missing.pth" in proc.stderr


def test_two_process_gloo_run_shares_the_seed(tiny_market_root, tmp_path):
    proc = run_train_net(
        [
            "--config-file",
            CONFIG,
            "--num-gpus",
            "2",
            "--dist-url",
            "auto",
            "OUTPUT_DIR",
            str(tmp_path),
            "SOLVER.MAX_EPOCH",
            "1",
            "TEST.EVAL_PERIOD",
            "1",
            "SOLVER.IMS_PER_BATCH",
            "16",
        ],
        tiny_market_root,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    logs = [(tmp_path / "log.txt").read_text(), (tmp_path / "log.txt.rank1").read_text()]
    seeds = [
        re.search(r"Seeds: SEED=(\d+), this rank \((\d)\) seeded with (\d+), shared sampler seed (\d+)", log)
        for log in logs
    ]
    assert all(seeds), logs
    assert [s.group(2) for s in seeds] == ["0", "1"]
    assert seeds[0].group(4) == seeds[1].group(4), "ranks drew different sampler seeds"
    assert seeds[0].group(3) != seeds[1].group(3), "ranks should augment with different per-rank seeds"
    assert "World size: 2" in logs[0]
    assert os.path.isfile(tmp_path / "model_final.pth")


def test_checkpoint_keep_applies_to_fast_reid_trainers(tiny_market_root, tmp_path, monkeypatch):
    """SOLVER.CHECKPOINT_KEEP reaches fast-reid's own DefaultTrainer through protect_training (as in train_net)."""
    from lf2_plugin.engine import build_config
    from lf2_plugin.engine.reliability import protect_training

    import fastreid.data.build as data_build
    from fastreid.engine import DefaultTrainer

    monkeypatch.setattr(data_build, "_root", tiny_market_root)
    cfg = build_config(
        CONFIG,
        [
            "OUTPUT_DIR",
            str(tmp_path),
            "SOLVER.MAX_EPOCH",
            "3",
            "SOLVER.CHECKPOINT_KEEP",
            "1",
            "TEST.EVAL_PERIOD",
            "3",
            "SEED",
            "0",
        ],
    )
    trainer = protect_training(DefaultTrainer(cfg))
    trainer.resume_or_load(resume=False)
    trainer.train()
    assert sorted(p.name for p in tmp_path.glob("*.pth")) == ["model_0001.pth", "model_best.pth", "model_final.pth"]
