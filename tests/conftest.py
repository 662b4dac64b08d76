import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)  # tests import their helper modules (compat_checks, ...) by name
sys.path.insert(0, os.path.dirname(HERE))

import pytest

import lf2_plugin  # noqa: E402,F401  (fastreid needs the compat fixes before any import of it)

ROOT = os.path.dirname(HERE)
TRAIN_NET = os.path.join(ROOT, "tools", "train_net.py")


@pytest.fixture(scope="session")
def tiny_market_root(tmp_path_factory):
    """A tiny synthetic domain in Market-1501's folder layout (read by fast-reid's own Market1501 class)."""
    from lf2_plugin.data.synthetic import generate_domain

    root = tmp_path_factory.mktemp("datasets")
    generate_domain(str(root), "market", num_ids=24, seed=3, images_per_cam=2)
    return str(root)


def run_train_net(args, datasets_root, timeout=600):
    """Run tools/train_net.py the way a user does; returns the CompletedProcess."""
    import subprocess

    env = dict(os.environ, FASTREID_DATASETS=datasets_root)
    return subprocess.run([sys.executable, TRAIN_NET, *args], env=env, capture_output=True, text=True,
                          timeout=timeout)


def load_train_net():
    """tools/train_net.py as a module, to call its cli() in-process."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("lf2_train_net", TRAIN_NET)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
