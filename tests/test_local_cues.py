"""Local-cue diagnostics: group membership re-planned from a generated domain, rank-1 confusions, pair rates."""

import numpy as np
import pytest
from conftest import LF2_TINY_CONFIG

from lf2_plugin.data.synthetic import generate_domain, plan_domain
from lf2_plugin.data.synthetic.local_cues import local_cue_groups, pair_co_clustering, rank1_confusions


def test_groups_are_replanned_exactly_from_the_sidecar(tmp_path):
    dataset_dir = generate_domain(str(tmp_path), "market", num_ids=40, images_per_cam=1)
    groups = local_cue_groups(dataset_dir)
    plan = plan_domain("market", num_ids=40, images_per_cam=1)
    truth = {im.identity.pid: im.identity for im in plan.images if im.identity.pid > 0}
    assert groups and set(groups) == {pid for pid, ident in truth.items() if ident.group >= 0}
    assert all(groups[pid][1:] == (truth[pid].group, truth[pid].differing_half) for pid in groups)
    assert {split for split, _, _ in groups.values()} == {"train", "test"}
    with pytest.raises(FileNotFoundError, match="no synthetic.json"):
        local_cue_groups(str(tmp_path))


def test_rank1_confusions_count_group_mate_errors():
    groups = {1: ("test", 0, "upper"), 2: ("test", 0, "upper"), 3: ("test", 1, "lower"), 4: ("test", 1, "lower")}
    eye = np.eye(5)
    # gallery: one image per pid 1..5 in camera 2; queries in camera 1
    gallery = (eye, np.arange(1, 6), np.full(5, 2))
    # query pid 1 looks like pid 2 (group-mate error), pid 3 like pid 5 (unrelated error), pid 5 is right
    query = (eye[[1, 4, 4]], np.array([1, 3, 5]), np.ones(3))
    result = rank1_confusions(query, gallery, groups)
    assert result["rank1_errors"] == 2 and result["grouped_queries"] == 2 and result["group_mate_errors"] == 1
    assert result["group_mate_error_rate"] == 0.5 and result["share_of_errors_on_group_mates"] == 0.5
    assert result["ungrouped_rank1_error_rate"] == 0.0
    # a gallery image of the query's own pid and camera is never its match (fast-reid's protocol)
    same_cam = (eye[[0]], np.array([1]), np.array([2]))
    assert rank1_confusions(same_cam, gallery, groups)["rank1_errors"] == 1


def test_pair_co_clustering_rates_by_kind_of_pair():
    groups = {1: ("train", 0, "upper"), 2: ("train", 0, "upper"), 3: ("train", 1, "lower"), 4: ("train", 1, "lower")}
    pids = np.array([1, 1, 2, 3, 4, 5, 5])
    labels = np.array([0, 0, 0, 1, 2, 3, -1])  # pids 1 and 2 merged; 3 and 4 apart; pid 5 split by an outlier
    rates = pair_co_clustering(pids, labels, groups)
    assert rates["same_identity"] == 0.5  # the pid-1 pair together, the pid-5 pair split by the outlier
    assert rates["group_mates_differing_upper"] == 1.0 and rates["group_mates_differing_lower"] == 0.0
    assert rates["group_mates"] == pytest.approx(2 / 3)
    assert rates["unrelated"] == 0.0


def test_local_cue_report_of_an_adapted_checkpoint(uninterrupted, tiny_duke_root, monkeypatch):
    from lf2_plugin.engine import build_config
    from lf2_plugin.experiments.local_cues import local_cue_report

    import fastreid.data.build as data_build

    monkeypatch.setattr(data_build, "_root", tiny_duke_root)
    out, _ = uninterrupted
    cfg = build_config(LF2_TINY_CONFIG, ["MODEL.WEIGHTS", str(out / "model_final.pth")])
    report = local_cue_report(cfg)
    rank1 = report["rank1"]["DukeMTMC"]
    assert rank1["queries"] > 0 and 0 <= rank1["group_mate_errors"] <= rank1["rank1_errors"] <= rank1["queries"]
    # one entry per clustering level (global + 2 parts), each rating every kind of pair
    levels = report["pseudo_label_pairs"]
    assert len(levels) == 3
    assert all({"same_identity", "group_mates", "unrelated"} <= set(level) for level in levels)
