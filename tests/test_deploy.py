"""Using an adapted model: export (ONNX, TorchScript) equals PyTorch, embeddings equal fast-reid's evaluation
features, searches and pictures of rank lists and pseudo labels, strict loading of the eval path."""

import json
import os
import re

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import LF2_TINY_CONFIG, LF2_TINY_EPOCHS, LF2_TINY_VIS_EVERY
from PIL import Image

from lf2_plugin.deploy import (
    DescriptorModel,
    IncompleteCheckpointError,
    embed_images,
    export_descriptor_model,
    inference_state_keys,
    load_embeddings,
    load_exported,
    load_inference_model,
    search_gallery,
)
from lf2_plugin.engine import build_config
from lf2_plugin.visualization import MATCH, MISMATCH, QUERY, identity_colour


def tiny_cfg(weights, *opts):
    return build_config(LF2_TINY_CONFIG, ["MODEL.WEIGHTS", str(weights), *opts])


@pytest.fixture(scope="module")
def adapted(uninterrupted):
    """(cfg, model, weights) of the tiny LF2 run's final checkpoint, loaded strictly."""
    out, _ = uninterrupted
    weights = out / "model_final.pth"
    cfg = tiny_cfg(weights, "TEST.FLIP.ENABLED", "True")
    return cfg, load_inference_model(cfg), weights


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_exported_graph_equals_pytorch_at_any_batch_size(adapted, tmp_path, fmt):
    cfg, model, _ = adapted
    metadata = export_descriptor_model(cfg, model, str(tmp_path), fmt=fmt, name="lf2")
    run = load_exported(str(tmp_path / metadata["file"]))
    reference = DescriptorModel(model, flip=True)
    generator = torch.Generator().manual_seed(7)
    for batch in (1, 5, 3):
        images = torch.rand(batch, 3, 64, 32, generator=generator) * 255
        with torch.no_grad():
            expected = reference(images).numpy()
        exported = run(images.numpy())
        assert exported.shape == (batch, 3 * 512)
        assert np.abs(exported - expected).max() <= 1e-4
        np.testing.assert_allclose(np.linalg.norm(exported, axis=1), 1.0, atol=1e-5)
    saved = json.loads((tmp_path / f"lf2.{fmt}.json").read_text())
    assert saved["input"]["shape"] == ["batch", 3, 64, 32] and saved["input"]["channel_order"] == "RGB"
    assert saved["output"]["layout"] == [
        {"name": "global", "start": 0, "stop": 512},
        {"name": "part1", "start": 512, "stop": 1024},
        {"name": "part2", "start": 1024, "stop": 1536},
    ]
    assert saved["flip_averaged"] is True and saved["num_parts"] == 2
    assert "LF2" in saved["config"]


def test_export_respects_the_eval_feature_and_flip(uninterrupted, tmp_path):
    out, _ = uninterrupted
    cfg = tiny_cfg(out / "model_final.pth", "MODEL.LF2.EVAL_FEATURE", "parts")
    model = load_inference_model(cfg)
    metadata = export_descriptor_model(cfg, model, str(tmp_path), fmt="onnx", flip=False)
    assert metadata["flip_averaged"] is False
    assert [s["name"] for s in metadata["output"]["layout"]] == ["part1", "part2"]
    images = torch.rand(2, 3, 64, 32) * 255
    with torch.no_grad():  # the teacher's part features alone, one view, normalised
        teacher = model.teacher.heads(model.teacher.backbone(model.preprocess_image(images)), with_logits=False)
        expected = F.normalize(torch.cat(teacher["parts"], dim=1), dim=1).numpy()
    assert np.abs(load_exported(str(tmp_path / metadata["file"]))(images.numpy()) - expected).max() <= 1e-4


def test_embeddings_are_the_features_fast_reid_evaluates_with(adapted, tiny_duke_root):
    """tools/embed.py's vectors = fast-reid's inference_on_dataset outputs (flip test), L2-normalised as the
    evaluator's cosine metric does."""
    from lf2_plugin.data.pseudo_labels import build_clustering_loader

    from fastreid.evaluation import inference_on_dataset
    from fastreid.evaluation.evaluator import DatasetEvaluator

    class Collect(DatasetEvaluator):
        def reset(self):
            self.features = []

        def process(self, inputs, outputs):
            self.features.append(outputs.cpu())

        def evaluate(self):
            return {}

    cfg, model, _ = adapted
    folder = os.path.join(tiny_duke_root, "DukeMTMC-reID", "query")
    embeddings = embed_images(cfg, model, folder, progress=False)
    collect = Collect()
    collect.reset()
    items = [(p, 0, 0) for p in embeddings.absolute_paths()]
    inference_on_dataset(model, build_clustering_loader(cfg, items), collect, flip_test=True)
    evaluated = F.normalize(torch.cat(collect.features), dim=1).numpy()
    assert np.abs(embeddings.features - evaluated).max() <= 1e-5
    assert (embeddings.pids >= 0).all() and (embeddings.camids >= 1).all()  # parsed from 0001_c2_f....jpg


