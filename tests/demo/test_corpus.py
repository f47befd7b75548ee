"""The demo corpus: real formats (pycocotools, SPEECH-COCO JSON + wav), word times that
match the audio, ground truth consistent with the files, determinism, bad settings."""

from __future__ import annotations

import json
import subprocess
import sys
import wave
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image
from pycocotools.coco import COCO

from tests.helpers.demo import make_tiny_corpus, tiny_corpus  # noqa: F401  (fixture)
from vgsalign.config import load_config, section_defaults
from vgsalign.demo import corpus as demo_corpus
from vgsalign.demo.corpus import DemoSettings, validate
from vgsalign.errors import InputError

# the real MSCOCO 2014 entries (id -> (name, supercategory)) of every category the demo may use
REAL_COCO = {
    1: ("person", "person"), 3: ("car", "vehicle"), 10: ("traffic light", "outdoor"), 13: ("stop sign", "outdoor"),
    17: ("cat", "animal"), 18: ("dog", "animal"), 44: ("bottle", "kitchen"), 47: ("cup", "kitchen"),
    52: ("banana", "food"), 53: ("apple", "food"), 59: ("pizza", "food"), 88: ("teddy bear", "indoor"),
}


def read_wav(path: Path) -> tuple[np.ndarray, int]:
    with wave.open(str(path), "rb") as fh:
        assert fh.getnchannels() == 1 and fh.getsampwidth() == 2
        rate = fh.getframerate()
        audio = np.frombuffer(fh.readframes(fh.getnframes()), dtype="<i2").astype(np.float64) / 32768
    return audio, rate


def rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(x ** 2))) if x.size else 0.0


def frame_rms(x: np.ndarray, rate: int, frame_s: float = 0.01) -> np.ndarray:
    n = int(rate * frame_s)
    k = len(x) // n
    return np.sqrt((x[: k * n].reshape(k, n) ** 2).mean(axis=1)) if k else np.array([rms(x)])


def words_from_timecode(record: dict) -> list[tuple[str, float, float]]:
    """The reader's rule: a WORD ends at the next WORD/SIL/SEPR (the last at the caption end)."""
    code = record["timecode"]
    out = []
    for i, (t, kind, label) in enumerate(code):
        if kind != "WORD":
            continue
        end = next((u for u, k, _ in code[i + 1:] if k in ("WORD", "SIL", "SEPR")), record["duration"] * 1000)
        out.append((label, t / 1000, end / 1000))
    return out


def test_coco_annotations_load_with_pycocotools(tiny_corpus):
    coco = COCO(str(tiny_corpus.instances))
    for cat in coco.loadCats(coco.getCatIds()):
        assert REAL_COCO[cat["id"]] == (cat["name"], cat["supercategory"])
    sizes = set()
    kinds = {"polygon": 0, "rle": 0, "crowd": 0}
    for image in coco.loadImgs(coco.getImgIds()):
        path = tiny_corpus.coco_root / "images" / tiny_corpus.split / image["file_name"]
        assert image["file_name"] == f"COCO_{tiny_corpus.split}_{image['id']:012d}.jpg"
        with Image.open(path) as im:
            assert im.format == "JPEG" and im.mode == "RGB"
            assert im.size == (image["width"], image["height"])
        sizes.add((image["width"], image["height"]))
        for ann in coco.loadAnns(coco.getAnnIds(imgIds=image["id"], iscrowd=None)):
            mask = coco.annToMask(ann)
            assert mask.shape == (image["height"], image["width"])
            assert mask.sum() > 50, ann["id"]
            assert ann["area"] == pytest.approx(mask.sum(), rel=0.02)
            x, y, w, h = ann["bbox"]
            assert 0 <= x and 0 <= y and x + w <= image["width"] and y + h <= image["height"]
            ys, xs = np.nonzero(mask)
            assert xs.min() >= int(x) and xs.max() <= x + w and ys.min() >= int(y) and ys.max() <= y + h
            seg = ann["segmentation"]
            if ann["iscrowd"]:
                assert isinstance(seg["counts"], list)  # COCO's uncompressed RLE for crowds
                kinds["crowd"] += 1
            elif isinstance(seg, dict):
                assert isinstance(seg["counts"], str)
                kinds["rle"] += 1
            else:
                assert all(len(poly) >= 6 and len(poly) % 2 == 0 for poly in seg)
                kinds["polygon"] += 1
    assert all(v > 0 for v in kinds.values()), kinds
    assert any(not coco.getAnnIds(imgIds=i, iscrowd=None) for i in coco.getImgIds()), "an image without annotations"
    assert len(sizes) > 2 and any(w != h for w, h in sizes)


