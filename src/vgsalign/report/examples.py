"""Alignment examples for the report: which pairs to show, and what their tensors say.

Choice. Among the scored pairs of pair_scores.csv: the best, the median and the worst by
AS_object, then random ones (seeded) until `n_examples`; never the same pair twice.

What is drawn is what the scores measured. The tensor is prepared with the scoring
run's own options (scores/summary.json: softmax, mode, grid, mask threshold, time
mapping) by the scoring code itself (`prepare_tensor`, the frame weights of
`alignment_scores`, the object's cell weights of `masks.build_image_regions`), and the
AS family's S and Q are shown:

- spatial share (H, W): for each tensor frame k the share of the frame's attention per
  cell, S_kc a_c / (S_k . a) (a_c: the cell's area), averaged over the word's frames
  with the word's frame weights. Its sum over the mask (cells weighed by the share of
  their area inside the mask) is AS_object.
- temporal share (T,): for each cell c the share of its attention over time falling in
  frame k, n_k Q_kc / (sum_j n_j Q_jc) (n_k: the frame's length), averaged over the
  object's pixels. Summed over the word's span (frames weighed by the share of them the
  word covers) it is AS_word with object normalisation (the image normalisation scales
  it by the mask's share of the image).

Time: tensor frame k covers padded input frames [o + b_k, o + b_k+1) (o + k r to
o + (k+1) r for r input frames per tensor frame, o the tensor's input_frames_offset);
with `pad` padding frames before the audio, input frame t starts at (t - pad) * hop seconds after the audio starts. The log-mel rows of the
audio shard use the same padding, so its audio part is rows [pad, pad + n_frames).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from ..scores.alignment import (
    exact_frame_totals, exact_word_weights, prepare_tensor, reference_frame_bounds, reference_frame_totals,
    reference_word_weights,
)
from ..errors import InputError
from ..scores.masks import ImageAnnotations, build_image_regions, category_mask
from ..scores.plan import TimeMapping, spans_on_tensor, word_spans
from ..features.shards import ShardReader
from ..scores.tensor_io import TensorReader, inspect_tensors
from ..tables import table_header


@dataclass(frozen=True)
class ExampleChoice:
    row: int          # position in pair_scores.csv (0-based, data rows)
    reason: str       # why it was chosen, shown in the report


@dataclass
class AlignmentExample:
    """Everything one example figure needs."""

    pair: dict                   # the pair's row of pair_scores.csv
    reason: str
    similarity: float | None     # word-vector similarity word-category (pairs.csv)
    image: np.ndarray            # (h, w, 3) uint8, the image at its own size
    mask: np.ndarray             # (h, w) bool, the category's non-crowd instances
    crowd_mask: np.ndarray       # (h, w) bool, the category's crowd regions (iscrowd 1: drawn, never scored)
    spatial_share: np.ndarray    # (H, W) share of the word's attention per cell (sums to 1)
    temporal_share: np.ndarray   # (T,) share of the object's attention per tensor frame (sums to 1)
    frame_edges_s: np.ndarray    # (T + 1,) tensor frame boundaries, seconds after the audio start
    logmel: np.ndarray           # (n_frames, n_mels) the audio part of the log-mel input
    hop_s: float
    words: pd.DataFrame          # the utterance's words: word_index, word, onset_s, offset_s
    softmax_as: bool             # whether the AS family had the softmaxes
    mode: str
    as_word_normalization: str
    cell_mask_share: np.ndarray  # (H, W) share of each cell's area inside the mask


# ---------------------------------------------------------------- which pairs


def choose_examples(pair_scores: pd.DataFrame, n_examples: int, seed: int) -> list[ExampleChoice]:
    """Best, median and worst pair by as_object, then random pairs (seeded), all distinct."""
    if n_examples <= 0 or pair_scores.empty:
        return []
    # ascending as_object, ties in table order
    order = np.argsort(pair_scores["as_object"].to_numpy(dtype=np.float64), kind="stable")
    ranked = [(int(order[-1]), "best AS_object"), (int(order[(len(order) - 1) // 2]), "median AS_object"),
              (int(order[0]), "worst AS_object")]
    chosen: list[ExampleChoice] = []
    for row, reason in ranked[:n_examples]:
        if row not in {c.row for c in chosen}:
            chosen.append(ExampleChoice(row, reason))
    rest = np.setdiff1d(np.arange(len(pair_scores)), [c.row for c in chosen])
    n_random = min(n_examples - len(chosen), len(rest))
    if n_random > 0:
        picked = np.random.default_rng(seed).choice(rest, size=n_random, replace=False)
        chosen += [ExampleChoice(int(row), f"random (report.seed {seed})") for row in picked]
    return chosen


# ---------------------------------------------------------------- the scoring run's time grid


def frame_weights(pair: dict, n_tensor_frames: int, time_mapping: dict,
                  mode: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(word weights (T,), frame lengths (T,), frame edges (T + 1,) in padded input frames),
    as `vgsalign.scores` computes them for the pair: tensor frame k covers padded input
    frames [o + b_k, o + b_k+1), o the tensor's input_frames_offset (0 when not recorded),
    and the word's span is placed on the tensor by the scores' own `spans_on_tensor`."""
    r = float(time_mapping["input_frames_per_frame"])
    timing = TimeMapping(n_tensor_frames=n_tensor_frames, input_frames_per_frame=r,
                         input_frames_offset=float(time_mapping.get("input_frames_offset", 0.0)),
                         hop_s=float(time_mapping["hop_s"]), n_input_frames=float(time_mapping["input_frames_covered"]))
    starts, ends = word_spans(pd.DataFrame([pair]), timing, mode)
    starts, ends, _ = spans_on_tensor(starts, ends, timing, np.array([""], dtype=object), mode)
    offset = int(timing.input_frames_offset) if mode == "reference" else timing.input_frames_offset
    if mode == "reference":
        bounds = reference_frame_bounds(n_tensor_frames, int(timing.n_input_frames))
        weights = reference_word_weights(starts, ends, bounds)[0]
        return weights, reference_frame_totals(bounds), bounds.astype(np.float64) + offset
    weights = exact_word_weights(starts, ends, n_tensor_frames, r)[0]
    edges = np.arange(n_tensor_frames + 1, dtype=np.float64) * r + offset
    return weights, exact_frame_totals(n_tensor_frames, r), edges


