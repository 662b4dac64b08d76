import os
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)  # tests import their helper modules (compat_checks, ...) by name
sys.path.insert(0, os.path.dirname(HERE))

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


def run_train_net(args, datasets_root, timeout=600, python_args=(), extra_env=None):
    """Run tools/train_net.py the way a user does; returns the CompletedProcess.

    ``python_args`` go before the script (e.g. ``-c DRIVER`` for a driver that runs it), ``extra_env`` into its
    environment."""
    import subprocess

    env = dict(os.environ, FASTREID_DATASETS=datasets_root, **(extra_env or {}))
    return subprocess.run(
        [sys.executable, *python_args, TRAIN_NET, *args], env=env, capture_output=True, text=True, timeout=timeout
    )


LF2_TINY_CONFIG = os.path.join(HERE, "configs", "lf2_tiny.yml")
LF2_TINY_EPOCHS = 3
LF2_TINY_VIS_EVERY = 2


@pytest.fixture(scope="session")
def tiny_duke_root(tmp_path_factory):
    """A tiny synthetic target in DukeMTMC-reID's folder layout (read by fast-reid's own DukeMTMC class)."""
    from lf2_plugin.data.synthetic import generate_domain

    root = tmp_path_factory.mktemp("target")
    generate_domain(str(root), "duke", num_ids=24, seed=5, images_per_cam=2)
    return str(root)


@pytest.fixture(scope="session")
def uninterrupted(tiny_duke_root, tmp_path_factory):
    """An uninterrupted tiny LF2 adaptation of LF2_TINY_EPOCHS epochs: (OUTPUT_DIR, CompletedProcess).

    It draws its pseudo labels every LF2_TINY_VIS_EVERY epochs (the resume test compares it with a run that does
    not: pictures must not change training)."""
    out = tmp_path_factory.mktemp("lf2_full")
    proc = run_train_net(
        [
            "--config-file",
            LF2_TINY_CONFIG,
            "OUTPUT_DIR",
            str(out),
            "SOLVER.MAX_EPOCH",
            str(LF2_TINY_EPOCHS),
            "MODEL.LF2.CLUSTER.VIS_EVERY",
            str(LF2_TINY_VIS_EVERY),
        ],
        tiny_duke_root,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return out, proc


def load_train_net():
    """tools/train_net.py as a module, to call its cli() in-process."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("lf2_train_net", TRAIN_NET)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


BACKBONE_OUTCOMES = pytest.StashKey[dict]()


@pytest.fixture
def backbone_outcomes(request):
    """{test id: outcome line} of tests/test_backbones.py, printed at the end of the run."""
    return request.config.stash.setdefault(BACKBONE_OUTCOMES, {})


def pytest_terminal_summary(terminalreporter, config):
    outcomes = config.stash.get(BACKBONE_OUTCOMES, None)
    if outcomes:
        terminalreporter.section("LF2 on every registered backbone")
        for test_id, outcome in sorted(outcomes.items()):
            terminalreporter.write_line(f"{test_id:50s} {outcome}")