def test_masks_cover_the_drawn_objects(tiny_corpus):
    # an object's pixels differ from the background just outside its mask
    coco = COCO(str(tiny_corpus.instances))
    for image in coco.loadImgs(coco.getImgIds()):
        pixels = np.asarray(Image.open(tiny_corpus.coco_root / "images" / tiny_corpus.split / image["file_name"]),
                            dtype=np.float64)
        for ann in coco.loadAnns(coco.getAnnIds(imgIds=image["id"], iscrowd=False)):
            if isinstance(ann["segmentation"], dict):
                mask = coco.annToMask(ann).astype(bool)  # RLE: the exact drawn pixels
                inside = pixels[mask].mean(axis=0)
                x, y, w, h = (int(v) for v in ann["bbox"])
                ring = np.zeros_like(mask)
                ring[max(0, y - 6):y + h + 6, max(0, x - 6):x + w + 6] = True
                ring &= ~mask
                outside = pixels[ring].mean(axis=0)
                assert np.abs(inside - outside).max() > 8 or pixels[mask].std() > 8


def test_speech_files_in_speechcoco_format(tiny_corpus):
    json_dir = tiny_corpus.speech_root / tiny_corpus.split / "json"
    records = sorted(json_dir.glob("*.json"))
    assert len(records) == tiny_corpus.manifest["counts"]["captions"] == 16
    for path in records:
        record = json.loads(path.read_text())
        assert set(record) >= {"wavFilename", "synthesisedCaption", "duration", "imgID", "captionID", "speaker", "timecode"}
        assert record["wavFilename"] == path.stem + ".wav"
        assert path.stem.startswith(f"{record['imgID']}_{record['captionID']}_{record['speaker']}_")
        audio, rate = read_wav(tiny_corpus.speech_root / tiny_corpus.split / "wav" / record["wavFilename"])
        assert rate == 16000
        assert record["duration"] == pytest.approx(len(audio) / rate, abs=1e-5)
        times = [t for t, _, _ in record["timecode"]]
        assert times == sorted(times) and times[0] == 0 and times[-1] <= record["duration"] * 1000
        kinds = [k for _, k, _ in record["timecode"]]
        assert kinds[0] == "SIL" and kinds[-1] == "SIL" and set(kinds) <= {"SIL", "SYL", "WORD", "PHO", "SEPR"}
        spoken = [label for _, k, label in record["timecode"] if k == "WORD"]
        written = record["synthesisedCaption"].lower().replace(",", "").rstrip(".").split()
        assert spoken == written


def test_word_times_match_the_audio(tiny_corpus):
    truth = {c["utt_id"]: c for c in tiny_corpus.truth["captions"]}
    for utt_id, caption in truth.items():
        record = json.loads((tiny_corpus.speech_root / tiny_corpus.split / "json" / f"{utt_id}.json").read_text())
        audio, rate = read_wav(tiny_corpus.speech_root / tiny_corpus.split / "wav" / f"{utt_id}.wav")
        # the timecode, read with the documented rule, gives the generator's word times
        parsed = words_from_timecode(record)
        assert [w for w, _, _ in parsed] == [w["word"] for w in caption["words"]]
        for (_, on, off), w in zip(parsed, caption["words"]):
            assert on == pytest.approx(w["onset_s"], abs=1e-6) and off == pytest.approx(w["offset_s"], abs=1e-6)
            assert on < off
        words = caption["words"]
        assert words[0]["onset_s"] >= 0.05 and caption["duration_s"] - words[-1]["offset_s"] >= 0.05
        # silence before the first and after the last word (30 ms guard for the decoder's ramp)
        silence = np.concatenate([audio[: int((words[0]["onset_s"] - 0.03) * rate)],
                                  audio[int((words[-1]["offset_s"] + 0.03) * rate):]])
        assert rms(silence) < 0.002, (utt_id, rms(silence))
        for w in words:  # every word is clearly audible somewhere in its span
            loudest = frame_rms(audio[int(w["onset_s"] * rate): int(np.ceil(w["offset_s"] * rate))], rate).max()
            assert loudest > 0.005 and loudest > 10 * rms(silence), (utt_id, w["word"], loudest)
        for a, b in zip(words, words[1:]):  # a comma is spoken as a pause, quieter than the words around it
            if a["pause_after"]:
                gap = audio[int((a["offset_s"] + 0.03) * rate): int((b["onset_s"] - 0.03) * rate)]
                assert b["onset_s"] - a["offset_s"] > 0.15
                assert frame_rms(gap, rate).max() < 0.5 * min(
                    frame_rms(audio[int(a["onset_s"] * rate): int(a["offset_s"] * rate)], rate).max(),
                    frame_rms(audio[int(b["onset_s"] * rate): int(b["offset_s"] * rate)], rate).max())


