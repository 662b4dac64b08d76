"""Every fix that makes PyPI ``fastreid==1.4.0`` work on Python 3.11, torch 2.x and CPU-only machines, and keeps
its checkpoints whole when a process is killed.

This is the only place in the plugin that patches fast-reid or sets its state. Each fix is one function whose
docstring names the upstream defect in one line; :func:`apply` runs them all once, in order, and is idempotent
(``import lf2_plugin`` calls it). The import shims come first because ``fastreid.data`` cannot even be imported
without them. :func:`set_local_process_group` is the one setter the plugin's launch needs at run time.

For diagnosis (and for the tests that prove each fix is still needed), ``LF2_COMPAT_SKIP=name1,name2`` in the
environment leaves the named fixes out. ``applied_fixes()`` lists what was applied.
"""

import collections
import collections.abc
import importlib
import logging
import os
import sys
import types

import numpy as np
import torch

logger = logging.getLogger(__name__)

_FIXES = []
_APPLIED = []
_DONE = False


def _fix(func):
    _FIXES.append(func)
    return func


def fix_names():
    """Names of all fixes, in the order they are applied."""
    return [f.__name__ for f in _FIXES]


def applied_fixes():
    """Names of the fixes applied in this process."""
    return list(_APPLIED)


def _skipped():
    return {s.strip() for s in os.environ.get("LF2_COMPAT_SKIP", "").split(",") if s.strip()}


def apply():
    """Apply every fix not listed in ``LF2_COMPAT_SKIP``; calling it again does nothing."""
    global _DONE
    if _DONE:
        return
    skip = _skipped()
    unknown = skip - set(fix_names())
    if unknown:
        raise ValueError(f"LF2_COMPAT_SKIP names unknown fixes {sorted(unknown)}; known: {fix_names()}")
    for func in _FIXES:
        if func.__name__ in skip:
            logger.warning("lf2_plugin.compat: fix %s skipped (LF2_COMPAT_SKIP)", func.__name__)
            continue
        func()
        _APPLIED.append(func.__name__)
    _DONE = True


# --------------------------------------------------------------------------------------------------------------
# Import shims: without these `import fastreid.data` / `fastreid.engine` fails.
# --------------------------------------------------------------------------------------------------------------
@_fix
def collections_abc_aliases():
    """fastreid/data/build.py and evaluation/testing.py do `from collections import Mapping` (removed in 3.10)."""
    for name in ("Mapping", "MutableMapping", "Sequence", "Iterable", "Callable"):
        if not hasattr(collections, name):
            setattr(collections, name, getattr(collections.abc, name))


@_fix
def torch_six_module():
    """fastreid/data/build.py does `from torch._six import string_classes` (module removed in torch 2.0)."""
    try:
        importlib.import_module("torch._six")
    except ImportError:
        six = types.ModuleType("torch._six")
        six.string_classes = (str, bytes)
        sys.modules["torch._six"] = six


# --------------------------------------------------------------------------------------------------------------
# Runtime fixes.
# --------------------------------------------------------------------------------------------------------------
@_fix
def optimizer_not_contiguous():
    """build_optimizer(contiguous=True) + torch>=2 zero_grad(set_to_none=True): weights silently never change."""
    import fastreid.engine.defaults as defaults
    import fastreid.solver as solver
    import fastreid.solver.build as solver_build

    upstream = solver_build.build_optimizer
    if getattr(upstream, "_lf2_compat", False):
        return

    def build_optimizer(cfg, model, contiguous=False):
        # ContiguousParams hands the optimizer one flat buffer whose .grad torch>=2 resets to None every step.
        return upstream(cfg, model, contiguous=contiguous)

    build_optimizer._lf2_compat = True
    build_optimizer.__doc__ = upstream.__doc__
    solver_build.build_optimizer = solver.build_optimizer = defaults.build_optimizer = build_optimizer


class CPUDataLoader(torch.utils.data.DataLoader):
    """fast-reid's ``DataLoaderX`` signature (``local_rank`` first) on a plain DataLoader, for machines without CUDA."""

    def __init__(self, local_rank, **kwargs):
        kwargs["pin_memory"] = False  # pinning needs CUDA
        super().__init__(**kwargs)

    def shutdown(self):
        """DataLoaderX stops its prefetch thread here; a plain DataLoader has none."""


@_fix
def cpu_dataloader():
    """DataLoaderX creates torch.cuda.Stream in __init__: every loader fails with 'Found no NVIDIA driver' on CPU."""
    if torch.cuda.is_available():
        return
    import fastreid.data.build as data_build

    data_build.DataLoaderX = CPUDataLoader


@_fix
def amp_requires_cuda():
    """AMPTrainer asserts CUDA: SOLVER.AMP.ENABLED=True (on in Base-bagtricks.yml) aborts every CPU run."""
    import fastreid.engine.defaults as defaults
    from fastreid.engine.train_loop import AMPTrainer, SimpleTrainer

    if getattr(defaults.AMPTrainer, "_lf2_compat", False):
        return

    def amp_trainer_or_float32(model, data_loader, optimizer, param_wrapper=None):
        if torch.cuda.is_available():
            return AMPTrainer(model, data_loader, optimizer, param_wrapper)
        logger.warning("SOLVER.AMP.ENABLED is True but CUDA is not available: AMP turned off, training in float32.")
        return SimpleTrainer(model, data_loader, optimizer, param_wrapper)

    amp_trainer_or_float32._lf2_compat = True
    defaults.AMPTrainer = amp_trainer_or_float32


