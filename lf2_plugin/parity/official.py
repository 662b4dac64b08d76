"""The official LF2 code (DJEddyking/LF2 at 9d2e615), run beside the plugin for the parity checks.

Nothing of it is copied or edited: :class:`OfficialLF2` imports the checkout's ``reid`` package and executes its
two scripts from their own files. The scripts' training logic is inline in ``main_worker``, so the statements a
check needs (the per-level clustering, the optimizer) are taken from the script's syntax tree and executed as
they are written. The parser defaults of each script (``--lr``, ``--alpha``, ...) come from its own
``argparse`` block.

:func:`official_runtime` is the smallest shim that lets the 2022 code (torch 1.8.1, CUDA, scikit-learn 1.0.2)
run on torch 2, CPU and a current scikit-learn:

- ``Tensor.cuda()`` and ``Module.cuda()`` return their input (no GPU);
- torchvision's ResNet constructors build random weights whatever ``pretrained=`` says (the official models
  ask for ImageNet weights, which cannot be downloaded here; the checks load every weight themselves);
- an empty ``h5py`` module (``reid/feature_extraction/database.py`` imports it; LF2 never uses it);
- ``reid.trainers.use_gpu`` is True: it is read at import, and ``SingelmeanTrainer._parse_data`` returns
  nothing without it;
- ``MiniBatchKMeans`` defaults to ``n_init=3``, the default of the pinned scikit-learn 1.0.2 (now ``"auto"``,
  one run).
"""

import argparse
import ast
import contextlib
import functools
import os
import subprocess
import sys
import types
import warnings

import torch
import torchvision

OFFICIAL_COMMIT = "9d2e6158b687c83d55f8895ac36506d7c32ba985"
_RESNETS = ("resnet18", "resnet34", "resnet50", "resnet101", "resnet152")
# scikit-learn 1.0.2 (official requirements.txt): MiniBatchKMeans(n_init=3) unless given
OFFICIAL_SKLEARN_N_INIT = 3

__all__ = ["OFFICIAL_COMMIT", "OfficialLF2", "official_runtime"]


def _accepts_pretrained(constructor):
    @functools.wraps(constructor)
    def build(*args, pretrained=False, **kwargs):
        kwargs["weights"] = None
        return constructor(*args, **kwargs)

    return build


def _identity_cuda(self, *args, **kwargs):
    return self


@contextlib.contextmanager
def official_runtime():
    """Apply the shim (module docstring) and undo all of it on exit."""
    saved = {
        "tensor_cuda": torch.Tensor.cuda,
        "module_cuda": torch.nn.Module.cuda,
        **{name: getattr(torchvision.models, name) for name in _RESNETS},
    }
    h5py_stub = None
    try:
        import h5py  # noqa: F401
    except ImportError:
        h5py_stub = sys.modules["h5py"] = types.ModuleType("h5py")
    torch.Tensor.cuda = _identity_cuda
    torch.nn.Module.cuda = _identity_cuda
    for name in _RESNETS:
        setattr(torchvision.models, name, _accepts_pretrained(saved[name]))
    try:
        yield
    finally:
        torch.Tensor.cuda = saved["tensor_cuda"]
        torch.nn.Module.cuda = saved["module_cuda"]
        for name in _RESNETS:
            setattr(torchvision.models, name, saved[name])
        if h5py_stub is not None and sys.modules.get("h5py") is h5py_stub:
            del sys.modules["h5py"]


def _official_minibatch_kmeans():
    from sklearn.cluster import MiniBatchKMeans

    return functools.partial(MiniBatchKMeans, n_init=OFFICIAL_SKLEARN_N_INIT)


