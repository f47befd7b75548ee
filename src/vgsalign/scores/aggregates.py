"""Tables over scored pairs: per-category means with bootstrap intervals, confusions.

Bootstrap: the pairs of one utterance share a tensor and are not independent, so the
95% intervals resample utterances (with replacement), not pairs; a resample's mean is
(sum of the scores of its pairs) / (number of its pairs). Each group (a category, or all
pairs) draws from its own generator seeded by (seed, group name), so an interval does
not depend on which other groups exist or on the order they are computed in.
"""

from __future__ import annotations

import hashlib

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
    confidence: float = 0.95, block_elements: int = 1_000_000,
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
        # block is block_elements values, 8 MB per copy, whatever the number of utterances)
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
    rows = []
    for category, group in scored.groupby("category", sort=True):
        row = {"category": category, "category_id": int(group["category_id"].iloc[0])}
        row.update(group_summary(group, n_resamples, seed, f"category:{category}"))
        rows.append(row)
    return pd.DataFrame(rows)


def overall_summary(scored: pd.DataFrame, n_resamples: int, seed: int) -> dict[str, float]:
    return group_summary(scored, n_resamples, seed, "all")


def confusion_tables(
    scored: pd.DataFrame, confusion: pd.DataFrame, category_names: dict[int, str]
) -> dict[str, pd.DataFrame]:
    """Word category x (annotated category + background) tables, one per score.

    `confusion` is long: pair (row position in `scored`), region (category id,
    BACKGROUND or OTHER), and the four scores against that region. Cell (c, d) is the
    mean over ALL pairs of word category c of the score against M_d minus M_c, taking 0
    where d is not annotated in the pair's image; cell (c, c) is the score itself. So a
    row is the average split of the attention: for the object scores own +
    other_categories + background = 1 for every pair, and own + the category columns +
    background = 1 when the other masks do not overlap each other.
    """
    from .masks import BACKGROUND, OTHER

    word_category = scored["category_id"].to_numpy()[confusion["pair"].to_numpy()]
    n_pairs = scored.groupby("category_id").size()
    region_ids = sorted(r for r in confusion["region"].unique() if r >= 0)
    column_of = {r: category_names[r] for r in region_ids}
    column_of[BACKGROUND] = BACKGROUND_COLUMN
    column_of[OTHER] = OTHER_COLUMN
    columns = [category_names[r] for r in sorted(region_ids, key=lambda r: category_names[r])]
    columns += [BACKGROUND_COLUMN, OTHER_COLUMN]
    rows = sorted(n_pairs.index, key=lambda c: category_names[c])
    tables = {}
    for score in SCORE_NAMES:
        sums = (
            pd.DataFrame({"row": word_category, "region": confusion["region"].to_numpy(),
                          "value": confusion[score].to_numpy()})
            .groupby(["row", "region"], sort=True)["value"].sum()
            .unstack(fill_value=0.0)
            .rename(columns=column_of)
        )
        sums = sums.reindex(index=rows, columns=columns, fill_value=0.0)
        table = sums.div(n_pairs.reindex(rows).to_numpy(), axis=0)
        table.insert(0, "n_pairs", n_pairs.reindex(rows).to_numpy())
        table.insert(0, "category", [category_names[c] for c in rows])
        tables[score] = table.reset_index(drop=True)
    return tables


def confusion_counts(scored: pd.DataFrame, confusion: pd.DataFrame, category_names: dict[int, str]) -> pd.DataFrame:
    """How many pairs of each word category have each other category in their image."""
    word_category = scored["category_id"].to_numpy()[confusion["pair"].to_numpy()]
    frame = pd.DataFrame({"row": word_category, "region": confusion["region"].to_numpy()})
    frame = frame[frame["region"] >= 0]
    counts = frame.groupby(["row", "region"]).size().unstack(fill_value=0)
    counts = counts.rename(index=category_names, columns=category_names)
    counts = counts.reindex(index=sorted(counts.index), columns=sorted(counts.columns), fill_value=0)
    counts.index.name = "category"
    return counts.reset_index()
