"""`vgsalign score`: alignment and glancing scores of every test pair, and their tables.

Reads alignment tensors (tensors.h5, .npy or .mat, see `vgsalign.scores.tensor_io`), the test
pairs (pairs.csv) and the COCO instances JSON of the test split; writes to --out:

    pair_scores.csv        one row per scored pair: scores, random-tensor baseline, chance
    excluded_pairs.csv     pairs that could not be scored, each with its reason
    category_scores.csv    per category: counts, means, bootstrap 95% intervals
    confusion_<score>.csv  word category x (annotated category + background), per score
    confusion_counts.csv   how often each category appears in the images of another's pairs
    summary.json           options, inputs, exclusions, overall means, retrieval figures

The scores are computed at the tensor's native resolution with coverage weights
(`vgsalign.scores.alignment`, `vgsalign.scores.masks`): exact, and never an upsampled tensor.
Work is split into chunks of utterances over --workers processes; every number depends
only on its own utterance (the random baseline is seeded from (seed, utt_id)), so the
results do not depend on the number of workers.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import multiprocessing
import os
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tqdm import tqdm

from .. import __version__
from .alignment import (
    NORMALIZATIONS, PreparedTensor, SCORE_NAMES, SOFTMAX_CHOICES, chance_levels, exact_frame_totals, exact_word_weights,
    prepare_tensor, reference_frame_bounds, reference_frame_totals, reference_input_frames,
    reference_word_weights, score_regions, softmax_families,
)
from ..atomic import write_csv, write_json
from ..errors import InputError
from .masks import ImageRegions, Instances, RegionCache, load_instances
from .aggregates import (
    category_table, confusion_counts, confusion_tables, overall_summary, stable_seed,
)
from ..settings import settings_from_json
from .tensor_io import TensorInfo, TensorReader, inspect_tensors

MODES = ("reference", "exact")
OPTION_COLUMNS = ("mode", "softmax", "as_word_normalization")
# per-pair numbers a worker returns, in this column order
VALUE_COLUMNS = (
    list(SCORE_NAMES) + [f"random_{s}" for s in SCORE_NAMES] + [f"chance_{s}" for s in SCORE_NAMES]
    + ["mask_area_share", "word_duration_share", "zero_attention"]
)
EXCLUSION_REASONS = {
    "utterance_not_in_tensors": "the pair's utterance has no tensor (--on-missing exclude)",
    "category_not_in_image": "the image has no non-crowd instance of the pair's category",
    "empty_span": "the word span is empty (offset <= onset)",
    "span_outside_tensor": "the word span reaches outside the time the tensor covers",
    "mask_vanishes": "the category mask is empty (reference: nothing left at grid x grid after threshold)",
}
PAIR_KEY_COLUMNS = ["utt_id", "image_id", "word_index", "word", "category"]


@dataclass
class ScoreSettings:
    mode: str = "reference"
    softmax: str = "both"
    as_word_normalization: str = "object"
    grid: int = 224
    mask_threshold: float = 0.01
    seed: int = 0
    bootstrap: int = 1000

    def validate(self, where: str = "settings") -> None:
        checks = [
            ("mode", self.mode in MODES, f"one of {MODES}"),
            ("softmax", self.softmax in SOFTMAX_CHOICES, f"one of {SOFTMAX_CHOICES}"),
            ("as_word_normalization", self.as_word_normalization in NORMALIZATIONS, f"one of {NORMALIZATIONS}"),
            ("grid", isinstance(self.grid, int) and self.grid >= 1, "a positive integer"),
            ("mask_threshold", 0 <= float(self.mask_threshold) < 1, "a number in [0, 1)"),
            ("seed", isinstance(self.seed, int) and self.seed >= 0, "a non-negative integer"),
            ("bootstrap", isinstance(self.bootstrap, int) and self.bootstrap >= 1, "a positive integer"),
        ]
        for name, ok, expected in checks:
            if not ok:
                raise InputError(where, f"{name} = {getattr(self, name)!r}; expected {expected}")


@dataclass
class TimeMapping:
    """How tensor frames relate to padded 10 ms input frames."""

    n_tensor_frames: int
    input_frames_per_frame: float
    hop_s: float
    n_input_frames: float          # T * r: the input-frame span the tensor covers
    sources: dict[str, str] = field(default_factory=dict)


# ---------------------------------------------------------------- options


def _resolve_value(name: str, flag_value: Any, file_value: Any, fallback: Any, where: str) -> tuple[Any, str]:
    """The tensor file's value wins; an explicit flag that contradicts it is an error."""
    if file_value is not None:
        if flag_value is not None and not math.isclose(float(flag_value), float(file_value), rel_tol=1e-9):
            raise InputError(where, f"--{name.replace('_', '-')} {flag_value} contradicts the file's {name} = {file_value}")
        return file_value, "tensor file"
    if flag_value is not None:
        return flag_value, "command line"
    return fallback, "default"


