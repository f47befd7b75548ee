"""The report's figures (matplotlib, Agg): each function takes result tables and returns a Figure.

Figures are drawn from the tables the stages wrote and show their numbers as they are:
the similarity histogram from similarities.csv (best label per noun as the pairs step
chooses it), the training curves from history.csv and retrieval.json, the per-category
bars from category_scores.csv, the heatmaps from confusion_<score>.csv and
confusion_counts.csv, the alignment examples from pair_scores.csv plus the maps of
`vgsalign.report.examples`. Sizes grow with the number of categories so that every label
keeps its size (about 10 pt at the 100 dpi the report embeds them at).

Figures are made with `matplotlib.figure.Figure` directly (no pyplot, no global state)
and laid out by the constrained layout engine, which keeps labels from overlapping.
"""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from matplotlib.patches import Patch, Rectangle

from ..scores.alignment import SCORE_NAMES
from ..testdata.similarities import best_per_noun

DPI = 100
SCORE_LABELS = {"as_object": "AS_object", "as_word": "AS_word", "gs_object": "GS_object", "gs_word": "GS_word"}
SCORE_QUESTIONS = {
    "as_object": "share of the attention inside the object, per frame of the word",
    "as_word": "share of the object pixels' attention over time inside the word",
    "gs_object": "share of the word's summed attention map inside the object",
    "gs_word": "share of the object's summed attention curve inside the word",
}
MODEL_COLOUR, RANDOM_COLOUR, CHANCE_COLOUR = "#1f5fa8", "#e08a2c", "black"
WORD_COLOUR, OUTLINE_COLOUR, PADDING_COLOUR = "#16b3c7", "#00e5ff", "#d9d9d9"
CROWD_COLOUR = "#39ff14"  # lime: apart from the cyan outline and from the inferno heat
# columns of a confusion table that are not regions
CONFUSION_META = ("category", "n_pairs", "other_categories", "mode", "softmax", "as_word_normalization")


def png_bytes(fig: Figure, dpi: int = DPI) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    return buffer.getvalue()


def placeholder(message: str) -> Figure:
    """A small figure saying why a figure is missing (a declared output must still exist)."""
    fig = Figure(figsize=(8, 1.2))
    fig.text(0.5, 0.5, message, ha="center", va="center", fontsize=11, wrap=True)
    return fig


# ---------------------------------------------------------------- test set


def similarity_histogram(similarities: pd.DataFrame, threshold: float, vectors_name: str = "") -> Figure:
    """Every noun-label similarity and the best label per noun, with the threshold."""
    best = best_per_noun(similarities)
    low = min(-0.2, float(np.floor(similarities["similarity"].min() * 10) / 10)) if len(similarities) else -0.2
    bins = np.linspace(low, 1.0, int(round((1.0 - low) / 0.02)) + 1)
    fig = Figure(figsize=(8.5, 4), layout="constrained")
    ax = fig.add_subplot()
    ax.hist(similarities["similarity"], bins=bins, alpha=0.5, color="#7f7f7f",
            label=f"every noun-label pair (n={len(similarities):,})")
    ax.hist(best["similarity"], bins=bins, alpha=0.75, color=MODEL_COLOUR,
            label=f"best label per noun (n={len(best):,})")
    ax.axvline(threshold, color="black", linestyle="--", label=f"match.threshold = {threshold:g}")
    name = f" ({vectors_name})" if vectors_name else ""
    ax.set_title(f"Word-vector similarity of each noun to the labels of its image{name}")
    ax.set_xlabel("word-vector similarity (cosine, gensim n_similarity)")
    ax.set_ylabel("count (noun-label pairs)")
    ax.legend(loc="upper left", fontsize=9)
    return fig


# ---------------------------------------------------------------- training


