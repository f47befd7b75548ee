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
            soundfile.write(speech / split / "wav" / f"{stem}.wav", sine(seconds, 200 + 150 * c + 20 * number), SR, subtype="PCM_16")
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
