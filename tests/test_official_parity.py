"""Training parity with the official LF2 code (github.com/DJEddyking/LF2 at 9d2e615), case by case.

Runs when ``LF2_OFFICIAL_DIR`` points to a checkout of that repository, skipped (with the reason) otherwise.
The official code runs from its own files through :mod:`lf2_plugin.parity.official`; each case of
:mod:`lf2_plugin.parity.cases` returns one row per compared quantity, and a test fails listing the rows outside
their tolerance. ``tools/compare_official.py --official DIR`` prints the same rows as a table.
"""

import os

import pytest
import torch

OFFICIAL_DIR = os.environ.get("LF2_OFFICIAL_DIR", "")
SKIP_REASON = (
    "LF2_OFFICIAL_DIR is not set: the official-parity cases need a checkout of "
    "github.com/DJEddyking/LF2 (commit 9d2e615) outside this repository"
)


@pytest.fixture(scope="module")
def official():
    from lf2_plugin.parity.official import OfficialLF2

    if not OFFICIAL_DIR:
        pytest.skip(SKIP_REASON)
    threads = torch.get_num_threads()
    with OfficialLF2(OFFICIAL_DIR) as checkout:
        yield checkout
    torch.set_num_threads(threads)


def assert_rows(rows):
    from lf2_plugin.parity.cases import format_table

    assert rows and all(row.passed for row in rows), "\n" + format_table(rows)


def test_checkout_is_the_pinned_commit(official):
    from lf2_plugin.parity.official import OFFICIAL_COMMIT

    assert official.commit in (OFFICIAL_COMMIT, "unknown"), (
        f"{official.root} is at {official.commit}; the parity cases are written for {OFFICIAL_COMMIT}"
    )


@pytest.mark.parametrize("start_step", [0, 2000])
def test_target_stage_steps(official, start_step):
    """Two SingelmeanTrainer steps from global step 0 (EMA momentum 0, then 0.5) and from 2000 (capped at
    alpha): loss terms, gradients, student, teacher, BN and Fusion statistics, float64."""
    from lf2_plugin.parity.cases import target_step_case

    assert_rows(target_step_case(official, start_step=start_step))


def test_clustering_levels(official):
    from lf2_plugin.parity.cases import clustering_case

    assert_rows(clustering_case(official))


@pytest.mark.parametrize("direction", ["Market2Duke", "Duke2Market", "Market2MSMT", "Duke2MSMT"])
def test_sampler_batches(official, direction):
    from lf2_plugin.parity.cases import sampler_case

    assert_rows(sampler_case(official, direction))


def test_source_stage_step(official):
    from lf2_plugin.parity.cases import source_step_case

    assert_rows(source_step_case(official))


@pytest.mark.parametrize("direction", ["Market2Duke", "Duke2Market", "Market2MSMT", "Duke2MSMT"])
def test_source_learning_rate_schedule(official, direction):
    from lf2_plugin.parity.cases import schedule_case

    assert_rows(schedule_case(official, direction))


def test_random_erasing(official):
    from lf2_plugin.parity.cases import augmentation_case

    assert_rows(augmentation_case(official))


@pytest.mark.parametrize("direction", ["Market2Duke", "Duke2Market", "Market2MSMT", "Duke2MSMT"])
def test_evaluation_protocol(official, direction):
    from lf2_plugin.parity.cases import evaluation_case

    assert_rows(evaluation_case(official, direction))


@pytest.mark.parametrize("direction", ["Market2Duke", "Duke2Market", "Market2MSMT", "Duke2MSMT"])
def test_config_defaults(official, direction):
    from lf2_plugin.parity.cases import defaults_case

    assert_rows(defaults_case(official, direction))


def test_official_runtime_shim_is_undone_on_exit():
    """The shim (no-op ``.cuda``, random weights for ``pretrained=True``) exists only inside its block."""
    import torchvision

    from lf2_plugin.parity.official import official_runtime

    cuda, resnet18 = torch.Tensor.cuda, torchvision.models.resnet18
    with official_runtime():
        assert torch.zeros(1).cuda().device.type == "cpu"
        assert torch.nn.Linear(2, 2).cuda().weight.device.type == "cpu"
        assert isinstance(torchvision.models.resnet18(pretrained=True), torchvision.models.ResNet)
    assert torch.Tensor.cuda is cuda and torchvision.models.resnet18 is resnet18


def test_missing_checkout_is_named(tmp_path):
    from lf2_plugin.parity.official import OfficialLF2

    with pytest.raises(FileNotFoundError, match=str(tmp_path)):
        OfficialLF2(str(tmp_path))
