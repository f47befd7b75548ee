"""The shard plan: image order and shards, captions with their image, rejects and their share."""

from __future__ import annotations

import json

import pandas as pd
import pytest

import tests.helpers.corpus as fx
from tests.helpers.features import build_plan, features_slice, make_corpus
from vgsalign.errors import InputError
from vgsalign.features import karpathy, plan


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
    cached["summary"]["n_images"] = 99  # a cache hit returns the stored count without reading the JSON
    cache.write_text(json.dumps(cached))
    assert plan.cached_image_count(instances, cache) == 99


def test_spokencoco_captions_are_read_with_the_dataset_ids(tmp_path):
    index = {"data": [{"image": "val2014/COCO_val2014_000000000042.jpg", "captions": [
        {"wav": "wavs/val/0/a_1.wav", "uttid": "u1", "text": "x"}, {"wav": "wavs/val/0/b_2.wav", "text": "y"}]}]}
    (tmp_path / "SpokenCOCO_val.json").write_text(json.dumps(index))
    captions, problems = plan.read_speech_captions("spokencoco", tmp_path, "val2014")
    assert captions["utt_id"].tolist() == ["u1", "b_2"] and captions["image_id"].tolist() == [42, 42]
    assert captions["wav"].iloc[1] == str(tmp_path / "wavs/val/0/b_2.wav") and problems == []


# ------------------------------------------------------------------ SpokenCOCO: images of several COCO splits

def spokencoco_plan(tmp_path, split: str = "train2014", **changes) -> dict:
    """features-images and features-captions on the hand-written SpokenCOCO + unzipped MSCOCO fixtures."""
    speech, _ = fx.spokencoco_corpus(tmp_path)
    coco_root = fx.coco_corpus(tmp_path)
    index = speech / f"SpokenCOCO_{split.removesuffix('2014')}.json"
    features = json.dumps(features_slice(**changes))
    paths = {name: tmp_path / f"{name}.csv" for name in ("images", "images_rejected", "captions", "captions_rejected")}
    assert plan.main(["images", "--karpathy-index", str(index), "--coco-root", str(coco_root), "--features", features,
                      "--expected-shards", "1", "--out", str(paths["images"]),
                      "--rejects", str(paths["images_rejected"])]) == 0
    assert plan.main(["captions", "--images", str(paths["images"]), "--rejected-images", str(paths["images_rejected"]),
                      "--source", "spokencoco", "--speech-root", str(speech), "--split", split, "--features", features,
                      "--out", str(paths["captions"]), "--rejects", str(paths["captions_rejected"])]) == 0
    return {**paths, "coco_root": coco_root, "speech_root": speech, "index": index}


def test_spokencoco_restval_image_is_planned_from_its_own_coco_split(tmp_path):
    paths = spokencoco_plan(tmp_path)
    images = pd.read_csv(paths["images"], dtype={"file_name": str})
    # image 9 from train2014, image 42 (restval) from val2014, with the sizes of their instances files
    instances = {s: {im["id"]: im for im in json.loads((paths["coco_root"] / f"annotations/instances_{s}.json")
                                                      .read_text())["images"]} for s in ("train2014", "val2014")}
    assert images["image_id"].tolist() == [9, 42]
    assert images["file_name"].tolist() == ["train2014/COCO_train2014_000000000009.jpg",
                                            "val2014/COCO_val2014_000000000042.jpg"]
    assert (images.loc[1, "width"], images.loc[1, "height"]) == (instances["val2014"][42]["width"],
                                                                 instances["val2014"][42]["height"])
    assert (images.loc[0, "width"], images.loc[0, "height"]) == (instances["train2014"][9]["width"],
                                                                 instances["train2014"][9]["height"])
    assert all((paths["coco_root"] / name).is_file() for name in images["file_name"])
    assert pd.read_csv(paths["images_rejected"]).empty
    # the restval captions are planned with their image, none rejected
    captions = pd.read_csv(paths["captions"])
    assert captions["utt_id"].tolist() == ["m1a2b3-3ABCDEF_9_101", "f9z8y7-3GHIJKL_42_202", "f9z8y7-3MNOPQR_42_203"]
    assert captions["image_id"].tolist() == [9, 42, 42] and pd.read_csv(paths["captions_rejected"]).empty


