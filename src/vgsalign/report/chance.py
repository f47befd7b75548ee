"""Beyond the original: the scores against their chance levels.

A score's chance level is what attention spread evenly would score: for the object scores
(AS_object, GS_object) the share of the image the mask covers, for the word scores
(AS_word, GS_word) the word's share of the tensor's time. A big object or a long word
scores high by its size alone, so the report also shows

- the chance-corrected score (score - chance) / (1 - chance) per category: 0 at chance,
  1 for a perfect score, negative below chance (from category_scores.csv's means);
- every pair's score against its mask area and its word duration (pair_scores.csv),
  with the pair's chance level beside it.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from ..scores.alignment import SCORE_NAMES
from .figures import CHANCE_COLOUR, MODEL_COLOUR, RANDOM_COLOUR, SCORE_LABELS

OBJECT_SCORES = ("as_object", "gs_object")
WORD_SCORES = ("as_word", "gs_word")
CHANCE_POINTS_COLOUR = "#3a3a3a"   # dark grey: visible over the blue points


def chance_corrected(score, chance):
    """(score - chance) / (1 - chance): 0 at chance, 1 at the best score; NaN when chance is 1."""
    score, chance = np.asarray(score, dtype=np.float64), np.asarray(chance, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(chance < 1.0, (score - chance) / (1.0 - chance), np.nan)


def corrected_by_category(categories: pd.DataFrame) -> pd.DataFrame:
    """Per category: n_pairs and, per score, the model's and the random tensor's
    chance-corrected means (columns `<score>` and `random_<score>`)."""
    table = pd.DataFrame({"category": categories["category"].astype(str), "n_pairs": categories["n_pairs"]})
    for s in SCORE_NAMES:
        chance = categories[f"chance_{s}_mean"]
        table[s] = chance_corrected(categories[f"{s}_mean"], chance)
        table[f"random_{s}"] = chance_corrected(categories[f"random_{s}_mean"], chance)
    return table.reset_index(drop=True)


def chance_corrected_bars(categories: pd.DataFrame) -> Figure:
    """One panel per score: the chance-corrected mean of the model and of the random
    tensor per category, sorted by the model's corrected AS_object (best on top)."""
    table = corrected_by_category(categories).sort_values(["as_object", "category"], ascending=[True, False],
                                                          kind="stable", na_position="first")
    n = len(table)
    y = np.arange(n)
    fig = Figure(figsize=(15, max(3.6, 1.9 + 0.3 * n)), layout="constrained")
    axes = fig.subplots(1, len(SCORE_NAMES), sharey=True)
    for ax, s in zip(axes, SCORE_NAMES):
        ax.barh(y + 0.19, table[s], height=0.36, color=MODEL_COLOUR, label="model")
        ax.barh(y - 0.19, table[f"random_{s}"], height=0.36, color=RANDOM_COLOUR, label="random tensor")
        ax.axvline(0, color=CHANCE_COLOUR, lw=1, label="chance (0)")
        values = np.r_[table[s].to_numpy(dtype=np.float64), table[f"random_{s}"].to_numpy(dtype=np.float64), 0.0]
        low, high = np.nanmin(values), np.nanmax(values)
        margin = max(0.02, 0.08 * (high - low))
        ax.set_xlim(min(0.0, low) - margin, max(0.0, high) + margin)
        ax.set_xlabel(f"chance-corrected {SCORE_LABELS[s]}\n(score - chance) / (1 - chance)")
        ax.set_title(f"{SCORE_LABELS[s]} above chance", fontsize=10)
        ax.grid(axis="x", color="#e5e5e5")
        ax.set_axisbelow(True)
        if n > 25:
            ax.tick_params(axis="x", top=True, labeltop=True)
    axes[0].set_yticks(y, [f"{c} (n={int(k)})" for c, k in zip(table["category"], table["n_pairs"])])
    axes[0].set_ylim(-0.6, n - 0.4)
    axes[0].set_ylabel("spoken word's category (n = pairs)")
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncol=3, fontsize=9, frameon=False)
    return fig


def _scatter_panels(pairs: pd.DataFrame, scores: tuple[str, str], x_column: str, x_label: str) -> Figure:
    """Per score, every pair's score (blue) and its chance level (grey) against x_column."""
    fig = Figure(figsize=(13, 4.8), layout="constrained")
    axes = fig.subplots(1, len(scores), sharey=True)
    x = pairs[x_column].to_numpy(dtype=np.float64)
    # many pairs: smaller, fainter points, so that dense regions still show their density
    size, alpha = (4.0, 0.6) if len(pairs) <= 5000 else (1.5, 0.15)
    for ax, s in zip(axes, scores):
        ax.plot(x, pairs[s].to_numpy(dtype=np.float64), ".", ms=size, color=MODEL_COLOUR, alpha=alpha,
                label=f"{SCORE_LABELS[s]} (model), n={len(pairs):,}")
        # chance on top: where the model's points sit on it, they hide nothing of it
        ax.plot(x, pairs[f"chance_{s}"].to_numpy(dtype=np.float64), ".", ms=size * 0.6, color=CHANCE_POINTS_COLOUR,
                alpha=min(1.0, 3 * alpha), label=f"chance (each pair's), n={len(pairs):,}")
        ax.set_xlabel(x_label)
        ax.set_title(f"{SCORE_LABELS[s]} against {x_label.split(' (')[0]}", fontsize=10)
        ax.set_ylim(-0.02, 1.02)
        ax.grid(color="#ececec")
        ax.set_axisbelow(True)
        ax.legend(loc="upper left", fontsize=8, markerscale=4)
    axes[0].set_ylabel("score of the pair (share, 0 to 1)")
    return fig


def scatter_mask_area(pairs: pd.DataFrame) -> Figure:
    """AS_object and GS_object against the share of the image the mask covers."""
    fig = _scatter_panels(pairs, OBJECT_SCORES, "mask_area_share", "mask area (share of the image, 0 to 1)")
    for ax in fig.axes:
        ax.set_xlim(0, min(1.0, max(0.05, float(pairs["mask_area_share"].max()) * 1.05) if len(pairs) else 1.0))
    return fig


def scatter_word_duration(pairs: pd.DataFrame) -> Figure:
    """AS_word and GS_word against the spoken word's duration."""
    fig = _scatter_panels(pairs, WORD_SCORES, "word_duration_s", "word duration (s)")
    for ax in fig.axes:
        ax.set_xlim(0, max(0.1, float(pairs["word_duration_s"].max()) * 1.05) if len(pairs) else 1.0)
    return fig
