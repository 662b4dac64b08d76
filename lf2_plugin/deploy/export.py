"""Export a trained model as one graph from images to L2-normalised descriptors (ONNX or TorchScript).

Beside the graph, ``<name>.<format>.json`` says how to feed it and read it: input size, channel order, value range,
pixel mean/std (applied inside the graph), the descriptor layout (which slice is global, which part j), whether
flip averaging is inside, the config it came from, and the largest difference to PyTorch measured at export.
"""

import contextlib
import hashlib
import json
import logging
import os
import warnings

import numpy as np
import torch

from .descriptor import DescriptorModel, descriptor_layout

__all__ = ["FORMATS", "export_descriptor_model", "load_exported", "metadata_path"]

logger = logging.getLogger(__name__)

FORMATS = {"onnx": ".onnx", "torchscript": ".torchscript.pt"}
# Batch sizes the exported graph is checked at (1, and one other than the traced 2).
VERIFY_BATCH_SIZES = (1, 5)
# Largest accepted |exported - PyTorch| on the L2-normalised descriptors.
VERIFY_TOLERANCE = 1e-4
ONNX_OPSET = 17


@contextlib.contextmanager
def _quiet_tracing():
    """The tracer warns about every shape check in the model; the input size is fixed per export, so they hold."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", category=DeprecationWarning, module="torch.onnx")
        warnings.filterwarnings("ignore", category=FutureWarning, module="torch.jit")
        yield


def _export_onnx(descriptor_model, example, path):
    with _quiet_tracing(), torch.no_grad():
        # The TorchScript-based exporter: the dynamo one needs onnxscript and gives the same graph for this model.
        torch.onnx.export(
            descriptor_model,
            (example,),
            path,
            input_names=["images"],
            output_names=["descriptors"],
            dynamic_axes={"images": {0: "batch"}, "descriptors": {0: "batch"}},
            opset_version=ONNX_OPSET,
            do_constant_folding=True,
            dynamo=False,
        )
    import onnx

    onnx.checker.check_model(onnx.load(path))


def _export_torchscript(descriptor_model, example, path):
    with _quiet_tracing(), torch.no_grad():
        traced = torch.jit.freeze(torch.jit.trace(descriptor_model, example))
        torch.jit.save(traced, path)


def load_exported(path):
    """A callable ``images (numpy float32 [B, 3, H, W]) -> descriptors (numpy [B, D])`` for an exported file."""
    if path.endswith(FORMATS["onnx"]):
        import onnxruntime

        session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
        return lambda images: session.run(None, {"images": np.asarray(images, dtype=np.float32)})[0]
    with _quiet_tracing():
        module = torch.jit.load(path, map_location="cpu")

    def run(images):
        with torch.no_grad():
            return module(torch.as_tensor(np.asarray(images, dtype=np.float32))).numpy()

    return run


def _verify(path, descriptor_model, height, width, seed=0):
    """max |exported - PyTorch| over random 0-255 images at each of :data:`VERIFY_BATCH_SIZES`."""
    generator = torch.Generator().manual_seed(seed)
    run = load_exported(path)
    differences = {}
    for batch in VERIFY_BATCH_SIZES:
        images = torch.rand(batch, 3, height, width, generator=generator) * 255
        with torch.no_grad():
            expected = descriptor_model(images.to(descriptor_model.model.device)).cpu().numpy()
        differences[batch] = float(np.abs(run(images.numpy()) - expected).max())
    return differences


def _sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def metadata_path(out_dir, name, fmt):
    """``<out_dir>/<name>.<fmt>.json``: one description per exported file."""
    return os.path.join(out_dir, f"{name}.{fmt}.json")


def export_descriptor_model(cfg, model, out_dir, *, fmt="onnx", name="model", flip=None, weights=None):
    """Write ``out_dir/<name><ext>`` and its :func:`metadata_path` for ``model`` (built and loaded from ``cfg``,
    e.g. by :func:`~lf2_plugin.deploy.descriptor.load_inference_model`); returns the metadata dict.

    ``flip`` (default ``TEST.FLIP.ENABLED``) puts the evaluation's flip averaging inside the graph. The exported
    graph is run at batch sizes 1 and 5 against PyTorch; a difference above 1e-4 raises.
    """
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {sorted(FORMATS)}, got {fmt!r}")
    flip = cfg.TEST.FLIP.ENABLED if flip is None else flip
    height, width = (int(v) for v in cfg.INPUT.SIZE_TEST)
    descriptor_model = DescriptorModel(model.cpu(), flip=flip)
    example = torch.rand(2, 3, height, width, generator=torch.Generator().manual_seed(0)) * 255
    with torch.no_grad():
        dim = descriptor_model(example).shape[1]
    os.makedirs(out_dir, exist_ok=True)
    path = os.path.join(out_dir, name + FORMATS[fmt])
    {"onnx": _export_onnx, "torchscript": _export_torchscript}[fmt](descriptor_model, example, path)
    differences = _verify(path, descriptor_model, height, width)
    worst = max(differences.values())
    if worst > VERIFY_TOLERANCE:
        raise RuntimeError(
            f"{path} differs from PyTorch by {worst:.3g} (> {VERIFY_TOLERANCE}) at batch sizes {differences}"
        )
    metadata = {
        "format": fmt,
        "file": os.path.basename(path),
        "sha256": _sha256(path),
        "input": {
            "name": "images",
            "shape": ["batch", 3, height, width],
            "dtype": "float32",
            "channel_order": "RGB",
            "value_range": [0, 255],
            "resize": f"to {height}x{width} (height x width), bicubic, as fast-reid's test transform",
            "pixel_mean": [float(v) for v in cfg.MODEL.PIXEL_MEAN],
            "pixel_std": [float(v) for v in cfg.MODEL.PIXEL_STD],
            "normalisation": "inside the graph: (images - pixel_mean) / pixel_std",
        },
        "output": {
            "name": "descriptors",
            "shape": ["batch", dim],
            "l2_normalised": True,
            "layout": descriptor_layout(model, dim),
            "similarity": "dot product (cosine)",
        },
        "flip_averaged": bool(flip),
        "meta_architecture": cfg.MODEL.META_ARCHITECTURE,
        "backbone": {"name": cfg.MODEL.BACKBONE.NAME, "depth": cfg.MODEL.BACKBONE.DEPTH},
        "num_parts": int(cfg.MODEL.LF2.NUM_PARTS) if cfg.MODEL.META_ARCHITECTURE == "LF2" else None,
        "eval_feature": getattr(model, "eval_feature", None),
        "weights": os.path.abspath(weights or cfg.MODEL.WEIGHTS),
        "verified": {"max_abs_difference_to_pytorch": differences, "tolerance": VERIFY_TOLERANCE},
        "versions": _versions(fmt),
        "config": cfg.dump(),
    }
    with open(metadata_path(out_dir, name, fmt), "w") as f:
        json.dump(metadata, f, indent=1)
    logger.info("Exported %s (%s, descriptor %d, flip %s; max |diff| to PyTorch %.2g)", path, fmt, dim, flip, worst)
    return metadata


def _versions(fmt):
    from .. import __version__

    versions = {"lf2_plugin": __version__, "torch": torch.__version__}
    if fmt == "onnx":
        import onnx
        import onnxruntime

        versions.update(onnx=onnx.__version__, onnxruntime=onnxruntime.__version__, opset=ONNX_OPSET)
    return versions