def test_spokencoco_restval_image_is_read_from_images_folder_where_only_that_exists(tmp_path):
    coco_root = fx.coco_corpus(tmp_path / "a")
    (coco_root / "images").mkdir()
    (coco_root / "val2014").rename(coco_root / "images/val2014")
    images, problems = karpathy.karpathy_images(fx.FIXTURES / "spokencoco/SpokenCOCO_train.json", coco_root,
                                                plan.read_coco_images)
    assert images["file_name"].tolist() == ["train2014/COCO_train2014_000000000009.jpg",
                                            "images/val2014/COCO_val2014_000000000042.jpg"]
    assert problems == [] and all((coco_root / name).is_file() for name in images["file_name"])


def test_spokencoco_image_missing_from_its_instances_file_stops_or_is_rejected(tmp_path):
    speech, _ = fx.spokencoco_corpus(tmp_path / "a")
    coco_root = fx.coco_corpus(tmp_path / "a")
    val = coco_root / "annotations/instances_val2014.json"
    data = json.loads(val.read_text())
    data["images"] = [im for im in data["images"] if im["id"] != 42]
    val.write_text(json.dumps(data))
    index = speech / "SpokenCOCO_train.json"
    features = json.dumps(features_slice())
    args = ["images", "--karpathy-index", str(index), "--coco-root", str(coco_root), "--expected-shards", "1",
            "--out", str(tmp_path / "images.csv"), "--rejects", str(tmp_path / "rejected.csv")]
    with pytest.raises(InputError, match=r"image 42 \(val2014/COCO_val2014_000000000042.jpg\) is not in .*instances_val2014"):
        plan.main([*args, "--features", features])
    plan.main([*args, "--features", json.dumps(features_slice(on_error="skip", max_rejected_share=0.5))])
    assert pd.read_csv(tmp_path / "rejected.csv")["id"].tolist() == [42]
    assert pd.read_csv(tmp_path / "images.csv")["image_id"].tolist() == [9, 42]  # the shard count is fixed


def test_spokencoco_splits_are_planned_from_the_karpathy_index(tmp_path):
    speech, _ = fx.spokencoco_corpus(tmp_path)
    config = {"dataset": {"source": "spokencoco"}, "features": {"shard_size": 1}}
    plans = plan.plan_splits(config, ["train2014", "val2014"], instances_json=lambda s: None,
                             karpathy_index=lambda s: speech / f"SpokenCOCO_{s.removesuffix('2014')}.json",
                             cache_dir=str(tmp_path / "cache"))
    assert plans["train2014"] == plan.SplitPlan(n_shards=2, coco_splits=["train2014", "val2014"])
    assert plans["val2014"] == plan.SplitPlan(n_shards=1, coco_splits=["val2014"])
    assert (tmp_path / "cache/train2014/.image_count.json").is_file()


def test_spokencoco_visual_shard_reads_the_restval_image_from_val2014(tmp_path):
    import h5py

    from vgsalign.features import visual as features_visual

    paths = spokencoco_plan(tmp_path)
    out = tmp_path / "shard_00000.h5"
    assert features_visual.main([
        "--images", str(paths["images"]), "--captions", str(paths["captions"]), "--image-dir", str(paths["coco_root"]),
        "--split", "train2014", "--shard", "0", "--n-shards", "1",
        "--visual", json.dumps({"backbone": "efficientnet_lite0", "weights": None, "allow_random_weights": False}),
        "--features", json.dumps(features_slice()), "--batch-size", "2", "--threads", "1", "--out", str(out)]) == 0
    # a wrong folder for the restval image would stop the step (on_error stop): both are read
    with h5py.File(out) as shard:
        assert shard["image_id"][:].tolist() == [9, 42] and shard.attrs["n_items"] == 2
        assert shard["width"][:].tolist() == [64, 64] and shard["height"][:].tolist() == [48, 48]
