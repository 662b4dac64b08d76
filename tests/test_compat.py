"""Each fix in lf2_plugin.compat works, is applied once, and is still needed (the defect shows without it)."""

import json
import os
import subprocess
import sys

import compat_checks
import pytest

import lf2_plugin
from lf2_plugin import compat

HERE = os.path.dirname(os.path.abspath(__file__))


def run_python(code_or_script, skip, *args):
    env = dict(os.environ, LF2_COMPAT_SKIP=",".join(skip))
    cmd = [sys.executable, *([code_or_script] if code_or_script.endswith(".py") else ["-c", code_or_script]), *args]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)


def test_every_fix_is_applied_and_named_after_its_defect():
    assert compat.applied_fixes() == compat.fix_names()
    assert set(compat_checks.RUNTIME_FIXES) == set(compat.fix_names()) - {"collections_abc_aliases", "torch_six_module"}
    for func in compat._FIXES:
        assert func.__doc__ and "\n" not in func.__doc__.strip(), f"{func.__name__} needs a one-line defect"


def test_apply_is_idempotent():
    import fastreid.data.build as data_build
    import fastreid.engine.defaults as defaults

    before = (defaults.build_optimizer, data_build.fast_batch_collator, defaults.AMPTrainer)
    compat._DONE = False
    compat._APPLIED.clear()
    compat.apply()
    assert (defaults.build_optimizer, data_build.fast_batch_collator, defaults.AMPTrainer) == before
    assert compat.applied_fixes() == compat.fix_names()


@pytest.mark.parametrize("fix", compat_checks.RUNTIME_FIXES)
def test_fastreid_behaves_with_the_fix(fix):
    getattr(compat_checks, f"check_{fix}")()


def test_every_runtime_defect_reappears_without_its_fix():
    proc = run_python(os.path.join(HERE, "compat_checks.py"), compat_checks.RUNTIME_FIXES)
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("LF2_COMPAT_CHECKS ")]
    assert line, proc.stdout + proc.stderr
    results = json.loads(line[-1].split(" ", 1)[1])
    still_ok = [name for name, outcome in results.items() if outcome == "ok"]
    assert not still_ok, f"these checks pass without their fix (fix unneeded or check too weak): {still_ok}"


@pytest.mark.parametrize(
    "fix, error",
    [
        ("collections_abc_aliases", "cannot import name 'Mapping' from 'collections'"),
        ("torch_six_module", "No module named 'torch._six'"),
    ],
)
def test_fastreid_does_not_import_without_the_import_shims(fix, error):
    proc = run_python("import lf2_plugin", [fix])
    assert proc.returncode != 0 and error in proc.stderr, proc.stderr[-2000:]


def test_unknown_skip_name_is_an_error():
    proc = run_python("import lf2_plugin", ["no_such_fix"])
    assert proc.returncode != 0 and "unknown fixes ['no_such_fix']" in proc.stderr


def test_compiled_ranker_is_built():
    from fastreid.evaluation import rank

    assert lf2_plugin and rank.IS_CYTHON_AVAI
