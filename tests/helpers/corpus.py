"""The hand-written corpus fixtures (tests/corpus/fixtures, literal JSON and TextGrid text in the
real formats) copied into a test folder, with the wavs and images they refer to made up.

- `speechcoco/val2014/json/`: two SPEECH-COCO caption files, one with a disfluency ("um") and
  punctuation timed as words;
- `spokencoco/SpokenCOCO_{train,val}.json`: Karpathy indexes, the train one with a val2014
  "restval" image;
- `mfa/<speaker>/<uttid>.TextGrid`: MFA output (tiers `words` and `phones`, empty = silence);
- `coco/annotations/instances_{train,val}2014.json`: MSCOCO instances files; the images
  are written as COCO unzips them, `coco/<split>/COCO_<split>_<12-digit id>.jpg`.

`coco_from_demo` and `spokencoco_from_demo` lay a generated demo corpus out as MSCOCO 2014
and SpokenCOCO are downloaded (hard links; TextGrids written as text from its true times).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import soundfile
from PIL import Image

FIXTURES = Path(__file__).resolve().parents[1] / "corpus" / "fixtures"
SR = 16000

# the words, times (s) and image of each fixture utterance, read off the fixture files by hand
SPEECHCOCO_WORDS = {
    "108505_147972_Phil_Middle_0-9": [("Person", 0.15, 0.52), ("using", 0.52, 0.90), ("a", 0.90, 0.98),
                                      ("slider", 1.40, 1.80), ("phone", 1.80, 2.1255)],
    "298817_26763_Phil_None_0-9": [("Two", 0.12, 0.38), ("wild", 0.38, 0.70), ("turkeys", 0.85, 1.39)],
}
SPOKENCOCO_WORDS = {
    "m1a2b3-3ABCDEF_9_101": (9, "train2014", [("a", 0.18, 0.27), ("dog", 0.27, 0.61), ("on", 0.75, 0.86),
                                              ("the", 0.86, 0.93), ("grass", 0.93, 1.5)]),
    "f9z8y7-3GHIJKL_42_202": (42, "val2014", [("two", 0.0, 0.1), ("cats", 0.1, 0.48), ("sleeping", 0.48, 1.05)]),
    "m1a2b3-3STUVWX_74_301": (74, "val2014", [("a", 0.2, 0.3), ("red", 0.3, 0.55), ("car", 0.55, 0.9)]),
}
WAV_SECONDS = {"m1a2b3-3ABCDEF_9_101": 1.5, "f9z8y7-3GHIJKL_42_202": 1.2, "f9z8y7-3MNOPQR_42_203": 1.0,
               "m1a2b3-3STUVWX_74_301": 1.0}


def write_wav(path: Path, seconds: float, seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    signal = 0.05 * np.random.default_rng(seed).standard_normal(int(round(seconds * SR)))
    soundfile.write(path, signal.astype(np.float32), SR, subtype="PCM_16")
    return path


def speechcoco_corpus(root: Path) -> Path:
    """speech_root with the two fixture captions and wavs of their `duration`."""
    speech = root / "speechcoco"
    shutil.copytree(FIXTURES / "speechcoco", speech)
    for path in sorted((speech / "val2014" / "json").glob("*.json")):
        meta = json.loads(path.read_text())
        write_wav(speech / "val2014" / "wav" / meta["wavFilename"], meta["duration"])
    return speech


def spokencoco_corpus(root: Path) -> tuple[Path, Path]:
    """(speech_root, alignments_root): the Karpathy indexes, their wavs and the MFA TextGrids."""
    speech, grids = root / "spokencoco", root / "mfa"
    shutil.copytree(FIXTURES / "spokencoco", speech)
    shutil.copytree(FIXTURES / "mfa", grids)
    for index in sorted(speech.glob("SpokenCOCO_*.json")):
        for item in json.loads(index.read_text())["data"]:
            for caption in item["captions"]:
                write_wav(speech / caption["wav"], WAV_SECONDS[caption["uttid"]])
    return speech, grids


def coco_corpus(root: Path) -> Path:
    """coco_root as MSCOCO 2014 unzips: annotations/ and one image folder per split."""
    coco = root / "coco"
    shutil.copytree(FIXTURES / "coco", coco)
    for instances in sorted((coco / "annotations").glob("instances_*.json")):
        split = instances.stem.removeprefix("instances_")
        for image in json.loads(instances.read_text())["images"]:
            path = coco / split / image["file_name"]
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.new("RGB", (image["width"], image["height"]), (90, 140, 60)).save(path, quality=90)
    return coco


# --------------------------------------------------------------------------- real layouts from the demo corpus

def textgrid_text(duration_s: float, words: list[tuple[str, float, float]]) -> str:
    """An MFA-shaped long TextGrid: a `words` tier with empty intervals for the silences."""
    intervals, t = [], 0.0
    for word, onset, offset in words:
        if onset > t:
            intervals.append(("", t, onset))
        intervals.append((word, onset, offset))
        t = offset
    if t < duration_s:
        intervals.append(("", t, duration_s))
    lines = ['File type = "ooTextFile"', 'Object class = "TextGrid"', "", "xmin = 0 ", f"xmax = {duration_s} ",
             "tiers? <exists> ", "size = 1 ", "item []: ", "    item [1]:", '        class = "IntervalTier" ',
             '        name = "words" ', "        xmin = 0 ", f"        xmax = {duration_s} ",
             f"        intervals: size = {len(intervals)} "]
    for k, (text, a, b) in enumerate(intervals, start=1):
        lines += [f"        intervals [{k}]:", f"            xmin = {a} ", f"            xmax = {b} ",
                  f'            text = "{text}" ']
    return "\n".join(lines) + "\n"


def link_tree(source: Path, target: Path) -> None:
    """`target` as a copy of `source` made of hard links (no bytes copied)."""
    shutil.copytree(source, target, copy_function=os.link)


def coco_from_demo(demo, root: Path) -> Path:
    """The demo corpus's COCO part as MSCOCO 2014 unzips: <root>/<split>/ and annotations/."""
    coco = root / "mscoco"
    link_tree(demo.coco_root / "annotations", coco / "annotations")
    link_tree(demo.coco_root / "images" / demo.split, coco / demo.split)
    return coco