def training_curves(history: pd.DataFrame, retrieval: dict) -> Figure:
    """Losses and validation recalls per epoch, chance levels, the epoch kept as best."""
    fig = Figure(figsize=(13.5, 4.3), layout="constrained")
    ax_loss, ax_a2i, ax_i2a = fig.subplots(1, 3)
    epochs = history["epoch"].to_numpy()
    best = retrieval.get("best_epoch")
    ax_loss.plot(epochs, history["train_loss"], "o-", label="training loss")
    ax_loss.plot(epochs, history["val_loss"], "s-", label="validation loss")
    ax_loss.set(title="Loss per epoch", xlabel="epoch", ylabel="loss (mean per pair)")
    chance = retrieval.get("chance", {})
    pooled = retrieval.get("pooled_r10", {})
    for ax, direction, title, chance_key in (
        (ax_a2i, "a2i", "Image retrieval from captions", "image_retrieval_from_captions"),
        (ax_i2a, "i2a", "Caption retrieval from images", "caption_retrieval_from_images"),
    ):
        for k, style in (("1", "o-"), ("5", "s-"), ("10", "^-")):
            ax.plot(epochs, history[f"r{k}_{direction}"], style, label=f"R@{k}")
        ax.plot(epochs, history[f"pooled_r10_{direction}"], "x--",
                label=f"pooled R@10 (pools of {_pool_sizes(history)})")
        if "r10" in chance.get(chance_key, {}):
            ax.axhline(chance[chance_key]["r10"], color="grey", linestyle=":", label="chance R@10")
        if "chance" in pooled:
            ax.axhline(pooled["chance"], color="black", linestyle=(0, (1, 3)), lw=0.8, label="chance pooled R@10")
        ax.set(title=f"{title} (validation)", xlabel="epoch", ylabel="recall (share of queries)", ylim=(0, 1))
    for ax in (ax_loss, ax_a2i, ax_i2a):
        if best is not None:
            ax.axvline(best, color="#2ca02c", lw=1, label=f"best epoch ({best}, by {retrieval.get('select_by', '?')})")
        ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.18), ncol=2, frameon=False)
        if len(epochs) <= 20:
            ax.set_xticks(epochs)
    return fig


def _pool_sizes(history: pd.DataFrame) -> str:
    sizes = sorted(set(int(s) for s in history["pool_size"]))
    return ", ".join(str(s) for s in sizes) + " images"


# ---------------------------------------------------------------- scores per category


def category_bars(categories: pd.DataFrame, score: str) -> Figure:
    """Model vs random tensor (bootstrap 95% intervals) vs chance per category, best on top."""
    label = SCORE_LABELS[score]
    table = categories.sort_values([f"{score}_mean", "category"], ascending=[True, False], kind="stable")
    n = len(table)
    y = np.arange(n)
    fig = Figure(figsize=(9, 1.6 + 0.34 * n), layout="constrained")
    ax = fig.add_subplot()
    for column, offset, colour, name in ((score, 0.19, MODEL_COLOUR, "model"),
                                        (f"random_{score}", -0.19, RANDOM_COLOUR, "random tensor")):
        mean = table[f"{column}_mean"].to_numpy(dtype=np.float64)
        error = np.vstack([mean - table[f"{column}_ci_low"].to_numpy(dtype=np.float64),
                           table[f"{column}_ci_high"].to_numpy(dtype=np.float64) - mean])
        ax.barh(y + offset, mean, height=0.36, color=colour, label=f"{name}, mean with 95% interval",
                xerr=np.clip(error, 0, None), error_kw={"elinewidth": 1, "capsize": 2, "ecolor": "#333333"})
    chance = table[f"chance_{score}_mean"].to_numpy(dtype=np.float64)
    ax.scatter(chance, y, marker="|", s=260, linewidths=2, color=CHANCE_COLOUR, zorder=3, label="chance (analytic)")
    ax.set_yticks(y, [f"{c} (n={int(k)})" for c, k in zip(table["category"], table["n_pairs"])])
    ax.set_ylim(-0.6, n - 0.4)
    high = np.nanmax(np.r_[table[f"{score}_ci_high"], table[f"random_{score}_ci_high"], chance, 1e-3])
    ax.set_xlim(0, min(1.0, high * 1.08) if high < 0.9 else 1.0)
    ax.set_xlabel(f"{label}: {SCORE_QUESTIONS[score]} (0 to 1)")
    ax.set_ylabel("category of the spoken word (n = pairs)")
    ax.set_title(f"{label} per category, sorted by the model's mean")
    if n > 25:                                  # a tall figure: the scale at the top as well
        ax.tick_params(axis="x", top=True, labeltop=True)
    ax.grid(axis="x", color="#e5e5e5")
    ax.set_axisbelow(True)
    handles, labels = ax.get_legend_handles_labels()
    order = [labels.index(name) for name in sorted(labels, key=lambda name: name.startswith("chance"))]
    fig.legend([handles[i] for i in order], [labels[i] for i in order], loc="outside lower center", ncol=3,
               fontsize=9, frameon=False)
    return fig


