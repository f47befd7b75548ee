"""Scoring one chunk of utterances: read their tensors, build their images' regions, score.

A `WorkerState` holds what a process needs between chunks: the setup (tensor file,
time mapping, settings), its open tensor reader and its cache of image regions. Each
worker process makes one when it starts (`vgsalign.scores.pool`); a run without workers
makes one in its own process. A chunk arrives as a `ChunkTask` carrying its own pairs
and its images' annotations, so a worker holds one chunk's pairs at a time. Every number depends only on its own utterance (the random baselines
are seeded from (seed, utt_id)), so results do not depend on how the work is split.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import numpy as np

from ..errors import InputError
from .aggregates import stable_seed
from .alignment import (
    SCORE_NAMES, PreparedTensor, chance_levels, exact_frame_totals, exact_word_weights, prepare_tensor,
    reference_frame_bounds, reference_frame_totals, reference_word_weights, score_regions,
)
from .instances import category_mask
from .masks import ImageRegions, RegionCache, reference_mask
from .plan import ChunkTask, ScoringSetup
from .tensor_io import TensorReader

# per-pair numbers a worker returns, in this column order
VALUE_COLUMNS = (
    list(SCORE_NAMES) + [f"random_{s}" for s in SCORE_NAMES] + [f"chance_{s}" for s in SCORE_NAMES]
    + ["mask_area_share", "word_duration_share", "zero_attention"]
)


@dataclass
class ChunkResult:
    pair_index: np.ndarray                 # (n,) global pair index
    status: list[str]                      # "" scored, else an exclusion reason
    values: np.ndarray                     # (n, len(VALUE_COLUMNS))
    conf_pair: np.ndarray                  # (m,) global pair index
    conf_region: np.ndarray                # (m,) category id, OTHER or BACKGROUND
    conf_values: np.ndarray                # (m, 4)


def single_thread_blas():
    """Keep BLAS to one thread while scoring: the matrices are small, so threads only
    contend with the worker processes, and the numbers then do not depend on how many
    threads the machine offers."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:             # without threadpoolctl BLAS keeps its own setting
        return contextlib.nullcontext()
    return threadpool_limits(limits=1, user_api="blas")


def random_tensor(seed: int, utt_id: str, shape: tuple[int, ...]) -> np.ndarray:
    """The baseline tensor: uniform [0, 1), seeded from (seed, utt_id) alone."""
    return np.random.default_rng(stable_seed(seed, "random", utt_id)).random(shape)


def original_random_tensor(seed: int, utt_id: str, n_input_frames: int, grid: int) -> np.ndarray:
    """The original's baseline tensor: uniform [0, 1) at input frames x pixels, (L, grid * grid)."""
    rng = np.random.default_rng(stable_seed(seed, "random-original", utt_id))
    return rng.random((n_input_frames, grid * grid))