def test_embed_then_search_draws_scored_rank_lists(adapted, tiny_duke_root, tmp_path):
    from lf2_plugin.deploy.search import run_search

    cfg, model, _ = adapted
    gallery_dir = os.path.join(tiny_duke_root, "DukeMTMC-reID", "bounding_box_test")
    from lf2_plugin.deploy import save_embeddings

    gallery_file = save_embeddings(embed_images(cfg, model, gallery_dir, progress=False), str(tmp_path / "g.npz"))
    gallery = load_embeddings(gallery_file)
    query_file = sorted(os.listdir(gallery_dir))[0]
    pictures = run_search(gallery_file, os.path.join(gallery_dir, query_file), 5, str(tmp_path / "ranks"))
    assert len(pictures) == 1 and Image.open(pictures[0]).size[0] > 6 * 64
    (ranked,) = json.loads((tmp_path / "ranks" / "ranks.json").read_text())
    files = [r["file"] for r in ranked["ranked"]]
    assert len(files) == 5 and ranked["query"] not in files  # the query itself is left out
    query_index = gallery.absolute_paths().index(ranked["query"])
    scores = gallery.features @ gallery.features[query_index]
    scores[query_index] = -np.inf
    best = np.argsort(-scores, kind="stable")[:5]
    np.testing.assert_allclose([r["score"] for r in ranked["ranked"]], scores[best], atol=1e-5)
    assert [r["match"] for r in ranked["ranked"]] == [bool(gallery.pids[i] == ranked["pid"]) for i in best]
    picture = np.asarray(Image.open(pictures[0]).convert("RGB")).astype(int)
    first_border, second_border = picture[6 + 12 + 1, 6 + 1], picture[6 + 12 + 1, 6 + 72 + 6 + 1]
    assert np.abs(first_border - QUERY).max() <= 40  # jpeg: colours within a few levels
    expected = MATCH if ranked["ranked"][0]["match"] else MISMATCH
    assert np.abs(second_border - expected).max() <= 40


def test_search_rejects_descriptors_of_another_model(adapted, tiny_duke_root):
    cfg, model, _ = adapted
    folder = os.path.join(tiny_duke_root, "DukeMTMC-reID", "query")
    gallery = embed_images(cfg, model, folder, progress=False)
    queries = embed_images(cfg, model, folder, progress=False)
    queries.features = queries.features[:, :512]
    with pytest.raises(ValueError, match="same model"):
        search_gallery(gallery, queries, 3)


def test_eval_path_keys_are_the_teacher_without_its_classifier(adapted):
    cfg, model, _ = adapted
    keys = inference_state_keys(model, torch.zeros(1, 3, 64, 32))
    assert "teacher.backbone.conv1.weight" in keys and "teacher.heads.experts.1.fc.weight" in keys
    assert "teacher.backbone.bn1.running_mean" in keys  # buffers of modules that ran
    assert "teacher.heads.weight" not in keys  # the classifier is not on the eval path
    assert not any(k.startswith(("backbone.", "heads.", "fusion.")) for k in keys)  # the student is not either
    assert all(not p.requires_grad for p in model.teacher.parameters())  # flags restored


def test_a_checkpoint_of_another_k_is_refused_with_what_it_was_saved_with(adapted):
    _, _, weights = adapted
    cfg = tiny_cfg(weights, "MODEL.LF2.NUM_PARTS", "3")
    with pytest.raises(IncompleteCheckpointError) as error:
        load_inference_model(cfg)
    message = str(error.value)
    assert re.search(r"teacher\.heads\.experts\.2\.\S+ missing", message)
    assert "7 of" in message  # stripe 3's expert: Linear weight, bias and BN weight, bias, 3 buffers
    assert "saved from LF2 with MODEL.LF2.NUM_PARTS=2 on build_resnet_backbone depth 18x" in message  # built_with
    assert "the config builds LF2 with MODEL.LF2.NUM_PARTS=3 on build_resnet_backbone" in message
    assert str(weights) in message