# ---------------------------------------------------------------- confusions


def confusion_heatmap(table: pd.DataFrame, counts: pd.DataFrame, score: str) -> Figure:
    """Word category (rows) x annotated category + background (columns) of one score.

    Cells of categories that never share an image with the row's pairs (confusion_counts.csv
    = 0) are grey: their 0 means "never there", not "there and ignored".
    """
    label = SCORE_LABELS[score]
    rows = table["category"].astype(str).tolist()
    columns = [c for c in table.columns if c not in CONFUSION_META]
    values = table[columns].to_numpy(dtype=np.float64)
    category_columns = [c for c in columns if c != "background"]
    together = (counts.set_index("category").reindex(index=rows, columns=category_columns, fill_value=0)
                .to_numpy(dtype=np.float64) > 0)
    shown = np.ones_like(values, dtype=bool)
    shown[:, [columns.index(c) for c in category_columns]] = together
    annotate = len(rows) <= 20 and len(columns) <= 22
    cell = 0.5 if annotate else max(0.17, min(0.32, 10.0 / len(columns)))
    fig = Figure(figsize=(3.2 + cell * len(columns) + 1.3, 2.6 + cell * len(rows)), layout="constrained")
    ax = fig.add_subplot()
    top = max(float(values.max()) if values.size else 0.0, 1e-9)
    cmap = colormaps["viridis"].with_extremes(bad="#d0d0d0")
    image = ax.imshow(np.ma.masked_array(values, ~shown), cmap=cmap, vmin=0, vmax=top, aspect="auto",
                      interpolation="nearest")
    font = 9 if annotate else (8 if len(columns) <= 45 else 7)
    ax.set_xticks(np.arange(len(columns)), columns, rotation=90, fontsize=font)
    ax.set_yticks(np.arange(len(rows)), [f"{c} (n={int(k)})" for c, k in zip(rows, table["n_pairs"])], fontsize=font)
    ax.tick_params(length=2)
    for i, category in enumerate(rows):                       # outline the diagonal (the score itself)
        if category in columns:
            ax.add_patch(Rectangle((columns.index(category) - 0.5, i - 0.5), 1, 1, fill=False,
                                   edgecolor="white", lw=1.5))
    if annotate:
        for i in range(len(rows)):
            for j in range(len(columns)):
                if shown[i, j]:
                    v = values[i, j]
                    ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=7.5,
                            color="black" if v > 0.6 * top else "white")
    ax.set_xlabel("region of the image: annotated category (pixels of the word's own category removed) or background")
    ax.set_ylabel("category of the spoken word (n = pairs)")
    ax.set_title(f"{label} confusion: mean {label} against each region (outlined: the word's own category;\n"
                 f"grey: the category never appears in an image of the row's pairs)", fontsize=10)
    # a colour bar of at most 6 inches beside a tall matrix
    fig.colorbar(image, ax=ax, shrink=min(0.9, 6.0 / (cell * len(rows))),
                 label=f"mean {label} against the region (0 to 1)")
    return fig


# ---------------------------------------------------------------- alignment examples