def attention_shares(avt: np.ndarray, softmax: str, word_weights: np.ndarray, frame_totals: np.ndarray,
                     mask_weights: np.ndarray, cell_totals: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(spatial share (P,), temporal share (T,)) of one (T, P) tensor; see the module docstring."""
    prepared = prepare_tensor(avt, softmax)
    s, q = prepared.s_as, prepared.q_as
    frame_mass = s @ cell_totals                                            # (T,) S_k . a
    per_cell = s * cell_totals[None, :] / np.where(frame_mass > 0, frame_mass, np.inf)[:, None]
    spatial = (word_weights @ per_cell) / word_weights.sum()
    cell_mass = frame_totals @ q                                            # (P,) sum_j n_j Q_jc
    per_frame = q * frame_totals[:, None] / np.where(cell_mass > 0, cell_mass, np.inf)[None, :]
    temporal = (per_frame @ mask_weights) / mask_weights.sum()
    return spatial, temporal


# ---------------------------------------------------------------- reading what an example needs


def rows_of_utterances(path: str | os.PathLike, utt_ids: set[str], columns: list[str],
                       chunk_rows: int = 250_000) -> pd.DataFrame:
    """The rows of a test-set table (words.csv, pairs.csv) for a few utterances, read in
    chunks: a table of millions of words never sits in memory whole."""
    path = Path(path)
    table_header(path, columns)
    text = {c: str for c in ("utt_id", "word", "category") if c in columns}
    parts = [chunk[chunk["utt_id"].isin(utt_ids)]
             for chunk in pd.read_csv(path, usecols=columns, dtype=text, na_filter=False, chunksize=chunk_rows)]
    return pd.concat(parts, ignore_index=True)


def _image_annotations(coco, image_id: int, crowd: bool = False) -> ImageAnnotations:
    """An image's segmentations by category: the non-crowd ones (the rule of
    `masks.load_instances`, what is scored) or, with crowd=True, only the crowd regions."""
    info = coco.imgs[image_id]
    image = ImageAnnotations(image_id, int(info["height"]), int(info["width"]))
    for ann in coco.imgToAnns.get(image_id, []):
        if bool(int(ann.get("iscrowd", 0))) == crowd:
            image.segmentations.setdefault(int(ann["category_id"]), []).append(ann["segmentation"])
    return image


def _load_image(path: Path, height: int, width: int) -> np.ndarray:
    from PIL import Image

    if not path.is_file():
        raise InputError(path, "image of an alignment example not found")
    try:
        with Image.open(path) as im:
            rgb = np.asarray(im.convert("RGB"))
    except OSError as err:
        raise InputError(path, f"cannot read the image ({err})") from None
    if rgb.shape[:2] != (height, width):
        raise InputError(path, f"image is {rgb.shape[1]} x {rgb.shape[0]}, the instances file says {width} x {height}")
    return rgb


def _pair_maps(avt: np.ndarray, pair: dict, coco, instances_json, options: dict, mapping: dict, grid: tuple[int, int]):
    """The pair's annotations and what the scores measured of its tensor (T, H*W): the
    spatial and temporal shares, the tensor frame edges and each cell's share in the mask."""
    image_id, category_id = int(pair["image_id"]), int(pair["category_id"])
    if image_id not in coco.imgs:
        raise InputError(instances_json, f"image {image_id} of pair_scores.csv is not in the instances file")
    annotations = _image_annotations(coco, image_id)
    regions = build_image_regions(annotations, [category_id], options["mode"], grid[0], grid[1],
                                  int(options["grid"]), float(options["mask_threshold"]))
    mask_weights = regions.weights[:, regions.own_column(category_id)]
    word_weights, frame_totals, edges = frame_weights(pair, avt.shape[0], mapping, options["mode"])
    spatial, temporal = attention_shares(avt, options["softmax"], word_weights, frame_totals,
                                         mask_weights, regions.cell_totals)
    return annotations, spatial, temporal, edges, mask_weights / regions.cell_totals


