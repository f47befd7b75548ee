"""The same seed, machine and thread count give the same numbers through the whole chain:
training (history.csv, retrieval.json), the alignment tensors and the scores."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest
import torch

from tests.helpers.scores import polygon_rect, write_instances
from tests.helpers.train import FRAMES, tiny_frames, tiny_model, tiny_train_settings, write_split
from vgsalign.scores.run import main as score_pairs
from vgsalign.train.loop import FrameSettings, TrainSettings, run_training
from vgsalign.train.streaming import open_split
from vgsalign.train.tensors import main as tensors_dump

TEST_IMAGES = list(range(5000, 5008))


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """Training shards, test shards, and a test set of one word per test caption naming a
    'dog' whose mask is a box of its image."""
    root = tmp_path_factory.mktemp("determinism")
    train = write_split(root, "train", 32, seed=0, images_per_shard=8)
    test = write_split(root, "val", len(TEST_IMAGES), seed=1, first_image_id=TEST_IMAGES[0], images_per_shard=8)
    with h5py.File(test[0][0], "r") as h5:
        pads = dict(zip((u.decode() for u in h5["utt_id"][...]), h5["pad_frames"][...].tolist()))
        image_of = dict(zip(pads, h5["image_id"][...].tolist()))
    pairs = pd.DataFrame([{"utt_id": u, "image_id": image_of[u], "word_index": 0, "word": "dog", "category": "dog",
                           "category_id": 18, "similarity": 0.9, "onset_s": 0.02, "offset_s": 0.1,
                           "onset_frame": pad + 2, "offset_frame": pad + 10, "pad_frames": pad,
                           "n_frames": FRAMES - pad, "duration_s": (FRAMES - pad) * 0.01} for u, pad in pads.items()])
    pairs.to_csv(root / "pairs.csv", index=False)
    write_instances(root / "instances.json", [{"id": i, "height": 480, "width": 640} for i in TEST_IMAGES],
                    [{"image_id": i, "category_id": 18, "segmentation": polygon_rect(40 * k, 30, 40 * k + 200, 300)}
                     for k, i in enumerate(TEST_IMAGES)], [(18, "dog")])
    return root, train, test


def train_dump_score(inputs, out: Path, seed: int = 0) -> None:
    root, train, test = inputs
    run_training(open_split("train", *train), None, tiny_model(), TrainSettings(**tiny_train_settings(epochs=2, seed=seed)),
                 FrameSettings(**tiny_frames()), out / "train", log=lambda _: None)
    assert tensors_dump(["--checkpoint", str(out / "train/checkpoint_best.pt"), "--pairs", str(root / "pairs.csv"),
                         "--audio", *map(str, test[0]), "--visual", *map(str, test[1]),
                         "--model", json.dumps(tiny_model().__dict__), "--frames", json.dumps(tiny_frames()),
                         "--device", "cpu", "--threads", "1", "--out", str(out / "tensors.h5")]) == 0
    assert score_pairs(["--tensors", str(out / "tensors.h5"), "--pairs", str(root / "pairs.csv"),
                        "--instances", str(root / "instances.json"), "--retrieval", str(out / "train/retrieval.json"),
                        "--frames", json.dumps(tiny_frames()), "--scores", json.dumps({"bootstrap": 100}),
                        "--threads", "1", "--out", str(out / "scores")]) == 0


def comparable_json(path: Path, run: Path) -> dict:
    """A result JSON with the run's own folder in its paths replaced and the wall time left out."""
    data = json.loads(path.read_text().replace(str(run), "<run>"))
    data.pop("seconds", None)
    return data


@pytest.fixture()
def one_thread():
    # the thread count is part of what must be equal (float sums are split by thread)
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_same_seed_gives_identical_history_tensors_and_scores(inputs, tmp_path, one_thread):
    a, b, other = tmp_path / "a", tmp_path / "b", tmp_path / "seed1"
    train_dump_score(inputs, a)
    train_dump_score(inputs, b)
    assert (a / "train/history.csv").read_bytes() == (b / "train/history.csv").read_bytes()
    assert comparable_json(a / "train/retrieval.json", a) == comparable_json(b / "train/retrieval.json", b)
    with h5py.File(a / "tensors.h5", "r") as ha, h5py.File(b / "tensors.h5", "r") as hb:
        assert np.array_equal(ha["avt"][...], hb["avt"][...])
    for table in ("pair_scores.csv", "category_scores.csv", "confusion_as_object.csv"):
        assert (a / "scores" / table).read_bytes() == (b / "scores" / table).read_bytes(), table
    summary_a = comparable_json(a / "scores/summary.json", a)
    assert summary_a == comparable_json(b / "scores/summary.json", b)
    assert summary_a["counts"]["pairs_scored"] == len(TEST_IMAGES) * 3
    # and the comparison can fail: another seed trains another model
    train_dump_score(inputs, other, seed=1)
    assert (a / "train/history.csv").read_bytes() != (other / "train/history.csv").read_bytes()
    assert (a / "scores/pair_scores.csv").read_bytes() != (other / "scores/pair_scores.csv").read_bytes()