def time_mapping(info: TensorInfo, frames_per_tensor_frame: float | None, max_frames: int | None,
                 hop_s: float | None, mode: str) -> TimeMapping:
    n_frames = info.shape[1]
    attrs = info.attrs
    hop, hop_source = _resolve_value("hop_s", hop_s, attrs.get("hop_s"), 0.01, info.path)
    max_f, max_source = _resolve_value("max_frames", max_frames, attrs.get("max_frames"), 512, info.path)
    ratio, ratio_source = _resolve_value(
        "frames_per_tensor_frame", frames_per_tensor_frame, attrs.get("input_frames_per_frame"), None, info.path
    )
    if ratio is None:
        ratio, ratio_source = float(max_f) / n_frames, f"max_frames / T ({max_f} / {n_frames})"
    ratio, hop = float(ratio), float(hop)
    if ratio <= 0 or hop <= 0:
        raise InputError(info.path, f"time mapping must be positive (input_frames_per_frame {ratio}, hop_s {hop})")
    if mode == "reference":
        try:
            covered = float(reference_input_frames(n_frames, ratio))
        except ValueError as err:
            raise InputError(info.path, str(err)) from None
    else:
        covered = n_frames * ratio
    return TimeMapping(
        n_tensor_frames=n_frames, input_frames_per_frame=ratio, hop_s=hop, n_input_frames=covered,
        sources={"input_frames_per_frame": ratio_source, "hop_s": hop_source, "max_frames": max_source,
                 "max_frames_value": str(max_f)},
    )


# ---------------------------------------------------------------- pairs


def _first(values, n: int = 5) -> list:
    return [v.item() if hasattr(v, "item") else v for v in list(values)[:n]]


def read_pairs(path: str | os.PathLike, mode: str) -> pd.DataFrame:
    path = Path(path)
    if not path.exists():
        raise InputError(path, "pairs table not found")
    try:
        pairs = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise InputError(path, f"cannot read as CSV ({err})") from None
    needed = ["utt_id", "image_id", "word_index", "word", "category"]
    needed += ["onset_frame", "offset_frame"] if mode == "reference" else ["onset_s", "offset_s", "pad_frames"]
    missing = [c for c in needed if c not in pairs.columns]
    if missing:
        raise InputError(path, f"missing column(s) {missing} (mode {mode})")
    numeric = [c for c in ("image_id", "word_index", "category_id", "onset_frame", "offset_frame",
                           "onset_s", "offset_s", "pad_frames", "n_frames", "duration_s", "similarity")
               if c in pairs.columns]
    for column in numeric:
        values = pd.to_numeric(pairs[column], errors="coerce")
        bad = ~np.isfinite(values.to_numpy(dtype=np.float64))
        if column in needed and bad.any():
            rows = (np.flatnonzero(bad) + 2).tolist()      # +2: header line, 1-based
            raise InputError(path, f"column {column}: {int(bad.sum())} missing or non-numeric value(s), lines {rows[:5]}")
        pairs[column] = values
    for column in ("image_id", "word_index", "onset_frame", "offset_frame", "pad_frames", "category_id"):
        if column in pairs.columns and pairs[column].notna().all():
            pairs[column] = pairs[column].astype(np.int64)
    return pairs


def resolve_categories(pairs: pd.DataFrame, instances: Instances, pairs_path: str) -> np.ndarray:
    """Category id of every pair; names unknown to the annotations are an error."""
    unknown = sorted(set(pairs["category"]) - set(instances.category_ids))
    if unknown:
        raise InputError(pairs_path, f"{len(unknown)} category name(s) not in {instances.path}: {unknown[:5]}")
    ids = pairs["category"].map(instances.category_ids).to_numpy(dtype=np.int64)
    if "category_id" in pairs.columns:
        given = pairs["category_id"].to_numpy()
        wrong = np.flatnonzero(given != ids)
        if len(wrong):
            row = pairs.iloc[wrong[0]]
            raise InputError(pairs_path, f"{len(wrong)} pair(s) whose category_id disagrees with the annotations' "
                                         f"id of its name, first: {row['category']!r} {row['category_id']} "
                                         f"(annotations: {instances.category_ids[row['category']]})")
    return ids


# ---------------------------------------------------------------- the scoring job (shared with workers)


