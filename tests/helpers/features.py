"""A tiny corpus in the SPEECH-COCO + MSCOCO layout for the feature tests (made in seconds)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import soundfile
import yaml
from PIL import Image

SR = 16000


def sine(seconds: float, freq: float, sr: int = SR, amplitude: float = 0.3) -> np.ndarray:
    t = np.arange(int(round(seconds * sr))) / sr
    return (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def syllables(seconds: float, freq: float, sr: int = SR, amplitude: float = 0.3) -> np.ndarray:
    """A tone whose loudness rises and falls three times a second (from 10% to 100%), as
    speech does between syllables: the audio step refuses steady tones and noise."""
    t = np.arange(int(round(seconds * sr))) / sr
    envelope = 0.55 + 0.45 * np.sin(2 * np.pi * 3.0 * t)
    return (envelope * sine(seconds, freq, sr, amplitude)).astype(np.float32)


def make_corpus(root: Path, split: str = "val2014", n_images: int = 6, captions_per_image: int = 2,
                seed: int = 0) -> dict:
    """Images (varied sizes, JPEG) + instances JSON, and caption wavs + SPEECH-COCO JSON.

    Returns {"speech_root", "coco_root", "image_ids", "utt_ids"}.
    """
    rng = np.random.default_rng(seed)
    speech, coco = root / "speech", root / "coco"
    (speech / split / "json").mkdir(parents=True, exist_ok=True)
    (speech / split / "wav").mkdir(parents=True, exist_ok=True)
    (coco / "images" / split).mkdir(parents=True, exist_ok=True)
    (coco / "annotations").mkdir(parents=True, exist_ok=True)
    image_ids = sorted(int(i) for i in rng.choice(np.arange(1, 10**6), size=n_images, replace=False))
    images, utt_ids = [], []
    for number, image_id in enumerate(image_ids):
        width, height = int(rng.integers(120, 320)), int(rng.integers(120, 320))
        pixels = rng.integers(0, 256, size=(height // 8 + 1, width // 8 + 1, 3), dtype=np.uint8)
        file_name = f"COCO_{split}_{image_id:012d}.jpg"
        Image.fromarray(pixels).resize((width, height), Image.BILINEAR).save(coco / "images" / split / file_name, quality=90)
        images.append({"id": image_id, "file_name": file_name, "width": width, "height": height})
        for c in range(captions_per_image):
            stem = f"{image_id}_{number * 10 + c}"
            seconds = float(rng.uniform(0.4, 1.2))
            soundfile.write(speech / split / "wav" / f"{stem}.wav", syllables(seconds, 200 + 150 * c + 20 * number), SR, subtype="PCM_16")
            meta = {"wavFilename": f"{stem}.wav", "synthesisedCaption": "a tone", "duration": seconds,
                    "imgID": image_id, "captionID": number * 10 + c, "speaker": "tone",
                    "timecode": [[0, "WORD", "a"], [int(seconds * 500), "WORD", "tone"]]}
            (speech / split / "json" / f"{stem}.json").write_text(json.dumps(meta))
            utt_ids.append(stem)
    instances = {"images": images, "annotations": [], "categories": [{"id": 1, "name": "person", "supercategory": "person"}]}
    (coco / "annotations" / f"instances_{split}.json").write_text(json.dumps(instances))
    return {"speech_root": speech, "coco_root": coco, "image_ids": image_ids, "utt_ids": utt_ids}


def override_config(path: Path, corpus: dict, split: str = "val2014", shard_size: int = 4, **sections) -> Path:
    """A second config file pointing the workflow at the tiny corpus (sections override whole keys)."""
    config = {
        "dataset": {"name": "tiny", "source": "speechcoco", "speech_root": str(corpus["speech_root"]),
                    "alignments_root": None, "coco_root": str(corpus["coco_root"]),
                    "splits": {"train": split, "val": split, "test": split}},
        "features": {"shard_size": shard_size, "shuffle": False, "shuffle_seed": 0, "on_error": "stop"},
        **sections,
    }
    path.write_text(yaml.safe_dump(config))
    return path


# ---------------------------------------------------------------- running the feature steps

AUDIO = {"sample_rate": 16000, "n_mels": 40, "win_s": 0.025, "hop_s": 0.01, "power": 2.0, "floor": 1e-10, "n_fft": 512}
FRAMES = {"hop_s": 0.01, "max": 128, "padding": "start"}


def features_slice(**changes) -> dict:
    """A `features` config slice for the tiny corpus (schema defaults for the rest)."""
    return {"shard_size": 4, "shuffle": False, "shuffle_seed": 0, "on_error": "stop", **changes}


def build_plan(folder: Path, corpus: dict, split: str = "val2014", **changes) -> dict:
    """Run features-images and features-captions; the paths of their outputs and the shard count."""
    from vgsalign.features import plan

    features = json.dumps(features_slice(**changes))
    paths = {name: folder / f"{name}.csv" for name in ("images", "images_rejected", "captions", "captions_rejected")}
    n = plan.n_shards(len(corpus["image_ids"]), features_slice(**changes)["shard_size"])
    assert plan.main(["images", "--instances", str(corpus["coco_root"] / f"annotations/instances_{split}.json"),
                      "--image-dir", str(corpus["coco_root"] / "images" / split), "--features", features,
                      "--expected-shards", str(n), "--out", str(paths["images"]),
                      "--rejects", str(paths["images_rejected"])]) == 0
    assert plan.main(["captions", "--images", str(paths["images"]), "--rejected-images", str(paths["images_rejected"]),
                      "--source", "speechcoco", "--speech-root", str(corpus["speech_root"]), "--split", split,
                      "--features", features, "--out", str(paths["captions"]),
                      "--rejects", str(paths["captions_rejected"])]) == 0
    return {**paths, "n_shards": n}


def extract_audio(plan_paths: dict, shard: int, out: Path, audio: dict | None = None, threads: int = 1,
                  **changes) -> int:
    from vgsalign.features import audio as features_audio

    return features_audio.main([
        "--captions", str(plan_paths["captions"]), "--split", "val2014", "--shard", str(shard),
        "--n-shards", str(plan_paths["n_shards"]), "--audio", json.dumps(audio or AUDIO), "--frames", json.dumps(FRAMES),
        "--features", json.dumps(features_slice(**changes)), "--threads", str(threads), "--out", str(out)])


def extract_visual(plan_paths: dict, corpus: dict, out: Path, shard: int = 0, visual: dict | None = None,
                   threads: int = 1, **changes) -> int:
    from vgsalign.features import visual as features_visual

    visual = {"backbone": "efficientnet_lite0", "weights": None, "allow_random_weights": False, **(visual or {})}
    return features_visual.main([
        "--images", str(plan_paths["images"]), "--captions", str(plan_paths["captions"]),
        "--image-dir", str(corpus["coco_root"] / "images/val2014"), "--split", "val2014", "--shard", str(shard),
        "--n-shards", str(plan_paths["n_shards"]), "--visual", json.dumps(visual),
        "--features", json.dumps(features_slice(**changes)), "--batch-size", "3", "--threads", str(threads),
        "--out", str(out)])
