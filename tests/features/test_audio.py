"""Shard planning, audio shards end to end, attribute checks and readers."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pandas as pd
import pytest
import soundfile

from tests.helpers.features import make_corpus
from vgsalign.features import audio as features_audio
from vgsalign.features import shards
from vgsalign.errors import InputError
from vgsalign.features.logmel import GridSettings, LogMelSettings, load_audio, logmel_librosa, place_on_grid

AUDIO = {"sample_rate": 16000, "n_mels": 40, "win_s": 0.025, "hop_s": 0.01, "power": 2.0, "floor": 1e-10, "n_fft": 512}
FRAMES = {"hop_s": 0.01, "max": 128, "padding": "start"}


def sharding(**changes) -> dict:
    return {"shard_size": 4, "shuffle": False, "shuffle_seed": 0, "on_error": "stop", **changes}


def build_index(tmp_path, corpus, split="val2014", **changes):
    settings = json.dumps(sharding(**changes))
    images_csv, captions_csv, rejects = tmp_path / "images.csv", tmp_path / "captions.csv", tmp_path / "rejects.csv"
    n = shards.n_shards(len(corpus["image_ids"]), sharding(**changes)["shard_size"])
    assert shards.main(["images", "--instances", str(corpus["coco_root"] / f"annotations/instances_{split}.json"),
                        "--settings", settings, "--expected-shards", str(n), "--out", str(images_csv)]) == 0
    assert shards.main(["captions", "--images", str(images_csv), "--source", "speechcoco", "--speech-root",
                        str(corpus["speech_root"]), "--split", split, "--settings", settings,
                        "--out", str(captions_csv), "--rejects", str(rejects)]) == 0
    return pd.read_csv(images_csv), pd.read_csv(captions_csv, dtype={"utt_id": str}), n


def extract_audio(tmp_path, captions_csv, shard, n_shards, out, **changes):
    return features_audio.main([
        "--captions", str(captions_csv), "--split", "val2014", "--shard", str(shard), "--n-shards", str(n_shards),
        "--settings", json.dumps(AUDIO), "--frames", json.dumps(FRAMES), "--sharding", json.dumps(sharding(**changes)),
        "--out", str(out)])


def test_plan_orders_images_and_puts_captions_with_their_image(tmp_path):
    corpus = make_corpus(tmp_path, n_images=6)
    images, captions, n = build_index(tmp_path, corpus)
    assert n == 2 and images["image_id"].tolist() == sorted(corpus["image_ids"])
    assert images["shard"].tolist() == [0, 0, 0, 0, 1, 1]
    shard_of = dict(zip(images["image_id"], images["shard"]))
    assert len(captions) == 12 and all(shard_of[i] == s for i, s in zip(captions["image_id"], captions["shard"]))
    shuffled, _, _ = build_index(tmp_path, corpus, shuffle=True, shuffle_seed=3)
    again, _, _ = build_index(tmp_path, corpus, shuffle=True, shuffle_seed=3)
    assert sorted(shuffled["image_id"]) == sorted(corpus["image_ids"])
    assert shuffled["image_id"].tolist() == again["image_id"].tolist() != images["image_id"].tolist()


def test_plan_refuses_a_changed_corpus_and_captions_of_unknown_images(tmp_path):
    corpus = make_corpus(tmp_path, n_images=6)
    instances = corpus["coco_root"] / "annotations/instances_val2014.json"
    with pytest.raises(InputError, match="planned 3"):
        shards.main(["images", "--instances", str(instances), "--settings", json.dumps(sharding()),
                     "--expected-shards", "3", "--out", str(tmp_path / "x.csv")])
    data = json.loads(instances.read_text())
    dropped = data["images"].pop(0)["id"]
    instances.write_text(json.dumps(data))
    with pytest.raises(InputError, match=f"image {dropped} is not in the instances file"):
        build_index(tmp_path, corpus)
    _, captions, _ = build_index(tmp_path, corpus, on_error="skip")
    rejects = pd.read_csv(tmp_path / "rejects.csv")
    assert len(rejects) == 2 and dropped not in set(captions["image_id"])


def test_image_count_is_cached(tmp_path):
    corpus = make_corpus(tmp_path, n_images=5)
    instances = corpus["coco_root"] / "annotations/instances_val2014.json"
    cache = tmp_path / "cache.json"
    assert shards.cached_image_count(instances, cache) == 5
    cached = json.loads(cache.read_text())
    cached["n_images"] = 99  # a cache hit returns the stored count without reading the JSON
    cache.write_text(json.dumps(cached))
    assert shards.cached_image_count(instances, cache) == 99


def test_audio_shard_matches_per_item_extraction(tmp_path):
    corpus = make_corpus(tmp_path, n_images=6)
    _, captions, n = build_index(tmp_path, corpus)
    out = tmp_path / "audio" / "shard_00001.h5"
    assert extract_audio(tmp_path, tmp_path / "captions.csv", 1, n, out) == 0
    expected = captions[captions["shard"] == 1]
    audio, grid = LogMelSettings(**AUDIO), GridSettings(**FRAMES)
    with h5py.File(out, "r") as h5:
        assert [u.decode() for u in h5["utt_id"][...]] == expected["utt_id"].tolist()
        assert h5["image_id"][...].tolist() == expected["image_id"].tolist()
        assert h5["logmel"].shape == (4, 128, 40)
        for row, wav in enumerate(expected["wav"]):
            signal = load_audio(wav, 16000)
            matrix, n_frames, pad = place_on_grid(features_audio.logmel_of(signal, audio), grid)
            assert np.array_equal(h5["logmel"][row], matrix)
            reference, _, _ = place_on_grid(logmel_librosa(signal, audio), grid)
            assert np.abs(h5["logmel"][row] - reference).max() < 0.02  # pure tones: see test_features_logmel
            assert (h5["n_frames"][row], h5["pad_frames"][row]) == (n_frames, pad)
            assert n_frames + pad == 128
        assert h5.attrs["n_mels"] == 40 and h5.attrs["max_frames"] == 128 and h5.attrs["padding"] == "start"
        assert h5.attrs["n_rejected"] == 0 and h5.attrs["shard_index"] == 1
    assert not list(out.parent.glob(".*"))  # no temporary file left behind


def test_bad_wavs_stop_or_are_listed(tmp_path):
    corpus = make_corpus(tmp_path, n_images=4)
    wav_dir = corpus["speech_root"] / "val2014/wav"
    first, second, third = sorted(wav_dir.glob("*.wav"))[:3]
    first.unlink()  # missing
    soundfile.write(second, np.zeros(0, np.float32), 16000)  # zero length
    soundfile.write(third, np.zeros(8000, np.float32), 16000)  # silent: kept, counted
    build_index(tmp_path, corpus)
    out = tmp_path / "shard_00000.h5"
    with pytest.raises(InputError, match="not found") as err:
        extract_audio(tmp_path, tmp_path / "captions.csv", 0, 1, out)
    assert first.name in str(err.value) and not out.exists()
    assert extract_audio(tmp_path, tmp_path / "captions.csv", 0, 1, out, on_error="skip") == 0
    rejects = shards.read_rejects(out)
    assert sorted(rejects["id"]) == sorted([first.stem, second.stem])
    assert any("zero-length" in p for p in rejects["problem"])
    with h5py.File(out, "r") as h5:
        assert h5.attrs["n_rejected"] == 2 and h5.attrs["n_silent"] == 1 and len(h5["utt_id"]) == 6


def test_check_compatible_and_readers(tmp_path):
    corpus = make_corpus(tmp_path, n_images=6)
    _, captions, n = build_index(tmp_path, corpus)
    paths = [tmp_path / "a" / f"shard_{k:05d}.h5" for k in range(n)]
    for k, path in enumerate(paths):
        extract_audio(tmp_path, tmp_path / "captions.csv", k, n, path)
    shared = shards.check_compatible(paths, {"n_mels": 40, "padding": "start"})
    assert shared["sample_rate"] == 16000
    with pytest.raises(InputError, match="n_mels"):
        shards.check_compatible(paths, {"n_mels": 64})

    with shards.ShardReader(paths, key="utt_id") as reader:
        assert len(reader) == 12 and reader.ids.tolist() == captions["utt_id"].tolist()
        item = reader.get(captions["utt_id"].iloc[5])
        assert item["image_id"] == captions["image_id"].iloc[5] and item["logmel"].shape == (128, 40)
        with shards.ShardReader(paths, key="utt_id", in_memory=True) as memory:
            assert np.array_equal(memory[7]["logmel"], reader[7]["logmel"])
    streamed = list(shards.iter_shards(paths, fields=["utt_id", "n_frames"]))
    assert [len(s["utt_id"]) for s in streamed] == [8, 4]

    # a shard made with other settings is refused, naming the file
    other = tmp_path / "b" / "shard_00001.h5"
    changed = dict(AUDIO, n_mels=20)
    features_audio.main(["--captions", str(tmp_path / "captions.csv"), "--split", "val2014", "--shard", "1",
                         "--n-shards", str(n), "--settings", json.dumps(changed), "--frames", json.dumps(FRAMES),
                         "--sharding", json.dumps(sharding()), "--out", str(other)])
    with pytest.raises(InputError, match="n_mels") as err:
        shards.check_compatible([paths[0], other])
    assert str(other) in str(err.value)


def test_spokencoco_captions_are_read_with_the_dataset_ids(tmp_path):
    index = {"data": [{"image": "val2014/COCO_val2014_000000000042.jpg", "captions": [
        {"wav": "wavs/val/0/a_1.wav", "uttid": "u1", "text": "x"}, {"wav": "wavs/val/0/b_2.wav", "text": "y"}]}]}
    (tmp_path / "SpokenCOCO_val.json").write_text(json.dumps(index))
    captions, problems = shards.read_speech_captions("spokencoco", tmp_path, "val2014")
    assert captions["utt_id"].tolist() == ["u1", "b_2"] and captions["image_id"].tolist() == [42, 42]
    assert captions["wav"].iloc[1] == str(tmp_path / "wavs/val/0/b_2.wav") and problems == []