@dataclass
class ScoringJob:
    """Everything a worker needs; inherited by forked workers, pickled once otherwise."""

    info: TensorInfo
    timing: TimeMapping
    settings: ScoreSettings
    instances: Instances
    needed: dict[int, tuple[int, ...]]     # image id -> categories its pairs ask for
    utt_ids: np.ndarray                    # per pair
    image_ids: np.ndarray
    category_ids: np.ndarray
    starts: np.ndarray                     # word span in padded input frames (int in reference mode)
    ends: np.ndarray
    mat_array: np.ndarray | None = None    # .mat tensors, loaded once before the workers start


@dataclass
class ChunkResult:
    pair_index: np.ndarray                 # (n,) global pair index
    status: list[str]                      # "" scored, else an exclusion reason
    values: np.ndarray                     # (n, len(VALUE_COLUMNS))
    conf_pair: np.ndarray                  # (m,) global pair index
    conf_region: np.ndarray                # (m,) category id, OTHER or BACKGROUND
    conf_values: np.ndarray                # (m, 4)
    nonfinite: list[str]                   # utterances whose tensor holds NaN/inf
    error: str = ""


_JOB: ScoringJob | None = None
_READER: TensorReader | None = None
_CACHE: RegionCache | None = None


def _single_thread_blas():
    """Keep BLAS to one thread while scoring: the matrices are small, so threads only
    contend with the worker processes, and the numbers then do not depend on how many
    threads the machine offers."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:             # without threadpoolctl BLAS keeps its own setting
        return contextlib.nullcontext()
    return threadpool_limits(limits=1, user_api="blas")


def _init_worker(job: ScoringJob | None, in_pool: bool) -> None:
    global _JOB, _READER, _CACHE
    if in_pool:
        _single_thread_blas()       # a pool worker: for its whole life
    if job is not None:
        _JOB = job
    _READER = TensorReader(_JOB.info)
    if _JOB.mat_array is not None:
        _READER._array = _JOB.mat_array
    shape = _JOB.info.shape
    _CACHE = RegionCache(_JOB.instances, _JOB.settings.mode, shape[2], shape[3], _JOB.settings.grid,
                         _JOB.settings.mask_threshold, _JOB.needed)


def _word_weights(job: ScoringJob, pairs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    t = job.timing
    if job.settings.mode == "reference":
        bounds = reference_frame_bounds(t.n_tensor_frames, int(t.n_input_frames))
        return reference_word_weights(job.starts[pairs], job.ends[pairs], bounds), reference_frame_totals(bounds)
    return (exact_word_weights(job.starts[pairs], job.ends[pairs], t.n_tensor_frames, t.input_frames_per_frame),
            exact_frame_totals(t.n_tensor_frames, t.input_frames_per_frame))


def score_image(job: ScoringJob, prepared: PreparedTensor, random_prepared: PreparedTensor,
                pairs: np.ndarray, pair_utterance: np.ndarray, regions: ImageRegions) -> dict:
    """Scores of the pairs of one image's utterances, and their confusions.

    `prepared` holds S and Q of the U utterance tensors (U, T, P), `random_prepared`
    those of their random tensors; pair_utterance (n_pairs,) names each pair's utterance.
    """
    categories = job.category_ids[pairs]
    vanished = np.array([regions.vanished(c) for c in categories], dtype=bool)
    status = ["mask_vanishes" if v else "" for v in vanished]
    values = np.full((len(pairs), len(VALUE_COLUMNS)), np.nan)
    keep = np.flatnonzero(~vanished)
    conf = ([], [], [])
    if len(keep):
        kept_pairs, kept_categories, kept_utterance = pairs[keep], categories[keep], pair_utterance[keep]
        word_weights, frame_totals = _word_weights(job, kept_pairs)
        own = np.array([regions.own_column(c) for c in kept_categories])
        rows = np.arange(len(keep))
        norm = job.settings.as_word_normalization

        scores = score_regions(prepared, word_weights, frame_totals, regions.weights, regions.cell_totals, norm,
                               word_utterance=kept_utterance)
        own_columns, own_index = np.unique(own, return_inverse=True)
        random_scores = score_regions(random_prepared, word_weights, frame_totals, regions.weights[:, own_columns],
                                      regions.cell_totals, norm, word_utterance=kept_utterance)
        mask_share = np.array([regions.mask_share[c] for c in kept_categories])
        duration_share = word_weights.sum(axis=1) / frame_totals.sum()
        chance = chance_levels(mask_share, duration_share, norm)
        # a word during which the tensor attends nowhere (only possible without softmax)
        frame_mass = np.stack([prepared.s_as.sum(axis=-1), prepared.s_gs.sum(axis=-1)], axis=-1)   # (U, T, 2)
        attention = np.einsum("wt,wtk->wk", word_weights, frame_mass[kept_utterance])
        zero_attention = (attention <= 0).any(axis=1)

        columns = ([scores[s][rows, own] for s in SCORE_NAMES]
                   + [random_scores[s][rows, own_index] for s in SCORE_NAMES]
                   + [chance[s] for s in SCORE_NAMES]
                   + [mask_share, duration_share, zero_attention.astype(np.float64)])
        values[keep] = np.stack(columns, axis=1)

        # confusion rows: each pair against every annotated category, the others together, the background
        for category in np.unique(kept_categories):
            members = np.flatnonzero(kept_categories == category)
            keys, columns_of = regions.confusion_columns(int(category))
            conf[0].append(np.repeat(kept_pairs[members], len(keys)))
            conf[1].append(np.tile(keys, len(members)))
            conf[2].append(np.stack([scores[s][members][:, columns_of].ravel() for s in SCORE_NAMES], axis=1))
    return {"status": status, "values": values, "conf": conf}


def random_tensor(seed: int, utt_id: str, shape: tuple[int, ...]) -> np.ndarray:
    """The original's baseline tensor: uniform [0, 1), seeded from (seed, utt_id) alone."""
    return np.random.default_rng(stable_seed(seed, "random", utt_id)).random(shape)


