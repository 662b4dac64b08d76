"""Parity of the plugin's training with the official LF2 code (github.com/DJEddyking/LF2 at 9d2e615).

:mod:`.official` runs the official code from a checkout; :mod:`.cases` compares it with the plugin.
``tests/test_official_parity.py`` (with ``LF2_OFFICIAL_DIR``) and ``tools/compare_official.py`` use
:func:`run_cases`. docs/FIDELITY.md lists every official training choice and where the plugin stands.
"""

from . import cases
from .official import OFFICIAL_COMMIT, OfficialLF2, official_runtime

# case name -> calls of lf2_plugin.parity.cases functions, each returning rows
CASES = {
    "target": [(cases.target_step_case, {"start_step": 0}), (cases.target_step_case, {"start_step": 2000})],
    "clustering": [(cases.clustering_case, {})],
    "sampler": [(cases.sampler_case, {"direction": d}) for d in cases.REAL_DIRECTIONS],
    "source": [(cases.source_step_case, {})],
    "augmentation": [(cases.augmentation_case, {})],
    "schedule": [(cases.schedule_case, {"direction": d}) for d in cases.REAL_DIRECTIONS],
    "evaluation": [(cases.evaluation_case, {"direction": d}) for d in cases.REAL_DIRECTIONS],
    "defaults": [(cases.defaults_case, {"direction": d}) for d in cases.REAL_DIRECTIONS],
}


def run_cases(official_dir, names=tuple(CASES), progress=None):
    """Rows of the named cases against the checkout at ``official_dir``."""
    rows = []
    with OfficialLF2(official_dir) as official:
        for name in names:
            for function, kwargs in CASES[name]:
                if progress:
                    progress(f"{name} {kwargs or ''}".strip())
                rows += function(official, **kwargs)
    return rows


__all__ = ["CASES", "OFFICIAL_COMMIT", "OfficialLF2", "official_runtime", "run_cases"]
