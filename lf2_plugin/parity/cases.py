"""Training parity with the official LF2 code: one function per case, each returning table rows.

Every case builds the official network and the plugin's from the same weights (the plugin's copy converted by
:func:`lf2_plugin.modeling.convert_official_state_dict`), feeds both the same small random inputs and compares
what the official code computes with what the plugin's real training path computes:

- :func:`target_step_case`: ``SingelmeanTrainer.train`` vs :class:`LF2StepRunner` (loss terms, the whole
  student/teacher/Fusion state after the Adam step and the EMA update, BN statistics included);
- :func:`clustering_case`: the per-level ``MiniBatchKMeans`` statements of ``target_train.py`` vs
  :func:`lf2_plugin.clustering.cluster_features` (labels, classifier rows from the centroids);
- :func:`sampler_case`: the official ``RandomMultipleGallerySampler`` batches vs the configured sampler's;
- :func:`source_step_case`: ``PreTrainer.train`` vs ``LF2SourceBaseline`` + :class:`TargetBNAdaptationHook`;
- :func:`evaluation_case`: the official ``Evaluator`` (flip, normalisation, concat, mAP) vs fast-reid's
  inference and ``ReidEvaluator`` with the plugin's model;
- :func:`defaults_case`: the scripts' parser defaults vs the direction configs.

``rows`` are :class:`Row` records; :func:`format_table` prints them (``tools/compare_official.py``).
"""

import math
import os
from dataclasses import dataclass
from types import SimpleNamespace

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..modeling.checkpoint import convert_official_state_dict, official_key

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
REAL_DIRECTIONS = ("Market2Duke", "Duke2Market", "Market2MSMT", "Duke2MSMT")
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
# relative tolerance of a comparison, by dtype
TOLERANCE = {torch.float64: 1e-10, torch.float32: 1e-5}
# Parameters after an Adam step: Adam divides each gradient element by sqrt(v) + eps (eps = 1e-8), so for an
# element whose gradient is near zero a rounding difference reaches the step amplified up to lr / eps (3.5e4):
# gradients are compared at TOLERANCE, the parameters after the step at this looser one.
ADAM_STEP_TOLERANCE = {torch.float64: 1e-8, torch.float32: 1e-3}
# absolute tolerance of parameters that only rounding noise moves (through the same amplification)
NOISE_ATOL = 1e-10

__all__ = [
    "Row",
    "REAL_DIRECTIONS",
    "target_step_case",
    "clustering_case",
    "sampler_case",
    "source_step_case",
    "evaluation_case",
    "defaults_case",
    "format_table",
    "direction_config",
]


@dataclass
class Row:
    """One compared quantity: the largest absolute and relative difference over its tensors."""

    case: str
    quantity: str
    max_abs: float
    max_rel: float
    tolerance: float
    worst: str = ""

    @property
    def passed(self):
        return self.max_rel <= self.tolerance and math.isfinite(self.max_rel)


def format_table(rows):
    """Markdown table of ``rows``."""
    lines = [
        "| case | quantity | max abs diff | max rel diff | tolerance | ok | worst tensor |",
        "|---|---|--:|--:|--:|---|---|",
    ]
    lines += [
        f"| {r.case} | {r.quantity} | {r.max_abs:.3g} | {r.max_rel:.3g} | {r.tolerance:.0e} | "
        f"{'yes' if r.passed else 'NO'} | {r.worst} |"
        for r in rows
    ]
    return "\n".join(lines)


def _difference(plugin, official):
    plugin, official = (torch.as_tensor(t).detach().double() for t in (plugin, official))
    if plugin.shape != official.shape:
        return math.inf, math.inf
    abs_diff = (plugin - official).abs().max().item() if plugin.numel() else 0.0
    scale = official.abs().max().item() if official.numel() else 0.0
    return abs_diff, abs_diff / scale if scale > 0 else abs_diff


def compare(case, quantity, pairs, tolerance, absolute=False):
    """Row over ``pairs`` = {name: (plugin_tensor, official_tensor)}; ``absolute`` judges the absolute
    difference (for tensors that are zero up to rounding, where a relative one means nothing)."""
    worst, max_abs, max_rel = "", 0.0, 0.0
    for name, (plugin, official) in pairs.items():
        abs_diff, rel_diff = _difference(plugin, official)
        if absolute:
            rel_diff = abs_diff
        if rel_diff > max_rel:
            worst = name
        max_abs, max_rel = max(max_abs, abs_diff), max(max_rel, rel_diff)
    return Row(case, f"{quantity} ({len(pairs)})", max_abs, max_rel, tolerance, worst)


def direction_config(direction, stage, opts=()):
    """The plugin config of a real direction (``configs/<direction>/<stage>.yml``) with ``opts`` on top."""
    from ..engine.defaults import build_config

    return build_config(
        os.path.join(ROOT, "configs", direction, f"{stage}.yml"), ["MODEL.DEVICE", "cpu", "MODEL.WEIGHTS", "", *opts]
    )