def _score_chunk(chunk: list[tuple[int, np.ndarray]]) -> ChunkResult:
    job = _JOB
    rows = np.array([row for row, _ in chunk], dtype=np.int64)
    order = np.argsort(rows, kind="stable")
    tensors = np.empty((len(rows),) + job.info.shape[1:])
    tensors[order] = _READER.read(rows[order])
    n, t = len(rows), job.info.shape[1]
    tensors = tensors.reshape(n, t, -1)
    finite = np.isfinite(tensors).all(axis=(1, 2))
    nonfinite = [job.info.utt_ids[r] for r in rows[~finite]]
    if nonfinite:
        return ChunkResult(np.zeros(0, np.int64), [], np.zeros((0, len(VALUE_COLUMNS))), np.zeros(0, np.int64),
                           np.zeros(0, np.int64), np.zeros((0, len(SCORE_NAMES))), nonfinite)
    # softmaxes of the whole chunk at once (the same numbers as one utterance at a time)
    prepared = prepare_tensor(tensors, job.settings.softmax)
    randoms = np.stack([random_tensor(job.settings.seed, job.info.utt_ids[r], tensors.shape[1:]) for r in rows])
    random_prepared = prepare_tensor(randoms, job.settings.softmax)

    pair_index, status, values = [], [], []
    conf_pair, conf_region, conf_values = [], [], []
    image_of_unit = np.array([int(job.image_ids[pairs[0]]) for _, pairs in chunk])
    # the chunk's utterances grouped by image (they arrive sorted by image): one batch each
    starts = np.flatnonzero(np.r_[True, image_of_unit[1:] != image_of_unit[:-1]])
    for first, stop in zip(starts, np.r_[starts[1:], len(chunk)]):
        image_id = int(image_of_unit[first])
        try:
            regions = _CACHE.get(image_id)
        except Exception as err:   # malformed segmentation: report which image
            return _error_result(f"image {image_id}: cannot build its masks ({type(err).__name__}: {err})")
        units = np.arange(first, stop)
        pairs = np.concatenate([chunk[k][1] for k in units])
        pair_utterance = np.concatenate([np.full(len(chunk[k][1]), i) for i, k in enumerate(units)])
        result = score_image(job, prepared.item(units), random_prepared.item(units), pairs, pair_utterance, regions)
        pair_index.append(pairs)
        status.extend(result["status"])
        values.append(result["values"])
        conf_pair.extend(result["conf"][0])
        conf_region.extend(result["conf"][1])
        conf_values.extend(result["conf"][2])
    n_scores = len(SCORE_NAMES)
    return ChunkResult(
        pair_index=np.concatenate(pair_index) if pair_index else np.zeros(0, np.int64),
        status=status,
        values=np.concatenate(values) if values else np.zeros((0, len(VALUE_COLUMNS))),
        conf_pair=np.concatenate(conf_pair) if conf_pair else np.zeros(0, np.int64),
        conf_region=np.concatenate(conf_region) if conf_region else np.zeros(0, np.int64),
        conf_values=np.concatenate(conf_values) if conf_values else np.zeros((0, n_scores)),
        nonfinite=[],
    )


def _error_result(message: str) -> ChunkResult:
    empty = np.zeros(0, np.int64)
    return ChunkResult(empty, [], np.zeros((0, len(VALUE_COLUMNS))), empty, empty, np.zeros((0, 4)), [], message)


