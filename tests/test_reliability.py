"""Failure behaviour (docs/RELIABILITY.md): every bad input stops the run with a message that says what to fix,
and no interruption loses finished work. One test per row of the table, driving tools/train_net.py (in a
subprocess, or its cli() in-process where only the raised error matters) on the tiny synthetic sets."""

import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time

import pytest
import torch
from conftest import LF2_TINY_CONFIG, LF2_TINY_EPOCHS, ROOT, TRAIN_NET, load_train_net, run_train_net

BASELINE_CONFIG = os.path.join(ROOT, "tests", "configs", "baseline_tiny.yml")

# Runs tools/train_net.py (argv[1]) with one fault injected, chosen by $LF2_TEST_FAULT:
#   kill-save:N  SIGKILL itself when the N-th .pth checkpoint is renamed into place (its temp file fully written)
#   kill-iter:N  SIGKILL itself just before iteration N
#   term-iter:N  SIGTERM itself just before iteration N (the handler lets iteration N finish)
#   full-save:N  the N-th .pth write fails after 4 KiB as torch.save fails on a full disk (RuntimeError, no errno)
FAULT_DRIVER = r"""
import os, runpy, signal, sys
import lf2_plugin
from fastreid.engine import DefaultTrainer

kind, n = os.environ["LF2_TEST_FAULT"].split(":")
n = int(n)
if kind == "kill-save":
    real_replace, renamed = os.replace, []
    def replace(src, dst):
        if str(dst).endswith(".pth"):
            renamed.append(dst)
            if len(renamed) == n:
                os.kill(os.getpid(), signal.SIGKILL)
        return real_replace(src, dst)
    os.replace = replace
elif kind == "full-save":
    import torch
    real_save, saves = torch.save, []
    def save(obj, f, *args, **kwargs):
        if ".pth.tmp." in str(getattr(f, "name", f)):
            saves.append(f)
            if len(saves) == n:
                f.write(bytes(4096))
                raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 4160 vs 4096")
        return real_save(obj, f, *args, **kwargs)
    torch.save = save
else:
    real_run_step = DefaultTrainer.run_step
    def run_step(self):
        if self.iter == n:
            os.kill(os.getpid(), signal.SIGKILL if kind == "kill-iter" else signal.SIGTERM)
        return real_run_step(self)
    DefaultTrainer.run_step = run_step
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def lf2_args(out, *opts):
    return ["--config-file", LF2_TINY_CONFIG, "OUTPUT_DIR", str(out), "SOLVER.MAX_EPOCH", str(LF2_TINY_EPOCHS), *opts]


def run_with_fault(fault, args, root):
    return run_train_net(args, root, python_args=("-c", FAULT_DRIVER), extra_env={"LF2_TEST_FAULT": fault})


def output(proc):
    return proc.stdout + proc.stderr


def load(path):
    return torch.load(path, map_location="cpu", weights_only=True)


def last_checkpoint(out):
    return (out / "last_checkpoint").read_text().strip()


def digest(path):
    return hashlib.sha1(open(path, "rb").read()).hexdigest()


@pytest.fixture
def cli_with_root(monkeypatch):
    """tools/train_net.py's cli() in this process, reading datasets from a given root (as FASTREID_DATASETS)."""
    import fastreid.data.build as data_build

    def cli(root, argv):
        monkeypatch.setattr(data_build, "_root", str(root))
        monkeypatch.setenv("FASTREID_DATASETS", str(root))
        return load_train_net().cli(argv)

    return cli


@pytest.fixture
def duke_copy(tiny_duke_root, tmp_path):
    """A writable copy of the tiny target, to break."""
    root = tmp_path / "datasets"
    shutil.copytree(tiny_duke_root, root)
    return root


def train_dir(root):
    return root / "DukeMTMC-reID" / "bounding_box_train"