def _raw_images(generator, batch, size, dtype):
    """Images on fast-reid's 0-255 scale, and the official input: ToTensor (÷255) then ImageNet normalisation."""
    raw = torch.rand(batch, 3, *size, generator=generator, dtype=torch.float64).mul(255).round().to(dtype)
    mean = torch.tensor(IMAGENET_MEAN, dtype=dtype).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, dtype=dtype).view(1, 3, 1, 1)
    return raw, (raw / 255 - mean) / std


def _pk_labels(generator, batch, instances, num_classes):
    ids = torch.randperm(num_classes, generator=generator)[: batch // instances]
    return ids.repeat_interleave(instances)


def _randomize(module, generator):
    """Random BN affine parameters and running statistics (the defaults 1/0 hide mix-ups) in place."""
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.weight.uniform_(0.5, 1.5, generator=generator)
                m.bias.normal_(0, 0.1, generator=generator)
                m.running_mean.normal_(0, 0.1, generator=generator)
                m.running_var.uniform_(0.5, 1.5, generator=generator)


class _OfficialLoader:
    """The official ``IterLoader`` interface over fixed batches: ``next()`` and ``len()``."""

    def __init__(self, batches, length):
        self._batches, self._length, self._index = batches, length, 0

    def __len__(self):
        return self._length

    def next(self):
        batch = self._batches[self._index]
        self._index += 1
        return batch


def _to_dtype(model, cfg, dtype):
    """``model.to(dtype)`` with the pixel mean/std taken from the config at that precision (the float32 buffers
    would carry their rounding into a float64 comparison)."""
    model.to(dtype)
    model.pixel_mean.copy_(torch.tensor(cfg.MODEL.PIXEL_MEAN, dtype=dtype).view(1, -1, 1, 1))
    model.pixel_std.copy_(torch.tensor(cfg.MODEL.PIXEL_STD, dtype=dtype).view(1, -1, 1, 1))
    return model


def _recording(criterion, log):
    def call(*args):
        value = criterion(*args)
        log.append(value.detach().clone())
        return value

    return call


def _state_pairs(plugin_state, official_state, groups):
    """{group: {key: (plugin, official)}} for the converted official state, keys sorted into ``groups``."""
    converted, _ = convert_official_state_dict(official_state)
    missing = sorted(set(converted) - set(plugin_state))
    if missing:
        raise KeyError(f"official tensors without a plugin counterpart: {missing[:5]}")
    out = {name: {} for name in groups}
    for key, value in converted.items():
        for name, belongs in groups.items():
            if belongs(key):
                out[name][key] = (plugin_state[key], value)
                break
    return out


def _is_stat(key):
    return key.endswith(("running_mean", "running_var", "num_batches_tracked"))


# ---------------------------------------------------------------------------------------------------------------
# target stage
# ---------------------------------------------------------------------------------------------------------------
def _official_encoder(official, args, num_classes, generator):
    """Student and teacher as ``target_train.create_model`` builds them (DataParallel, teacher detached), with
    independent random weights so that the EMA and the fused features are not trivial."""
    reid = official.reid
    networks = []
    for _ in range(2):
        net = reid.models.create(
            args.arch,
            num_features=args.features,
            dropout=args.dropout,
            num_classes=num_classes,
            num_split=args.split_parts,
            extract_feat=False,
        )
        _randomize(net, generator)
        with torch.no_grad():  # rows as after clustering: unit-norm centroids
            net.classifier.weight.copy_(F.normalize(torch.randn(net.classifier.weight.shape, generator=generator)))
        networks.append(nn.DataParallel(net))
    student, teacher = networks
    for param in teacher.parameters():
        param.detach_()
    return reid.models.resnet.Encoder(student, teacher)


def _target_batches(generator, iters, batch, size, dtype, num_classes, instances=2):
    """Per iteration three (plugin batch, official batch) pairs: global, upper, lower, each with its labels."""
    steps = []
    for _ in range(iters):
        levels = []
        for _ in range(3):
            raw, normalised = _raw_images(generator, batch, size, dtype)
            labels = _pk_labels(generator, batch, instances, num_classes)
            cams = torch.arange(batch) % 2
            levels.append(
                (
                    {"images": raw, "targets": labels, "camids": cams},
                    (normalised, [f"{i}.jpg" for i in range(batch)], labels, cams),
                )
            )
        steps.append(levels)
    return steps


def target_step_case(
    official,
    direction="Market2Duke",
    *,
    start_step=0,
    iters=2,
    dtype=torch.float64,
    seed=0,
    batch=8,
    size=(64, 32),
    num_classes=6,
):
    """``iters`` official ``SingelmeanTrainer`` steps from global step ``start_step`` vs the plugin's.

    The official step counter is ``epoch * len(loader) + i``: ``start_step`` 0 is epoch 0; a later one is epoch
    ``start_step // 400`` of 400-iteration loaders (so ``start_step`` must be a multiple of 400).
    """
    from fastreid.utils.events import EventStorage

    from ..engine.step import LF2StepRunner
    from ..engine.trainer import LF2Trainer

    if start_step % 400:
        raise ValueError("start_step must be a multiple of the official 400 iterations per epoch")
    name = f"target step {start_step}..{start_step + iters - 1} ({direction}, {str(dtype)[6:]})"
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    args = official.default_args("target_train.py")
    encoder = _official_encoder(official, args, num_classes, generator).to(dtype)
    cfg = direction_config(
        direction,
        "lf2",
        ["MODEL.HEADS.NUM_CLASSES", num_classes, "INPUT.SIZE_TRAIN", list(size), "INPUT.SIZE_TEST", list(size)],
    )
    model = LF2Trainer.build_model(cfg)
    model.load_state_dict(convert_official_state_dict(encoder.state_dict())[0], strict=True)
    _to_dtype(model, cfg, dtype)
    data = _target_batches(generator, iters, batch, size, dtype, num_classes)

    # official: target_train.py's optimizer statements, then SingelmeanTrainer.train
    scope, _ = official.run_statements(
        "target_train.py", "params = []", "optimizer = torch.optim.Adam", {"encoder": encoder, "args": args}
    )
    trainer = official.reid.trainers.SingelmeanTrainer(encoder, num_cluster=num_classes, alpha=args.alpha)
    ce_log, tri_log, ema_steps = [], [], []
    trainer.criterion_ce = _recording(trainer.criterion_ce, ce_log)
    trainer.criterion_tri = _recording(trainer.criterion_tri, tri_log)
    update_ema = trainer._update_ema_variables
    trainer._update_ema_variables = lambda m, e, a, step: (ema_steps.append(step), update_ema(m, e, a, step))
    loaders = [_OfficialLoader([step[level][1] for step in data], 400 if start_step else 1) for level in range(3)]
    official_grads = _recording_gradients(scope["optimizer"], encoder)
    trainer.train(start_step // 400, *loaders, scope["optimizer"], print_freq=10**9, train_iters=iters)

    # plugin: the optimizer fast-reid builds from the config, one LF2StepRunner step per iteration
    optimizer, _ = LF2Trainer.build_optimizer(cfg, model)
    runner = LF2StepRunner(model, optimizer)
    runner.set_data_loaders([[step[level][0] for step in data] for level in range(3)])
    plugin_losses, momenta, plugin_grads = [], [], []
    for i in range(iters):
        with EventStorage(start_step + i) as storage:
            runner.iter = start_step + i
            runner.run_step()
            latest = {k: v[0] for k, v in storage.latest().items()}
        plugin_grads.append({k: p.grad.clone() for k, p in model.named_parameters() if p.grad is not None})
        plugin_losses.append(latest)
        momenta.append(latest["ema_momentum"])

    tol = TOLERANCE[dtype]
    official_losses = {
        "loss_cls": [ce_log[i] for i in range(iters)],
        "loss_triplet": [tri_log[3 * i] for i in range(iters)],
        "loss_part_triplet": [0.5 * tri_log[3 * i + 1] + 0.5 * tri_log[3 * i + 2] for i in range(iters)],
    }
    rows = [
        compare(
            name,
            "loss terms",
            {
                f"{key}[{i}]": (torch.tensor(plugin_losses[i][key], dtype=torch.float64), value[i])
                for key, value in official_losses.items()
                for i in range(iters)
            },
            tol,
        )
    ]
    expected_momenta = [min(1 - 1 / (step + 1), args.alpha) for step in ema_steps]
    rows.append(
        compare(
            name,
            f"EMA momentum, official steps {ema_steps}",
            {
                f"step {s}": (torch.tensor(m, dtype=torch.float64), torch.tensor(e, dtype=torch.float64))
                for s, m, e in zip(ema_steps, momenta, expected_momenta)
            },
            tol,
        )
    )
    noise = _rounding_noise_keys(encoder)
    rows += _gradient_rows(name, plugin_grads, official_grads, noise, start_step, dtype)
    groups = {
        "student parameters": lambda k: not k.startswith(("teacher.", "fusion.")) and not _is_stat(k),
        "teacher parameters (EMA)": lambda k: k.startswith("teacher.") and not _is_stat(k),
        "student BN statistics": lambda k: not k.startswith(("teacher.", "fusion.")) and _is_stat(k),
        "teacher BN statistics": lambda k: k.startswith("teacher.") and _is_stat(k),
        "Fusion Module BN (weights and statistics)": lambda k: k.startswith("fusion."),
    }
    pairs = _state_pairs(
        model.state_dict(), encoder.state_dict(), {"noise": lambda k: k.removeprefix("teacher.") in noise, **groups}
    )
    rows.append(
        compare(
            name,
            "parameters moved by rounding noise only (bias before a train-mode BN)",
            pairs.pop("noise"),
            NOISE_ATOL,
            absolute=True,
        )
    )
    for quantity, group in pairs.items():
        rows.append(compare(name, quantity, group, ADAM_STEP_TOLERANCE[dtype] if "parameters" in quantity else tol))
    return rows


def _official_gradients(network, encoder=True):
    """{plugin key: gradient} of an official network's parameters that have one (attention as Linear)."""
    grads = {}
    for key, param in network.named_parameters():
        new_key = official_key(key, encoder)
        if param.grad is not None and new_key is not None:
            grads[new_key] = param.grad.reshape(param.shape[:2]) if ".attentions." in new_key else param.grad
    return grads


def _rounding_noise_keys(encoder):
    """Plugin names of the student parameters whose exact gradient is zero: a Linear bias right before a
    train-mode BN (the official experts). Their float gradient is rounding noise, which Adam divides by
    ``sqrt(v) + eps`` like any other, so both sides move them by different amounts below ``NOISE_ATOL``."""
    student = encoder.model.module
    return {
        official_key(f"model.module.{fc}.bias") for fc in ("adativeFC_upper", "adativeFC_low") if hasattr(student, fc)
    }


def _recording_gradients(optimizer, network, encoder=True):
    """Record the official gradients (plugin keys) every time ``optimizer.step`` is called."""
    log, step = [], optimizer.step

    def recording_step(*args, **kwargs):
        log.append({k: g.clone() for k, g in _official_gradients(network, encoder).items()})
        return step(*args, **kwargs)

    optimizer.step = recording_step
    return log


def _gradient_rows(name, plugin_grads, official_grads, noise, start_step, dtype):
    """Per step: the set of parameters that get a gradient, and the gradients (the first step's at TOLERANCE;
    later ones at ADAM_STEP_TOLERANCE, since they are taken at parameters one Adam step apart)."""
    rows = []
    for i, (plugin, official) in enumerate(zip(plugin_grads, official_grads)):
        only = sorted(set(plugin) ^ set(official))
        rows.append(
            Row(
                name,
                f"step {start_step + i}: parameters with a gradient (official {len(official)}, plugin {len(plugin)})",
                float(len(only)),
                float(len(only)),
                0.0,
                ", ".join(only[:3]),
            )
        )
        tolerance = TOLERANCE[dtype] if i == 0 else ADAM_STEP_TOLERANCE[dtype]
        rows.append(
            compare(
                name,
                f"step {start_step + i}: gradients",
                {k: (plugin[k], official[k]) for k in official if k in plugin and k not in noise},
                tolerance,
            )
        )
    return rows


# ---------------------------------------------------------------------------------------------------------------
# clustering
# ---------------------------------------------------------------------------------------------------------------
def _clustered_features(generator, num_points, dim, num_groups):
    """Three feature levels with cluster structure, L2-normalised as the official extraction leaves them."""
    levels = []
    for _ in range(3):
        centres = torch.randn(num_groups, dim, generator=generator, dtype=torch.float64)
        members = torch.randint(num_groups, (num_points,), generator=generator)
        points = centres[members] + 0.6 * torch.randn(num_points, dim, generator=generator, dtype=torch.float64)
        levels.append(F.normalize(points, dim=1).float())
    return levels


def clustering_case(official, direction="Market2Duke", *, seed=0, num_points=2000, dim=2048, num_clusters=60):
    """target_train.py's per-level clustering and classifier update vs the plugin's, same features and seeds."""
    from sklearn.metrics import adjusted_rand_score

    from ..clustering import cluster_features
    from ..engine.trainer import LF2Trainer

    name = f"clustering ({direction}, k={num_clusters}, N={num_points})"
    generator = torch.Generator().manual_seed(seed)
    features = _clustered_features(generator, num_points, dim, num_clusters)
    cfg = direction_config(
        direction, "lf2", ["MODEL.LF2.CLUSTER.NUM_CLUSTERS", num_clusters, "MODEL.HEADS.NUM_CLASSES", num_clusters]
    )
    cluster_cfg = cfg.MODEL.LF2.CLUSTER
    level_seed = int(cluster_cfg.SEED)

    # official: each level's MiniBatchKMeans statement, then the classifier update, as target_train.py has them
    # (numpy's global RNG seeded before each fit, which is what random_state=None draws from)
    def official_network():
        return SimpleNamespace(module=SimpleNamespace(classifier=nn.Linear(dim, num_clusters, bias=False)))

    encoder = SimpleNamespace(model=official_network(), model_ema=official_network())
    namespace = {
        "cf_global": features[0],
        "cf_upper": features[1],
        "cf_low": features[2],
        "clusters": [num_clusters],
        "nc": 0,
        "encoder": encoder,
    }
    for first, last in [
        ("km_global = ",) * 2,
        ("km_upper = ",) * 2,
        ("km_low = ",) * 2,
        ("encoder.model.module.classifier", "target_label_low = km_low.labels_"),
    ]:
        if first.startswith("km_"):
            np.random.seed(level_seed)
        namespace, _ = official.run_statements("target_train.py", first, last, namespace)
    official_labels = [namespace[f"target_label_{level}"] for level in ("global", "upper", "low")]

    # plugin: cluster_features per level with the direction's MODEL.LF2.CLUSTER, then LF2.reset_classifier
    results = [cluster_features(f.numpy(), cluster_cfg, level, seed=level_seed) for level, f in enumerate(features)]
    model = LF2Trainer.build_model(cfg)
    model.reset_classifier(torch.from_numpy(np.ascontiguousarray(results[0].centroids)))

    rows = []
    for level, (result, labels) in enumerate(zip(results, official_labels)):
        ari = adjusted_rand_score(labels, result.labels)
        identical = float(np.array_equal(labels, result.labels))
        rows.append(
            Row(
                name,
                f"level {level} labels: 1 - ARI, identical={bool(identical)}",
                1 - identical,
                1 - ari,
                0.0,
                f"{len(np.unique(result.labels))} clusters",
            )
        )
    rows.append(
        compare(
            name,
            "classifiers from the level-0 centroids",
            {
                "heads.weight": (model.heads.weight, encoder.model.module.classifier.weight),
                "teacher.heads.weight": (model.teacher.heads.weight, encoder.model_ema.module.classifier.weight),
            },
            TOLERANCE[torch.float32],
        )
    )
    return rows


# ---------------------------------------------------------------------------------------------------------------
# sampler
# ---------------------------------------------------------------------------------------------------------------
def _pseudo_labelled_set(generator, num_images, num_clusters, num_cams):
    """``(path, label, camid)`` items whose clusters include one-image, one-camera and multi-camera ones."""
    labels = torch.randint(num_clusters, (num_images,), generator=generator).tolist()
    cams = torch.randint(num_cams, (num_images,), generator=generator).tolist()
    items = [(f"{i}.jpg", label, cam) for i, (label, cam) in enumerate(zip(labels, cams))]
    items += [(f"single{j}.jpg", num_clusters + j, j % num_cams) for j in range(7)]  # one-image clusters
    items += [(f"samecam{j}.jpg", num_clusters + 7 + j // 3, 0) for j in range(9)]  # one camera each
    return items


def sampler_case(official, direction="Market2Duke", *, seed=0, num_images=600, num_clusters=90, passes=3):
    """The official ``RandomMultipleGallerySampler`` through the scripts' ``DataLoader(drop_last=True)``,
    restarted every pass as ``IterLoader`` does, vs the sampler of the direction's configs (both stages; its
    indices, one process): the same batches, index for index, with the same seed."""
    import random
    from importlib import import_module

    from ..data.pseudo_labels import TRAIN_SAMPLERS

    args = official.default_args("target_train.py")
    items = _pseudo_labelled_set(torch.Generator().manual_seed(seed), num_images, num_clusters, 6)
    official_sampler = import_module("reid.utils.data.sampler").RandomMultipleGallerySampler(items, args.num_instances)
    torch.manual_seed(seed)
    random.seed(seed)
    np.random.seed(seed)
    expected = []
    for _ in range(passes):  # BatchSampler(drop_last=True) over one pass
        stream = list(iter(official_sampler))
        expected += stream[: len(stream) // args.batch_size * args.batch_size]

    rows = []
    for stage in ("lf2", "source"):
        cfg = direction_config(direction, stage)
        name = cfg.DATALOADER.SAMPLER_TRAIN
        if name not in TRAIN_SAMPLERS:
            rows.append(Row(f"sampler ({direction}, {stage})", f"{name} is not an identity sampler", 1.0, 1.0, 0.0))
            continue
        stream = iter(TRAIN_SAMPLERS[name](items, cfg.SOLVER.IMS_PER_BATCH, cfg.DATALOADER.NUM_INSTANCE, seed=seed))
        plugin = [next(stream) for _ in range(len(expected))]
        mismatched = sum(a != b for a, b in zip(plugin, expected))
        rows.append(
            Row(
                f"sampler ({direction}, {stage})",
                f"{name}: indices of {passes} passes ({len(expected) // args.batch_size} batches), mismatches",
                float(mismatched),
                mismatched / len(expected),
                0.0,
                f"{len(items)} images",
            )
        )
    return rows


# ---------------------------------------------------------------------------------------------------------------
# source stage
# ---------------------------------------------------------------------------------------------------------------
def source_step_case(
    official, direction="Market2Duke", *, iters=1, dtype=torch.float64, seed=0, batch=8, size=(64, 32), num_classes=5
):
    """``PreTrainer.train`` (source batch, target batch for BN only, CE + soft triplet, Adam at the warm-up's
    first rate) vs fast-reid's SimpleTrainer step of ``LF2SourceBaseline`` with :class:`TargetBNAdaptationHook`.

    Only the first epoch's rate is shared (the official warm-up steps per epoch, fast-reid's per iteration:
    docs/FIDELITY.md), so ``iters`` > 1 compares a known difference.
    """
    from fastreid.engine.train_loop import SimpleTrainer
    from fastreid.utils.events import EventStorage

    from ..engine.source import SourceTrainer, TargetBNAdaptationHook

    name = f"source step 0..{iters - 1} ({direction}, {str(dtype)[6:]})"
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    args = official.default_args("source_pretrain.py")
    network = official.reid.models.create(
        args.arch, num_features=args.features, dropout=args.dropout, num_classes=num_classes
    )
    _randomize(network, generator)
    network = nn.DataParallel(network).to(dtype)
    cfg = direction_config(
        direction,
        "source",
        [
            "MODEL.HEADS.NUM_CLASSES",
            num_classes,
            "MODEL.BACKBONE.PRETRAIN",
            False,  # no ImageNet download
            "INPUT.SIZE_TRAIN",
            list(size),
            "INPUT.SIZE_TEST",
            list(size),
        ],
    )
    model = SourceTrainer.build_model(cfg)
    model.load_state_dict(convert_official_state_dict(network.state_dict())[0], strict=True)
    _to_dtype(model, cfg, dtype)
    source, target = [], []
    for _ in range(iters):
        for batches, labelled in ((source, True), (target, False)):
            raw, normalised = _raw_images(generator, batch, size, dtype)
            labels = _pk_labels(generator, batch, 2, num_classes) if labelled else torch.zeros(batch, dtype=torch.long)
            cams = torch.arange(batch) % 2
            batches.append(
                (
                    {"images": raw, "targets": labels, "camids": cams},
                    (normalised, [f"{i}.jpg" for i in range(batch)], labels, cams),
                )
            )

    # official: source_pretrain.py's optimizer and scheduler statements, then PreTrainer.train
    scope, _ = official.run_statements(
        "source_pretrain.py", "params = []", "lr_scheduler = WarmupMultiStepLR", {"model": network, "args": args}
    )
    trainer = official.reid.trainers.PreTrainer(network, num_classes, margin=args.margin)
    official_losses, forward = [], trainer._forward
    trainer._forward = lambda *a: (lambda out: (official_losses.append(out[:2]), out)[1])(forward(*a))
    official_grads = _recording_gradients(scope["optimizer"], network, encoder=False)
    trainer.train(
        0,
        _OfficialLoader([b[1] for b in source], iters),
        _OfficialLoader([b[1] for b in target], iters),
        scope["optimizer"],
        train_iters=iters,
        print_freq=10**9,
    )

    # plugin: the optimizer and scheduler fast-reid builds from the config, SimpleTrainer + the BN hook
    optimizer, _ = SourceTrainer.build_optimizer(cfg, model)
    SourceTrainer.build_lr_scheduler(cfg, optimizer, args.iters)
    runner = SimpleTrainer(model, [b[0] for b in source], optimizer, None)
    runner.register_hooks([TargetBNAdaptationHook([b[0] for b in target])])
    plugin_losses, plugin_grads = [], []
    with EventStorage(0) as runner.storage:
        runner.before_train()
        for i in range(iters):
            runner.iter = i
            runner.before_step()
            runner.run_step()
            runner.after_step()
            plugin_losses.append({k: v[0] for k, v in runner.storage.latest().items()})
            plugin_grads.append({k: p.grad.clone() for k, p in model.named_parameters() if p.grad is not None})
        runner.after_train()

    tol = TOLERANCE[dtype]
    rows = [
        compare(
            name,
            "learning rate of the first step",
            {
                "lr": (
                    torch.tensor(optimizer.param_groups[0]["lr"], dtype=torch.float64),
                    torch.tensor(scope["optimizer"].param_groups[0]["lr"], dtype=torch.float64),
                )
            },
            tol,
        )
    ]
    rows.append(
        compare(
            name,
            "loss terms",
            {
                f"{key}[{i}]": (torch.tensor(plugin_losses[i][key], dtype=torch.float64), official_losses[i][j])
                for i in range(iters)
                for j, key in enumerate(("loss_cls", "loss_triplet"))
            },
            tol,
        )
    )
    rows += _gradient_rows(name, plugin_grads, official_grads, set(), 0, dtype)
    converted, _ = convert_official_state_dict(network.state_dict())
    state = model.state_dict()
    rows.append(
        compare(
            name,
            "parameters after the step",
            {k: (state[k], v) for k, v in converted.items() if not _is_stat(k)},
            ADAM_STEP_TOLERANCE[dtype],
        )
    )
    rows.append(
        compare(
            name,
            "BN statistics (source and target batches)",
            {k: (state[k], v) for k, v in converted.items() if _is_stat(k)},
            tol,
        )
    )
    return rows


# ---------------------------------------------------------------------------------------------------------------
# evaluation
# ---------------------------------------------------------------------------------------------------------------
class _ListDataset(torch.utils.data.Dataset):
    def __init__(self, items):
        self.items = items

    def __len__(self):
        return len(self.items)

    def __getitem__(self, index):
        return self.items[index]


def _retrieval_set(generator, size, num_ids=8, gallery_per_id=2, distractors=4):
    """Query (one image per id, camera 0) then gallery (ids in cameras 1.., plus distractors), 0-255 images."""
    items = [(pid, 0) for pid in range(num_ids)]
    items += [(pid, 1 + j) for pid in range(num_ids) for j in range(gallery_per_id)]
    items += [(num_ids + j, 1) for j in range(distractors)]
    raw, normalised = _raw_images(generator, len(items), size, torch.float32)
    return items, raw, normalised, num_ids


def evaluation_case(official, direction="Market2Duke", *, seed=0, size=(64, 32), num_classes=6):
    """The official ``Evaluator`` (teacher concat descriptor, per-view L2, flip sum, L2; mAP and Rank-1) vs
    fast-reid's ``inference_on_dataset`` with TEST.FLIP and ``ReidEvaluator`` on the plugin model, float32."""
    from fastreid.evaluation import ReidEvaluator, inference_on_dataset

    from ..engine.trainer import LF2Trainer

    name = f"evaluation ({direction})"
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    args = official.default_args("target_train.py")
    encoder = _official_encoder(official, args, num_classes, generator)
    cfg = direction_config(
        direction,
        "lf2",
        ["MODEL.HEADS.NUM_CLASSES", num_classes, "INPUT.SIZE_TRAIN", list(size), "INPUT.SIZE_TEST", list(size)],
    )
    model = LF2Trainer.build_model(cfg)
    model.load_state_dict(convert_official_state_dict(encoder.state_dict())[0], strict=True)
    items, raw, normalised, num_query = _retrieval_set(generator, size)
    fnames = [f"{i:04d}_c{cam}.jpg" for i, (_, cam) in enumerate(items)]
    records = [(fname, pid, cam) for fname, (pid, cam) in zip(fnames, items)]

    official_loader = torch.utils.data.DataLoader(
        _ListDataset([(normalised[i], fnames[i], pid, cam) for i, (pid, cam) in enumerate(items)]), batch_size=5
    )
    evaluator = official.reid.evaluators.Evaluator(encoder)
    official_rank1, official_map = evaluator.evaluate(
        official_loader, records[:num_query], records[num_query:], cmc_flag=True, source=False
    )
    official_features, _ = official.reid.evaluators.extract_features(encoder, official_loader)
    official_features = torch.stack([official_features[f] for f in fnames])

    plugin_loader = torch.utils.data.DataLoader(
        _ListDataset(
            [
                {"images": raw[i], "targets": pid, "camids": cam, "img_paths": fnames[i]}
                for i, (pid, cam) in enumerate(items)
            ]
        ),
        batch_size=5,
    )
    reid_evaluator = ReidEvaluator(cfg, num_query)
    results = inference_on_dataset(model, plugin_loader, reid_evaluator, flip_test=cfg.TEST.FLIP.ENABLED)
    plugin_features = torch.cat([p["feats"] for p in reid_evaluator._predictions])
    if cfg.TEST.METRIC == "cosine":  # what ReidEvaluator's cosine distance does to them
        plugin_features = F.normalize(plugin_features, dim=1)
    tol = TOLERANCE[torch.float32]
    return [
        compare(
            name,
            f"descriptors [{len(items)}, {official_features.shape[1]}] (EVAL_NORMALIZE "
            f"{cfg.MODEL.LF2.EVAL_NORMALIZE}, TEST.FLIP {cfg.TEST.FLIP.ENABLED})",
            {"descriptors": (plugin_features, official_features)},
            tol,
        ),
        compare(
            name,
            "mAP and Rank-1 (fractions)",
            {
                "mAP": (torch.tensor(results["mAP"] / 100, dtype=torch.float64), torch.tensor(float(official_map))),
                "Rank-1": (
                    torch.tensor(results["Rank-1"] / 100, dtype=torch.float64),
                    torch.tensor(float(official_rank1)),
                ),
            },
            tol,
        ),
    ]


# ---------------------------------------------------------------------------------------------------------------
# defaults
# ---------------------------------------------------------------------------------------------------------------
# official parser argument -> config keys that must hold its value, per stage
TARGET_DEFAULTS = {
    "lr": ("SOLVER.BASE_LR",),
    "weight_decay": ("SOLVER.WEIGHT_DECAY", "SOLVER.WEIGHT_DECAY_NORM", "SOLVER.WEIGHT_DECAY_BIAS"),
    "alpha": ("MODEL.LF2.TEACHER.EMA_ALPHA",),
    "iters": ("SOLVER.ITERS_PER_EPOCH",),
    "epochs": ("SOLVER.MAX_EPOCH",),
    "batch_size": ("SOLVER.IMS_PER_BATCH",),
    "num_instances": ("DATALOADER.NUM_INSTANCE",),
    "split_parts": ("MODEL.LF2.NUM_PARTS",),
    "height": ("INPUT.SIZE_TRAIN.0", "INPUT.SIZE_TEST.0"),
    "width": ("INPUT.SIZE_TRAIN.1", "INPUT.SIZE_TEST.1"),
    "features": ("MODEL.HEADS.EMBEDDING_DIM",),
}
SOURCE_DEFAULTS = {
    "lr": ("SOLVER.BASE_LR",),
    "weight_decay": ("SOLVER.WEIGHT_DECAY", "SOLVER.WEIGHT_DECAY_NORM", "SOLVER.WEIGHT_DECAY_BIAS"),
    "epochs": ("SOLVER.MAX_EPOCH",),
    "batch_size": ("SOLVER.IMS_PER_BATCH",),
    "num_instances": ("DATALOADER.NUM_INSTANCE",),
    "margin": ("MODEL.LOSSES.TRI.MARGIN",),
    "height": ("INPUT.SIZE_TRAIN.0", "INPUT.SIZE_TEST.0"),
    "width": ("INPUT.SIZE_TRAIN.1", "INPUT.SIZE_TEST.1"),
    "features": ("MODEL.HEADS.EMBEDDING_DIM",),
}


def _config_value(cfg, dotted):
    node = cfg
    for part in dotted.split("."):
        node = node[int(part)] if part.isdigit() else node[part]
    return node


def defaults_case(official, direction="Market2Duke"):
    """Each official parser default against the direction config's keys that stand for it (exact)."""
    rows = []
    for script, stage, keys in (
        ("target_train.py", "lf2", TARGET_DEFAULTS),
        ("source_pretrain.py", "source", SOURCE_DEFAULTS),
    ):
        args, cfg = official.default_args(script), direction_config(direction, stage)
        pairs = {
            f"--{arg.replace('_', '-')} = {key}": (
                torch.tensor(float(_config_value(cfg, key)), dtype=torch.float64),
                torch.tensor(float(getattr(args, arg)), dtype=torch.float64),
            )
            for arg, names in keys.items()
            for key in names
        }
        rows.append(compare(f"defaults ({direction}, {stage})", f"{script} parser defaults vs config", pairs, 0.0))
    return rows


# ---------------------------------------------------------------------------------------------------------------
# augmentation
# ---------------------------------------------------------------------------------------------------------------
def augmentation_case(official, direction="Market2Duke", *, seed=0, images=200, size=(256, 128)):
    """target_train.py's random erasing vs the LF2 loaders' (``INPUT.REA.*``), same python RNG state per image:
    the erased boxes and the fill after normalisation must be identical."""
    import random

    from ..data.transforms import build_train_transforms

    cfg = direction_config(direction, "lf2")
    plugin = next(t for t in build_train_transforms(cfg).transforms if "Erasing" in type(t).__name__)
    scope = official.script("target_train.py")
    official_transform = next(t for t in _official_train_transforms(scope, size) if "Erasing" in type(t).__name__)
    generator = torch.Generator().manual_seed(seed)
    mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(3, 1, 1)
    pairs, erased = {}, 0
    for i in range(images):
        raw = torch.rand(3, *size, generator=generator).mul(255).round()
        random.seed(seed + i)
        ours = (plugin(raw.clone()) / 255 - mean) / std
        random.seed(seed + i)
        theirs = official_transform((raw / 255 - mean) / std)
        erased += int(not torch.allclose(theirs, (raw / 255 - mean) / std))
        pairs[f"image {i}"] = (ours, theirs)
    return [
        compare(
            f"augmentation ({direction})",
            f"random erasing, {erased} of {images} images erased",
            pairs,
            TOLERANCE[torch.float32],
        )
    ]


def _official_train_transforms(scope, size):
    """The transforms of target_train.py's ``get_train_loader``, read from the ``T.Compose`` it builds."""
    captured = {}

    class Capture(Exception):
        pass

    def compose(transforms):
        captured["transforms"] = transforms
        raise Capture

    transforms_module = scope["T"]
    original = transforms_module.Compose
    transforms_module.Compose = compose
    try:
        scope["get_train_loader"](None, size[0], size[1], 64, 0, 4, 1)
    except Capture:
        pass
    finally:
        transforms_module.Compose = original
    return captured["transforms"]


# ---------------------------------------------------------------------------------------------------------------
# learning-rate schedule
# ---------------------------------------------------------------------------------------------------------------
def schedule_case(official, direction="Market2Duke"):
    """source_pretrain.py's ``WarmupMultiStepLR``, stepped once per epoch as its loop does, vs the rate of every
    iteration of the plugin's source stage (:func:`lf2_plugin.engine.source.source_learning_rates`)."""
    from ..engine.source import source_learning_rates

    args = official.default_args("source_pretrain.py")
    network = nn.Linear(2, 2)
    scope, _ = official.run_statements(
        "source_pretrain.py", "params = []", "lr_scheduler = WarmupMultiStepLR", {"model": network, "args": args}
    )
    expected = []
    for _ in range(args.epochs):
        expected += [scope["optimizer"].param_groups[0]["lr"]] * args.iters
        scope["lr_scheduler"].step()
    rates = source_learning_rates(direction_config(direction, "source"))
    pairs = (
        {
            f"epoch {e}": (
                torch.tensor(rates[e * args.iters : (e + 1) * args.iters], dtype=torch.float64),
                torch.tensor(expected[e * args.iters : (e + 1) * args.iters], dtype=torch.float64),
            )
            for e in range(args.epochs)
        }
        if len(rates) == len(expected)
        else {"length": (len(rates), len(expected))}
    )
    return [
        compare(
            f"schedule ({direction}, source)",
            f"learning rate of each of {len(expected)} iterations",
            pairs,
            TOLERANCE[torch.float64],
        )
    ]
