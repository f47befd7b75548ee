"""Planning a scoring run: settings, the tensors' time mapping, the pairs, and the work.

`plan_scoring` reads everything the scores need except the tensors themselves (the
tensor file's shape, ids and attributes; the pairs table; the COCO instances of the
pairs' images), decides which pairs can be scored and why the others cannot, and cuts
the work into chunks of utterances grouped by image. Nothing here reads a tensor.

`inspect_scoring` reads only the tensor file's shape, ids and attributes: the worker
processes start after it, before the pairs and annotations are read, and receive each
chunk's pairs and annotations with the chunk (`ScoringPlan.task`), so their memory does
not grow with the number of pairs.
"""

from __future__ import annotations

import math
import os
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..errors import InputError
from ..settings import settings_from_dict
from ..tables import table_header
from .alignment import NORMALIZATIONS, SOFTMAX_CHOICES, reference_input_frames
from .instances import ON_ERROR_CHOICES, ImageAnnotations, Instances, load_instances
from .tensor_io import TensorInfo, inspect_tensors, load_mat

MODES = ("reference", "exact")
RANDOM_BASELINES = ("native", "original")
EXCLUSION_REASONS = {
    "utterance_not_in_tensors": "the pair's utterance has no tensor (--on-missing exclude)",
    "category_not_in_image": "the image has no non-crowd instance of the pair's category",
    "empty_span": "the word span is empty (offset <= onset)",
    "span_outside_tensor": "the word span reaches outside the input frames, or lies wholly in the margin "
                           "that input_frames_offset leaves uncovered",
    "mask_vanishes": "the category mask is empty (reference: nothing left at grid x grid after threshold)",
}
# in exact mode a word ending this little past the input frames (float seconds) is clipped, not dropped
EXACT_END_TOLERANCE = 1e-6


@dataclass
class ScoreSettings:
    """The config's `scores` section (meanings and defaults: src/vgsalign/config.schema.yaml)."""

    mode: str
    softmax: str
    as_word_normalization: str
    grid: int
    mask_threshold: float
    seed: int
    bootstrap: int
    on_error: str           # a malformed annotation: stop, or skip it
    random_baseline: str    # native | original (512 x 224 x 224)

    def validate(self, where: str = "settings") -> None:
        checks = [
            ("mode", self.mode in MODES, f"one of {MODES}"),
            ("softmax", self.softmax in SOFTMAX_CHOICES, f"one of {SOFTMAX_CHOICES}"),
            ("as_word_normalization", self.as_word_normalization in NORMALIZATIONS, f"one of {NORMALIZATIONS}"),
            ("grid", isinstance(self.grid, int) and self.grid >= 1, "a positive integer"),
            ("mask_threshold", 0 <= float(self.mask_threshold) < 1, "a number in [0, 1)"),
            ("seed", isinstance(self.seed, int) and self.seed >= 0, "a non-negative integer"),
            ("bootstrap", isinstance(self.bootstrap, int) and self.bootstrap >= 1, "a positive integer"),
            ("on_error", self.on_error in ON_ERROR_CHOICES, f"one of {ON_ERROR_CHOICES}"),
            ("random_baseline", self.random_baseline in RANDOM_BASELINES, f"one of {RANDOM_BASELINES}"),
        ]
        for name, ok, expected in checks:
            if not ok:
                raise InputError(where, f"{name} = {getattr(self, name)!r}; expected {expected}")
        if self.random_baseline == "original" and self.mode != "reference":
            raise InputError(where, "random_baseline = 'original' is the original's 512 x grid x grid tensor "
                                    "and needs mode = 'reference'")


def score_settings(**values: Any) -> ScoreSettings:
    """The scores slice from `values`, the keys left out taken from the schema's defaults
    (a hand-built ScoreSettings, e.g. score_settings(bootstrap=20))."""
    return settings_from_dict(ScoreSettings, values, where="scores", section="scores")


@dataclass(frozen=True)
class FrameSettings:
    """What the config's `frames` section says about the input frames (None: not given)."""

    hop_s: float | None
    max: int | None


@dataclass
class TimeMapping:
    """How tensor frames relate to padded input frames: frame k covers input frames
    [offset + k r, offset + (k + 1) r)."""

    n_tensor_frames: int
    input_frames_per_frame: float
    input_frames_offset: float
    hop_s: float
    n_input_frames: float          # T * r: the input-frame span the tensor covers
    sources: dict[str, str] = field(default_factory=dict)


