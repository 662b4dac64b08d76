"""Loading source-stage weights into LF2, and converting checkpoints of the official implementation.

Which checkpoint is which: an LF2 checkpoint (this plugin's) has ``teacher.*`` keys and is loaded with fast-reid's
``Checkpointer``; any other fast-reid checkpoint is a source-stage one (``Baseline``/``LF2SourceBaseline``) and is
loaded with :func:`load_source_weights`, which never skips a layer silently.

Official layout (DJEddyking/LF2 ``reid/models/resnet.py``): the ``Encoder`` state dict holds ``model.module.*``
(student), ``model_ema.module.*`` (teacher) and ``fuse_net.bn_{1,2,3}.*``; each network has
``base.{0,1,4,5,6,7}`` (torchvision conv1, bn1, layer1..4), ``BN_g``, ``classifier``, ``adativeFC_upper/low``,
``BN_u/BN_l``, ``ca_upper/ca_low.se.{0,2}`` (1×1 convolutions) and the unused ``feat_bn``. The source model
(``reid/models/resnet_source.py``) has ``module.base.*``, ``module.feat_bn.*``, ``module.classifier.weight``.
"""

import logging
import os
import re
from collections import OrderedDict

import torch
from tabulate import tabulate

logger = logging.getLogger(__name__)

TEACHER_PREFIX = "teacher."

# torchvision ResNet children in the official nn.Sequential ``base`` (2 = relu and 3 = maxpool hold no tensors)
_OFFICIAL_BASE_CHILDREN = {"0": "conv1", "1": "bn1", "4": "layer1", "5": "layer2", "6": "layer3", "7": "layer4"}
# official LF2 head names -> LF2Head names (K = 2: upper = stripe 1, low = stripe 2)
_OFFICIAL_HEAD_LAYERS = {
    "BN_g": "heads.bn_global.norm",
    "classifier": "heads",
    "adativeFC_upper": "heads.experts.0.fc",
    "adativeFC_low": "heads.experts.1.fc",
    "BN_u": "heads.experts.0.bn.norm",
    "BN_l": "heads.experts.1.bn.norm",
    "ca_upper.se.0": "heads.attentions.0.fc1",
    "ca_upper.se.2": "heads.attentions.0.fc2",
    "ca_low.se.0": "heads.attentions.1.fc1",
    "ca_low.se.2": "heads.attentions.1.fc2",
}


def checkpoint_state_dict(checkpoint):
    """The model state dict inside a fast-reid (``"model"``) or open-reid (``"state_dict"``) checkpoint, or a
    bare state dict, with a DataParallel ``module.`` prefix removed."""
    for key in ("model", "state_dict"):
        if isinstance(checkpoint, dict) and isinstance(checkpoint.get(key), dict):
            checkpoint = checkpoint[key]
            break
    if checkpoint and all(k.startswith("module.") for k in checkpoint):
        checkpoint = OrderedDict((k[len("module.") :], v) for k, v in checkpoint.items())
    return checkpoint


def load_checkpoint_file(path):
    """``torch.load`` on CPU; open-reid checkpoints hold numpy scalars, so they need ``weights_only=False``.

    A missing file raises FileNotFoundError, an unreadable one (truncated, not a checkpoint) RuntimeError, both
    naming the path."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"checkpoint {path!r} does not exist (MODEL.WEIGHTS or OUTPUT_DIR/last_checkpoint)")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # pickle of non-tensor metadata (e.g. numpy best_mAP); the file is the user's own
        try:
            return torch.load(path, map_location="cpu", weights_only=False)
        except Exception as error:
            raise RuntimeError(
                f"cannot read checkpoint {path} ({os.path.getsize(path)} bytes): "
                f"{type(error).__name__}: {error}. Is it a complete torch checkpoint?"
            ) from None


class IncompleteCheckpointError(RuntimeError):
    """A checkpoint that leaves tensors of the model it is loaded into unset or of another shape."""


def model_provenance(cfg):
    """What builds ``cfg``'s model, stored in every checkpoint as ``"built_with"`` so that a load into another
    model can say what the checkpoint was."""
    from .. import __version__

    provenance = {
        "meta_architecture": cfg.MODEL.META_ARCHITECTURE,
        "backbone": cfg.MODEL.BACKBONE.NAME,
        "depth": cfg.MODEL.BACKBONE.DEPTH,
        "feat_dim": cfg.MODEL.BACKBONE.FEAT_DIM,
        "lf2_plugin": __version__,
    }
    if cfg.MODEL.META_ARCHITECTURE == "LF2":
        provenance["num_parts"] = cfg.MODEL.LF2.NUM_PARTS
    return provenance


def describe_provenance(provenance):
    """:func:`model_provenance`'s record in words."""
    parts = f" with MODEL.LF2.NUM_PARTS={provenance['num_parts']}" if "num_parts" in provenance else ""
    return (
        f"{provenance['meta_architecture']}{parts} on {provenance['backbone']} depth {provenance['depth']}, "
        f"MODEL.BACKBONE.FEAT_DIM {provenance['feat_dim']} (lf2_plugin {provenance['lf2_plugin']})"
    )


