"""One behaviour check per runtime fix in :mod:`lf2_plugin.compat`.

Each ``check_<fix name>()`` raises when fast-reid shows the upstream defect and returns quietly when it behaves.
``tests/test_compat.py`` runs them twice: in-process with every fix applied (all must pass), and as a script in a
subprocess with ``LF2_COMPAT_SKIP`` naming every runtime fix (each must then fail: proof that the fix is needed and
that the check can fail). The checks are independent of each other, so skipping all fixes at once is sound.

    LF2_COMPAT_SKIP=... python tests/compat_checks.py   # prints {"fix name": "ok" | "<error>"} as JSON
"""

import json
import logging
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

import lf2_plugin  # noqa: E402,F401

RUNTIME_FIXES = [
    "optimizer_not_contiguous",
    "cpu_dataloader",
    "amp_requires_cuda",
    "cpu_rerank",
    "random_affine_kwargs",
    "eval_period_zero",
    "collator_numpy_scalars",
    "ranker_never_exits",
    "preprocess_not_inplace",
    "ddp_without_device_ids_on_cpu",
    "writer_once_per_iteration",
    "atomic_checkpoints",
    "regnet_yaml_paths",
]


# A ResNet-18 on CPU without ImageNet weights: the small model most tests build.
RESNET18_CPU_OPTS = [
    *("MODEL.DEVICE", "cpu"),
    *("MODEL.BACKBONE.NAME", "build_resnet_backbone"),
    *("MODEL.BACKBONE.DEPTH", "18x"),
    *("MODEL.BACKBONE.FEAT_DIM", "512"),
    *("MODEL.BACKBONE.PRETRAIN", "False"),
]


def tiny_cfg():
    from lf2_plugin.engine import build_config

    return build_config(
        opts=[
            *RESNET18_CPU_OPTS,
            "MODEL.HEADS.NUM_CLASSES",
            "4",
            "INPUT.SIZE_TRAIN",
            "[32, 16]",
            "INPUT.SIZE_TEST",
            "[32, 16]",
            "MODEL.LOSSES.NAME",
            "('CrossEntropyLoss',)",
        ]
    )