def _resolve_value(name: str, given: Any, file_value: Any, fallback: Any, where: str) -> tuple[Any, str]:
    """The tensor file's value wins; a given value that contradicts it is an error."""
    if file_value is not None:
        if given is not None and not math.isclose(float(given), float(file_value), rel_tol=1e-9):
            raise InputError(where, f"{name} {given} (command line or --frames) contradicts the file's "
                                    f"{name} = {file_value}")
        return file_value, "tensor file"
    if given is not None:
        return given, "command line"
    return fallback, "default"


def time_mapping(info: TensorInfo, *, frames_per_tensor_frame: float | None, frames: FrameSettings,
                 mode: str) -> TimeMapping:
    n_frames = info.shape[1]
    attrs = info.attrs
    hop, hop_source = _resolve_value("hop_s", frames.hop_s, attrs.get("hop_s"), 0.01, info.path)
    max_f, max_source = _resolve_value("max_frames", frames.max, attrs.get("max_frames"), 512, info.path)
    ratio, ratio_source = _resolve_value(
        "frames_per_tensor_frame", frames_per_tensor_frame, attrs.get("input_frames_per_frame"), None, info.path
    )
    if ratio is None:
        ratio, ratio_source = float(max_f) / n_frames, f"max_frames / T ({max_f} / {n_frames})"
    recorded = attrs.get("input_frames_offset", 0.0)
    ratio, hop = float(ratio), float(hop)
    if ratio <= 0 or hop <= 0:
        raise InputError(info.path, f"time mapping must be positive (input_frames_per_frame {ratio}, hop_s {hop})")
    try:
        recorded = float(recorded)
    except (TypeError, ValueError):
        raise InputError(info.path, f"attribute input_frames_offset = {recorded!r} is not a number") from None
    if not math.isfinite(recorded):
        raise InputError(info.path, f"attribute input_frames_offset = {recorded} is not finite")
    offset, offset_source = recorded, "tensor file" if "input_frames_offset" in attrs else "default"
    if mode == "reference":
        # whole input frames: each goes to the tensor frame whose span holds its centre t + 0.5
        offset = float(math.ceil(recorded - 0.5))
        if offset != recorded:
            offset_source += f" ({recorded}; reference mode: the input frames whose centres it covers)"
        try:
            covered = float(reference_input_frames(n_frames, ratio))
        except ValueError as err:
            raise InputError(info.path, str(err)) from None
    else:
        covered = n_frames * ratio
    return TimeMapping(
        n_tensor_frames=n_frames, input_frames_per_frame=ratio, input_frames_offset=offset, hop_s=hop,
        n_input_frames=covered,
        sources={"input_frames_per_frame": ratio_source, "hop_s": hop_source, "max_frames": max_source,
                 "max_frames_value": str(max_f), "input_frames_offset": offset_source},
    )


# ---------------------------------------------------------------- pairs


PAIR_NUMERIC_COLUMNS = ("image_id", "word_index", "category_id", "onset_frame", "offset_frame", "onset_s",
                        "offset_s", "pad_frames", "n_frames", "duration_s", "similarity")


