"""Tables over scored pairs: per-category means with bootstrap intervals, confusions.

Bootstrap: the pairs of one utterance share a tensor and are not independent, so the
95% intervals resample utterances (with replacement), not pairs; a resample's mean is
(sum of the scores of its pairs) / (number of its pairs). Each group (a category, or all
pairs) draws from its own generator seeded by (seed, group name), so an interval does
not depend on which other groups exist or on the order they are computed in.
"""

from __future__ import annotations

import hashlib
from typing import Iterable

import numpy as np
import pandas as pd

from .alignment import SCORE_NAMES

# pair_scores.csv columns averaged per category, with an interval where marked
MEAN_COLUMNS = (
    [(name, True) for name in SCORE_NAMES]
    + [(f"random_{name}", True) for name in SCORE_NAMES]
    + [(f"chance_{name}", False) for name in SCORE_NAMES]
)
BACKGROUND_COLUMN = "background"
OTHER_COLUMN = "other_categories"


def stable_seed(*parts: object) -> int:
    """A 64-bit integer from text parts, the same on every machine and Python run."""
    digest = hashlib.sha256("\x1f".join(str(p) for p in parts).encode()).digest()
    return int.from_bytes(digest[:8], "little")


def bootstrap_intervals(
    utterance_codes: np.ndarray, values: np.ndarray, n_resamples: int, seed: int,
    confidence: float = 0.95, block_elements: int = 250_000,
) -> tuple[np.ndarray, np.ndarray]:
    """Percentile intervals of per-column means, resampling utterances.

    utterance_codes (n_pairs,) integer utterance of each pair; values (n_pairs, k).
    Returns (low, high), each (k,).
    """
    values = np.asarray(values, dtype=np.float64)
    _, codes = np.unique(utterance_codes, return_inverse=True)
    n_utt = int(codes.max()) + 1
    sums = np.zeros((n_utt, values.shape[1]))
    np.add.at(sums, codes, values)
    counts = np.bincount(codes, minlength=n_utt).astype(np.float64)
    rng = np.random.default_rng(seed)
    means = np.empty((n_resamples, values.shape[1]))
    block = max(1, block_elements // n_utt)
    for start in range(0, n_resamples, block):
        size = min(block, n_resamples - start)
        draws = rng.integers(0, n_utt, size=(size, n_utt))
        # how often each utterance was drawn, per resample (in place and freed early: a
        # block is block_elements values, 2 MB per copy, whatever the number of utterances)
        draws += (np.arange(size) * n_utt)[:, None]
        counted = np.bincount(draws.ravel(), minlength=size * n_utt)
        del draws
        multiplicity = counted.reshape(size, n_utt).astype(np.float64)
        del counted
        means[start:start + size] = (multiplicity @ sums) / (multiplicity @ counts)[:, None]
    tail = (1.0 - confidence) / 2.0 * 100.0
    return np.percentile(means, tail, axis=0), np.percentile(means, 100.0 - tail, axis=0)


def group_summary(group: pd.DataFrame, n_resamples: int, seed: int, name: str) -> dict[str, float]:
    """Means (with intervals) of one group of scored pairs."""
    row: dict[str, float] = {
        "n_pairs": int(len(group)),
        "n_utterances": int(group["utt_id"].nunique()),
        "mean_mask_area_share": float(group["mask_area_share"].mean()),
        "mean_word_duration_s": float(group["word_duration_s"].mean()),
    }
    with_interval = [column for column, interval in MEAN_COLUMNS if interval]
    low, high = bootstrap_intervals(
        group["utt_id"].to_numpy(), group[with_interval].to_numpy(), n_resamples, stable_seed(seed, "bootstrap", name)
    )
    for column, _ in MEAN_COLUMNS:
        row[f"{column}_mean"] = float(group[column].mean())
    for column, lo, hi in zip(with_interval, low, high):
        row[f"{column}_ci_low"] = float(lo)
        row[f"{column}_ci_high"] = float(hi)
    return row


def category_table(scored: pd.DataFrame, n_resamples: int, seed: int) -> pd.DataFrame:
    """One row per category (sorted by name) with counts, means and 95% intervals."""
    columns = ["utt_id", "category_id", "mask_area_share", "word_duration_s", *[c for c, _ in MEAN_COLUMNS]]
    codes, names = pd.factorize(scored["category"], sort=True)
    # each category's pairs in pair order, taken a category at a time and only the
    # columns the summary reads (a groupby would first copy the whole frame sorted)
    order = np.argsort(codes, kind="stable")
    bounds = np.searchsorted(codes[order], np.arange(len(names) + 1))
    rows = []
    for k, category in enumerate(names):
        members = order[bounds[k]:bounds[k + 1]]
        group = pd.DataFrame({c: scored[c].to_numpy()[members] for c in columns})
        row = {"category": category, "category_id": int(group["category_id"].iloc[0])}
        row.update(group_summary(group, n_resamples, seed, f"category:{category}"))
        rows.append(row)
    return pd.DataFrame(rows)


def overall_summary(scored: pd.DataFrame, n_resamples: int, seed: int) -> dict[str, float]:
    return group_summary(scored, n_resamples, seed, "all")


def _positions(keys: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """Where each of `ids` is in the sorted `keys` (every id must be there)."""
    position = np.minimum(np.searchsorted(keys, ids), len(keys) - 1)
    if not (keys[position] == ids).all():
        raise RuntimeError("internal error: a confusion row of a category the annotations do not name")
    return position


class ConfusionSums:
    """The confusion rows summed as the chunks arrive: per (word category, region) the
    four scores' sums and the number of rows, instead of a row per pair and region.

    A confusion row is one scored pair against one region of its image (an annotated
    category, BACKGROUND or OTHER) with its four scores. Chunks are folded in chunk order,
    those that finish early waiting for the ones before them, so the sums (and every
    table) do not depend on the number of workers or the order they finish in."""

    def __init__(self, category_ids: Iterable[int]):
        from .masks import BACKGROUND, OTHER

        self.categories = np.array(sorted({int(c) for c in category_ids}), dtype=np.int64)
        # region columns: background, other categories, then the categories (sorted, as
        # BACKGROUND < OTHER < 0 <= every category id)
        self.regions = np.r_[[BACKGROUND, OTHER], self.categories].astype(np.int64)
        self.sums = np.zeros((len(self.categories), len(self.regions), len(SCORE_NAMES)))
        self.counts = np.zeros((len(self.categories), len(self.regions)), dtype=np.int64)
        self._next, self._waiting = 0, {}

    @property
    def category_counts(self) -> np.ndarray:
        """counts against the annotated categories only (word category x category)."""
        return self.counts[:, 2:]

    def add(self, index: int, word_category: np.ndarray, region: np.ndarray, values: np.ndarray) -> None:
        """Chunk `index`'s rows: each row's word category, region and (m, 4) scores."""
        self._waiting[index] = (word_category, region, values)
        while self._next in self._waiting:
            self._fold(*self._waiting.pop(self._next))
            self._next += 1

    def _fold(self, word_category: np.ndarray, region: np.ndarray, values: np.ndarray) -> None:
        if not len(region):
            return
        cells = (_positions(self.categories, word_category), _positions(self.regions, region))
        np.add.at(self.sums, cells, values)
        np.add.at(self.counts, cells, 1)

    def check_complete(self, n_chunks: int) -> None:
        if self._next != n_chunks or self._waiting:
            raise RuntimeError(f"internal error: confusion rows of {self._next} of {n_chunks} chunks folded")


def confusion_tables(
    scored: pd.DataFrame, confusion: ConfusionSums, category_names: dict[int, str]
) -> dict[str, pd.DataFrame]:
    """Word category x (annotated category + background) tables, one per score.

    Cell (c, d) is the mean over ALL pairs of word category c of the score against M_d
    minus M_c, taking 0 where d is not annotated in the pair's image; cell (c, c) is the
    score itself. So a row is the average split of the attention: for the object scores
    own + other_categories + background = 1 for every pair, and own + the category columns
    + background = 1 when the other masks do not overlap each other.
    """
    n_pairs = scored.groupby("category_id").size()
    rows = sorted(n_pairs.index, key=lambda c: category_names[c])
    present = np.flatnonzero(confusion.category_counts.sum(axis=0) > 0).tolist()
    present = sorted(present, key=lambda k: category_names[int(confusion.categories[k])])
    columns = [2 + k for k in present] + [0, 1]                # the categories, background, other categories
    names = [category_names[int(confusion.categories[k])] for k in present] + [BACKGROUND_COLUMN, OTHER_COLUMN]
    row_positions = np.searchsorted(confusion.categories, rows)
    counts = n_pairs.reindex(rows).to_numpy()
    tables = {}
    for k, score in enumerate(SCORE_NAMES):
        sums = confusion.sums[np.ix_(row_positions, columns, [k])][:, :, 0]
        table = pd.DataFrame(sums / counts[:, None], columns=names)
        table.insert(0, "n_pairs", counts)
        table.insert(0, "category", [category_names[c] for c in rows])
        tables[score] = table
    return tables


def confusion_counts(confusion: ConfusionSums, category_names: dict[int, str]) -> pd.DataFrame:
    """How many pairs of each word category have each other category in their image."""
    counts = confusion.category_counts
    names = [category_names[int(c)] for c in confusion.categories]
    rows = sorted(np.flatnonzero(counts.sum(axis=1) > 0).tolist(), key=names.__getitem__)
    columns = sorted(np.flatnonzero(counts.sum(axis=0) > 0).tolist(), key=names.__getitem__)
    table = pd.DataFrame(counts[np.ix_(rows, columns)], columns=[names[k] for k in columns])
    table.insert(0, "category", [names[k] for k in rows])
    return table