def test_a_source_checkpoint_does_not_make_an_lf2_eval_model(uninterrupted, tmp_path):
    out, _ = uninterrupted
    state = torch.load(out / "model_final.pth", map_location="cpu", weights_only=True)["model"]
    student_only = {k: v for k, v in state.items() if not k.startswith("teacher.")}
    torch.save({"model": student_only}, tmp_path / "student.pth")
    with pytest.raises(IncompleteCheckpointError, match="teacher.backbone"):
        load_inference_model(tiny_cfg(tmp_path / "student.pth"))


def test_cluster_pictures_are_drawn_every_n_epochs(uninterrupted):
    out, _ = uninterrupted
    drawn = sorted(os.listdir(out / "clusters"))
    epochs = [e for e in range(LF2_TINY_EPOCHS) if e % LF2_TINY_VIS_EVERY == 0]
    assert drawn == sorted(
        [f"epoch{e:03d}_level{level}.jpg" for e in epochs for level in range(3)]
        + [f"epoch{e:03d}_sizes.png" for e in epochs]
    )


def test_clustering_scalars_reach_tensorboard_every_epoch(uninterrupted):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out, _ = uninterrupted
    (events,) = [f for f in os.listdir(out) if f.startswith("events.out.tfevents")]
    accumulator = EventAccumulator(str(out / events), size_guidance={"scalars": 0, "histograms": 0})
    accumulator.Reload()
    records = [json.loads(line) for line in (out / "clustering.jsonl").read_text().splitlines()]
    for level in range(3):
        points = accumulator.Scalars(f"cluster/level{level}/pairwise_f1")
        assert [p.step for p in points] == [3 * e for e in range(LF2_TINY_EPOCHS)]  # 3 iterations per epoch
        assert [p.value for p in points] == pytest.approx([r["levels"][level]["pairwise_f1"] for r in records])
        assert len(accumulator.Histograms(f"cluster/level{level}/sizes")) == LF2_TINY_EPOCHS


def test_cluster_montage_rows_and_border_colours(tmp_path):
    from lf2_plugin.clustering.visualize import montage_clusters, save_cluster_montage

    paths = []
    for i in range(12):
        path = tmp_path / f"{i}.png"
        Image.new("RGB", (32, 64), (128, 128, 128)).save(path)
        paths.append(str(path))
    labels = np.array([0] * 6 + [1] * 2 + [2] * 3 + [-1])
    true_ids = np.array([5, 7, 5, 7, 5, 7, 9, 9, 3, 3, 3, 4])
    assert montage_clusters(labels, 2) == [0, 1] and montage_clusters(labels, 5) == [0, 2, 1]
    picture = save_cluster_montage(labels, paths, str(tmp_path / "m.png"), true_ids=true_ids, num_rows=3)
    image = np.asarray(Image.open(picture).convert("RGB")).astype(int)
    # row 0 = cluster 0 (6 images, two identities: the merge shows as two colours), members sorted by identity
    row_top, cell_w = 6 + 12, 48 + 6 + 6
    colours = [tuple(image[row_top + 1, 6 + c * cell_w + 1]) for c in range(6)]
    codes = np.unique(true_ids, return_inverse=True)[1]  # identities numbered in sorted order: 3, 4, 5, 7, 9
    assert colours == [identity_colour(codes[0])] * 3 + [identity_colour(codes[3])] * 3


def test_eval_only_refuses_a_checkpoint_of_another_k(uninterrupted, tiny_duke_root, tmp_path):
    from conftest import run_train_net

    out, _ = uninterrupted
    weights = str(out / "model_final.pth")
    proc = run_train_net(
        [
            "--config-file",
            LF2_TINY_CONFIG,
            "--eval-only",
            "MODEL.WEIGHTS",
            weights,
            "MODEL.LF2.NUM_PARTS",
            "3",
            "OUTPUT_DIR",
            str(tmp_path),
        ],
        tiny_duke_root,
    )
    assert proc.returncode != 0
    assert (
        "does not cover this model's eval path" in proc.stderr
        and "saved from LF2 with MODEL.LF2.NUM_PARTS=2 on" in proc.stderr
    )
    assert not (tmp_path / "eval_results.json").exists()