def spokencoco_from_demo(demo, root: Path) -> tuple[Path, Path]:
    """The demo corpus's speech as SpokenCOCO (a Karpathy-style index, wavs/val/0/) with
    MFA-shaped TextGrids of its true word times: (speech_root, alignments_root)."""
    speech, grids = root / "SpokenCOCO", root / "SpokenCOCO_mfa"
    truth = {c["utt_id"]: c for c in demo.truth["captions"]}
    by_image: dict[int, list[dict]] = {}
    for path in sorted((demo.speech_root / demo.split / "json").glob("*.json")):
        meta = json.loads(path.read_text())
        wav_rel = f"wavs/val/0/{path.stem}.wav"
        (speech / wav_rel).parent.mkdir(parents=True, exist_ok=True)
        os.link(demo.speech_root / demo.split / "wav" / meta["wavFilename"], speech / wav_rel)
        by_image.setdefault(int(meta["imgID"]), []).append(
            {"text": meta["synthesisedCaption"], "speaker": meta["speaker"], "uttid": path.stem, "wav": wav_rel})
        words = [(w["word"].lower(), w["onset_s"], w["offset_s"]) for w in truth[path.stem]["words"]]
        grid = grids / meta["speaker"] / f"{path.stem}.TextGrid"
        grid.parent.mkdir(parents=True, exist_ok=True)
        grid.write_text(textgrid_text(meta["duration"], words))
    index = {"data": [{"image": f"{demo.split}/COCO_{demo.split}_{image_id:012d}.jpg", "captions": captions}
                      for image_id, captions in sorted(by_image.items())]}
    (speech / "SpokenCOCO_val.json").write_text(json.dumps(index))
    return speech, grids