def _run_chunks(job: ScoringJob, chunks: list, workers: int):
    """Yield ChunkResults, in a pool of `workers` processes (or in this one)."""
    global _JOB
    progress = dict(total=len(chunks), desc="scoring", unit="chunk", file=sys.stderr, mininterval=1)
    if workers <= 1 or len(chunks) <= 1:
        _JOB = job
        _init_worker(None, in_pool=False)
        try:
            with _single_thread_blas():
                for chunk in tqdm(chunks, **progress):
                    yield _score_chunk(chunk)
        finally:
            _READER.close()
        return
    methods = multiprocessing.get_all_start_methods()
    if "fork" in methods:
        # forked workers inherit the job (pairs, annotations) without pickling it
        _JOB = job
        context, initargs = multiprocessing.get_context("fork"), (None, True)
    else:
        context, initargs = multiprocessing.get_context("spawn"), (job, True)
    with context.Pool(workers, initializer=_init_worker, initargs=initargs) as pool:
        yield from tqdm(pool.imap(_score_chunk, chunks), **progress)


# ---------------------------------------------------------------- the whole run


def run_scores(
    tensors: str | os.PathLike,
    pairs_csv: str | os.PathLike,
    instances_json: str | os.PathLike,
    out_dir: str | os.PathLike,
    settings: ScoreSettings,
    utt_ids: str | os.PathLike | None = None,
    frames_per_tensor_frame: float | None = None,
    max_frames: int | None = None,
    hop_s: float | None = None,
    workers: int | None = None,
    retrieval: str | os.PathLike | None = None,
    on_missing: str = "error",
    chunk_utterances: int = 64,
) -> dict:
    """Score every pair and write the tables under out_dir; returns the summary."""
    started = time.time()
    settings.validate()
    workers = (os.cpu_count() or 1) if workers is None else max(1, int(workers))
    out_dir = Path(out_dir)
    info = inspect_tensors(tensors, utt_ids)
    timing = time_mapping(info, frames_per_tensor_frame, max_frames, hop_s, settings.mode)
    if settings.mode == "reference" and settings.grid < max(info.shape[2], info.shape[3]):
        raise InputError("grid", f"reference grid {settings.grid} is smaller than the tensor's "
                                 f"{info.shape[2]} x {info.shape[3]} cells")
    pairs = read_pairs(pairs_csv, settings.mode)
    retrieval_figures = _read_retrieval(retrieval)

    image_ids = pairs["image_id"].to_numpy(dtype=np.int64)
    instances = load_instances(instances_json, set(image_ids.tolist()))
    unknown_images = sorted(set(image_ids.tolist()) - set(instances.images))
    if unknown_images:
        raise InputError(pairs_csv, f"{len(unknown_images)} image id(s) not in {instances_json}, "
                                    f"first: {unknown_images[:5]}")
    category_ids = resolve_categories(pairs, instances, str(pairs_csv))

    reason = np.array([""] * len(pairs), dtype=object)
    row_of = {u: i for i, u in enumerate(info.utt_ids)}
    utt = pairs["utt_id"].to_numpy(dtype=object)
    rows = np.array([row_of.get(u, -1) for u in utt], dtype=np.int64)
    missing = sorted(set(utt[rows < 0]))
    if missing:
        message = (f"{len(missing)} utterance(s) of the pairs ({int((rows < 0).sum())} pairs) have no tensor "
                   f"in {tensors}, first: {missing[:5]}")
        if on_missing == "error":
            raise InputError(pairs_csv, message + " (--on-missing exclude scores the rest)")
        print(f"vgsalign score: warning: {message}; excluded", file=sys.stderr)
        reason[rows < 0] = "utterance_not_in_tensors"
    _check_tensor_metadata(info, pairs, rows, tensors)

    # word spans in padded input frames
    if settings.mode == "reference":
        starts = pairs["onset_frame"].to_numpy(dtype=np.int64)
        ends = pairs["offset_frame"].to_numpy(dtype=np.int64)
        tolerance = 0.0
    else:
        pad = pairs["pad_frames"].to_numpy(dtype=np.float64)
        starts = pad + pairs["onset_s"].to_numpy(dtype=np.float64) / timing.hop_s
        ends = pad + pairs["offset_s"].to_numpy(dtype=np.float64) / timing.hop_s
        tolerance = 1e-6
        # a word ending a hair past the tensor (float seconds) is clipped, not dropped
        near = (ends > timing.n_input_frames) & (ends <= timing.n_input_frames + tolerance)
        ends = np.where(near, timing.n_input_frames, ends)
    free = reason == ""
    reason[free & (ends <= starts)] = "empty_span"
    free = reason == ""
    reason[free & ((starts < 0) | (ends > timing.n_input_frames))] = "span_outside_tensor"
    annotated = np.array([c in instances.images[i].segmentations for i, c in zip(image_ids, category_ids)])
    reason[(reason == "") & ~annotated] = "category_not_in_image"

    # work: utterances grouped by image (mask cache hits), in chunks
    ok = np.flatnonzero(reason == "")
    needed: dict[int, set[int]] = {}
    for i in ok:
        needed.setdefault(int(image_ids[i]), set()).add(int(category_ids[i]))
    by_utterance: dict[int, list[int]] = {}
    for i in ok:
        by_utterance.setdefault(int(rows[i]), []).append(int(i))
    conflicting = [info.utt_ids[r] for r, p in by_utterance.items() if len(set(image_ids[p].tolist())) > 1]
    if conflicting:
        raise InputError(pairs_csv, f"{len(conflicting)} utterance(s) paired with more than one image, "
                                    f"first: {conflicting[:5]}")
    order = sorted(by_utterance, key=lambda r: (int(image_ids[by_utterance[r][0]]), r))
    units = [(r, np.array(by_utterance[r], dtype=np.int64)) for r in order]
    chunks = [units[k:k + chunk_utterances] for k in range(0, len(units), chunk_utterances)]

    job = ScoringJob(
        info=info, timing=timing, settings=settings, instances=instances,
        needed={k: tuple(sorted(v)) for k, v in needed.items()},
        utt_ids=utt, image_ids=image_ids, category_ids=category_ids, starts=starts, ends=ends,
    )
    if info.format == "mat":
        from .tensor_io import _load_mat
        job.mat_array = _load_mat(Path(info.path), None)

    values = np.full((len(pairs), len(VALUE_COLUMNS)), np.nan)
    conf_parts = []
    for result in _run_chunks(job, chunks, workers):
        if result.error:
            raise InputError(instances_json, result.error)
        if result.nonfinite:
            raise InputError(tensors, f"tensor(s) with NaN or inf values, utterance(s) {result.nonfinite[:5]}")
        values[result.pair_index] = result.values
        reason[result.pair_index] = np.where(np.array(result.status, dtype=object) == "",
                                             reason[result.pair_index], np.array(result.status, dtype=object))
        conf_parts.append((result.conf_pair, result.conf_region, result.conf_values))

    scored_mask = reason == ""
    if not scored_mask.any():
        raise InputError(pairs_csv, f"no pair could be scored; exclusions: {_count_reasons(reason)}")
    if not np.isfinite(values[scored_mask][:, :len(VALUE_COLUMNS)]).all():   # defensive: never a NaN in a mean
        raise RuntimeError("internal error: a scored pair has a non-finite value")
    return _write_outputs(
        out_dir=out_dir, pairs=pairs, category_ids=category_ids, values=values, reason=reason,
        conf_parts=conf_parts, instances=instances, info=info, timing=timing, settings=settings,
        inputs={"tensors": str(tensors), "pairs": str(pairs_csv), "instances": str(instances_json),
                "retrieval": None if retrieval is None else str(retrieval), "utt_ids": utt_ids and str(utt_ids)},
        retrieval_figures=retrieval_figures, workers=workers, started=started,
    )


