"""The shard plan: image order and shards, captions with their image, rejects and their share."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from tests.helpers.features import build_plan, features_slice, make_corpus
from vgsalign.errors import InputError
from vgsalign.features import plan


def test_plan_orders_images_and_puts_captions_with_their_image(tmp_path):
    corpus = make_corpus(tmp_path, n_images=6)
    paths = build_plan(tmp_path, corpus)
    images, captions = pd.read_csv(paths["images"]), pd.read_csv(paths["captions"], dtype={"utt_id": str})
    assert paths["n_shards"] == 2 and images["image_id"].tolist() == sorted(corpus["image_ids"])
    assert images["shard"].tolist() == [0, 0, 0, 0, 1, 1]
    shard_of = dict(zip(images["image_id"], images["shard"]))
    assert len(captions) == 12 and all(shard_of[i] == s for i, s in zip(captions["image_id"], captions["shard"]))
    shuffled = pd.read_csv(build_plan(tmp_path, corpus, shuffle=True, shuffle_seed=3)["images"])
    again = pd.read_csv(build_plan(tmp_path, corpus, shuffle=True, shuffle_seed=3)["images"])
    assert sorted(shuffled["image_id"]) == sorted(corpus["image_ids"])
    assert shuffled["image_id"].tolist() == again["image_id"].tolist() != images["image_id"].tolist()


def test_plan_refuses_a_changed_corpus_and_captions_of_unknown_images(tmp_path):
    corpus = make_corpus(tmp_path, n_images=6)
    instances = corpus["coco_root"] / "annotations/instances_val2014.json"
    with pytest.raises(InputError, match="planned 3"):
        plan.main(["images", "--instances", str(instances), "--image-dir", str(corpus["coco_root"] / "images/val2014"),
                   "--features", json.dumps(features_slice()), "--expected-shards", "3",
                   "--out", str(tmp_path / "x.csv"), "--rejects", str(tmp_path / "y.csv")])
    data = json.loads(instances.read_text())
    dropped = data["images"].pop(0)["id"]
    instances.write_text(json.dumps(data))
    with pytest.raises(InputError, match=f"image {dropped} is not in the instances file"):
        build_plan(tmp_path, corpus)
    paths = build_plan(tmp_path, corpus, on_error="skip", max_rejected_share=0.5)
    rejects, captions = pd.read_csv(paths["captions_rejected"]), pd.read_csv(paths["captions"])
    assert len(rejects) == 2 and dropped not in set(captions["image_id"])


def test_captions_of_a_skipped_image_leave_the_plan(tmp_path):
    corpus = make_corpus(tmp_path, n_images=6)
    image_dir = corpus["coco_root"] / "images/val2014"
    broken, missing, truncated = sorted(image_dir.glob("*.jpg"))[1:4]
    broken.write_bytes(b"not an image at all")
    missing.unlink()
    truncated.write_bytes(truncated.read_bytes()[:-800])  # a whole header, the data cut off
    with pytest.raises(InputError, match="cannot read image") as err:
        build_plan(tmp_path, corpus)
    assert broken.name in str(err.value) and "and 2 more" in str(err.value)
    paths = build_plan(tmp_path, corpus, on_error="skip", max_rejected_share=0.5)
    image_rejects = pd.read_csv(paths["images_rejected"])
    assert sorted(image_rejects["path"]) == sorted([str(broken), str(missing), str(truncated)])
    skipped = set(image_rejects["id"])
    captions, caption_rejects = pd.read_csv(paths["captions"]), pd.read_csv(paths["captions_rejected"])
    assert not skipped & set(captions["image_id"]) and len(captions) == 6
    assert len(caption_rejects) == 6 and all("was rejected" in p for p in caption_rejects["problem"])
    # the images stay in the plan (the shard count is fixed before any job runs)
    assert len(pd.read_csv(paths["images"])) == 6


def test_too_many_rejects_stop_the_step(tmp_path):
    corpus = make_corpus(tmp_path, n_images=6)
    sorted((corpus["coco_root"] / "images/val2014").glob("*.jpg"))[0].unlink()
    with pytest.raises(InputError, match=r"1 of 6 images rejected \(16.7%\), more than features.max_rejected_share"):
        build_plan(tmp_path, corpus, on_error="skip", max_rejected_share=0.1)
    build_plan(tmp_path, corpus, on_error="skip", max_rejected_share=0.2)


def test_image_count_is_cached(tmp_path):
    corpus = make_corpus(tmp_path, n_images=5)
    instances = corpus["coco_root"] / "annotations/instances_val2014.json"
    cache = tmp_path / "cache.json"
    assert plan.cached_image_count(instances, cache) == 5
    cached = json.loads(cache.read_text())
    cached["n_images"] = 99  # a cache hit returns the stored count without reading the JSON
    cache.write_text(json.dumps(cached))
    assert plan.cached_image_count(instances, cache) == 99


def test_spokencoco_captions_are_read_with_the_dataset_ids(tmp_path):
    index = {"data": [{"image": "val2014/COCO_val2014_000000000042.jpg", "captions": [
        {"wav": "wavs/val/0/a_1.wav", "uttid": "u1", "text": "x"}, {"wav": "wavs/val/0/b_2.wav", "text": "y"}]}]}
    (tmp_path / "SpokenCOCO_val.json").write_text(json.dumps(index))
    captions, problems = plan.read_speech_captions("spokencoco", tmp_path, "val2014")
    assert captions["utt_id"].tolist() == ["u1", "b_2"] and captions["image_id"].tolist() == [42, 42]
    assert captions["wav"].iloc[1] == str(tmp_path / "wavs/val/0/b_2.wav") and problems == []