def tiny_batch(n=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    return {
        "images": torch.rand(n, 3, 32, 16, generator=g) * 255,
        "targets": torch.arange(n) % 4,
        "camids": torch.zeros(n, dtype=torch.long),
    }


def check_optimizer_not_contiguous():
    from fastreid.engine import DefaultTrainer
    from fastreid.modeling import build_model
    from fastreid.utils.events import EventStorage

    cfg = tiny_cfg()
    torch.manual_seed(0)
    model = build_model(cfg)
    model.train()
    optimizer, _ = DefaultTrainer.build_optimizer(cfg, model)
    before = model.backbone.conv1.weight.detach().clone()
    with EventStorage(0):
        for _ in range(2):  # SimpleTrainer.run_step's order: zero_grad, backward, step
            losses = sum(model(tiny_batch()).values())
            optimizer.zero_grad()
            losses.backward()
            optimizer.step()
    assert not torch.equal(before, model.backbone.conv1.weight), "optimizer steps left the backbone unchanged"


def check_cpu_dataloader():
    from fastreid.data import build_reid_test_loader
    from fastreid.data.common import CommDataset

    if torch.cuda.is_available():
        return
    img = os.path.join(os.environ.get("TMPDIR", "/tmp"), "lf2_compat_check.jpg")
    Image.new("RGB", (16, 32), (120, 30, 200)).save(img)
    test_set = CommDataset([(img, 1, 0), (img, 2, 1)], transform=None, relabel=False)
    from fastreid.data.transforms import build_transforms

    test_set.transform = build_transforms(tiny_cfg(), is_train=False)
    loader, _ = build_reid_test_loader(test_set=test_set, test_batch_size=2, num_query=1, num_workers=0)
    batch = next(iter(loader))
    assert batch["images"].shape == (2, 3, 32, 16)


def check_amp_requires_cuda():
    import fastreid.engine.defaults as defaults
    from fastreid.engine.train_loop import SimpleTrainer
    from fastreid.utils.events import EventStorage

    class SquaredOutput(torch.nn.Linear):
        def forward(self, batch):
            return {"loss": super().forward(batch).pow(2).mean()}

    if torch.cuda.is_available():
        return
    model = SquaredOutput(2, 2)
    trainer = defaults.AMPTrainer(model, [torch.ones(4, 2)], torch.optim.SGD(model.parameters(), lr=0.1), None)
    with EventStorage(0) as storage:
        trainer.storage = storage
        trainer.iter = 0
        trainer.run_step()  # upstream asserts CUDA here
    assert isinstance(trainer, SimpleTrainer)


def check_cpu_rerank():
    from fastreid.utils.compute_dist import build_dist

    feats = torch.nn.functional.normalize(torch.randn(40, 8, generator=torch.Generator().manual_seed(0)), dim=1)
    dist = build_dist(feats, feats, "jaccard", k1=6, k2=2)
    assert dist.shape == (40, 40) and np.allclose(np.diag(dist), 0, atol=1e-5)


def check_random_affine_kwargs():
    from fastreid.data.transforms import build_transforms

    cfg = tiny_cfg()
    cfg.INPUT.AFFINE.ENABLED = True
    out = build_transforms(cfg, is_train=True)(Image.new("RGB", (16, 32), (10, 200, 30)))
    assert out.shape == (3, 32, 16)


def check_eval_period_zero():
    from fastreid.engine.hooks import EvalHook

    calls = []
    hook = EvalHook(0, lambda: calls.append(1) or {})

    class FinishedTrainer:
        epoch, max_epoch = 2, 3
        storage = None

    hook.trainer = FinishedTrainer()
    hook.after_epoch()
    hook.after_train()
    assert calls == [1], f"expected one evaluation at the end of training, got {len(calls)}"


def check_collator_numpy_scalars():
    from fastreid.data.build import fast_batch_collator

    batch = fast_batch_collator(
        [{"targets": np.int64(3), "w": np.float32(0.5)}, {"targets": np.int64(7), "w": np.float32(1.5)}]
    )
    assert batch["targets"] is not None and batch["targets"].tolist() == [3, 7]
    assert batch["w"].tolist() == [0.5, 1.5]


def check_ranker_never_exits():
    import fastreid.evaluation.rank_cylib as rank_cylib
    from fastreid.evaluation import rank
    from fastreid.evaluation.reid_evaluation import ReidEvaluator

    # Simulate a machine where the ranker was never built and building it fails.
    saved = rank.IS_CYTHON_AVAI, sys.modules.get("fastreid.evaluation.rank_cylib.rank_cy"), rank_cylib.compile_helper
    rank.IS_CYTHON_AVAI = False
    sys.modules["fastreid.evaluation.rank_cylib.rank_cy"] = None  # makes the import inside fail

    def failing_build():
        sys.exit(1)  # what upstream does when `make` fails

    rank_cylib.compile_helper = failing_build
    import fastreid.evaluation.reid_evaluation as reid_evaluation

    saved_helper = getattr(reid_evaluation, "compile_helper", None)
    reid_evaluation.compile_helper = failing_build
    try:
        ReidEvaluator(tiny_cfg(), num_query=1)
    except SystemExit as exc:
        raise AssertionError("ReidEvaluator exited the process") from exc
    finally:
        rank.IS_CYTHON_AVAI, cy, rank_cylib.compile_helper = saved
        if cy is None:
            sys.modules.pop("fastreid.evaluation.rank_cylib.rank_cy", None)
        else:
            sys.modules["fastreid.evaluation.rank_cylib.rank_cy"] = cy
        if saved_helper is not None:
            reid_evaluation.compile_helper = saved_helper


def check_preprocess_not_inplace():
    from fastreid.modeling import build_model

    model = build_model(tiny_cfg()).eval()
    batch = tiny_batch()
    pixels = batch["images"].clone()
    with torch.no_grad():
        model(batch)
    assert torch.equal(batch["images"], pixels), "the model normalised the input batch in place"


def check_ddp_without_device_ids_on_cpu():
    import socket

    import torch.distributed as dist

    import fastreid.engine.defaults as defaults

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", world_size=1, rank=0)
    try:
        defaults.DistributedDataParallel(torch.nn.Linear(2, 2), device_ids=[0], broadcast_buffers=False)
    finally:
        dist.destroy_process_group()


def check_writer_once_per_iteration():
    from fastreid.engine.hooks import PeriodicWriter
    from fastreid.utils.events import CommonMetricPrinter, EventStorage

    class OneEpochOfTwoIterations:
        iter, max_iter = 1, 10  # the epoch's last step, before IterationTimer's 3-iteration warm-up is over

    printed = []

    class CountingPrinter(CommonMetricPrinter):
        def write(self):
            super().write()
            printed.append(self._last_write[0])

    hook = PeriodicWriter([CountingPrinter(max_iter=10)], period=2)
    with EventStorage(0) as storage:
        hook.trainer = OneEpochOfTwoIterations()
        hook.trainer.storage = storage
        storage.iter, storage.epoch = 1, 0
        storage.put_scalar("lr", 0.1)
        hook.after_step()
        hook.after_epoch()  # upstream: ZeroDivisionError in the printer's ETA estimate
    assert printed == [1], f"expected one write at iteration 1, got {printed}"


def check_atomic_checkpoints():
    import tempfile

    import fastreid.engine.defaults as defaults

    class StopsTheSave:
        def __reduce__(self):
            raise InterruptedError("save stopped half-way")

    with tempfile.TemporaryDirectory() as out:
        checkpointer = defaults.Checkpointer(torch.nn.Linear(2, 2), out)  # what DefaultTrainer builds
        checkpointer.save("model_final")
        try:  # a save that stops half-way, as in a process killed while writing
            checkpointer.save("model_final", stop=StopsTheSave())
        except OSError:  # InterruptedError upstream, CheckpointWriteError with the fix
            pass
        # upstream: the file was truncated in place, and last_checkpoint names it
        torch.load(os.path.join(out, "model_final.pth"), map_location="cpu", weights_only=True)


def check_regnet_yaml_paths():
    import tempfile

    from lf2_plugin.engine import build_config

    from fastreid.modeling.backbones import build_backbone

    here = os.getcwd()
    for name, depth in (("build_regnet_backbone", "200x"), ("build_effnet_backbone", "b0")):
        cfg = build_config(opts=["MODEL.BACKBONE.NAME", name, "MODEL.BACKBONE.DEPTH", depth])
        cfg.defrost()
        cfg.MODEL.BACKBONE.PRETRAIN = False
        with tempfile.TemporaryDirectory() as elsewhere:
            os.chdir(elsewhere)  # any folder but fast-reid's source root
            try:
                backbone = build_backbone(cfg)  # upstream: FileNotFoundError fastreid/modeling/backbones/regnet/...
            finally:
                os.chdir(here)
        assert backbone(torch.rand(1, 3, 64, 32)).dim() == 4, name


def run_all():
    """{fix name: "ok" or the error its check raised}."""
    results = {}
    for name in RUNTIME_FIXES:
        try:
            globals()[f"check_{name}"]()
            results[name] = "ok"
        except BaseException as exc:  # noqa: B902 - SystemExit is one of the defects
            results[name] = f"{type(exc).__name__}: {exc}"
    return results


if __name__ == "__main__":
    logging.disable(logging.CRITICAL)
    print("LF2_COMPAT_CHECKS " + json.dumps(run_all()))