def alignment_example(example) -> Figure:
    """The image with the word's attention and the object's outline; beside it the
    spectrogram, the object's attention over time, and the words under the time axis.

    `example` is a `vgsalign.report.examples.AlignmentExample`."""
    pair = example.pair
    h, w = example.image.shape[:2]
    image_width_in = float(np.clip(4.2 * w / h, 2.8, 6.0))
    fig = Figure(figsize=(image_width_in + 9.2, 5.6), layout="constrained")
    grid = fig.add_gridspec(3, 2, width_ratios=[image_width_in + 1.0, 8.2], height_ratios=[2.0, 1.35, 0.75])
    ax_image = fig.add_subplot(grid[:, 0])
    ax_spec = fig.add_subplot(grid[0, 1])
    ax_time = fig.add_subplot(grid[1, 1], sharex=ax_spec)
    ax_words = fig.add_subplot(grid[2, 1], sharex=ax_spec)

    _draw_where(fig, ax_image, example)
    _draw_when(fig, ax_spec, ax_time, ax_words, example)
    word, category = str(pair["word"]), str(pair["category"])
    scores = "   ".join(f"{SCORE_LABELS[s]} {pair[s]:.3f}" for s in SCORE_NAMES)
    fig.suptitle(f"{example.reason}: “{word}” → {category}   |   {scores}\n"
                 f"utterance {pair['utt_id']}, image {int(pair['image_id'])}"
                 + (f", word-vector similarity {example.similarity:.2f}" if example.similarity is not None else ""),
                 fontsize=10.5)
    return fig


def _draw_where(fig: Figure, ax_image, example) -> None:
    """The image, the attention of the word's frames over it, the category's outlines."""
    pair = example.pair
    h, w = example.image.shape[:2]
    word, category = str(pair["word"]), str(pair["category"])
    family = "softmax over cells (S)" if example.softmax_as else "tensor clipped at 0 (no softmax)"
    ax_image.imshow(example.image)
    # the heat is opaque where the attention is and transparent where it is not, so the
    # image stays visible under cells the word ignores; the scale reaches at least 4x the
    # uniform share, so that attention spread evenly shows as a light veil, not as a wall
    uniform = 1.0 / example.spatial_share.size
    norm = Normalize(vmin=0, vmax=max(float(example.spatial_share.max()), 4 * uniform))
    heat = colormaps["inferno"](norm(example.spatial_share))
    heat[..., 3] = 0.85 * np.sqrt(norm(example.spatial_share))
    ax_image.imshow(heat, extent=(0, w, h, 0), interpolation="nearest")
    if example.mask.any():
        ax_image.contour(example.mask.astype(np.float32), levels=[0.5], colors=[OUTLINE_COLOUR], linewidths=1.8)
    legend = f"x (pixels); cyan outline: {category} (annotated)"
    # crowd regions of the category are shown, dashed, so that attention on them reads as
    # what it is: on the named thing, but outside the ground truth the scores use
    if example.crowd_mask.any():
        ax_image.contour(example.crowd_mask.astype(np.float32), levels=[0.5], colors=[CROWD_COLOUR],
                         linewidths=1.5, linestyles="dashed")
        legend += "\ngreen dashes: crowd region (iscrowd 1, not scored)"
    ax_image.set_xlim(0, w)
    ax_image.set_ylim(h, 0)
    ax_image.set_xlabel(legend)
    ax_image.set_ylabel("y (pixels)")
    ax_image.set_title(f"Where: attention while “{word}” is spoken\nAS_object = {pair['as_object']:.3f}  "
                       f"(random {pair['random_as_object']:.3f}, chance {pair['chance_as_object']:.3f})", fontsize=10)
    fig.colorbar(ScalarMappable(norm=norm, cmap="inferno"), ax=ax_image, location="right", shrink=0.75, pad=0.02,
                 label=f"share of the word's attention per cell\n({family})")