# ---- dataset folder missing or wrong layout ---------------------------------------------------------------------
def test_missing_dataset_folder_stops_before_any_model(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    proc = run_train_net(lf2_args(tmp_path / "out"), str(empty))
    assert proc.returncode == 1
    assert f"missing {empty}/DukeMTMC-reID" in proc.stderr
    assert "fastreid.data.datasets.dukemtmcreid.DukeMTMC reads <$FASTREID_DATASETS>/DukeMTMC-reID/" in proc.stderr
    assert f"FASTREID_DATASETS={str(empty)!r}" in proc.stderr
    assert "Model:" not in output(proc), "a model was built before the dataset check"


@pytest.mark.parametrize(
    "name, layout", [("Market1501", "Market-1501-v15.09.15/"), ("DukeMTMC", "DukeMTMC-reID/"), ("MSMT17", "MSMT17_V1/")]
)
def test_wrong_layout_names_the_class_and_expected_path(name, layout, tmp_path, monkeypatch):
    from lf2_plugin.data.validation import DatasetError, validate_datasets
    from lf2_plugin.engine import build_config

    import fastreid.data.build as data_build

    # the images one level too deep: the most common wrong layout
    (tmp_path / "data" / "data" / layout.rstrip("/") / "bounding_box_train").mkdir(parents=True)
    monkeypatch.setattr(data_build, "_root", str(tmp_path / "data"))
    monkeypatch.setenv("FASTREID_DATASETS", str(tmp_path / "data"))
    cfg = build_config(LF2_TINY_CONFIG, ["DATASETS.NAMES", f"('{name}',)", "DATASETS.TESTS", f"('{name}',)"])
    with pytest.raises(DatasetError) as error:
        validate_datasets(cfg)
    message = str(error.value)
    assert f"dataset {name}:" in message and f".{name} reads <$FASTREID_DATASETS>/{layout}" in message
    assert f"FASTREID_DATASETS={str(tmp_path / 'data')!r}" in message


def test_unregistered_dataset_name_suggests_the_closest(cli_with_root, tiny_duke_root, tmp_path):
    from lf2_plugin.data.validation import DatasetError

    with pytest.raises(DatasetError, match=r"DATASETS.NAMES names 'DukeMTMCC'.*did you mean DukeMTMC\?"):
        cli_with_root(tiny_duke_root, lf2_args(tmp_path, "DATASETS.NAMES", "('DukeMTMCC',)"))


# ---- file names that do not parse -------------------------------------------------------------------------------
def test_unparsable_file_names_are_listed_with_the_pattern(cli_with_root, duke_copy, tmp_path):
    from lf2_plugin.data.validation import DatasetError

    good = sorted(train_dir(duke_copy).iterdir())[0]
    shutil.copy(good, train_dir(duke_copy) / "IMG_2041.jpg")
    shutil.copy(good, train_dir(duke_copy) / "0001_c9_f0000001.jpg")
    with pytest.raises(DatasetError) as error:
        cli_with_root(duke_copy, lf2_args(tmp_path / "out"))
    message = str(error.value)
    assert f"2 of 64 image names in {train_dir(duke_copy)}" in message
    assert "IMG_2041.jpg (no <pid>_c<camera>)" in message and "0001_c9_f0000001.jpg (camera 9 not in 1-8)" in message
    assert "e.g. 0001_c2_f0046182.jpg" in message and r"([-\d]+)_c(\d)" in message


# ---- corrupt or truncated image ---------------------------------------------------------------------------------
def break_images(root):
    """Cut one train image in half (its header stays valid: PIL's verify() passes it) and overwrite one gallery
    image with text; returns their paths."""
    truncated = sorted(train_dir(root).iterdir())[3]
    truncated.write_bytes(truncated.read_bytes()[: truncated.stat().st_size // 2])
    garbage = sorted((root / "DukeMTMC-reID" / "bounding_box_test").iterdir())[0]
    garbage.write_text("not a jpeg")
    return str(truncated), str(garbage)


def test_unreadable_image_is_named(cli_with_root, duke_copy, tmp_path):
    from lf2_plugin.data.validation import DatasetError

    truncated, garbage = break_images(duke_copy)
    with pytest.raises(DatasetError) as error:
        cli_with_root(duke_copy, lf2_args(tmp_path / "out"))
    message = str(error.value)
    assert "2 of 144 images cannot be read" in message and "DATASETS.SKIP_UNREADABLE_IMAGES True" in message
    assert f"{truncated} (OSError: image file is truncated" in message and garbage in message


def test_unreadable_images_can_be_skipped(duke_copy, tmp_path, monkeypatch, caplog):
    from lf2_plugin.data.validation import validate_datasets
    from lf2_plugin.engine import build_config
    from lf2_plugin.engine.trainer import LF2Trainer

    import fastreid.data.build as data_build
    from fastreid.data.common import CommDataset

    truncated, garbage = break_images(duke_copy)
    monkeypatch.setattr(data_build, "_root", str(duke_copy))
    cfg = build_config(LF2_TINY_CONFIG, ["DATASETS.SKIP_UNREADABLE_IMAGES", "True"])
    with caplog.at_level("WARNING", logger="lf2_plugin.data.validation"):
        report = validate_datasets(cfg)
    assert sorted(path for path, _ in report.skipped) == sorted([truncated, garbage])
    assert "skipping 2 unreadable images of 144" in caplog.text and truncated in caplog.text
    assert report.counts == {"DukeMTMC": {"train": 61, "query": 35, "gallery": 46}}
    # what the trainer and the evaluator then read: every remaining image decodes
    items, _ = LF2Trainer.load_target_train_set(cfg)
    assert len(items) == 61 and truncated not in [item[0] for item in items]
    for index in range(len(items)):
        CommDataset(items)[index]
    # and what the evaluation reads: the query, then the gallery without the unreadable image
    loader, num_query = LF2Trainer.build_test_loader(cfg, "DukeMTMC")
    assert (num_query, len(loader.dataset)) == (35, 35 + 46)
    assert garbage not in [item[0] for item in loader.dataset.img_items]


# ---- empty target train set, or fewer images than one batch -----------------------------------------------------
@pytest.mark.parametrize("empty_train, batch, expected", [(True, 16, "has 0 images"), (False, 128, "has 62 images")])
def test_train_set_smaller_than_one_batch(empty_train, batch, expected, cli_with_root, duke_copy, tmp_path):
    from lf2_plugin.data.validation import DatasetError

    if empty_train:
        for image in train_dir(duke_copy).iterdir():
            image.unlink()
    with pytest.raises(DatasetError) as error:
        cli_with_root(duke_copy, lf2_args(tmp_path / "out", "SOLVER.IMS_PER_BATCH", str(batch)))
    message = str(error.value)
    assert f"DATASETS.NAMES=('DukeMTMC',) {expected}" in message
    assert f"fewer than one batch (SOLVER.IMS_PER_BATCH={batch})" in message and str(train_dir(duke_copy)) in message


# ---- MODEL.WEIGHTS missing, unreadable or from another architecture ---------------------------------------------
def resnet50_baseline_checkpoint(path):
    """A Baseline checkpoint with a ResNet-50 (bottleneck blocks): the tiny configs use ResNet-18."""
    from lf2_plugin.engine import build_config

    from fastreid.modeling import build_model

    cfg = build_config(
        BASELINE_CONFIG,
        ["MODEL.BACKBONE.DEPTH", "50x", "MODEL.BACKBONE.FEAT_DIM", "2048", "MODEL.HEADS.NUM_CLASSES", "24"],
    )
    torch.save({"model": build_model(cfg).state_dict()}, path)
    return str(path)


def test_missing_model_weights_named_before_any_model(cli_with_root, tiny_duke_root, tmp_path):
    missing = tmp_path / "source" / "model_best.pth"
    with pytest.raises(FileNotFoundError, match=f"MODEL.WEIGHTS names no file; got '{missing}'"):
        cli_with_root(tiny_duke_root, lf2_args(tmp_path / "out", "MODEL.WEIGHTS", str(missing)))
    assert "Model:" not in (tmp_path / "out" / "log.txt").read_text()


def test_unreadable_model_weights_are_named(cli_with_root, tiny_duke_root, tmp_path):
    broken = tmp_path / "model_best.pth"
    broken.write_bytes(b"PK\x03\x04 interrupted download")
    with pytest.raises(RuntimeError, match=f"cannot read checkpoint {broken} \\(25 bytes\\).*complete torch"):
        cli_with_root(tiny_duke_root, lf2_args(tmp_path / "out", "MODEL.WEIGHTS", str(broken)))


def test_source_weights_of_another_backbone_into_lf2(cli_with_root, tiny_duke_root, tmp_path):
    weights = resnet50_baseline_checkpoint(tmp_path / "resnet50_source.pth")
    with pytest.raises(RuntimeError, match="source checkpoint did not fill the backbone"):
        cli_with_root(tiny_duke_root, lf2_args(tmp_path / "out", "MODEL.WEIGHTS", weights))
    log = (tmp_path / "out" / "log.txt").read_text()
    assert "Source weights -> LF2 (tensor counts)" in log
    assert "| status" in log and "| shape mismatch" in log and "| fresh" in log


def test_eval_only_weights_of_another_backbone(cli_with_root, tiny_market_root, tmp_path):
    weights = resnet50_baseline_checkpoint(tmp_path / "resnet50.pth")
    with pytest.raises(
        RuntimeError,
        match=f"{weights} does not cover this model's eval path: 0 of .* tensors "
        r"missing, [1-9]\d* of another shape .* feature width 2048; the config "
        "builds Baseline on build_resnet_backbone depth 18x",
    ):
        cli_with_root(
            tiny_market_root,
            [
                "--config-file",
                BASELINE_CONFIG,
                "--eval-only",
                "MODEL.WEIGHTS",
                weights,
                "OUTPUT_DIR",
                str(tmp_path / "out"),
                "MODEL.HEADS.NUM_CLASSES",
                "24",
            ],
        )


# ---- unknown or mistyped config key -----------------------------------------------------------------------------
def test_unknown_config_keys_name_the_closest_valid_key(cli_with_root, tiny_duke_root, tmp_path):
    from lf2_plugin.engine.defaults import UnknownConfigKeyError

    with pytest.raises(
        UnknownConfigKeyError,
        match="unknown config key MODEL.LF2.NUM_PART in the command-line "
        r"override; did you mean MODEL.LF2.NUM_PARTS\?",
    ):
        cli_with_root(tiny_duke_root, lf2_args(tmp_path / "out", "MODEL.LF2.NUM_PART", "3"))
    config = tmp_path / "typo.yml"
    config.write_text(f"_BASE_: {LF2_TINY_CONFIG}\nSOLVER:\n  BASE_LRR: 0.1\n")
    with pytest.raises(
        UnknownConfigKeyError,
        match=f"SOLVER.BASE_LRR in the config file {config}; did you mean "
        r"SOLVER.BASE_LR\?",
    ):
        cli_with_root(tiny_duke_root, ["--config-file", str(config), "OUTPUT_DIR", str(tmp_path / "out")])


# ---- clustering without usable labels, SIGTERM, then NaN / inf loss on resume: one short run feeds all three ----
ALL_OUTLIERS = (
    "MODEL.LF2.CLUSTER.ALGORITHM",
    "dbscan",
    "MODEL.LF2.CLUSTER.DBSCAN.EPS",
    "0.01",
    "MODEL.LF2.CLUSTER.DBSCAN.MIN_SAMPLES",
    "60",
)  # no point has 60 neighbours that close


@pytest.fixture(scope="module")
def stopped_run(tiny_duke_root, tmp_path_factory):
    """LF2 whose DBSCAN leaves every point an outlier, stopped by SIGTERM during iteration 1 of epoch 0."""
    out = tmp_path_factory.mktemp("sigterm")
    proc = run_with_fault("term-iter:1", lf2_args(out, *ALL_OUTLIERS), tiny_duke_root)
    return out, proc


def test_all_outlier_clustering_falls_back_and_training_goes_on(stopped_run):
    out, proc = stopped_run
    assert "dbscan: all 62 points are outliers (0 clusters); falling back to faiss_kmeans with k=6" in output(proc)
    record = json.loads((out / "clustering.jsonl").read_text().splitlines()[0])
    assert [level["fallback"] for level in record["levels"]] == ["all_outliers"] * 3
    assert [level["num_clusters"] for level in record["levels"]] == [6] * 3
    # trained on the fallback labels until the signal: two optimizer steps, the labels in the checkpoint
    assert "Exception during training" not in output(proc)
    interrupted = load(out / "model_interrupted.pth")
    assert interrupted["iteration"] == 1 and interrupted["optimizer"]["state"], "no optimizer step was taken"
    assert [len(set(labels.tolist())) for labels in interrupted["pseudo_labels"]] == [6] * 3


def test_sigterm_writes_a_checkpoint_and_exits_143(stopped_run):
    out, proc = stopped_run
    assert proc.returncode == 143, output(proc)[-3000:]
    assert "Stopped by SIGTERM in epoch 0 at iteration 1" in output(proc)
    assert "training stopped by SIGTERM" in proc.stderr and "Traceback" not in proc.stderr
    assert last_checkpoint(out) == "model_interrupted.pth"
    interrupted = load(out / "model_interrupted.pth")
    assert (interrupted["epoch"], interrupted["iteration"], interrupted["interrupted_mid_epoch"]) == (-1, 1, True)
    assert "optimizer" in interrupted and "rng" in interrupted
    assert not list(out.glob("*.tmp.*"))


def test_non_finite_loss_stops_and_keeps_the_last_checkpoint(stopped_run, tiny_duke_root, tmp_path):
    out = tmp_path / "run"
    shutil.copytree(stopped_run[0], out)
    before = {p.name: digest(p) for p in out.glob("*.pth")}
    # resume from the SIGTERM checkpoint with an infinite part-triplet weight: the loss is inf at once
    proc = run_train_net(
        ["--resume", *lf2_args(out, *ALL_OUTLIERS, "MODEL.LF2.PART_TRIPLET_WEIGHT", "1e999")], tiny_duke_root
    )
    assert proc.returncode == 1
    log = output(proc)
    assert "Resuming inside epoch 0 after 2 of its 3 steps" in log
    assert "Starting training from epoch 0" in log
    assert re.search(
        r"FloatingPointError: Loss became infinite or NaN at iteration 2 \(epoch 0\): "
        r"loss_cls=[\d.]+, loss_triplet=[\d.]+, loss_part_triplet=(inf|nan)\.",
        proc.stderr,
    )
    assert f"Training stopped; the last checkpoint, {out}/model_interrupted.pth, is intact" in proc.stderr
    assert {p.name: digest(p) for p in out.glob("*.pth")} == before
    assert last_checkpoint(out) == "model_interrupted.pth"


# ---- strict loads: --resume and LF2 weights must fill the whole model ---------------------------------------------
@pytest.fixture
def finished_run(uninterrupted, tmp_path):
    """A copy of the uninterrupted run's OUTPUT_DIR holding its last checkpoint only."""
    full_out, _ = uninterrupted
    out = tmp_path / "run"
    out.mkdir()
    name = last_checkpoint(full_out)
    shutil.copy(full_out / name, out / name)
    shutil.copy(full_out / "last_checkpoint", out / "last_checkpoint")
    return out, out / name


def test_resume_and_lf2_weights_refuse_a_checkpoint_of_another_k(finished_run, cli_with_root, tiny_duke_root):
    from lf2_plugin.modeling.checkpoint import IncompleteCheckpointError

    out, weights = finished_run
    assert load(weights)["built_with"]["num_parts"] == 2
    weights_into_a_new_run = ["MODEL.WEIGHTS", str(weights), "OUTPUT_DIR", str(out.parent / "fresh")]
    for flags, opts in ((["--resume"], []), ([], weights_into_a_new_run)):
        with pytest.raises(IncompleteCheckpointError) as refused:
            cli_with_root(tiny_duke_root, [*flags, *lf2_args(out), "MODEL.LF2.NUM_PARTS", "3", *opts])
        message = str(refused.value)
        assert message.startswith(f"{weights} does not fit this model: ")
        # stripe 3: expert (7) and attention (2) of student and teacher, and a fourth Fusion Module BN (5)
        assert "23 of 324 tensors missing, 0 of another shape (fusion.bns.3.norm.bias missing;" in message
        assert "It was saved from LF2 with MODEL.LF2.NUM_PARTS=2 on build_resnet_backbone depth 18x" in message
        assert "this run builds LF2 with MODEL.LF2.NUM_PARTS=3 on build_resnet_backbone" in message
    assert digest(weights) == digest(finished_run[1])


def test_lf2_weights_with_another_number_of_clusters_still_load_and_resume(finished_run, tiny_duke_root, tmp_path):
    _, weights = finished_run
    out = tmp_path / "five"
    five = ("MODEL.HEADS.NUM_CLASSES", "5", "MODEL.LF2.CLUSTER.NUM_CLUSTERS", "5", "SOLVER.MAX_EPOCH", "1")
    # 6-row classifiers into a 5-cluster run (the only tensors of another shape; clustering sets them), stopped
    # inside epoch 0 after 2 of its 3 steps
    proc = run_with_fault("term-iter:1", [*lf2_args(out, *five), "MODEL.WEIGHTS", str(weights)], tiny_duke_root)
    assert proc.returncode == 143, output(proc)[-3000:]
    assert load(out / "model_interrupted.pth")["model"]["heads.weight"].shape[0] == 5
    # resumed by a model built with 6-row classifiers (as after a clustering of another k): they take the stored 5
    # rows, trained for 2 steps, instead of being skipped as of another shape
    proc = run_train_net(["--resume", *lf2_args(out, *five, "MODEL.HEADS.NUM_CLASSES", "6")], tiny_duke_root)
    assert proc.returncode == 0, output(proc)[-3000:]
    assert "Resuming inside epoch 0 after 2 of its 3 steps" in output(proc)
    assert "heads.weight" not in "".join(line for line in output(proc).splitlines() if "shape" in line)
    assert load(out / "model_final.pth")["model"]["heads.weight"].shape[0] == 5


# ---- a checkpoint that cannot be written (full disk) -------------------------------------------------------------
def test_a_failed_checkpoint_write_stops_naming_the_folder_and_keeps_the_last_checkpoint(
    stopped_run, tiny_duke_root, tmp_path
):
    out = tmp_path / "run"
    shutil.copytree(stopped_run[0], out)
    before = {p.name: digest(p) for p in out.glob("*.pth")}
    # resume from the SIGTERM checkpoint; the first save after it (model_best.pth at the end of epoch 0) fails
    proc = run_with_fault("full-save:1", ["--resume", *lf2_args(out, *ALL_OUTLIERS)], tiny_duke_root)
    assert proc.returncode == 1, output(proc)[-3000:]
    message = proc.stderr.strip().splitlines()[-1]
    assert message.startswith(f"CheckpointWriteError: cannot write {out}/model_best.pth: RuntimeError: "), message
    assert re.search(rf"\(\d+\.\d [KMG]iB free in {re.escape(str(out))}; 4.0 KiB of the file were written", message)
    assert "The previous checkpoint and last_checkpoint are intact" in message
    assert {p.name: digest(p) for p in out.glob("*.pth")} == before
    assert last_checkpoint(out) == "model_interrupted.pth" and not list(out.glob("*.tmp.*"))


@pytest.fixture
def full_disk(tmp_path):
    """A 1 MiB tmpfs: a real full disk (needs root and mount; skipped elsewhere)."""
    folder = tmp_path / "tmpfs"
    folder.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(folder)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    yield folder
    subprocess.run(["umount", str(folder)], check=True)


def test_a_full_disk_while_saving_keeps_the_previous_checkpoint(full_disk):
    from lf2_plugin.engine.checkpoint import AtomicCheckpointer, CheckpointWriteError

    checkpointer = AtomicCheckpointer(torch.nn.Linear(4, 4), str(full_disk))
    checkpointer.save("model_0000", epoch=0)
    saved = digest(full_disk / "model_0000.pth")
    checkpointer.model = torch.nn.Linear(1024, 1024)  # 4 MiB of weights into 1 MiB
    with pytest.raises(CheckpointWriteError) as failed:
        checkpointer.save("model_0001", epoch=1)
    assert str(failed.value).startswith(f"cannot write {full_disk}/model_0001.pth: the disk is full (")
    assert f"free in {full_disk};" in str(failed.value)
    assert sorted(p.name for p in full_disk.iterdir()) == ["last_checkpoint", "model_0000.pth"]
    assert last_checkpoint(full_disk) == "model_0000.pth" and digest(full_disk / "model_0000.pth") == saved


# ---- SIGKILL during a checkpoint save and mid-epoch; --resume ---------------------------------------------------
def test_sigkill_then_resume_matches_the_uninterrupted_run(uninterrupted, tiny_duke_root, tmp_path):
    full_out, _ = uninterrupted
    # 1. killed while saving model_0000.pth (the second .pth of epoch 0; model_best.pth was the first)
    proc = run_with_fault("kill-save:2", lf2_args(tmp_path), tiny_duke_root)
    assert proc.returncode == -signal.SIGKILL
    assert not (tmp_path / "model_0000.pth").exists() and len(list(tmp_path.glob("model_0000.pth.tmp.*"))) == 1
    assert last_checkpoint(tmp_path) == "model_best.pth" and load(tmp_path / "model_best.pth")["epoch"] == 0
    saved = digest(tmp_path / "model_best.pth")
    # 2. resumed, then killed mid-epoch (epoch 1, just before iteration 4)
    proc = run_with_fault("kill-iter:4", ["--resume", *lf2_args(tmp_path)], tiny_duke_root)
    assert proc.returncode == -signal.SIGKILL
    assert "Starting training from epoch 1" in output(proc) and "left by a process killed while saving" in output(proc)
    assert not list(tmp_path.glob("*.tmp.*"))
    assert last_checkpoint(tmp_path) == "model_best.pth" and digest(tmp_path / "model_best.pth") == saved
    # 3. resumed through epoch 1 (the learning rate is constant, so MAX_EPOCH 2 changes nothing before the end):
    #    the same weights and metrics as the uninterrupted run after its epoch 1
    proc = run_train_net(["--resume", *lf2_args(tmp_path, "SOLVER.MAX_EPOCH", "2")], tiny_duke_root)
    assert proc.returncode == 0, output(proc)[-3000:]
    assert "Starting training from epoch 1" in output(proc)
    full = json.loads((full_out / "summary.json").read_text())["history"][1]
    resumed = json.loads((tmp_path / "summary.json").read_text())["last"]
    assert full["epoch"] == 1 and "mAP" in full and resumed == full
    a, b = load(full_out / "model_0001.pth")["model"], load(tmp_path / "model_final.pth")["model"]
    assert all(torch.equal(a[k], b[k]) for k in a), "resumed weights differ from the uninterrupted run"


def test_sigterm_mid_epoch_then_resume_matches_the_uninterrupted_run(uninterrupted, tiny_duke_root, tmp_path):
    full_out, _ = uninterrupted
    # stopped inside epoch 1 (iterations 3, 4, 5) after iteration 4: 2 of its 3 steps done
    proc = run_with_fault("term-iter:4", lf2_args(tmp_path), tiny_duke_root)
    assert proc.returncode == 143, output(proc)[-3000:]
    stopped = load(tmp_path / "model_interrupted.pth")
    assert (stopped["epoch"], stopped["epoch_steps_done"], stopped["interrupted_mid_epoch"]) == (0, 2, True)
    # resumed through epoch 1: its last step, no clustering, then evaluation; equal to the uninterrupted run
    proc = run_train_net(["--resume", *lf2_args(tmp_path, "SOLVER.MAX_EPOCH", "2")], tiny_duke_root)
    assert proc.returncode == 0, output(proc)[-3000:]
    log = output(proc)
    assert "Resuming inside epoch 1 after 2 of its 3 steps" in log and "pseudo-label digest" not in log
    full = json.loads((full_out / "summary.json").read_text())["history"][1]
    resumed = json.loads((tmp_path / "summary.json").read_text())["last"]
    assert full["epoch"] == 1 and "mAP" in full and resumed == full
    a, b = load(full_out / "model_0001.pth"), load(tmp_path / "model_final.pth")
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"]), "resumed weights differ"
    assert all(torch.equal(x, y) for x, y in zip(a["pseudo_labels"], b["pseudo_labels"], strict=True))


# ---- Ctrl-C (source stage, fast-reid's own Baseline and DefaultTrainer) -----------------------------------------
def test_ctrl_c_writes_a_checkpoint_and_exits_130(tiny_market_root, tmp_path):
    env = dict(os.environ, FASTREID_DATASETS=tiny_market_root)
    log = tmp_path / "log.txt"
    with subprocess.Popen(
        [
            sys.executable,
            TRAIN_NET,
            "--config-file",
            BASELINE_CONFIG,
            "OUTPUT_DIR",
            str(tmp_path),
            "SOLVER.MAX_EPOCH",
            "100",
            "TEST.EVAL_PERIOD",
            "100",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    ) as process:
        deadline = time.monotonic() + 300
        while not (log.exists() and "SIGINT (Ctrl-C) / SIGTERM now stop training" in log.read_text()):
            assert process.poll() is None and time.monotonic() < deadline, "training did not start"
            time.sleep(0.2)
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=300)
    assert process.returncode == 130, stderr[-3000:]
    assert "training stopped by SIGINT" in stderr
    assert "Stopped by SIGINT" in log.read_text()
    assert last_checkpoint(tmp_path) == "model_interrupted.pth"
    checkpoint = load(tmp_path / "model_interrupted.pth")
    assert checkpoint["interrupted"] == "SIGINT" and checkpoint["interrupted_mid_epoch"]
    assert "backbone.conv1.weight" in checkpoint["model"] and "optimizer" in checkpoint
    assert not list(tmp_path.glob("*.tmp.*"))


# ---- faults under two processes (gloo): a worker killed, the launcher stopped ----------------------------------
def workers_of(pid):
    """The pids of ``pid``'s multiprocessing workers (its children running spawn_main), from /proc."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = open(f"/proc/{entry}/stat").read()
                cmdline = open(f"/proc/{entry}/cmdline", "rb").read()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid and b"spawn_main" in cmdline:
                found.append(int(entry))
    return sorted(found)


def alive(pid):
    try:
        state = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def start_two_processes(args, root, out, until):
    """tools/train_net.py with --num-gpus 2 (gloo), running until ``until(rank 0's log, rank 1's log)``; returns
    (Popen, worker pids)."""
    env = dict(os.environ, FASTREID_DATASETS=root)
    process = subprocess.Popen(
        [sys.executable, TRAIN_NET, "--num-gpus", "2", "--dist-url", "auto", *args],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    logs = [out / "log.txt", out / "log.txt.rank1"]
    deadline = time.monotonic() + 400
    while not (all(log.exists() for log in logs) and until(*(log.read_text() for log in logs))):
        assert process.poll() is None and time.monotonic() < deadline, process.stderr.read()[-3000:]
        time.sleep(0.2)
    workers = workers_of(process.pid)
    assert len(workers) == 2, workers
    return process, workers


def test_two_processes_a_killed_worker_and_a_stopped_launcher_lose_nothing(tiny_duke_root, tmp_path):
    # 1. kill -9 one worker once epoch 0's checkpoints are being written: the launcher stops the other, names the
    #    dead one, and the checkpoint last_checkpoint names is complete
    process, workers = start_two_processes(
        lf2_args(tmp_path), tiny_duke_root, tmp_path, lambda rank0, rank1: "model_0000" in rank0
    )
    os.kill(workers[1], signal.SIGKILL)
    _, stderr = process.communicate(timeout=300)
    assert process.returncode == 1, stderr[-3000:]
    assert re.search(rf"WorkerFailed: worker rank \d \(pid {workers[1]}\) was killed by SIGKILL; the other", stderr)
    assert not any(alive(pid) for pid in workers), "a worker outlived the launcher"
    assert load(tmp_path / last_checkpoint(tmp_path))["epoch"] >= 0 and not list(tmp_path.glob("*.tmp.*"))
    # 2. --resume, then SIGTERM to the launcher only: both workers stop at the same step, rank 0 writes a checkpoint
    ready = "SIGINT (Ctrl-C) / SIGTERM now stop training"  # in both ranks' logs, once per run
    process, workers = start_two_processes(
        ["--resume", *lf2_args(tmp_path)],
        tiny_duke_root,
        tmp_path,
        lambda rank0, rank1: rank0.count(ready) >= 2 and rank1.count(ready) >= 2,
    )
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=300)
    assert process.returncode == 143, stderr[-3000:]
    assert "training stopped by SIGTERM" in stderr
    assert not any(alive(pid) for pid in workers), "a worker outlived the launcher"
    assert last_checkpoint(tmp_path) == "model_interrupted.pth"
    assert load(tmp_path / "model_interrupted.pth")["interrupted"] == "SIGTERM"
    # 3. --resume finishes the run
    proc = run_train_net(["--resume", "--num-gpus", "2", "--dist-url", "auto", *lf2_args(tmp_path)], tiny_duke_root)
    assert proc.returncode == 0, output(proc)[-3000:]
    assert json.loads((tmp_path / "summary.json").read_text())["last"]["epoch"] == LF2_TINY_EPOCHS - 1


# ---- SOLVER.CHECKPOINT_KEEP ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "keep, periodic_left", [(2, ["model_0003.pth", "model_0004.pth"]), (0, [f"model_{e:04d}.pth" for e in range(5)])]
)
def test_checkpoint_keep_removes_old_periodic_checkpoints_only(keep, periodic_left, tmp_path):
    from lf2_plugin.engine.checkpoint import AtomicCheckpointer

    from fastreid.utils.checkpoint import PeriodicCheckpointer

    checkpointer = AtomicCheckpointer(torch.nn.Linear(2, 2), str(tmp_path), keep_last=keep)
    periodic = PeriodicCheckpointer(checkpointer, period=1, max_epoch=6)  # fast-reid's order: best, periodic, final
    for epoch, metric in enumerate([0.1, 0.5, 0.3, 0.2, 0.4, 0.3]):
        periodic.step(epoch, metric=metric)
    left = sorted(p.name for p in tmp_path.glob("*.pth"))
    assert left == sorted(periodic_left + ["model_best.pth", "model_final.pth"])
    assert load(tmp_path / "model_best.pth")["epoch"] == 1
    assert last_checkpoint(tmp_path) == "model_final.pth"


# Holds OUTPUT_DIR the way a run does, in its own process, until killed.
HOLD_OUTPUT_DIR = """
import sys, time
from lf2_plugin.engine.output_lock import output_dir_lock
held = output_dir_lock(sys.argv[1])
held.__enter__()
print("held", flush=True)
time.sleep(600)
"""


def test_a_second_run_into_a_held_output_dir_stops_and_a_dead_holder_never_blocks(tmp_path, tiny_duke_root):
    from lf2_plugin.engine.output_lock import LOCK_NAME, output_dir_lock

    out = tmp_path / "run"
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_OUTPUT_DIR, str(out)], stdout=subprocess.PIPE, text=True, cwd=ROOT
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        for extra in ([], ["--eval-only", "MODEL.WEIGHTS", os.path.join(ROOT, "README.md")]):
            proc = run_train_net(["--config-file", LF2_TINY_CONFIG, *extra, "OUTPUT_DIR", str(out)], tiny_duke_root)
            assert proc.returncode == 1, proc.stderr[-2000:]
            assert f"in use by another run (pid {holder.pid} on " in proc.stderr  # pid, host and
            assert f": -c {out})" in proc.stderr  # the holder's command line
            assert sorted(os.listdir(out)) == [LOCK_NAME]  # nothing of the second run was written
    finally:
        holder.kill()
        holder.wait()
    with output_dir_lock(str(out)):  # killed with SIGKILL: the OS released its lock
        pass
