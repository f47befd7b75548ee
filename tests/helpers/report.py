"""A complete synthetic results folder for the report: the files of every stage a report
reads, in the pipeline's layout (docs/formats.md), shared by the report tests and the
report benchmark.

The scores are computed by the real scorer (`vgsalign.scores.run.run_scores`) on synthetic
tensors, and the test-set funnel by the real `vgsalign.testdata.summary.build`, so the
tables have exactly the pipeline's format. Everything else is drawn here:

- images (JPEG, non-square) with 2-4 rectangular objects of COCO categories, annotated
  as polygons (every third one as compressed RLE) in an instances JSON, and a crowd
  region (iscrowd 1, uncompressed RLE) of one of them in a corner;
- captions of function words and nouns naming objects of the image, with word times,
  padded at the start to 512 input frames (10 ms);
- alignment tensors (64 x 14 x 14) with noise, plus attention on the named object during
  the word for a share of the pairs (so best and worst examples differ);
- log-mel audio shards (energy in a few bands while a word is spoken) and a small visual
  shard whose attributes say whether the "CNN" had random weights;
- training history and retrieval figures in train.py's format.

For large folders (the benchmark) `dense_every` writes tensors and log-mel rows for only
every k-th utterance; the other rows are left unwritten in chunked HDF5 datasets (they
read as zeros), which keeps 200,000 pairs to a few hundred MB.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
from PIL import Image
from tests.helpers.scores import polygon_rect, rle_of

from vgsalign.demo.scene import uncompressed_rle
from vgsalign.train.retrieval import chance_levels
from vgsalign.scores.plan import score_settings
from vgsalign.scores.run import run_scores
from vgsalign.testdata.summary import build as build_testdata_summary

SPLIT = "val2014"
MAX_FRAMES, HOP, N_MELS, T, GRID = 512, 0.01, 40, 64, 14
# the 80 COCO 2014 categories (id, name)
COCO_CATEGORIES = list(enumerate([
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat", "traffic light",
    "fire hydrant", None, "stop sign", "parking meter", "bench", "bird", "cat", "dog", "horse", "sheep", "cow",
    "elephant", "bear", "zebra", "giraffe", None, "backpack", "umbrella", None, None, "handbag", "tie",
    "suitcase", "frisbee", "skis", "snowboard", "sports ball", "kite", "baseball bat", "baseball glove",
    "skateboard", "surfboard", "tennis racket", "bottle", None, "wine glass", "cup", "fork", "knife", "spoon",
    "bowl", "banana", "apple", "sandwich", "orange", "broccoli", "carrot", "hot dog", "pizza", "donut", "cake",
    "chair", "couch", "potted plant", "bed", None, "dining table", None, None, "toilet", None, "tv", "laptop",
    "mouse", "remote", "keyboard", "cell phone", "microwave", "oven", "toaster", "sink", "refrigerator", None,
    "book", "clock", "vase", "scissors", "teddy bear", "hair drier", "toothbrush"], start=1))
COCO_CATEGORIES = [(cid, name) for cid, name in COCO_CATEGORIES if name is not None]
SHARD_INTEGRITY = "fletcher32"     # the `integrity` attribute the shard readers require
FILLERS = ["a", "the", "there", "is", "on", "with", "near", "some", "picture", "of", "and", "grass"]


@dataclass
class SyntheticRun:
    root: Path               # the working folder
    results: Path            # root/results/<name>: testdata/, train/, scores/, tensors/, features/, corpus/
    instances: Path
    images: Path
    audio: list[Path]
    visual: list[Path]
    rejects: list[Path]      # rejects tables in the stages' layout (testdata, features index)

    def report_args(self, out: Path, figures: Path | None = None, n_examples: int = 4, seed: int = 0,
                    run_config: dict | None = None) -> list[str]:
        """argv of `vgsalign report-html` on this folder."""
        r = self.results
        args = ["--testdata-dir", str(r / "testdata"), "--train-dir", str(r / "train"),
                "--scores-dir", str(r / "scores"), "--tensors", str(r / "tensors/tensors.h5"),
                "--instances", str(self.instances), "--images", str(self.images), "--audio", *map(str, self.audio),
                "--visual", *map(str, self.visual), "--rejects", *map(str, self.rejects),
                "--report", json.dumps({"n_examples": n_examples, "seed": seed}), "--out", str(out)]
        if figures is not None:
            args += ["--figures", str(figures)]
        if run_config is not None:
            args += ["--run-config", json.dumps(run_config)]
        return args


def make_run(root: Path, name: str = "synthetic", n_categories: int = 6, n_images: int = 8,
             captions_per_image: int = 2, pairs_per_caption: int = 2, seed: int = 0, bootstrap: int = 200,
             threads: int = 1, random_weights: bool = False, n_unscorable: int = 1, dense_every: int = 1,
             epochs: int = 4, n_val_images: int = 60, pool_size: int = 1000, n_rejected: int = 0,
             input_frames_offset: float | None = None) -> SyntheticRun:
    """Write a complete results folder under root/results/<name> and return its paths.

    n_unscorable pairs name a category their image does not have (excluded by the scorer
    as category_not_in_image); random_weights marks the visual shard as the output of a
    CNN with random weights (a warning in the report); n_rejected rows go into each rejects
    table (the test set's dataset rejects and the features' caption index rejects);
    input_frames_offset, when given, is recorded in tensors.h5 as the tensor dump does."""
    rng = np.random.default_rng(seed)
    results = root / "results" / name
    coco = results / "corpus" / "coco"
    images_dir = coco / "images" / SPLIT
    for folder in (images_dir, coco / "annotations", results / "testdata" / "reports", results / "train",
                   results / "tensors", results / "features" / "audio" / SPLIT, results / "features" / "visual" / SPLIT):
        folder.mkdir(parents=True, exist_ok=True)
    categories = COCO_CATEGORIES[:n_categories]

    # ------------------------------------------------------------ images and annotations
    images, annotations, boxes_of = [], [], {}
    for i in range(n_images):
        image_id = 572000000 + i
        h, w = (120, 160) if i % 2 == 0 else (150, 110)
        chosen = rng.choice(len(categories), size=min(len(categories), int(rng.integers(2, 5))), replace=False)
        pixels = (rng.normal(90, 12, size=(h, w, 3))).clip(0, 255)
        boxes = {}
        for j, c in enumerate(chosen):
            cid = categories[c][0]
            y0, x0 = int(rng.integers(0, h * 2 // 3)), int(rng.integers(0, w * 2 // 3))
            y1, x1 = min(h, y0 + int(rng.integers(h // 6, h // 2))), min(w, x0 + int(rng.integers(w // 6, w // 2)))
            boxes[cid] = (y0, x0, y1, x1)
            pixels[y0:y1, x0:x1] = rng.integers(40, 255, size=3)
            if j % 3 == 2:
                mask = np.zeros((h, w), dtype=bool)
                mask[y0:y1, x0:x1] = True
                segmentation = rle_of(mask)
            else:
                segmentation = polygon_rect(x0, y0, x1, y1)
            annotations.append({"id": len(annotations) + 1, "image_id": image_id, "category_id": cid, "iscrowd": 0,
                                "area": float((y1 - y0) * (x1 - x0)), "bbox": [x0, y0, x1 - x0, y1 - y0],
                                "segmentation": segmentation})
        # a crowd region (iscrowd 1, COCO's uncompressed RLE) of the first object's category
        # in the bottom-right corner: drawn by the examples, never scored
        crowd = np.zeros((h, w), dtype=bool)
        crowd[h - h // 5:, w - w // 5:] = True
        annotations.append({"id": len(annotations) + 1, "image_id": image_id, "category_id": categories[chosen[0]][0],
                            "iscrowd": 1, "area": float(crowd.sum()), "bbox": [w - w // 5, h - h // 5, w // 5, h // 5],
                            "segmentation": uncompressed_rle(crowd)})
        boxes_of[image_id] = boxes
        file_name = f"COCO_{SPLIT}_{image_id:012d}.jpg"
        Image.fromarray(pixels.astype(np.uint8)).save(images_dir / file_name, quality=85)
        images.append({"id": image_id, "file_name": file_name, "height": h, "width": w})
    instances = coco / "annotations" / f"instances_{SPLIT}.json"
    instances.write_text(json.dumps({
        "images": images, "annotations": annotations,
        "categories": [{"id": cid, "name": n, "supercategory": "thing"} for cid, n in categories]}))
    name_of = dict(categories)

    # ------------------------------------------------------------ captions, words, pairs
    word_rows, pair_rows, similarity_rows, utterances = [], [], [], []
    unscorable_left = n_unscorable
    for image in images:
        image_id = image["id"]
        present = list(boxes_of[image_id])
        for k in range(captions_per_image):
            utt = f"{image_id}_{image_id * 100 + k}_Synth_None_1"
            named = [present[int(rng.integers(len(present)))] for _ in range(pairs_per_caption)]
            tokens = []
            for cid in named:
                tokens += [FILLERS[int(rng.integers(len(FILLERS)))], "a", ("noun", cid)]
            tokens += ["on", "the", "grass"]
            t = float(rng.uniform(0.1, 0.3))
            words = []
            for index, token in enumerate(tokens):
                word = name_of[token[1]].split()[-1] if isinstance(token, tuple) else token
                length = float(rng.uniform(0.25, 0.45)) if isinstance(token, tuple) else float(rng.uniform(0.1, 0.25))
                words.append((index, word, round(t, 4), round(t + length, 4), token))
                t += length + float(rng.uniform(0.0, 0.06))
            duration = min(round(t + 0.15, 4), (MAX_FRAMES - 1) * HOP)
            n_frames = min(MAX_FRAMES, 1 + int(np.floor(duration / HOP)))
            pad = MAX_FRAMES - n_frames
            utterances.append((utt, image_id, pad, n_frames, words))
            for index, word, onset, offset, token in words:
                word_rows.append((utt, image_id, f"wav/{utt}.wav", index, word, onset, offset))
                if not isinstance(token, tuple) or offset > duration:
                    continue
                cid = token[1]
                if unscorable_left and len(present) < len(categories):
                    cid = next(c for c, _ in categories if c not in present)      # not in the image
                    unscorable_left -= 1
                similarity = float(rng.uniform(0.72, 1.0))
                pair_rows.append((utt, image_id, index, word, name_of[cid], cid, similarity, onset, offset,
                                  pad + int(np.floor(onset / HOP + 1e-9)), pad + int(np.ceil(offset / HOP - 1e-9)),
                                  pad, n_frames, duration, f"wav/{utt}.wav", SPLIT))
                for other in present:
                    similarity_rows.append((utt, image_id, index, word, other, name_of[other],
                                            similarity if other == cid else float(rng.uniform(-0.1, 0.69)),
                                            name_of[other], ""))
    testdata = results / "testdata"
    pd.DataFrame(word_rows, columns=["utt_id", "image_id", "wav", "word_index", "word", "onset_s", "offset_s"]
                 ).to_csv(testdata / "words.csv", index=False)
    pairs = pd.DataFrame(pair_rows, columns=[
        "utt_id", "image_id", "word_index", "word", "category", "category_id", "similarity", "onset_s", "offset_s",
        "onset_frame", "offset_frame", "pad_frames", "n_frames", "duration_s", "wav", "split"])
    pairs.to_csv(testdata / "pairs.csv", index=False)
    pd.DataFrame(similarity_rows, columns=["utt_id", "image_id", "word_index", "word", "category_id", "category",
                                           "similarity", "tokens_used", "tokens_missing"]
                 ).to_csv(testdata / "similarities.csv", index=False)
    _write_testdata_summary(testdata, pairs, utterances, len(word_rows), n_images, len(similarity_rows))

    # ------------------------------------------------------------ tensors and feature shards
    n_utt = len(utterances)
    tensors_path = results / "tensors" / "tensors.h5"
    audio_path = results / "features" / "audio" / SPLIT / "shard_00000.h5"
    r = MAX_FRAMES // T
    with h5py.File(tensors_path, "w") as tens, h5py.File(audio_path, "w") as audio:
        avt = tens.create_dataset("avt", shape=(n_utt, T, GRID, GRID), dtype="float32", chunks=(1, T, GRID, GRID))
        # shards as the features stage writes them: chunks with checksums, recorded in `integrity`
        logmel = audio.create_dataset("logmel", shape=(n_utt, MAX_FRAMES, N_MELS), dtype="float32",
                                      chunks=(1, MAX_FRAMES, N_MELS), fletcher32=True)
        for u, (utt, image_id, pad, n_frames, words) in enumerate(utterances):
            if u % dense_every:
                continue
            image = images[image_id - 572000000]
            tensor = rng.normal(size=(T, GRID, GRID)).astype(np.float32)
            spectrum = rng.normal(-75, 4, size=(MAX_FRAMES, N_MELS)).astype(np.float32)
            spectrum[:pad] = 0.0                                            # padding value of the shards
            for index, word, onset, offset, token in words:
                first, last = pad + int(onset / HOP), min(MAX_FRAMES, pad + int(np.ceil(offset / HOP)))
                bands = rng.choice(N_MELS, size=6, replace=False)
                spectrum[first:last, bands] += rng.uniform(35, 60)
                spectrum[first:last, : N_MELS // 4] += 20
                if isinstance(token, tuple) and token[1] in boxes_of[image_id] and rng.random() < 0.7:
                    y0, x0, y1, x1 = boxes_of[image_id][token[1]]
                    rows = slice(y0 * GRID // image["height"], max(y0 * GRID // image["height"] + 1, y1 * GRID // image["height"]))
                    cols = slice(x0 * GRID // image["width"], max(x0 * GRID // image["width"] + 1, x1 * GRID // image["width"]))
                    tensor[first // r: max(first // r + 1, last // r), rows, cols] += float(rng.uniform(1.0, 5.0))
            avt[u] = tensor
            logmel[u] = spectrum
        string = h5py.string_dtype()
        ids = np.array([u[0] for u in utterances], dtype=object)
        tens.create_dataset("utt_id", data=ids, dtype=string)
        tens["image_id"] = np.array([u[1] for u in utterances], dtype=np.int64)
        tens["pad_frames"] = np.array([u[2] for u in utterances], dtype=np.int32)
        tens["n_frames"] = np.array([u[3] for u in utterances], dtype=np.int32)
        tens.attrs.update({"input_frames_per_frame": float(r), "seconds_per_frame": r * HOP, "hop_s": HOP,
                           "max_frames": MAX_FRAMES, "padding": "start", "model": "cnnatt",
                           "source": "vgsalign tensors: attention scores before softmax of checkpoint "
                                     "train/checkpoint_best.pt (epoch 3)"})
        if input_frames_offset is not None:
            tens.attrs["input_frames_offset"] = float(input_frames_offset)
        audio.create_dataset("utt_id", data=ids, dtype=string)
        audio["image_id"] = np.array([u[1] for u in utterances], dtype=np.int64)
        audio["n_frames"] = np.array([u[3] for u in utterances], dtype=np.int32)
        audio["pad_frames"] = np.array([u[2] for u in utterances], dtype=np.int32)
        audio.attrs.update({"integrity": SHARD_INTEGRITY, "modality": "audio", "sample_rate": 16000, "n_mels": N_MELS, "hop_s": HOP,
                            "max_frames": MAX_FRAMES, "padding": "start", "n_rejected": 0, "n_silent": 0,
                            "split": SPLIT, "shard_index": 0, "n_shards": 1})
    visual_path = results / "features" / "visual" / SPLIT / "shard_00000.h5"
    with h5py.File(visual_path, "w") as h5:
        h5["image_id"] = np.array([im["id"] for im in images], dtype=np.int64)
        h5["features"] = np.zeros((len(images), GRID, GRID, 4), dtype=np.float32)
        h5["width"] = np.array([im["width"] for im in images], dtype=np.int32)
        h5["height"] = np.array([im["height"] for im in images], dtype=np.int32)
        h5.attrs.update({"integrity": SHARD_INTEGRITY, "modality": "visual", "backbone": "vgg16" if random_weights else "efficientnet_lite0",
                         "layer": "synthetic", "grid": GRID, "channels": 4, "input_size": 224,
                         "random_weights": bool(random_weights), "weights_sha256": "" if random_weights else "ab" * 32,
                         "n_rejected": 0, "split": SPLIT, "shard_index": 0, "n_shards": 1})

    # ------------------------------------------------------------ training and scores
    _write_training(results / "train", epochs=epochs, n_val_images=n_val_images, pool_size=pool_size, rng=rng)
    run_scores(tensors=tensors_path, pairs_csv=testdata / "pairs.csv", instances_json=instances,
               out_dir=results / "scores", settings=score_settings(bootstrap=bootstrap, seed=seed), threads=threads,
               retrieval=results / "train" / "retrieval.json")
    rejects = _write_rejects(results, n_rejected)
    return SyntheticRun(root=root, results=results, instances=instances, images=images_dir, audio=[audio_path],
                        visual=[visual_path], rejects=rejects)


def _write_rejects(results: Path, n_rejected: int) -> list[Path]:
    """The rejects tables of the stages that read the corpus, with n_rejected rows each:
    testdata/rejects_dataset.csv (file, problem) and features/index/<split>/images_rejected.csv
    and captions_rejected.csv (id, path, problem)."""
    dataset = results / "testdata" / "rejects_dataset.csv"
    pd.DataFrame({"file": [f"speech/{SPLIT}/json/broken_{k}.json" for k in range(n_rejected)],
                  "problem": ["not valid JSON (Expecting value: line 1 column 1)"] * n_rejected}
                 ).to_csv(dataset, index=False)
    index = results / "features" / "index" / SPLIT
    index.mkdir(parents=True, exist_ok=True)
    tables = {"images_rejected.csv": ("jpg", "cannot identify image file"), "captions_rejected.csv": ("wav", "wav file not found")}
    for name, (suffix, problem) in tables.items():
        pd.DataFrame({"id": [str(k) for k in range(n_rejected)],
                      "path": [f"{SPLIT}/{k}.{suffix}" for k in range(n_rejected)],
                      "problem": [problem] * n_rejected}).to_csv(index / name, index=False)
    return [dataset, *(index / name for name in tables)]


def _write_testdata_summary(testdata: Path, pairs: pd.DataFrame, utterances: list, n_words: int, n_images: int,
                            n_similarities: int) -> None:
    """The per-step reports (only the counts the funnel reads) and the real summary step."""
    n_utt = len(utterances)
    n_nouns = len(pairs) + n_utt
    reports = {
        "dataset": {"captions_read": n_utt, "captions_dropped": 0, "utterances": n_utt, "words": n_words,
                    "drop_reasons": {}},
        "frames": {"utterances_cut": 0, "words_partly_cut": 0, "words_beyond_cut": 0,
                   "settings": {"hop_s": HOP, "max": MAX_FRAMES, "padding": "start"}},
        "nouns": {"nouns": n_nouns, "nouns_kept": n_nouns},
        "vocab": {"nouns_oov": 0, "policy": "drop_utterance", "nouns_dropped": 0, "utterances_losing_all_nouns": 0,
                  "oov_words": {}},
        "labels": {"images": n_images, "images_without_labels": 0},
        "similarities": {"nouns_without_labels": 0, "similarities": n_similarities, "labels_unknown": 0,
                         "unknown_label_words": []},
        "pairs": {"threshold": 0.7, "nouns_below_threshold": n_utt, "pairs": len(pairs),
                  "utterances": int(pairs["utt_id"].nunique()), "images": int(pairs["image_id"].nunique()),
                  "pairs_per_category": {k: int(v) for k, v in pairs["category"].value_counts().sort_index().items()}},
    }
    for step, report in reports.items():
        (testdata / "reports" / f"{step}.json").write_text(json.dumps(report))
    build_testdata_summary(testdata / "reports", testdata / "summary.json", testdata / "summary.md")


def _write_training(train: Path, epochs: int, n_val_images: int, pool_size: int, rng: np.random.Generator) -> None:
    """history.csv and retrieval.json with train.py's columns and keys."""
    rows = []
    for epoch in range(1, epochs + 1):
        gain = epoch / epochs
        row = {"epoch": epoch, "train_loss": 0.2 - 0.1 * gain, "val_loss": 0.21 - 0.08 * gain + 0.01 * rng.random()}
        for direction in ("a2i", "i2a"):
            for k, top in (("r1", 0.1), ("r5", 0.3), ("r10", 0.5)):
                row[f"{k}_{direction}"] = top * (0.3 + 0.7 * gain)
            row[f"median_rank_{direction}"] = float(30 - 15 * gain)
        row.update({"pooled_r10_a2i": 0.45 * gain, "pooled_r10_i2a": 0.5 * gain,
                    "pool_size": min(pool_size, n_val_images), "temperature": float("nan"), "train_captions": 1200,
                    "samples_per_s": 100.0, "train_s": 12.0, "val_s": 5.0})
        rows.append(row)
    history = pd.DataFrame(rows)
    history.to_csv(train / "history.csv", index=False)
    best = int(history["val_loss"].idxmin()) + 1
    captions = np.repeat(np.arange(n_val_images), 5)
    chance = chance_levels(captions, n_val_images)
    last = rows[best - 1]
    (train / "retrieval.json").write_text(json.dumps({
        "split": SPLIT, "checkpoint": str(train / "checkpoint_best.pt"), "best_epoch": best, "select_by": "val_loss",
        "epochs_trained": epochs, "arch": "cnnatt", "similarity": "cosine", "n_captions": len(captions),
        "n_images": n_val_images, "n_images_in_split": n_val_images, "val_loss": last["val_loss"],
        "image_retrieval_from_captions": {k: last[f"{k}_a2i"] for k in ("r1", "r5", "r10")} | {"median_rank": last["median_rank_a2i"]},
        "caption_retrieval_from_images": {k: last[f"{k}_i2a"] for k in ("r1", "r5", "r10")} | {"median_rank": last["median_rank_i2a"]},
        "pooled_r10": {"pool_size": min(pool_size, n_val_images), "pool_size_requested": pool_size, "trials": 100,
                       "r10_a2i": last["pooled_r10_a2i"], "r10_i2a": last["pooled_r10_i2a"],
                       "chance": min(1.0, 10 / min(pool_size, n_val_images))},
        # the original's figure, on mean-pooled branch outputs (the same pools)
        "pooled_r10_meanpool": {"pool_size": min(pool_size, n_val_images), "pool_size_requested": pool_size,
                                "trials": 100, "r10_a2i": 0.9 * last["pooled_r10_a2i"],
                                "r10_i2a": 0.9 * last["pooled_r10_i2a"],
                                "chance": min(1.0, 10 / min(pool_size, n_val_images))},
        "chance": {"image_retrieval_from_captions": chance["a2i"], "caption_retrieval_from_images": chance["i2a"]},
    }, indent=2))