def test_ground_truth_agrees_with_the_annotations(tiny_corpus):
    coco = COCO(str(tiny_corpus.instances))
    images = {i["image_id"]: i for i in tiny_corpus.truth["images"]}
    assert sorted(images) == sorted(coco.getImgIds())
    roles = {"object": 0, "distractor": 0, "other": 0}
    for caption in tiny_corpus.truth["captions"]:
        image = images[caption["image_id"]]
        drawn = {o["category"] for o in image["objects"]}
        assert image["labels"] == sorted({o["category"] for o in image["objects"] if not o["iscrowd"]})
        anns = coco.loadAnns(coco.getAnnIds(imgIds=caption["image_id"], iscrowd=None))
        assert sorted(a["id"] for a in anns) == sorted(o["annotation_id"] for o in image["objects"])
        named = set()
        for w in caption["words"]:
            roles[w["role"]] += 1
            if w["role"] == "object":
                assert w["category"] in drawn and REAL_COCO[w["category_id"]][0] == w["category"]
                named.add(w["category"])
            else:
                assert w["category"] is None
        if drawn:
            assert named, caption["text"]
        else:
            assert not named
    assert all(v > 0 for v in roles.values()), roles
    words = {w["word"] for c in tiny_corpus.truth["captions"] for w in c["words"] if w["role"] == "object"}
    assert len(words) > 5  # category words, synonyms and plurals


def test_same_seed_gives_identical_bytes_whatever_the_threads(tmp_path):
    small = dict(n_images=3, captions_per_image=1)
    a = make_tiny_corpus(tmp_path / "a", split="train2014", threads=1, **small)
    # b first holds a bigger corpus: the rerun must remove its stale files
    make_tiny_corpus(tmp_path / "b", split="train2014", threads=1, n_images=4, captions_per_image=1)
    b = make_tiny_corpus(tmp_path / "b", split="train2014", threads=2, **small)
    files_a = sorted(p.relative_to(a.root) for p in a.root.rglob("*") if p.is_file())
    files_b = sorted(p.relative_to(b.root) for p in b.root.rglob("*") if p.is_file())
    assert files_a == files_b
    for rel in files_a:
        assert (a.root / rel).read_bytes() == (b.root / rel).read_bytes(), rel
    listed = {f["path"] for f in a.manifest["files"]}
    assert listed | {"manifest_train2014.json"} == {str(p) for p in files_a}


def test_other_seed_or_split_differs(tmp_path):
    a = make_tiny_corpus(tmp_path / "a", split="val2014", n_images=1, captions_per_image=1, seed=0)
    b = make_tiny_corpus(tmp_path / "b", split="val2014", n_images=1, captions_per_image=1, seed=1)
    assert a.manifest["files"] != b.manifest["files"]
    assert demo_corpus.split_seed(0, "train2014") != demo_corpus.split_seed(0, "val2014")
    assert demo_corpus.split_image_base("train2014") != demo_corpus.split_image_base("val2014")


def test_interrupted_run_leaves_no_manifest(tmp_path, monkeypatch):
    make_tiny_corpus(tmp_path, split="val2014", n_images=1, captions_per_image=1)
    assert (tmp_path / "manifest_val2014.json").exists()
    real = demo_corpus.make_image

    def failing(task):
        if task.index == 1:
            raise KeyboardInterrupt
        return real(task)

    monkeypatch.setattr(demo_corpus, "make_image", failing)
    with pytest.raises(KeyboardInterrupt):
        make_tiny_corpus(tmp_path, split="val2014", n_images=2, captions_per_image=1)
    assert not (tmp_path / "manifest_val2014.json").exists()
    assert not list(tmp_path.rglob(".*part*")), "no temporary files left"


def test_long_captions_exceed_the_frame_cut():
    from vgsalign.demo.captions import make_caption
    from vgsalign.demo.corpus import _voice

    rng = np.random.default_rng(3)
    caption = make_caption(rng, [("dog", 2, False), ("teddy bear", 1, False), ("car", 1, False)], "grass", [], long=True)
    speech = _voice().synthesize([w.text for w in caption.words], [w.pause_after for w in caption.words], 1.0)
    assert speech.duration_s > 5.12