def faiss_gpu_available():
    """True when both CUDA and a GPU build of faiss are present (fast-reid's search_option 0 needs both)."""
    try:
        import faiss
    except ImportError:
        return False
    return torch.cuda.is_available() and hasattr(faiss, "StandardGpuResources") and faiss.get_num_gpus() > 0


@_fix
def cpu_rerank():
    """build_dist('jaccard') hard-codes search_option=0 (faiss-GPU): TEST.RERANK fails on CPU or with faiss-cpu."""
    import fastreid.utils.compute_dist as compute_dist

    upstream = compute_dist.compute_jaccard_distance
    if getattr(upstream, "_lf2_compat", False):
        return

    def compute_jaccard_distance(features, k1=20, k2=6, search_option=0, fp16=False):
        if search_option != 3 and not faiss_gpu_available():
            search_option = 3  # faiss IndexFlatL2 on CPU: the same k-NN, exact
            features = features.cpu()
        return upstream(features, k1=k1, k2=k2, search_option=search_option, fp16=fp16)

    compute_jaccard_distance._lf2_compat = True
    compute_dist.compute_jaccard_distance = compute_jaccard_distance


class _TorchvisionTransformsWithLegacyAffine:
    """``torchvision.transforms`` whose RandomAffine also accepts the pre-0.13 ``resample``/``fillcolor`` names."""

    def __getattr__(self, name):
        import torchvision.transforms as T

        return getattr(T, name)

    @staticmethod
    def RandomAffine(*args, resample=None, fillcolor=None, **kwargs):  # noqa: N802 (torchvision's name)
        import torchvision.transforms as T

        if fillcolor is not None:
            kwargs.setdefault("fill", fillcolor)
        # resample=False was the old spelling of nearest-neighbour, which is still the default interpolation.
        return T.RandomAffine(*args, **kwargs)


@_fix
def random_affine_kwargs():
    """INPUT.AFFINE builds RandomAffine(resample=, fillcolor=): TypeError on torchvision >= 0.13."""
    import fastreid.data.transforms.build as transforms_build

    if not isinstance(transforms_build.T, _TorchvisionTransformsWithLegacyAffine):
        transforms_build.T = _TorchvisionTransformsWithLegacyAffine()


@_fix
def eval_period_zero():
    """TEST.EVAL_PERIOD=0 raises ZeroDivisionError in EvalHook.after_train; here 0 means 'evaluate at the end only'."""
    from fastreid.engine.hooks import EvalHook

    if getattr(EvalHook.after_train, "_lf2_compat", False):
        return
    upstream = EvalHook.after_train

    def after_train(self):
        if self._period > 0:
            return upstream(self)
        # Same guard as upstream: no evaluation after a training that stopped early.
        if self.trainer.epoch + 1 >= self.trainer.max_epoch:
            self._do_eval()
        del self._func

    after_train._lf2_compat = True
    EvalHook.after_train = after_train


_upstream_collator = None


def fast_batch_collator(batched_inputs):
    """fast-reid's collator, plus numpy scalars (module level so DataLoader workers can pickle it)."""
    elem = batched_inputs[0]
    if isinstance(elem, (np.integer, np.floating, np.bool_)):
        as_python = [x.item() for x in batched_inputs]
        return torch.tensor(as_python, dtype=torch.float64 if isinstance(as_python[0], float) else None)
    return _upstream_collator(batched_inputs)


@_fix
def collator_numpy_scalars():
    """fast_batch_collator silently returns None for numpy ints/floats (e.g. np.int64 pseudo labels)."""
    global _upstream_collator
    import fastreid.data.build as data_build

    if data_build.fast_batch_collator is fast_batch_collator:
        return
    _upstream_collator = data_build.fast_batch_collator
    # upstream recurses through the module global, so nested dicts get this version too
    data_build.fast_batch_collator = fast_batch_collator


@_fix
def ranker_never_exits():
    """ReidEvaluator runs `make` at the first evaluation and sys.exit(1)s when it fails, after training finished."""
    from fastreid.evaluation import rank
    from fastreid.evaluation.reid_evaluation import ReidEvaluator

    if getattr(ReidEvaluator._compile_dependencies, "_lf2_compat", False):
        return

    def _compile_dependencies(self):
        if not rank.IS_CYTHON_AVAI:
            logger.warning(
                "fast-reid's compiled ranker (fastreid/evaluation/rank_cylib) is not built: evaluating with the "
                "~34x slower Python ranker. Build it with `make rank-cylib` (see README)."
            )

    _compile_dependencies._lf2_compat = True
    ReidEvaluator._compile_dependencies = _compile_dependencies


