"""Shared by the score tests and the benchmark: plain upsampled scorers and synthetic inputs.

The upsampled scorers follow docs/design.md literally: prepare S and Q at native resolution,
repeat them onto a fine grid (input frames x pixels), and take the means and sums the
definitions name. They are slow on purpose and share no code with vgsalign.
"""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
from pycocotools import mask as mask_utils

SCORES = ("as_object", "as_word", "gs_object", "gs_word")


def _softmax(a: np.ndarray, axis: int) -> np.ndarray:
    e = np.exp(a - a.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def prepared_pair(avt: np.ndarray, softmax: str) -> dict[str, np.ndarray]:
    """S and Q (T, H, W) for each family: softmax over cells / over frames, or A clipped at 0."""
    t, h, w = avt.shape
    flat = avt.reshape(t, h * w).astype(np.float64)
    s = _softmax(flat, 1).reshape(t, h, w)
    q = _softmax(flat, 0).reshape(t, h, w)
    clipped = np.maximum(avt.astype(np.float64), 0.0)
    soft_as = softmax in ("both", "as")
    soft_gs = softmax in ("both", "gs")
    return {
        "s_as": s if soft_as else clipped, "q_as": q if soft_as else clipped,
        "s_gs": s if soft_gs else clipped, "q_gs": q if soft_gs else clipped,
    }


def _ratio(num: float, den: float) -> float:
    return num / den if den > 0 else 0.0


def scores_on_fine_grid(prepared: dict, frame_of: np.ndarray, row_of: np.ndarray, col_of: np.ndarray,
                        word: np.ndarray, mask: np.ndarray, normalization: str) -> dict[str, float]:
    """The four scores with every fine frame and fine pixel weighing the same.

    frame_of: tensor frame of each fine frame; row_of/col_of: tensor row/column of each
    fine pixel row/column; word: bool per fine frame; mask: bool (rows, cols).
    """
    up = {k: v[frame_of][:, row_of][:, :, col_of] for k, v in prepared.items()}   # the upsampled tensors
    s_as, q_as, s_gs, q_gs = up["s_as"], up["q_as"], up["s_gs"], up["q_gs"]
    shares = [_ratio(s_as[t][mask].sum(), s_as[t].sum()) for t in np.flatnonzero(word)]
    as_object = float(np.mean(shares))
    glance = s_gs[word].sum(axis=0)
    gs_object = _ratio(glance[mask].sum(), glance.sum())
    per_pixel_in = q_as[word].sum(axis=0)
    per_pixel_all = q_as.sum(axis=0)
    per_pixel = np.divide(per_pixel_in, per_pixel_all, out=np.zeros_like(per_pixel_in), where=per_pixel_all > 0)
    if normalization == "object":
        as_word = float(per_pixel[mask].mean())
    else:
        as_word = float(per_pixel[mask].sum() / mask.size)
    curve = q_gs[:, mask].sum(axis=1)
    gs_word = _ratio(curve[word].sum(), curve.sum())
    return {"as_object": as_object, "as_word": as_word, "gs_object": gs_object, "gs_word": gs_word}


def upsampled_reference_scores(avt: np.ndarray, onset: int, offset: int, mask: np.ndarray,
                               n_input_frames: int, softmax: str, normalization: str,
                               input_frames_offset: int = 0) -> dict[str, float]:
    """Reference mode: repeat to n_input_frames x grid x grid (nearest neighbour). The
    tensor covers input frames [input_frames_offset, input_frames_offset + n_input_frames);
    the word is [onset, offset) on the same (padded) input-frame axis."""
    t, h, w = avt.shape
    grid_h, grid_w = mask.shape
    frame_of = (np.arange(n_input_frames) * t) // n_input_frames
    row_of = (np.arange(grid_h) * h) // grid_h
    col_of = (np.arange(grid_w) * w) // grid_w
    covered = input_frames_offset + np.arange(n_input_frames)       # the input frame of each fine frame
    word = (covered >= onset) & (covered < offset)
    return scores_on_fine_grid(prepared_pair(avt, softmax), frame_of, row_of, col_of, word, mask, normalization)


def upsampled_exact_scores(avt: np.ndarray, start_fine: int, end_fine: int, subframes: int,
                           fine_frames_per_tensor_frame: int, mask: np.ndarray, softmax: str,
                           normalization: str) -> dict[str, float]:
    """Exact mode by supersampling: each input frame split into `subframes` fine frames,
    each image pixel into H x W fine pixels, so that every fine cell lies in one tensor
    cell and one image pixel. The word covers fine frames [start_fine, end_fine)."""
    t, h, w = avt.shape
    img_h, img_w = mask.shape
    frame_of = np.arange(t * fine_frames_per_tensor_frame) // fine_frames_per_tensor_frame
    fine_rows = np.arange(img_h * h)
    fine_cols = np.arange(img_w * w)
    row_of, col_of = fine_rows // img_h, fine_cols // img_w          # tensor cell of a fine pixel
    fine_mask = mask[fine_rows // h][:, fine_cols // w]               # image pixel of a fine pixel
    word = np.zeros(len(frame_of), dtype=bool)
    word[start_fine:end_fine] = True
    return scores_on_fine_grid(prepared_pair(avt, softmax), frame_of, row_of, col_of, word, fine_mask, normalization)


# ---------------------------------------------------------------- synthetic files


def polygon_rect(x0: float, y0: float, x1: float, y1: float) -> list[list[float]]:
    return [[x0, y0, x1, y0, x1, y1, x0, y1]]


def rle_of(mask: np.ndarray) -> dict:
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    rle["counts"] = rle["counts"].decode()
    return rle


def write_instances(path: Path, images: list[dict], annotations: list[dict],
                    categories: list[tuple[int, str]]) -> Path:
    """COCO instances JSON; images: {id, height, width}; annotations need segmentation."""
    anns = []
    for k, ann in enumerate(annotations, start=1):
        anns.append({"id": k, "iscrowd": 0, "area": 0.0, "bbox": [0, 0, 0, 0], **ann})
    data = {
        "images": [{"file_name": f"COCO_test_{im['id']:012d}.jpg", **im} for im in images],
        "annotations": anns,
        "categories": [{"id": cid, "name": name, "supercategory": "thing"} for cid, name in categories],
    }
    path.write_text(json.dumps(data))
    return path


def write_tensors_h5(path: Path, avt: np.ndarray, utt_ids: list[str], image_ids: list[int],
                     pad_frames: list[int], input_frames_per_frame: float, hop_s: float = 0.01,
                     max_frames: int = 512, chunk_rows: int | None = None,
                     **dataset_options) -> Path:
    """The pipeline's tensors.h5; dataset_options go to h5py's create_dataset for `avt`
    (compression, fletcher32)."""
    with h5py.File(path, "w") as h5:
        chunks = (min(chunk_rows, len(avt)),) + avt.shape[1:] if chunk_rows else None
        h5.create_dataset("avt", data=avt.astype(np.float32), chunks=chunks, **dataset_options)
        h5.create_dataset("utt_id", data=np.array(utt_ids, dtype=h5py.string_dtype()))
        h5.create_dataset("image_id", data=np.asarray(image_ids, dtype=np.int64))
        h5.create_dataset("pad_frames", data=np.asarray(pad_frames, dtype=np.int32))
        h5.create_dataset("n_frames", data=np.full(len(avt), max_frames, dtype=np.int32) - np.asarray(pad_frames))
        h5.attrs.update({"input_frames_per_frame": input_frames_per_frame,
                         "seconds_per_frame": input_frames_per_frame * hop_s, "hop_s": hop_s,
                         "max_frames": max_frames, "padding": "start", "model": "synthetic",
                         "source": "tests"})
    return path


def pairs_frame(rows: list[dict], hop_s: float = 0.01) -> pd.DataFrame:
    """pairs.csv rows from (utt_id, image_id, word_index, word, category, category_id,
    onset_s, offset_s, pad_frames); frames per docs/formats.md."""
    out = []
    for r in rows:
        onset_frame = r["pad_frames"] + int(np.floor(r["onset_s"] / hop_s + 1e-9))
        offset_frame = r["pad_frames"] + int(np.ceil(r["offset_s"] / hop_s - 1e-9))
        out.append({"similarity": 0.9, **r, "onset_frame": onset_frame, "offset_frame": offset_frame,
                    "n_frames": 512 - r["pad_frames"], "duration_s": 5.0})
    columns = ["utt_id", "image_id", "word_index", "word", "category", "category_id", "similarity",
               "onset_s", "offset_s", "onset_frame", "offset_frame", "pad_frames", "n_frames", "duration_s"]
    return pd.DataFrame(out)[columns]


CATEGORIES = [(1, "person"), (17, "cat"), (18, "dog"), (62, "chair"), (67, "dining table")]


def synthetic_dataset(folder: Path, n_images: int, captions_per_image: int, pairs_per_caption: int,
                      n_frames: int = 64, grid: int = 14, seed: int = 0, image_size=(120, 160),
                      oracle: bool = False) -> dict[str, Path]:
    """Images with 2-3 rectangle/RLE objects, captions naming some of them, and tensors.

    oracle=True puts all attention on the named object's cells during the word (spatial
    softmax then scores AS_object close to 1); otherwise the tensors are random noise.
    """
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    images, annotations, pairs = [], [], []
    utt_ids, image_of_utt, pads, tensors = [], [], [], []
    r = 512 / n_frames
    for i in range(n_images):
        image_id = 1000 + i
        h, w = image_size
        images.append({"id": image_id, "height": h, "width": w})
        chosen = rng.choice(len(CATEGORIES), size=rng.integers(2, 4), replace=False)
        boxes = {}
        for j, c in enumerate(chosen):
            cid = int(CATEGORIES[c][0])
            y0, x0 = int(rng.integers(0, h // 2)), int(rng.integers(0, w // 2))
            y1, x1 = y0 + int(rng.integers(h // 6, h // 2)), x0 + int(rng.integers(w // 6, w // 2))
            boxes[cid] = (y0, x0, y1, x1)
            if j % 2:
                m = np.zeros((h, w), dtype=bool)
                m[y0:y1, x0:x1] = True
                annotations.append({"image_id": image_id, "category_id": cid, "segmentation": rle_of(m)})
            else:
                annotations.append({"image_id": image_id, "category_id": cid,
                                    "segmentation": polygon_rect(x0, y0, x1, y1)})
        for k in range(captions_per_image):
            utt = f"{image_id}_{k}"
            pad = int(rng.integers(0, 200))
            avt = rng.normal(size=(n_frames, grid, grid)).astype(np.float32)
            duration = (512 - pad) * 0.01
            for p in range(pairs_per_caption):
                c = chosen[p % len(chosen)]
                cid, name = CATEGORIES[c]
                onset = round(float(rng.uniform(0, duration - 0.5)), 3)
                offset = round(min(duration, onset + float(rng.uniform(0.15, 0.5))), 3)
                pairs.append({"utt_id": utt, "image_id": image_id, "word_index": p, "word": name.split()[-1],
                              "category": name, "category_id": cid, "onset_s": onset, "offset_s": offset,
                              "pad_frames": pad})
                if oracle and p == 0:
                    y0, x0, y1, x1 = boxes[cid]
                    # cells lying entirely inside the object's box
                    rows = slice(int(np.ceil(y0 * grid / h)), int(np.floor(y1 * grid / h)))
                    cols = slice(int(np.ceil(x0 * grid / w)), int(np.floor(x1 * grid / w)))
                    k0 = int((pad + onset / 0.01) // r)
                    k1 = int(np.ceil((pad + offset / 0.01) / r))
                    avt[k0:k1] = -30.0
                    avt[k0:k1, rows, cols] = 30.0
            utt_ids.append(utt)
            image_of_utt.append(image_id)
            pads.append(pad)
            tensors.append(avt)
    instances = write_instances(folder / "instances.json", images, annotations, CATEGORIES)
    tensors_path = write_tensors_h5(folder / "tensors.h5", np.stack(tensors), utt_ids, image_of_utt, pads, r)
    pairs_path = folder / "pairs.csv"
    pairs_frame(pairs).to_csv(pairs_path, index=False)
    return {"instances": instances, "tensors": tensors_path, "pairs": pairs_path, "folder": folder}