def describe_config_model(cfg):
    """The model ``cfg`` builds, in the words of :func:`describe_saved_model`."""
    return describe_provenance(model_provenance(cfg))


def describe_saved_model(checkpoint):
    """What a checkpoint says of the model that wrote it: its ``"built_with"`` record, or, for checkpoints written
    without one (older, fast-reid's, converted official ones), what its keys show: LF2 and its K, the feature width."""
    if isinstance(checkpoint, dict) and isinstance(checkpoint.get("built_with"), dict):
        return describe_provenance(checkpoint["built_with"])
    stored = checkpoint_state_dict(checkpoint)
    parts = {k.split(".")[2] for k in stored if k.startswith("heads.experts.")}
    bn = stored.get("heads.bn_global.norm.weight", stored.get("heads.bottleneck.0.weight"))
    width = f", feature width {bn.numel()}" if bn is not None else ""
    if any(k.startswith(TEACHER_PREFIX) for k in stored):
        return f"LF2 with K={len(parts)} stripes{width}"
    return f"a model without a teacher (source stage or fast-reid Baseline){width}"


def unfit_tensors(stored, expected, keys):
    """``keys`` of the model state ``expected`` that ``stored`` lacks, and those it holds with another shape."""
    missing = sorted(k for k in keys if k not in stored)
    misfit = sorted(k for k in keys if k in stored and tuple(stored[k].shape) != tuple(expected[k].shape))
    return missing, misfit


def describe_unfit(stored, expected, missing, misfit, limit=4):
    """A few of :func:`unfit_tensors`' keys, for an error message."""
    return "; ".join(
        [f"{k} missing" for k in missing[:limit]]
        + [f"{k}: {tuple(stored[k].shape)} stored, {tuple(expected[k].shape)} expected" for k in misfit[:limit]]
    )


def is_lf2_state_dict(state_dict):
    """True for an LF2 checkpoint (it has ``teacher.*`` keys), False for a source-stage one."""
    return any(k.startswith(TEACHER_PREFIX) for k in checkpoint_state_dict(state_dict))


def _layer(key):
    return key.rsplit(".", 1)[0]


def _group_rows(status, keys, collapse):
    """Table rows: one per layer, or per top-level module for ``collapse`` (long lists of loaded keys)."""
    groups = OrderedDict()
    for key in keys:
        name = key.split(".")[0] if collapse else _layer(key)
        if collapse and key.startswith(TEACHER_PREFIX):
            name = ".".join(key.split(".")[:2])
        groups[name] = groups.get(name, 0) + 1
    return [(status, name, count) for name, count in groups.items()]


def load_source_weights(model, state_dict_or_path, bnneck_to_global_bn=None):
    """Fill an :class:`LF2` model from a source-stage checkpoint (fast-reid Baseline layout).

    ``backbone.*`` goes to the student and the teacher backbone; with ``bnneck_to_global_bn`` (default:
    ``MODEL.LF2.SOURCE_BNNECK_TO_GLOBAL_BN``) the source BNNeck ``heads.bottleneck.0.*`` also goes to both global
    BNs. Everything else of the model starts fresh, as in the official code. Logs a table of loaded / fresh /
    unused / shape-mismatched tensors and raises if any student backbone tensor is not loaded.

    Returns a dict of key lists: ``loaded``, ``fresh``, ``unused``, ``mismatched``.
    """
    if isinstance(state_dict_or_path, str):
        state_dict_or_path = load_checkpoint_file(state_dict_or_path)
    source = checkpoint_state_dict(state_dict_or_path)
    if is_lf2_state_dict(source):
        raise ValueError("this is an LF2 checkpoint (it has teacher.* keys): load it with fast-reid's Checkpointer")
    if bnneck_to_global_bn is None:
        bnneck_to_global_bn = getattr(model, "source_bnneck_to_global_bn", False)

    targets = {}  # model key -> source key
    for key in source:
        if key.startswith("backbone."):
            targets[key] = key
            targets[TEACHER_PREFIX + key] = key
        elif bnneck_to_global_bn and key.startswith("heads.bottleneck.0."):
            for prefix in ("", TEACHER_PREFIX):
                targets[prefix + "heads.bn_global.norm." + key[len("heads.bottleneck.0.") :]] = key

    model_state = model.state_dict()
    loaded, mismatched, values = [], [], {}
    for model_key, source_key in targets.items():
        if model_key not in model_state:
            continue
        if tuple(model_state[model_key].shape) != tuple(source[source_key].shape):
            mismatched.append(model_key)
            continue
        values[model_key] = source[source_key]
        loaded.append(model_key)
    used_sources = {targets[k] for k in loaded}
    unused = [k for k in source if k not in used_sources]
    fresh = [k for k in model_state if k not in values]
    model.load_state_dict(values, strict=False)

    rows = (
        _group_rows("loaded", loaded, collapse=True)
        + _group_rows("fresh", fresh, collapse=False)
        + _group_rows("unused (source)", unused, collapse=False)
        + [
            ("shape mismatch", k, f"{tuple(source[targets[k]].shape)} -> {tuple(model_state[k].shape)}")
            for k in mismatched
        ]
    )
    logger.info(
        "Source weights -> LF2 (tensor counts):\n%s",
        tabulate(rows, headers=["status", "layer", "tensors"], tablefmt="pipe"),
    )

    backbone_missing = [k for k in model_state if k.startswith("backbone.") and k not in values]
    if backbone_missing:
        raise RuntimeError(
            f"source checkpoint did not fill the backbone: {len(backbone_missing)} tensors missing "
            f"or mismatched, e.g. {backbone_missing[:5]} (check MODEL.BACKBONE.* against the "
            f"source config)"
        )
    return {"loaded": loaded, "fresh": fresh, "unused": unused, "mismatched": mismatched}