def _check_tensor_metadata(info: TensorInfo, pairs: pd.DataFrame, rows: np.ndarray, where) -> None:
    """Where the tensor file records an utterance's image and padding, they must agree."""
    present = rows >= 0
    if info.image_ids is not None:
        bad = present & (info.image_ids[np.where(present, rows, 0)] != pairs["image_id"].to_numpy())
        if bad.any():
            first = pairs["utt_id"].to_numpy()[bad][:5].tolist()
            raise InputError(where, f"{int(bad.sum())} pair(s) whose image_id differs from the tensor file's "
                                    f"for the utterance, first utterances: {first}")
    if info.pad_frames is not None and "pad_frames" in pairs.columns:
        bad = present & (info.pad_frames[np.where(present, rows, 0)] != pairs["pad_frames"].to_numpy())
        if bad.any():
            first = pairs["utt_id"].to_numpy()[bad][:5].tolist()
            raise InputError(where, f"{int(bad.sum())} pair(s) whose pad_frames differ from the tensor file's, "
                                    f"first utterances: {first}")


def _read_retrieval(path) -> dict | None:
    if path is None:
        return None
    try:
        with open(path) as fh:
            return json.load(fh)
    except FileNotFoundError:
        raise InputError(path, "retrieval figures not found") from None
    except json.JSONDecodeError as err:
        raise InputError(path, f"not valid JSON ({err})") from None


def _count_reasons(reason: np.ndarray) -> dict[str, int]:
    names, counts = np.unique(reason[reason != ""].astype(str), return_counts=True)
    return {str(n): int(c) for n, c in zip(names, counts)}