def normalized_images(batched_inputs, pixel_mean, pixel_std):
    """``(images - mean) / std`` as a new tensor, from a fast-reid batch dict or an image tensor: the caller's
    batch is never modified (fast-reid's flip test, LF2's teacher and student all re-use it)."""
    if isinstance(batched_inputs, dict):
        images = batched_inputs["images"]
    elif isinstance(batched_inputs, torch.Tensor):
        images = batched_inputs
    else:
        raise TypeError(f"batched_inputs must be a dict or a tensor, got {type(batched_inputs)}")
    return (images.to(pixel_mean.device) - pixel_mean) / pixel_std


@_fix
def preprocess_not_inplace():
    """Baseline.preprocess_image normalises the batch in place, so TEST.FLIP feeds double-normalised images."""
    from fastreid.modeling.meta_arch.baseline import Baseline

    if getattr(Baseline.preprocess_image, "_lf2_compat", False):
        return

    def preprocess_image(self, batched_inputs):
        return normalized_images(batched_inputs, self.pixel_mean, self.pixel_std)

    preprocess_image._lf2_compat = True
    Baseline.preprocess_image = preprocess_image


@_fix
def ddp_without_device_ids_on_cpu():
    """DefaultTrainer wraps DDP with device_ids=[local_rank]: ValueError for a CPU module in a gloo group."""
    from torch.nn.parallel import DistributedDataParallel

    import fastreid.engine.defaults as defaults

    if getattr(defaults.DistributedDataParallel, "_lf2_compat", False):
        return

    def distributed_data_parallel(module, device_ids=None, **kwargs):
        on_cpu = all(p.device.type == "cpu" for p in module.parameters())
        return DistributedDataParallel(module, device_ids=None if on_cpu else device_ids, **kwargs)

    distributed_data_parallel._lf2_compat = True
    defaults.DistributedDataParallel = distributed_data_parallel


@_fix
def writer_once_per_iteration():
    """PeriodicWriter writes again after_epoch at the iteration after_step wrote: ZeroDivisionError before warm-up."""
    from fastreid.engine.hooks import PeriodicWriter

    if getattr(PeriodicWriter.after_epoch, "_lf2_compat", False):
        return

    # CommonMetricPrinter estimates ETA from the iterations since its last write while IterationTimer is warming up;
    # a second write at the same iteration divides by zero (and otherwise only repeats the same line).
    def write_once(self):
        iteration = self.trainer.storage.iter
        if getattr(self, "_lf2_last_written", None) == iteration:
            return
        self._lf2_last_written = iteration
        for writer in self._writers:
            writer.write()

    def after_step(self):
        if (self.trainer.iter + 1) % self._period == 0 or self.trainer.iter == self.trainer.max_iter - 1:
            write_once(self)

    def after_epoch(self):
        write_once(self)

    after_step._lf2_compat = after_epoch._lf2_compat = True
    PeriodicWriter.after_step = after_step
    PeriodicWriter.after_epoch = after_epoch


@_fix
def atomic_checkpoints():
    """DefaultTrainer's Checkpointer saves in place: a kill mid-save leaves a truncated file as last_checkpoint."""
    import fastreid.engine.defaults as defaults

    from .engine.checkpoint import AtomicCheckpointer

    if defaults.Checkpointer is AtomicCheckpointer:
        return
    # DefaultTrainer builds its checkpointer, which its PeriodicCheckpointer hook then saves with, by this name.
    defaults.Checkpointer = AtomicCheckpointer


@_fix
def regnet_yaml_paths():
    """build_regnet_backbone and build_effnet_backbone open their yaml relative to the working directory."""
    from yacs.config import CfgNode

    import fastreid
    import fastreid.modeling.backbones.regnet.effnet as effnet
    import fastreid.modeling.backbones.regnet.regnet as regnet

    if getattr(regnet.regnet_cfg, "_lf2_compat", False):
        return
    package_parent = os.path.dirname(os.path.dirname(os.path.abspath(fastreid.__file__)))

    class PackageRelativeCfgNode(CfgNode):
        def merge_from_file(self, cfg_filename):
            if not os.path.exists(cfg_filename) and cfg_filename.startswith("fastreid/"):
                cfg_filename = os.path.join(package_parent, cfg_filename)
            super().merge_from_file(cfg_filename)

    # both modules hold the one node of regnet/config.py; they keep sharing it
    node = PackageRelativeCfgNode(regnet.regnet_cfg)
    object.__setattr__(node, "_lf2_compat", True)  # CfgNode stores plain attributes as keys
    regnet.regnet_cfg = node
    effnet.effnet_cfg = node


# --------------------------------------------------------------------------------------------------------------
# fast-reid state set at run time.
# --------------------------------------------------------------------------------------------------------------
def set_local_process_group(group):
    """Make ``group`` the per-machine process group fast-reid's ``comm.get_local_rank()`` and ``get_local_size()``
    read: ``fastreid.utils.comm`` has no setter, fast-reid's own launch assigns the module global as this does."""
    from fastreid.utils import comm

    comm._LOCAL_PROCESS_GROUP = group
