"""tools/sweep_clustering.py: scores of known clusterings, camera-mean removal, BN re-estimation, bad input."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from conftest import LF2_TINY_CONFIG, ROOT

from lf2_plugin.clustering.camera import camera_centered
from lf2_plugin.clustering.sweep import check_grid, reestimate_bn_statistics, sweep_features
from lf2_plugin.engine import build_config

SWEEP = os.path.join(ROOT, "tools", "sweep_clustering.py")


def run_sweep(args, datasets_root):
    env = dict(os.environ, FASTREID_DATASETS=datasets_root)
    return subprocess.run([sys.executable, SWEEP, *args], env=env, capture_output=True, text=True, timeout=600)


def camera_dominated_features(seed=0):
    """3 identities x 2 cameras x 4 images in 8-d: identity i along axis i, and a camera offset of +-2 along
    axis 5 that outweighs the identity, so the raw features group by camera."""
    rng = np.random.default_rng(seed)
    ids = np.repeat(np.arange(3), 8)
    cams = np.tile(np.repeat([0, 1], 4), 3)
    features = np.zeros((24, 8), np.float32)
    features[np.arange(24), ids] = 1.0
    features[:, 5] = np.where(cams == 0, 2.0, -2.0)
    features += rng.normal(0, 0.01, features.shape).astype(np.float32)
    return features / np.linalg.norm(features, axis=1, keepdims=True), ids, cams


def cluster_cfg(**overrides):
    cfg = build_config(LF2_TINY_CONFIG).MODEL.LF2.CLUSTER
    cfg.DBSCAN.K1, cfg.DBSCAN.K2 = 6, 3
    cfg.KMEANS.INIT_SIZE = cfg.KMEANS.PART_INIT_SIZE = 24
    for key, value in overrides.items():
        setattr(cfg, key, value)
    return cfg


def test_known_clusterings_score_as_computed_by_hand():
    features, ids, cams = camera_dominated_features()
    rows = sweep_features(
        features,
        ids,
        cams,
        cluster_cfg(),
        kmeans_k=[2, 3],
        dbscan_eps=[0.5],
        dbscan_min_samples=[3],
        camera_norm=[False, True],
    )
    by = {(r["features"], r["clustering"]): r for r in rows}
    # raw, k = 2: the two cameras. Pairs in a cluster 2 C(12,2) = 132, of one identity 3 C(8,2) = 84, both
    # 2 cams x 3 ids x C(4,2) = 36: P = 36/132, R = 36/84, F1 = 1/3.
    by_camera = by[("camera mean kept", "kmeans k=2")]
    assert by_camera["pairwise_precision"] == pytest.approx(36 / 132)
    assert by_camera["pairwise_recall"] == pytest.approx(36 / 84)
    assert by_camera["pairwise_f1"] == pytest.approx(1 / 3)
    # with each camera's mean removed the identities separate exactly, for k-means and DBSCAN
    for clustering in ("kmeans k=3", "dbscan eps=0.5 min_samples=3"):
        row = by[("camera mean removed", clustering)]
        assert row["pairwise_f1"] == pytest.approx(1.0) and row["ari"] == pytest.approx(1.0)
        assert row["coverage"] == 1.0 and row["num_clusters"] == 3
    assert by[("camera mean kept", "kmeans k=3")]["pairwise_f1"] < 0.6


def test_camera_normalisation_removes_each_cameras_mean():
    features, _, cams = camera_dominated_features()
    normalised = camera_centered(features, cams)
    np.testing.assert_allclose(np.linalg.norm(normalised, axis=1), 1.0, atol=1e-6)
    assert np.abs(normalised[:, 5]).max() < 0.05  # the camera axis is gone


@pytest.mark.parametrize(
    "grid, message",
    [
        (([], [], [4]), "nothing to sweep"),
        (([], [1.2], [4]), r"must lie in \(0, 1\), got \[1.2\]"),
        (([], [0.0], [4]), r"must lie in \(0, 1\), got \[0.0\]"),
        (([1], [], [4]), r"k must be >= 2, got \[1\]"),
        (([], [0.5], [0]), "min-samples must be >= 1"),
    ],
)
def test_bad_grids_are_refused(grid, message):
    with pytest.raises(ValueError, match=message):
        check_grid(*grid)


def test_bn_reestimation_puts_target_statistics_on_the_eval_path():
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 1), torch.nn.BatchNorm2d(4)).eval()
    batches = [torch.randn(8, 3, 4, 4) * 3 + 5 for _ in range(3)]
    assert reestimate_bn_statistics(model, batches) == 1
    bn = model[1]
    outputs = torch.cat([model[0](b) for b in batches]).detach()
    torch.testing.assert_close(bn.running_mean, outputs.mean(dim=(0, 2, 3)), rtol=1e-4, atol=1e-4)
    assert not bn.training and bn.momentum == 0.1  # eval mode and momentum restored


def test_sweep_tool_on_a_trained_model(uninterrupted, tiny_duke_root, tmp_path):
    out, _ = uninterrupted
    report_file = tmp_path / "sweep.json"
    proc = run_sweep(
        [
            "--config-file",
            LF2_TINY_CONFIG,
            "MODEL.WEIGHTS",
            str(out / "model_final.pth"),
            "--kmeans-k",
            "4",
            "6",
            "--dbscan-eps",
            "0.5",
            "--out",
            str(report_file),
        ],
        tiny_duke_root,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(report_file.read_text())
    assert report["dataset"] == "DukeMTMC" and report["num_images"] == 62
    assert len(report["rows"]) == 2 * 2 * 3  # BN as saved / re-estimated x camera mean kept / removed x 3
    assert all(0.0 <= r["pairwise_f1"] <= 1.0 for r in report["rows"])
    assert "| features | clustering |" in (tmp_path / "sweep.md").read_text()


def test_sweep_refuses_a_checkpoint_of_another_architecture(uninterrupted, tiny_market_root, tmp_path):
    out, _ = uninterrupted
    proc = run_sweep(
        [
            "--config-file",
            os.path.join(ROOT, "tests", "configs", "baseline_tiny.yml"),
            "MODEL.WEIGHTS",
            str(out / "model_final.pth"),
            "--kmeans-k",
            "4",
            "--out",
            str(tmp_path / "s.json"),
        ],
        tiny_market_root,
    )
    assert proc.returncode != 0 and "does not cover this model's eval path" in proc.stderr
