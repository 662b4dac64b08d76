"""The speed and memory benchmarks (lf2_plugin.benchmarks) at toy size: features, rows, table."""

import json

import numpy as np

from lf2_plugin.benchmarks.clustering import make_features, markdown_table, run_clustering_benchmark
from lf2_plugin.benchmarks.training import benchmark_training


def test_features_are_unit_norm_identities_with_unique_junk():
    features, ids = make_features(500, 16, seed=3)
    assert features.shape == (500, 16) and features.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(features, axis=1), 1.0, atol=1e-5)
    junk = ids[ids < 0]
    assert len(np.unique(junk)) == len(junk)
    again, _ = make_features(500, 16, seed=3)
    assert np.array_equal(features, again)


def test_clustering_rows_and_table(tmp_path, capsys):
    out = tmp_path / "rows.json"
    rows = run_clustering_benchmark([300], 16, ["reference", "lf2_dbscan", "lf2_kmeans"], str(out))
    assert json.loads(out.read_text()) == rows
    by = {row["impl"]: row for row in rows}
    assert all(row["status"] == "ok" and "labels" not in row for row in rows)
    # the plugin's exact DBSCAN path gives the reference's clusters
    assert by["lf2_dbscan"]["ari_vs_reference"] == 1.0
    assert by["lf2_kmeans"]["k"] == 15 and 0 < by["lf2_kmeans"]["nmi"] <= 1
    assert len(capsys.readouterr().out.splitlines()) == 3  # one line per finished row
    table = markdown_table(rows + [{"n": 300, "impl": "x", "seconds": 1.0, "peak_mb": None, "status": "failed"}])
    lines = table.splitlines()
    assert len(lines) == 2 + 4 and lines[-1].endswith("| - | failed |")
    assert "| 300 | lf2_kmeans |" in lines[4] and "| k=15 |" in lines[4]


def test_training_rows_end_with_the_ratio():
    rows = benchmark_training("18x", (64, 32), batch=4, iters=1, device="cpu")
    assert [row["impl"] for row in rows] == ["baseline", "lf2", "ratio"]
    assert rows[0]["student_images_per_iter"] == rows[1]["student_images_per_iter"] == 12
    ratio = rows[1]["seconds_per_iter"] / rows[0]["seconds_per_iter"]
    assert rows[2]["lf2_cost_per_student_image_vs_baseline"] == round(ratio, 3)