def _read_pairs_table(path: Path) -> pd.DataFrame:
    """pairs.csv with its numeric columns parsed while it is read (a string per cell of a
    600,000-pair table costs far more than the table); a numeric column with a value that
    is not a number stays text, for `read_pairs` to name the lines."""
    try:
        text = {c: str for c in table_header(path) if c not in PAIR_NUMERIC_COLUMNS}
        return pd.read_csv(path, dtype=text, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise InputError(path, f"cannot read as CSV ({err})") from None


def read_pairs(path: str | os.PathLike, mode: str) -> pd.DataFrame:
    path = Path(path)
    if not path.exists():
        raise InputError(path, "pairs table not found")
    pairs = _read_pairs_table(path)
    needed = ["utt_id", "image_id", "word_index", "word", "category"]
    needed += ["onset_frame", "offset_frame"] if mode == "reference" else ["onset_s", "offset_s", "pad_frames"]
    missing = [c for c in needed if c not in pairs.columns]
    if missing:
        raise InputError(path, f"missing column(s) {missing} (mode {mode})")
    numeric = [c for c in PAIR_NUMERIC_COLUMNS if c in pairs.columns]
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


def _check_tensor_metadata(info: TensorInfo, pairs: pd.DataFrame, rows: np.ndarray) -> None:
    """Where the tensor file records an utterance's image and padding, they must agree."""
    present = rows >= 0
    if info.image_ids is not None:
        bad = present & (info.image_ids[np.where(present, rows, 0)] != pairs["image_id"].to_numpy())
        if bad.any():
            first = pairs["utt_id"].to_numpy()[bad][:5].tolist()
            raise InputError(info.path, f"{int(bad.sum())} pair(s) whose image_id differs from the tensor file's "
                                        f"for the utterance, first utterances: {first}")
    if info.pad_frames is not None and "pad_frames" in pairs.columns:
        bad = present & (info.pad_frames[np.where(present, rows, 0)] != pairs["pad_frames"].to_numpy())
        if bad.any():
            first = pairs["utt_id"].to_numpy()[bad][:5].tolist()
            raise InputError(info.path, f"{int(bad.sum())} pair(s) whose pad_frames differ from the tensor file's, "
                                        f"first utterances: {first}")


# ---------------------------------------------------------------- the plan


@dataclass
class ScoringSetup:
    """What every worker needs whatever the chunk, and nothing that grows with the pairs:
    a worker process starts with it before the pairs and annotations are read (so it
    never holds them), and gets the rest one chunk at a time (`ChunkTask`)."""

    info: TensorInfo                       # path, format, shape, attributes (no per-utterance lists)
    timing: TimeMapping
    settings: ScoreSettings
    preloaded: np.ndarray | None = None    # a .mat file's tensors, read once before the workers start


@dataclass
class ChunkTask:
    """One chunk of utterances with everything needed to score it.

    Utterance u of the chunk has tensor row rows[u] and the chunk's pairs
    pair_offsets[u]:pair_offsets[u + 1] (in pair order); its image's annotations are in
    images, with the categories the image's pairs ask for over the whole run."""

    index: int
    rows: np.ndarray                       # (U,) tensor rows, images together
    utt_ids: list[str]                     # (U,)
    pair_offsets: np.ndarray               # (U + 1,)
    pair_index: np.ndarray                 # (n,) each pair's row in pairs.csv
    image_ids: np.ndarray                  # (n,)
    category_ids: np.ndarray               # (n,)
    starts: np.ndarray                     # (n,) word span in input frames from the tensor's first covered frame
    ends: np.ndarray
    images: dict[int, tuple[ImageAnnotations, tuple[int, ...]]]
    instances_path: str                    # named in an error about an image's masks


@dataclass
class ScoringPlan:
    """The pairs, why some are excluded, and the chunks, as flat arrays: the scored pairs
    sorted by (image, tensor row, pair), cut into utterances (runs of one tensor row) and
    chunks of utterances."""

    pairs_path: str
    pairs: pd.DataFrame
    reason: np.ndarray                     # per pair: "" to score, else why it is excluded
    clipped: np.ndarray                    # per pair: its span reaches into the margin no tensor frame covers
    setup: ScoringSetup
    instances: Instances
    utt_ids: list[str]                     # per tensor row
    needed: dict[int, tuple[int, ...]]     # image id -> categories its pairs ask for
    rows: np.ndarray                       # per pair: its tensor row (-1: none)
    image_ids: np.ndarray                  # per pair
    category_ids: np.ndarray
    starts: np.ndarray
    ends: np.ndarray
    order: np.ndarray                      # the scored pairs, sorted by (image, tensor row, pair)
    unit_offsets: np.ndarray               # utterance k: order[unit_offsets[k]:unit_offsets[k + 1]]
    chunk_utterances: int

    @property
    def n_units(self) -> int:
        return len(self.unit_offsets) - 1

    @property
    def n_chunks(self) -> int:
        return -(-self.n_units // self.chunk_utterances)

    def chunk_units(self, index: int) -> range:
        first = index * self.chunk_utterances
        return range(first, min(first + self.chunk_utterances, self.n_units))

    def task(self, index: int) -> ChunkTask:
        units = self.chunk_units(index)
        offsets = self.unit_offsets[units.start: units.stop + 1]
        pair_index = self.order[offsets[0]: offsets[-1]]
        rows = self.rows[pair_index[offsets[:-1] - offsets[0]]]
        image_ids = self.image_ids[pair_index]
        images = {int(i): (self.instances.images[int(i)], self.needed[int(i)]) for i in np.unique(image_ids)}
        return ChunkTask(
            index=index, rows=rows, utt_ids=[self.utt_ids[r] for r in rows], pair_offsets=offsets - offsets[0],
            pair_index=pair_index, image_ids=image_ids, category_ids=self.category_ids[pair_index],
            starts=self.starts[pair_index], ends=self.ends[pair_index], images=images,
            instances_path=self.instances.path,
        )

    def describe_chunk(self, index: int) -> str:
        units = self.chunk_units(index)
        first = self.utt_ids[self.rows[self.order[self.unit_offsets[units.start]]]]
        last = self.utt_ids[self.rows[self.order[self.unit_offsets[units.stop - 1]]]]
        return f"chunk {index + 1}/{self.n_chunks} ({len(units)} utterances, {first} .. {last})"


def word_spans(pairs: pd.DataFrame, timing: TimeMapping, mode: str) -> tuple[np.ndarray, np.ndarray]:
    """Each word's [start, end) in padded input frames (whole frames in reference mode)."""
    if mode == "reference":
        return pairs["onset_frame"].to_numpy(dtype=np.int64), pairs["offset_frame"].to_numpy(dtype=np.int64)
    pad = pairs["pad_frames"].to_numpy(dtype=np.float64)
    return (pad + pairs["onset_s"].to_numpy(dtype=np.float64) / timing.hop_s,
            pad + pairs["offset_s"].to_numpy(dtype=np.float64) / timing.hop_s)


def spans_on_tensor(starts: np.ndarray, ends: np.ndarray, timing: TimeMapping, reason: np.ndarray,
                     mode: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Word spans counted from the tensor's first covered input frame, clipped to what it covers.

    The tensor covers [o, o + L). A word must lie within [min(0, o), max(0, o) + L): the
    input frames, widened by the |o| frames the offset moves past one end; the part of it
    in that margin, which no tensor frame covers, is clipped. Marks the reasons of the
    words that cannot be scored; returns (starts, ends, clipped)."""
    offset, length = timing.input_frames_offset, timing.n_input_frames
    low, high = min(0.0, offset), max(0.0, offset) + length
    if mode == "exact":     # a word ending a hair past the end (float seconds) is clipped, not dropped
        ends = np.where((ends > high) & (ends <= high + EXACT_END_TOLERANCE), high, ends)
    reason[(reason == "") & (ends <= starts)] = "empty_span"
    reason[(reason == "") & ((starts < low) | (ends > high))] = "span_outside_tensor"
    if mode == "reference":
        offset, length = int(offset), int(length)
    local_starts, local_ends = np.clip(starts - offset, 0, length), np.clip(ends - offset, 0, length)
    reason[(reason == "") & (local_ends <= local_starts)] = "span_outside_tensor"
    clipped = (reason == "") & ((local_starts != starts - offset) | (local_ends != ends - offset))
    return local_starts, local_ends, clipped


def _tensor_rows(info: TensorInfo, pairs: pd.DataFrame, reason: np.ndarray, on_missing: str,
                 pairs_csv: str | os.PathLike) -> np.ndarray:
    """Each pair's row in the tensor file (-1: none), marking or refusing missing utterances."""
    row_of = {u: i for i, u in enumerate(info.utt_ids)}
    utt = pairs["utt_id"].to_numpy(dtype=object)
    rows = np.array([row_of.get(u, -1) for u in utt], dtype=np.int64)
    missing = sorted(set(utt[rows < 0]))
    if missing:
        message = (f"{len(missing)} utterance(s) of the pairs ({int((rows < 0).sum())} pairs) have no tensor "
                   f"in {info.path}, first: {missing[:5]}")
        if on_missing == "error":
            raise InputError(pairs_csv, message + " (--on-missing exclude scores the rest)")
        print(f"vgsalign score-pairs: warning: {message}; excluded", file=sys.stderr)
        reason[rows < 0] = "utterance_not_in_tensors"
    return rows


def _units(rows: np.ndarray, image_ids: np.ndarray, ok: np.ndarray, info: TensorInfo,
           pairs_csv) -> tuple[np.ndarray, np.ndarray]:
    """The pairs to score sorted by (image, tensor row, pair), and where each utterance's
    run starts: an image's utterances come together, so its masks are built once."""
    by_row = ok[np.lexsort((image_ids[ok], rows[ok]))]
    same_row = rows[by_row][1:] == rows[by_row][:-1]
    conflict = same_row & (image_ids[by_row][1:] != image_ids[by_row][:-1])
    if conflict.any():
        bad_rows = np.unique(rows[by_row][1:][conflict])
        first_pair = {int(r): int(i) for i, r in reversed(list(zip(ok, rows[ok])))}
        bad_rows = sorted(bad_rows.tolist(), key=lambda r: first_pair[r])       # in pair order
        raise InputError(pairs_csv, f"{len(bad_rows)} utterance(s) paired with more than one image, "
                                    f"first: {[info.utt_ids[r] for r in bad_rows[:5]]}")
    order = ok[np.lexsort((ok, rows[ok], image_ids[ok]))]
    starts = np.flatnonzero(np.r_[True, rows[order][1:] != rows[order][:-1]]) if len(order) else np.zeros(0, int)
    return order, np.r_[starts, len(order)].astype(np.int64)


def inspect_scoring(*, tensors: str | os.PathLike, settings: ScoreSettings, frames: FrameSettings,
                    utt_ids: str | os.PathLike | None, frames_per_tensor_frame: float | None
                    ) -> tuple[TensorInfo, ScoringSetup]:
    """The tensor file's shape, ids and time mapping (not its values), and the workers' setup."""
    info = inspect_tensors(tensors, utt_ids)
    timing = time_mapping(info, frames_per_tensor_frame=frames_per_tensor_frame, frames=frames, mode=settings.mode)
    if settings.mode == "reference" and settings.grid < max(info.shape[2], info.shape[3]):
        raise InputError("grid", f"reference grid {settings.grid} is smaller than the tensor's "
                                 f"{info.shape[2]} x {info.shape[3]} cells")
    lean = replace(info, utt_ids=[], pad_frames=None, image_ids=None)
    setup = ScoringSetup(info=lean, timing=timing, settings=settings,
                         preloaded=load_mat(Path(info.path)) if info.format == "mat" else None)
    return info, setup


def plan_scoring(*, tensors: str | os.PathLike, pairs_csv: str | os.PathLike, instances_json: str | os.PathLike,
                 settings: ScoreSettings, frames: FrameSettings, utt_ids: str | os.PathLike | None,
                 frames_per_tensor_frame: float | None, on_missing: str, chunk_utterances: int,
                 inspected: tuple[TensorInfo, ScoringSetup] | None = None) -> ScoringPlan:
    """Read the inputs (all but the tensors' values), decide what is scored, cut it into chunks.

    inspected: what `inspect_scoring` gave for these tensors, when already called."""
    info, setup = inspected or inspect_scoring(tensors=tensors, settings=settings, frames=frames, utt_ids=utt_ids,
                                               frames_per_tensor_frame=frames_per_tensor_frame)
    timing = setup.timing
    pairs = read_pairs(pairs_csv, settings.mode)
    image_ids = pairs["image_id"].to_numpy(dtype=np.int64)
    instances = load_instances(instances_json, set(image_ids.tolist()), on_error=settings.on_error)
    unknown_images = sorted(set(image_ids.tolist()) - set(instances.images))
    if unknown_images:
        raise InputError(pairs_csv, f"{len(unknown_images)} image id(s) not in {instances_json}, "
                                    f"first: {unknown_images[:5]}")
    category_ids = resolve_categories(pairs, instances, str(pairs_csv))

    reason = np.array([""] * len(pairs), dtype=object)
    rows = _tensor_rows(info, pairs, reason, on_missing, pairs_csv)
    _check_tensor_metadata(info, pairs, rows)
    starts, ends, clipped = spans_on_tensor(*word_spans(pairs, timing, settings.mode), timing, reason,
                                             settings.mode)
    annotated = instances.annotated(image_ids, category_ids)
    reason[(reason == "") & ~annotated] = "category_not_in_image"
    clipped &= reason == ""

    ok = np.flatnonzero(reason == "")
    needed: dict[int, set[int]] = {}
    for image_id, category_id in zip(image_ids[ok].tolist(), category_ids[ok].tolist()):
        needed.setdefault(image_id, set()).add(category_id)
    order, unit_offsets = _units(rows, image_ids, ok, info, pairs_csv)
    return ScoringPlan(
        pairs_path=str(pairs_csv), pairs=pairs, reason=reason, clipped=clipped, setup=setup, instances=instances,
        utt_ids=info.utt_ids, needed={k: tuple(sorted(v)) for k, v in needed.items()}, rows=rows,
        image_ids=image_ids, category_ids=category_ids, starts=starts, ends=ends, order=order,
        unit_offsets=unit_offsets, chunk_utterances=max(1, int(chunk_utterances)),
    )