def _audio_of(audio: ShardReader, utt: str, pair: dict) -> tuple[np.ndarray, int]:
    """The audio part of the utterance's log-mel input and its padding frames."""
    try:
        item = audio.get(utt)
    except KeyError:
        raise InputError(audio.paths[0], f"utterance {utt!r} is not in the audio shards "
                                         f"({len(audio.paths)} files)") from None
    pad = int(item["pad_frames"])
    if pad != int(pair["pad_frames"]):
        raise InputError(audio.paths[0], f"utterance {utt!r}: pad_frames {pad} in the shard, "
                                         f"{int(pair['pad_frames'])} in pair_scores.csv")
    return np.asarray(item["logmel"], dtype=np.float32)[pad:pad + int(item["n_frames"])], pad


def _similarity(pairs: pd.DataFrame | None, pair: dict) -> float | None:
    """The word-category similarity of pairs.csv, if given."""
    if pairs is None:
        return None
    match = pairs[(pairs["utt_id"] == str(pair["utt_id"])) & (pairs["word_index"] == int(pair["word_index"]))
                  & (pairs["category"] == pair["category"])]
    return float(match["similarity"].iloc[0]) if len(match) else None


def load_examples(
    choices: Sequence[ExampleChoice],
    pair_scores: pd.DataFrame,
    scores_summary: dict,
    tensors: str | os.PathLike,
    coco,
    instances_json: str | os.PathLike,
    images_dir: str | os.PathLike,
    audio_shards: Sequence[str | os.PathLike],
    words_csv: str | os.PathLike,
    pairs_csv: str | os.PathLike | None = None,
) -> list[AlignmentExample]:
    """The data of each chosen pair (coco: a pycocotools COCO of the test split's instances)."""
    if not choices:
        return []
    wanted = {str(pair_scores.iloc[c.row]["utt_id"]) for c in choices}
    words = rows_of_utterances(words_csv, wanted, ["utt_id", "word_index", "word", "onset_s", "offset_s"])
    pairs = None if pairs_csv is None else rows_of_utterances(pairs_csv, wanted, ["utt_id", "word_index", "category",
                                                                                 "similarity"])
    options, inputs = scores_summary["options"], scores_summary["inputs"]
    mapping = inputs["time_mapping"]
    info = inspect_tensors(tensors, inputs.get("utt_ids"))
    if list(info.shape[1:]) != list(inputs["tensor_shape"][1:]):
        raise InputError(tensors, f"tensors shaped {info.shape}, but the scores were computed on "
                                  f"{tuple(inputs['tensor_shape'])}; rerun the scores")
    _, n_tensor_frames, grid_h, grid_w = info.shape
    row_of = {u: i for i, u in enumerate(info.utt_ids)}
    reader, audio = TensorReader(info), ShardReader(audio_shards, key="utt_id")
    hop = float(mapping["hop_s"])
    examples = []
    try:
        for choice in choices:
            pair = pair_scores.iloc[choice.row].to_dict()
            utt, category_id = str(pair["utt_id"]), int(pair["category_id"])
            if utt not in row_of:
                raise InputError(tensors, f"no tensor for utterance {utt!r} of pair_scores.csv")
            avt = reader.read(np.array([row_of[utt]]))[0].reshape(n_tensor_frames, grid_h * grid_w)
            annotations, spatial, temporal, edges, cell_share = _pair_maps(
                avt, pair, coco, instances_json, options, mapping, (grid_h, grid_w))
            logmel, pad = _audio_of(audio, utt, pair)
            file_name = coco.imgs[int(pair["image_id"])]["file_name"]
            examples.append(AlignmentExample(
                pair=pair, reason=choice.reason, similarity=_similarity(pairs, pair),
                image=_load_image(Path(images_dir) / file_name, annotations.height, annotations.width),
                mask=category_mask(annotations, category_id),
                crowd_mask=category_mask(_image_annotations(coco, int(pair["image_id"]), crowd=True), category_id),
                spatial_share=spatial.reshape(grid_h, grid_w), temporal_share=temporal,
                frame_edges_s=(edges - pad) * hop, logmel=logmel, hop_s=hop,
                words=words[words["utt_id"] == utt].sort_values("word_index").drop(columns="utt_id"),
                softmax_as=bool(options["softmax_as_family"]), mode=str(options["mode"]),
                as_word_normalization=str(options["as_word_normalization"]),
                cell_mask_share=cell_share.reshape(grid_h, grid_w),
            ))
    finally:
        reader.close()
        audio.close()
    return examples