def _write_outputs(*, out_dir: Path, pairs: pd.DataFrame, category_ids: np.ndarray, values: np.ndarray,
                   reason: np.ndarray, conf_parts: list, instances: Instances, info: TensorInfo,
                   timing: TimeMapping, settings: ScoreSettings, inputs: dict, retrieval_figures,
                   workers: int, started: float) -> dict:
    options = {"mode": settings.mode, "softmax": settings.softmax,
               "as_word_normalization": settings.as_word_normalization}
    scored_index = np.flatnonzero(reason == "")
    position = np.full(len(pairs), -1, dtype=np.int64)
    position[scored_index] = np.arange(len(scored_index))

    base = pairs.iloc[scored_index].reset_index(drop=True)
    scored = base[PAIR_KEY_COLUMNS].copy()
    scored["category_id"] = category_ids[scored_index]
    for k, column in enumerate(VALUE_COLUMNS):
        scored[column] = values[scored_index, k]
    scored["zero_attention"] = scored["zero_attention"].astype(bool)
    if "onset_s" in base.columns and "offset_s" in base.columns:
        scored["word_duration_s"] = (base["offset_s"] - base["onset_s"]).to_numpy(dtype=np.float64)
    else:
        scored["word_duration_s"] = (base["offset_frame"] - base["onset_frame"]).to_numpy() * timing.hop_s
    for column in ("onset_s", "offset_s", "onset_frame", "offset_frame", "pad_frames"):
        if column in base.columns:
            scored[column] = base[column].to_numpy()
    for key, value in options.items():
        scored[key] = value

    excluded = pairs.iloc[np.flatnonzero(reason != "")][PAIR_KEY_COLUMNS].copy()
    excluded["reason"] = reason[reason != ""].astype(str)
    for key, value in options.items():
        excluded[key] = value

    categories = category_table(scored, settings.bootstrap, settings.seed)
    for key, value in options.items():
        categories[key] = value

    conf_pair = np.concatenate([p for p, _, _ in conf_parts]) if conf_parts else np.zeros(0, np.int64)
    conf_region = np.concatenate([r for _, r, _ in conf_parts]) if conf_parts else np.zeros(0, np.int64)
    conf_values = np.concatenate([v for _, _, v in conf_parts]) if conf_parts else np.zeros((0, 4))
    keep = position[conf_pair] >= 0
    order = np.lexsort((conf_region[keep], position[conf_pair[keep]]))   # pair order: sums independent of workers
    confusion = pd.DataFrame({"pair": position[conf_pair[keep]][order], "region": conf_region[keep][order]})
    for k, score in enumerate(SCORE_NAMES):
        confusion[score] = conf_values[keep][order, k]
    tables = confusion_tables(scored, confusion, instances.category_names)
    counts_table = confusion_counts(scored, confusion, instances.category_names)

    out_dir.mkdir(parents=True, exist_ok=True)
    write_csv(scored, out_dir / "pair_scores.csv")
    write_csv(excluded, out_dir / "excluded_pairs.csv")
    write_csv(categories, out_dir / "category_scores.csv")
    for score, table in tables.items():
        for key, value in options.items():
            table[key] = value
        write_csv(table, out_dir / f"confusion_{score}.csv")
    write_csv(counts_table, out_dir / "confusion_counts.csv")

    softmax_as, softmax_gs = softmax_families(settings.softmax)
    summary = {
        "options": {
            **asdict(settings),
            "softmax_as_family": softmax_as,
            "softmax_gs_family": softmax_gs,
            "without_softmax": "S = Q = max(A, 0): the tensor clipped at 0, no normalisation before the shares",
            "on_zero_attention": "a frame, cell or word with no attention at all has share 0",
            "random_baseline": "uniform [0, 1) tensor of the same shape per utterance, "
                               "seeded from (seed, utt_id), scored with the same functions and options",
        },
        "inputs": {
            **inputs,
            "tensor_format": info.format,
            "tensor_shape": list(info.shape),
            "tensor_attrs": {k: v for k, v in info.attrs.items() if isinstance(v, (str, int, float, bool))},
            "time_mapping": {
                "input_frames_per_frame": timing.input_frames_per_frame,
                "hop_s": timing.hop_s,
                "input_frames_covered": timing.n_input_frames,
                "sources": timing.sources,
            },
        },
        "counts": {
            "pairs_in_table": int(len(pairs)),
            "pairs_scored": int(len(scored)),
            "pairs_excluded": int(len(excluded)),
            "excluded_by_reason": _count_reasons(reason),
            "exclusion_reasons": {k: v for k, v in EXCLUSION_REASONS.items()},
            "utterances_scored": int(scored["utt_id"].nunique()),
            "images_scored": int(scored["image_id"].nunique()),
            "categories_scored": int(scored["category"].nunique()),
            "pairs_with_zero_attention": int(scored["zero_attention"].sum()),
        },
        "overall": overall_summary(scored, settings.bootstrap, settings.seed),
        "retrieval": retrieval_figures,
        "outputs": ["pair_scores.csv", "excluded_pairs.csv", "category_scores.csv",
                    *[f"confusion_{s}.csv" for s in SCORE_NAMES], "confusion_counts.csv", "summary.json"],
        "vgsalign_version": __version__,
        "workers": workers,
        "seconds": round(time.time() - started, 3),
    }
    write_json(summary, out_dir / "summary.json")     # last: its presence means the run completed
    return summary