def _draw_when(fig: Figure, ax_spec, ax_time, ax_words, example) -> None:
    """The log-mel input, the object's attention over time with the word's span, the words."""
    pair = example.pair
    word = str(pair["word"])
    edges = example.frame_edges_s
    start, end = float(edges[0]), float(edges[-1])
    audio_end = len(example.logmel) * example.hop_s
    onset, offset = float(pair["onset_s"]), float(pair["offset_s"])
    # the log-mel input, audio part only (frame t is centred at t * hop)
    spec = example.logmel.T
    top = float(spec.max()) if spec.size else 0.0
    low = min(max(top - 80.0, float(spec.min()) if spec.size else top - 80.0), top - 1.0)
    ax_spec.imshow(spec, origin="lower", aspect="auto", cmap="magma", vmin=low, vmax=top, interpolation="nearest",
                   extent=(-example.hop_s / 2, (len(example.logmel) - 0.5) * example.hop_s, -0.5, spec.shape[0] - 0.5))
    ax_spec.set_ylabel("mel band")
    ax_spec.set_title(f"Log-mel input (dB, colours from {low:.0f} to {top:.0f} dB); “{word}” shaded", fontsize=10)
    # when: the object pixels' attention over time
    ax_time.stairs(example.temporal_share, edges, fill=True, color=MODEL_COLOUR, alpha=0.85,
                   label="object pixels' attention")
    ax_time.set_ylim(0, max(float(example.temporal_share.max()) * 1.15, 1e-12))
    ax_time.set_ylabel("share per\ntensor frame")
    normalization = "" if example.as_word_normalization == "object" else " (image normalisation)"
    ax_time.set_title(f"When: attention of the object's pixels over time. AS_word{normalization} = "
                      f"{pair['as_word']:.3f} (random {pair['random_as_word']:.3f}, "
                      f"chance {pair['chance_as_word']:.3f})", fontsize=9.5)
    # the word's span: outlined on the spectrogram (not to hide it), shaded below
    for x in (onset, offset):
        ax_spec.axvline(x, color=WORD_COLOUR, lw=1.6)
    for ax in (ax_time, ax_words):
        ax.axvspan(onset, offset, color=WORD_COLOUR, alpha=0.25, lw=0)
    for ax in (ax_spec, ax_time, ax_words):
        for x0, x1 in _padding_spans(start, end, audio_end):
            if x1 > x0:
                ax.axvspan(x0, x1, color=PADDING_COLOUR, alpha=0.6, lw=0)
    if any(x1 > x0 for x0, x1 in _padding_spans(start, end, audio_end)):
        ax_time.legend(handles=[Patch(color=PADDING_COLOUR, label="padding (no audio)"),
                                Patch(color=WORD_COLOUR, alpha=0.4, label=f"“{word}”")],
                       fontsize=8, loc="upper left")
    ax_spec.set_xlim(start, end)
    ax_spec.tick_params(labelbottom=False)
    ax_time.tick_params(labelbottom=False)
    ax_words.set_yticks([])
    ax_words.set_ylim(0, 1)
    ax_words.set_xlabel("time after the audio starts (s)")
    _write_words(fig, ax_words, example.words, int(pair["word_index"]), start, end)


def _padding_spans(start: float, end: float, audio_end: float) -> list[tuple[float, float]]:
    """Parts of the tensor's time span without audio (before 0 s, after the audio)."""
    return [(start, min(0.0, end)), (max(audio_end, start), end)]


def _write_words(fig: Figure, ax, words: pd.DataFrame, target_index: int, start: float, end: float) -> None:
    """The utterance's words at their time, in as many rows as needed so that none overlap."""
    rows_y = (0.78, 0.45, 0.12)
    texts = []
    for w in words.itertuples():
        middle = (float(w.onset_s) + float(w.offset_s)) / 2
        if not start <= middle <= end:
            continue
        target = int(w.word_index) == target_index
        ax.axvline(float(w.onset_s), color="#bbbbbb", lw=0.6)
        texts.append(ax.text(middle, rows_y[0], str(w.word), ha="center", va="center", fontsize=8.5,
                             transform=ax.get_xaxis_transform(), clip_on=True,
                             fontweight="bold" if target else "normal", color="#b2182b" if target else "black"))
    if not texts:
        return
    FigureCanvasAgg(fig)
    fig.draw_without_rendering()
    renderer = fig.canvas.get_renderer()
    right_end = [-np.inf] * len(rows_y)
    for text in sorted(texts, key=lambda t: t.get_position()[0]):
        box = text.get_window_extent(renderer)
        row = next((r for r, x in enumerate(right_end) if box.x0 > x + 4), int(np.argmin(right_end)))
        right_end[row] = box.x1
        text.set_y(rows_y[row])