def _settings(**changes) -> DemoSettings:
    """The schema's demo defaults with 4 images of val2014, changed by `changes`."""
    return demo_corpus.demo_settings("val2014", **{"n_images": 4, **changes})


@pytest.mark.parametrize("changes, message", [
    (dict(crowd_share=1.5), "demo.crowd_share = 1.5: expected a number from 0 to 1"),
    (dict(length_scales=[]), "demo.length_scales = []"),
    (dict(length_scales=[1.0, 1.0]), "expected distinct values"),
    (dict(length_scales=[0.1]), "demo.length_scales item 0.1"),
    (dict(captions_per_image=0), "demo.captions_per_image = 0"),
    (dict(seed=-1), "demo.seed = -1"),
    (dict(n_images={"val2014": 0}), "demo.n_images.val2014 = 0"),
    (dict(n_images={"train2014": 4}), "split 'val2014': not in demo.n_images"),
    (dict(rle_share="0.2"), "demo.rle_share = '0.2'"),
])
def test_bad_settings_are_rejected(changes, message):
    with pytest.raises(InputError) as err:
        validate(_settings(**changes), "val2014")
    assert message in str(err.value)


def test_default_config_slice_is_valid(repo_root):
    config = load_config(repo_root / "config.yaml")
    settings = DemoSettings(**config["demo"])
    for split in config["demo"]["n_images"]:
        validate(settings, split)


def test_cli_reports_bad_settings_in_one_line(tmp_path):
    bad = json.dumps({**_settings().__dict__, "crowd_share": 2})
    result = subprocess.run([sys.executable, "-m", "vgsalign.demo.corpus", "--demo", bad, "--split", "val2014",
                             "--out", str(tmp_path)], capture_output=True, text=True)
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and "demo.crowd_share = 2" in result.stderr
    unknown = json.dumps({**_settings().__dict__, "colour": "red"})
    result = subprocess.run([sys.executable, "-m", "vgsalign.demo.corpus", "--demo", unknown, "--split", "val2014",
                             "--out", str(tmp_path)], capture_output=True, text=True)
    assert result.returncode == 2 and "unknown setting(s) ['colour']" in result.stderr
    assert not list(tmp_path.iterdir())


def test_cli_fills_a_partial_slice_and_logs_plain_progress_lines(tmp_path):
    """`--demo` with two keys (the rest from the schema's defaults), `--threads 2`, and stderr
    a pipe as under `tee {log}`: progress comes as whole lines, no carriage returns."""
    demo = json.dumps({"n_images": {"val2014": 2}, "captions_per_image": 1})
    result = subprocess.run([sys.executable, "-m", "vgsalign.demo.corpus", "--demo", demo, "--split", "val2014",
                             "--out", str(tmp_path), "--threads", "2"], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "\r" not in result.stderr
    lines = result.stderr.splitlines()
    assert any(line.endswith("demo val2014: 2/2 img (100%)") or "demo val2014: 2/2 img (100%)," in line
               for line in lines), lines
    assert any("demo-corpus val2014: 2 images, 2 captions" in line and "with 2 process(es)" in line for line in lines)
    manifest = json.loads((tmp_path / "manifest_val2014.json").read_text())
    assert manifest["settings"]["length_scales"] == section_defaults("demo")["length_scales"]
    assert manifest["counts"]["captions"] == 2


def test_generate_split_takes_settings_or_single_values(tmp_path):
    with pytest.raises(InputError, match="either settings or single values"):
        demo_corpus.generate_split(tmp_path, "val2014", _settings(), captions_per_image=1)
    with pytest.raises(InputError, match="--threads"):
        demo_corpus.generate_split(tmp_path, "val2014", _settings(), threads=0)


@pytest.mark.slow
def test_snakemake_rule_makes_every_split(tmp_path, repo_root):
    config = yaml.safe_load((repo_root / "config.yaml").read_text())
    config["dataset"]["name"] = "tiny"
    config["demo"]["n_images"] = {"train2014": 2, "val2014": 1}
    config["demo"]["captions_per_image"] = 1
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    result = subprocess.run(
        [sys.executable, "-m", "snakemake", "-s", str(repo_root / "Snakefile"), "--directory", str(tmp_path),
         "--configfile", str(tmp_path / "config.yaml"), "--cores", "2", "demo_corpus"],
        capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    for split, n in (("train2014", 2), ("val2014", 1)):
        manifest = json.loads((tmp_path / f"results/tiny/corpus/manifest_{split}.json").read_text())
        assert manifest["counts"]["images"] == n and manifest["counts"]["captions"] == n
        assert (tmp_path / f"results/tiny/logs/demo/{split}.log").exists()