# ---------------------------------------------------------------- command line


SETTING_FLAGS = {
    "mode": "--mode", "softmax": "--softmax", "as_word_normalization": "--as-word-normalization",
    "grid": "--grid", "mask_threshold": "--mask-threshold", "seed": "--seed", "bootstrap": "--bootstrap",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vgsalign score",
        description="Alignment and glancing scores of alignment tensors against COCO object masks.",
    )
    parser.add_argument("--tensors", required=True, help="tensors.h5, .npy (N,T,H,W) or .mat (out_layer N,T,H*W)")
    parser.add_argument("--pairs", required=True, help="pairs.csv of the test set")
    parser.add_argument("--instances", required=True, help="COCO instances JSON of the test split")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--settings", help="JSON object with the config's `scores` section (explicit flags must agree)")
    parser.add_argument("--mode", choices=MODES, help="reference (default) | exact")
    parser.add_argument("--softmax", choices=SOFTMAX_CHOICES, help="which families get softmax (default both)")
    parser.add_argument("--as-word-normalization", choices=NORMALIZATIONS, help="object (default) | image")
    parser.add_argument("--grid", type=int, help="reference mask resolution (default 224)")
    parser.add_argument("--mask-threshold", type=float, help="reference resized-mask threshold (default 0.01)")
    parser.add_argument("--seed", type=int, help="random baseline and bootstrap seed (default 0)")
    parser.add_argument("--bootstrap", type=int, help="bootstrap resamples (default 1000)")
    parser.add_argument("--utt-ids", help="utterance ids, one per line (default <tensors stem>.utt_ids.txt "
                                          "for .npy/.mat; overrides utt_id of an .h5)")
    parser.add_argument("--frames-per-tensor-frame", type=float,
                        help="input frames per tensor frame r, when the file does not record it "
                             "(default max_frames / T)")
    parser.add_argument("--max-frames", type=int, help="input frames per utterance (default 512)")
    parser.add_argument("--hop-s", type=float, help="seconds per input frame (default 0.01)")
    parser.add_argument("--workers", type=int, default=None, help="processes (default: all cores)")
    parser.add_argument("--on-missing", choices=("error", "exclude"), default="error",
                        help="pairs whose utterance has no tensor: stop (default) or exclude and report")
    parser.add_argument("--retrieval", help="retrieval.json of training, joined into summary.json")
    return parser


def settings_from_args(args: argparse.Namespace) -> ScoreSettings:
    """--settings (the rule's config slice) plus flags; a flag that contradicts it is an error."""
    settings = settings_from_json(ScoreSettings, args.settings) if args.settings else ScoreSettings()
    for name, flag in SETTING_FLAGS.items():
        value = getattr(args, name)
        if value is None:
            continue
        if args.settings and value != getattr(settings, name):
            raise InputError(flag, f"{value!r} contradicts --settings ({name} = {getattr(settings, name)!r})")
        setattr(settings, name, value)
    settings.validate("--settings" if args.settings else "options")
    return settings


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    settings = settings_from_args(args)
    summary = run_scores(
        tensors=args.tensors, pairs_csv=args.pairs, instances_json=args.instances, out_dir=args.out,
        settings=settings, utt_ids=args.utt_ids, frames_per_tensor_frame=args.frames_per_tensor_frame,
        max_frames=args.max_frames, hop_s=args.hop_s, workers=args.workers, retrieval=args.retrieval,
        on_missing=args.on_missing,
    )
    counts, overall = summary["counts"], summary["overall"]
    print(f"scored {counts['pairs_scored']} pairs ({counts['pairs_excluded']} excluded: "
          f"{counts['excluded_by_reason']}) in {summary['seconds']} s")
    for score in SCORE_NAMES:
        print(f"  {score:10s} {overall[f'{score}_mean']:.4f} "
              f"[{overall[f'{score}_ci_low']:.4f}, {overall[f'{score}_ci_high']:.4f}]  "
              f"random {overall[f'random_{score}_mean']:.4f}  chance {overall[f'chance_{score}_mean']:.4f}")
    return 0


if __name__ == "__main__":
    from ..cli import run_main

    raise SystemExit(run_main("score", main))