def _official_network_key(key, prefix, source_layout=False):
    """Plugin key for a key of one official network (``base.*``, ``BN_g.*``, ...), or None if LF2 drops it."""
    match = re.match(r"base\.(\d+)\.(.*)", key)
    if match:
        child = _OFFICIAL_BASE_CHILDREN.get(match.group(1))
        if child is None:
            raise KeyError(f"unexpected official backbone key {key}")
        return f"{prefix}backbone.{child}.{match.group(2)}"
    if source_layout:
        if key.startswith("feat_bn."):
            return "heads.bottleneck.0." + key[len("feat_bn.") :]
        if key == "classifier.weight":
            return "heads.weight"
        raise KeyError(f"unexpected official source-model key {key}")
    if key.startswith("feat_bn."):
        return None  # the source BNNeck, computed but unused by the official LF2 forward
    layer, _, tensor = key.rpartition(".")
    if layer not in _OFFICIAL_HEAD_LAYERS:
        raise KeyError(f"unexpected official LF2 key {key}")
    return f"{prefix}{_OFFICIAL_HEAD_LAYERS[layer]}.{tensor}"


def official_key(key, encoder=True):
    """The plugin key of one official key (``encoder``: of the target-stage ``Encoder``, else of the source
    model), or None for a tensor LF2 does not use."""
    if not encoder:
        return _official_network_key(key.removeprefix("module."), "", source_layout=True)
    if key.startswith("fuse_net."):
        match = re.match(r"fuse_net\.bn_(\d+)\.(.*)", key)
        if not match:
            raise KeyError(f"unexpected official Fusion Module key {key}")
        return f"fusion.bns.{int(match.group(1)) - 1}.norm.{match.group(2)}"
    network, _, rest = key.partition(".")
    if network not in ("model", "model_ema"):
        raise KeyError(f"unexpected official key {key}")
    rest = rest[len("module.") :] if rest.startswith("module.") else rest
    return _official_network_key(rest, TEACHER_PREFIX if network == "model_ema" else "")


def is_official_encoder_state(official):
    """True for the state of the official ``Encoder`` (target stage), False for the source model's."""
    return any(k.startswith(("model.", "model_ema.", "fuse_net.")) for k in checkpoint_state_dict(official))


def convert_official_state_dict(official):
    """Convert an official checkpoint (``Encoder`` of target training, or the source model) to this plugin.

    Returns ``(state_dict, info)``. ``info`` has ``"layout"`` (``"lf2"`` or ``"source"``), ``"dropped"`` keys and,
    for LF2, the config values the checkpoint needs: ``num_classes``, ``feat_dim``, ``expert``
    (``MODEL.HEADS.NUM_CLASSES``, ``MODEL.BACKBONE.FEAT_DIM``, ``MODEL.LF2.EXPERT``).
    """
    official = checkpoint_state_dict(official)
    is_encoder = is_official_encoder_state(official)
    converted, dropped = OrderedDict(), []
    for key, value in official.items():
        new_key = official_key(key, is_encoder)
        if new_key is None:
            dropped.append(key)
            continue
        if ".attentions." in new_key:
            value = value.reshape(value.shape[0], value.shape[1])  # 1x1 conv -> Linear
        converted[new_key] = value

    info = {"layout": "lf2" if is_encoder else "source", "dropped": dropped}
    if is_encoder:
        num_classes, feat_dim = converted["heads.weight"].shape
        expert_in = converted["heads.experts.0.fc.weight"].shape[1]
        info.update(
            num_classes=int(num_classes),
            feat_dim=int(feat_dim),
            expert="concat" if expert_in == 2 * feat_dim else "sum",
        )
    return converted, info