class WorkerState:
    """One process's setup, tensor reader and region cache."""

    def __init__(self, setup: ScoringSetup):
        self.setup = setup
        self.reader = TensorReader(setup.info, preloaded=setup.preloaded)
        _, _, height, width = setup.info.shape
        settings = setup.settings
        self.regions = RegionCache(settings.mode, height, width, settings.grid, settings.mask_threshold)

    def close(self) -> None:
        self.reader.close()

    def _word_weights(self, task: ChunkTask, pairs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        t = self.setup.timing
        if self.setup.settings.mode == "reference":
            bounds = reference_frame_bounds(t.n_tensor_frames, int(t.n_input_frames))
            return (reference_word_weights(task.starts[pairs], task.ends[pairs], bounds),
                    reference_frame_totals(bounds))
        return (exact_word_weights(task.starts[pairs], task.ends[pairs], t.n_tensor_frames, t.input_frames_per_frame),
                exact_frame_totals(t.n_tensor_frames, t.input_frames_per_frame))

    def _tensors(self, task: ChunkTask) -> np.ndarray:
        """(n, T, P) tensors of the chunk's rows, in the chunk's order; NaN/inf is an error."""
        info, rows = self.setup.info, task.rows
        order = np.argsort(rows, kind="stable")
        tensors = np.empty((len(rows),) + info.shape[1:])
        tensors[order] = self.reader.read(rows[order])
        tensors = tensors.reshape(len(rows), info.shape[1], -1)
        finite = np.isfinite(tensors).all(axis=(1, 2))
        if not finite.all():
            bad = [task.utt_ids[u] for u in np.flatnonzero(~finite)]
            raise InputError(info.path, f"tensor(s) with NaN or inf values, utterance(s) {bad[:5]}")
        return tensors

    def _image_regions(self, task: ChunkTask, image_id: int) -> ImageRegions:
        image, categories = task.images[image_id]
        try:
            return self.regions.get(image, categories)
        except (ValueError, TypeError, IndexError) as err:   # a segmentation pycocotools cannot draw
            raise InputError(task.instances_path,
                             f"image {image_id}: cannot build its masks ({type(err).__name__}: {err})") from None

    def score_chunk(self, task: ChunkTask) -> ChunkResult:
        settings = self.setup.settings
        tensors = self._tensors(task)
        # softmaxes of the whole chunk at once (the same numbers as one utterance at a time)
        prepared = prepare_tensor(tensors, settings.softmax)
        random_prepared = None
        if settings.random_baseline == "native":
            randoms = np.stack([random_tensor(settings.seed, utt_id, tensors.shape[1:]) for utt_id in task.utt_ids])
            random_prepared = prepare_tensor(randoms, settings.softmax)

        parts = []
        offsets = task.pair_offsets
        image_of_unit = task.image_ids[offsets[:-1]]
        # the chunk's utterances grouped by image (they arrive sorted by image): one batch each
        starts = np.flatnonzero(np.r_[True, image_of_unit[1:] != image_of_unit[:-1]])
        for first, stop in zip(starts, np.r_[starts[1:], len(image_of_unit)]):
            units = np.arange(first, stop)
            pairs = np.arange(offsets[first], offsets[stop])          # the chunk's own pair positions
            pair_utterance = np.repeat(np.arange(len(units)), np.diff(offsets[first: stop + 1]))
            parts.append(self.score_image(
                task=task, prepared=prepared.item(units),
                random_prepared=None if random_prepared is None else random_prepared.item(units),
                units=units, pairs=pairs, pair_utterance=pair_utterance, image_id=int(image_of_unit[first]),
            ))
        result = _concatenate(parts)
        # from the chunk's pair positions to the pairs' rows in pairs.csv
        result.pair_index = task.pair_index[result.pair_index]
        result.conf_pair = task.pair_index[result.conf_pair]
        return result

    def score_image(self, *, task: ChunkTask, prepared: PreparedTensor, random_prepared: PreparedTensor | None,
                    units: np.ndarray, pairs: np.ndarray, pair_utterance: np.ndarray, image_id: int) -> ChunkResult:
        """Scores of the pairs of one image's utterances, and their confusions.

        `prepared` holds S and Q of the U utterance tensors (U, T, P), `random_prepared`
        those of their random tensors (None: the original's random baseline instead);
        units (U,) are the utterances' positions in the chunk, pairs (n_pairs,) the
        pairs' positions in it, and pair_utterance (n_pairs,) names each pair's
        utterance among the U.
        """
        settings, regions = self.setup.settings, self._image_regions(task, image_id)
        categories = task.category_ids[pairs]
        vanished = np.array([regions.vanished(c) for c in categories], dtype=bool)
        status = ["mask_vanishes" if v else "" for v in vanished]
        values = np.full((len(pairs), len(VALUE_COLUMNS)), np.nan)
        keep = np.flatnonzero(~vanished)
        if not len(keep):
            return ChunkResult(pairs, status, values, *_no_confusions())
        kept_pairs, kept_categories, kept_utterance = pairs[keep], categories[keep], pair_utterance[keep]
        word_weights, frame_totals = self._word_weights(task, kept_pairs)
        own = np.array([regions.own_column(c) for c in kept_categories])
        norm = settings.as_word_normalization

        scores = score_regions(prepared, word_weights, frame_totals, regions.weights, regions.cell_totals, norm,
                               word_utterance=kept_utterance)
        if random_prepared is None:
            random_scores = self._original_random_scores(task, units, kept_pairs, kept_utterance, image_id)
        else:
            own_columns, own_index = np.unique(own, return_inverse=True)
            by_region = score_regions(random_prepared, word_weights, frame_totals, regions.weights[:, own_columns],
                                      regions.cell_totals, norm, word_utterance=kept_utterance)
            random_scores = {s: by_region[s][np.arange(len(keep)), own_index] for s in SCORE_NAMES}
        mask_share = np.array([regions.mask_share[c] for c in kept_categories])
        duration_share = word_weights.sum(axis=1) / frame_totals.sum()
        chance = chance_levels(mask_share, duration_share, norm)
        # a word during which the tensor attends nowhere (only possible without softmax)
        frame_mass = np.stack([prepared.s_as.sum(axis=-1), prepared.s_gs.sum(axis=-1)], axis=-1)   # (U, T, 2)
        zero_attention = (np.einsum("wt,wtk->wk", word_weights, frame_mass[kept_utterance]) <= 0).any(axis=1)
        rows_kept = np.arange(len(keep))
        values[keep] = np.stack([scores[s][rows_kept, own] for s in SCORE_NAMES]
                                + [random_scores[s] for s in SCORE_NAMES]
                                + [chance[s] for s in SCORE_NAMES]
                                + [mask_share, duration_share, zero_attention.astype(np.float64)], axis=1)
        return ChunkResult(pairs, status, values, *_confusions(regions, scores, kept_pairs, kept_categories))

    def _original_random_scores(self, task: ChunkTask, units: np.ndarray, pairs: np.ndarray,
                                pair_utterance: np.ndarray, image_id: int) -> dict[str, np.ndarray]:
        """The original's random baseline: a uniform [0, 1) tensor at L input frames x grid x
        grid pixels (512 x 224 x 224 by default), scored without softmax against the pair's
        mask at grid x grid. One utterance at a time: its tensor is L x grid^2 doubles."""
        settings = self.setup.settings
        grid, length = settings.grid, int(self.setup.timing.n_input_frames)
        image = task.images[image_id][0]
        masks = {c: reference_mask(category_mask(image, c), grid, settings.mask_threshold).ravel()
                 for c in np.unique(task.category_ids[pairs])}
        out = {s: np.zeros(len(pairs)) for s in SCORE_NAMES}
        frames = np.arange(length)
        for u in np.unique(pair_utterance):
            members = np.flatnonzero(pair_utterance == u)
            utt_id = task.utt_ids[int(units[u])]
            fine = original_random_tensor(settings.seed, utt_id, length, grid)
            word = ((frames >= task.starts[pairs[members], None]) & (frames < task.ends[pairs[members], None]))
            regions = np.stack([masks[c] for c in task.category_ids[pairs[members]]], axis=1).astype(np.float64)
            # no softmax: S = Q = the tensor itself (uniform [0, 1) needs no clipping)
            got = score_regions(PreparedTensor(fine, fine, fine, fine), word.astype(np.float64), np.ones(length),
                                regions, np.ones(grid * grid), settings.as_word_normalization)
            for s in SCORE_NAMES:
                out[s][members] = got[s][np.arange(len(members)), np.arange(len(members))]
        return out


def _no_confusions() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros((0, len(SCORE_NAMES)))


def _confusions(regions: ImageRegions, scores: dict[str, np.ndarray], pairs: np.ndarray,
                categories: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Confusion rows: each pair against every annotated category, the others together, the background."""
    conf_pair, conf_region, conf_values = [], [], []
    for category in np.unique(categories):
        members = np.flatnonzero(categories == category)
        keys, columns_of = regions.confusion_columns(int(category))
        conf_pair.append(np.repeat(pairs[members], len(keys)))
        conf_region.append(np.tile(keys, len(members)))
        conf_values.append(np.stack([scores[s][members][:, columns_of].ravel() for s in SCORE_NAMES], axis=1))
    if not conf_pair:
        return _no_confusions()
    return np.concatenate(conf_pair), np.concatenate(conf_region), np.concatenate(conf_values)


def _concatenate(parts: list[ChunkResult]) -> ChunkResult:
    if not parts:
        return ChunkResult(np.zeros(0, np.int64), [], np.zeros((0, len(VALUE_COLUMNS))), *_no_confusions())
    return ChunkResult(
        pair_index=np.concatenate([p.pair_index for p in parts]),
        status=[s for p in parts for s in p.status],
        values=np.concatenate([p.values for p in parts]),
        conf_pair=np.concatenate([p.conf_pair for p in parts]),
        conf_region=np.concatenate([p.conf_region for p in parts]),
        conf_values=np.concatenate([p.conf_values for p in parts]),
    )