class OfficialLF2(contextlib.AbstractContextManager):
    """A checkout of the official repository, usable inside ``with OfficialLF2(root) as official:``.

    Inside the block ``official.reid`` is its ``reid`` package; :meth:`script`, :meth:`default_args` and
    :meth:`statements` read its two scripts. On exit the shim is undone and the ``reid`` modules are forgotten.
    """

    SCRIPTS = ("target_train.py", "source_pretrain.py")

    def __init__(self, root):
        self.root = os.path.abspath(root)
        missing = [
            p
            for p in ("reid/trainers.py", "reid/models/resnet.py", *self.SCRIPTS)
            if not os.path.isfile(os.path.join(self.root, p))
        ]
        if missing:
            raise FileNotFoundError(f"{self.root} is not a checkout of github.com/DJEddyking/LF2: no {missing[0]}")
        self.commit = self._commit()
        self._stack = None
        self._scripts = {}
        self.reid = None

    def _commit(self):
        try:
            return subprocess.run(
                ["git", "-C", self.root, "rev-parse", "HEAD"], capture_output=True, text=True, check=True
            ).stdout.strip()
        except (OSError, subprocess.CalledProcessError):
            return "unknown"

    def __enter__(self):
        self._stack = contextlib.ExitStack()
        self._stack.enter_context(official_runtime())
        self._stack.enter_context(warnings.catch_warnings())  # the scripts filter every warning away
        self._stack.callback(self._forget_modules)
        sys.path.insert(0, self.root)
        self._stack.callback(sys.path.remove, self.root)
        import reid
        import reid.trainers

        reid.trainers.use_gpu = True
        self.reid = reid
        return self

    def __exit__(self, *exc):
        self._stack.close()
        self.reid, self._scripts = None, {}
        return False

    @staticmethod
    def _forget_modules():
        for name in [m for m in sys.modules if m == "reid" or m.startswith("reid.")]:
            del sys.modules[name]

    # ---- the scripts ------------------------------------------------------------------------------------------
    def _path(self, name):
        if name not in self.SCRIPTS:
            raise ValueError(f"unknown official script {name!r}; one of {self.SCRIPTS}")
        return os.path.join(self.root, name)

    def _tree(self, name):
        with open(self._path(name)) as f:
            return ast.parse(f.read(), filename=self._path(name))

    def script(self, name):
        """The globals of an official script executed as a module (not as ``__main__``): its imports and
        functions. Its module-level side effects (``sys.path``, ``CUDA_VISIBLE_DEVICES``) are undone."""
        if name not in self._scripts:
            environ, path = dict(os.environ), list(sys.path)
            namespace = {"__name__": f"lf2_official_{name[:-3]}", "__file__": self._path(name)}
            try:
                exec(compile(self._tree(name), self._path(name), "exec"), namespace)
            finally:
                os.environ.clear()
                os.environ.update(environ)
                sys.path[:] = path
            self._scripts[name] = namespace
        return self._scripts[name]

    def default_args(self, name):
        """``argparse.Namespace`` of the script's own parser defaults (its ``if __name__ == '__main__'`` block
        without the final ``main()``)."""
        main_block = next(
            node for node in self._tree(name).body if isinstance(node, ast.If) and "__main__" in ast.unparse(node.test)
        )
        body = [stmt for stmt in main_block.body if ast.unparse(stmt).strip() != "main()"]
        namespace = dict(self.script(name))
        exec(compile(ast.Module(body=body, type_ignores=[]), self._path(name), "exec"), namespace)
        parser = namespace["parser"]
        assert isinstance(parser, argparse.ArgumentParser)
        return parser.parse_args([])

    def statements(self, name, first, last, function="main_worker"):
        """Code of the consecutive statements of ``function`` (at any loop depth) from the one whose source
        contains ``first`` to the one containing ``last``, with their line numbers: ``(code, (line0, line1))``."""
        func = next(
            node for node in self._tree(name).body if isinstance(node, ast.FunctionDef) and node.name == function
        )
        candidates = []  # (span, statements) in every block; the innermost block has the shortest span
        for block in ast.walk(func):
            body = getattr(block, "body", None)
            if not isinstance(body, list):
                continue
            sources = [ast.unparse(stmt) for stmt in body]
            starts = [i for i, src in enumerate(sources) if first in src]
            ends = [i for i, src in enumerate(sources) if last in src and starts and i >= starts[0]]
            if starts and ends:
                chosen = body[starts[0] : ends[0] + 1]
                candidates.append((chosen[-1].end_lineno - chosen[0].lineno, chosen))
        if not candidates:
            raise LookupError(f"{name}: no statements from {first!r} to {last!r} in {function}()")
        chosen = min(candidates, key=lambda c: c[0])[1]
        module = ast.Module(body=chosen, type_ignores=[])
        return compile(module, self._path(name), "exec"), (chosen[0].lineno, chosen[-1].end_lineno)

    def run_statements(self, name, first, last, namespace, function="main_worker"):
        """Execute :meth:`statements` in ``namespace`` (on top of the script's globals, with the official
        scikit-learn defaults); returns the namespace and the line range."""
        code, lines = self.statements(name, first, last, function)
        scope = {**self.script(name), "MiniBatchKMeans": _official_minibatch_kmeans(), **namespace}
        exec(code, scope)
        return scope, lines
