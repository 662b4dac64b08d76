"""MODEL.LF2.CLUSTER.CAMERA_CENTERING: each camera's mean feature removed before clustering, in training."""

import numpy as np
import pytest
from conftest import LF2_TINY_CONFIG
from test_sweep_clustering import camera_dominated_features, cluster_cfg

from lf2_plugin.clustering import clustering_quality, compute_centroids, distributed_cluster_levels
from lf2_plugin.clustering import hook as hook_module
from lf2_plugin.clustering.camera import camera_centered
from lf2_plugin.clustering.hook import cluster_camids
from lf2_plugin.engine import build_config

from fastreid.utils.events import EventStorage


def test_levels_clustered_after_camera_centering_recover_the_identities():
    features, ids, cams = camera_dominated_features()
    cfg = cluster_cfg(NUM_CLUSTERS=3)
    (plain,) = distributed_cluster_levels([features], cfg, seed=0)
    (centred,) = distributed_cluster_levels([features], cfg, seed=0, camids=cams)
    assert clustering_quality(plain.labels, ids)["pairwise_f1"] < 0.6
    assert clustering_quality(centred.labels, ids)["pairwise_f1"] == pytest.approx(1.0)
    # the classifier rows are the member means of the features as given, not of the centred ones
    np.testing.assert_allclose(centred.centroids, compute_centroids(features, centred.labels), atol=1e-6)
    assert not np.allclose(
        centred.centroids, compute_centroids(camera_centered(features, cams), centred.labels), atol=1e-2
    )


def test_camera_ids_are_required_only_when_centering():
    off = build_config(LF2_TINY_CONFIG)
    on = build_config(LF2_TINY_CONFIG, ["MODEL.LF2.CLUSTER.CAMERA_CENTERING", "True"])
    assert cluster_camids(off, [0, 1]) is None
    np.testing.assert_array_equal(cluster_camids(on, [0, 1]), [0, 1])
    with pytest.raises(ValueError, match="CAMERA_CENTERING needs the camera id"):
        cluster_camids(on, None)
    with pytest.raises(ValueError, match="2 camera ids for 3 features"):
        camera_centered(np.ones((3, 4), np.float32), [0, 1])


def test_trainer_clusters_with_the_target_cameras(tiny_duke_root, tmp_path, monkeypatch):
    from lf2_plugin.engine.trainer import LF2Trainer

    import fastreid.data.build as data_build

    monkeypatch.setattr(data_build, "_root", tiny_duke_root)
    cfg = build_config(LF2_TINY_CONFIG, ["MODEL.LF2.CLUSTER.CAMERA_CENTERING", "True", "OUTPUT_DIR", str(tmp_path)])
    trainer = LF2Trainer(cfg)
    seen = {}

    def recording(features, settings, **kwargs):
        seen.update(kwargs, rows=len(features[0]))
        return distributed_cluster_levels(features, settings, **kwargs)

    monkeypatch.setattr(hook_module, "distributed_cluster_levels", recording)
    trainer.epoch, trainer.iter = 0, 0
    with EventStorage(0) as trainer.storage:
        trainer.clustering_hook.before_epoch()
    assert seen["rows"] == len(trainer.target_items)
    np.testing.assert_array_equal(seen["camids"], [item[2] for item in trainer.target_items])
    assert len(trainer.pseudo_labels) == cfg.MODEL.LF2.NUM_PARTS + 1
