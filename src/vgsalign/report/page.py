"""`vgsalign report`: one self-contained HTML page with the run's figures and numbers.

Reads the result files of a run (docs/formats.md):

    testdata/  summary.json (the funnel), similarities.csv, pairs.csv, words.csv
    train/     history.csv, retrieval.json
    scores/    summary.json, category_scores.csv, confusion_<score>.csv,
               confusion_counts.csv, pair_scores.csv, excluded_pairs.csv
    tensors.h5, the test split's instances JSON and images, its audio feature shards,
    and the visual shards the model saw (for their `random_weights` flag)

and writes `--out` (report.html: inline CSS, every figure a base64 PNG, no script, no
external address) plus each figure as its own PNG under `--figures`, for Snakemake's
`--report`. Every number on the page is read from these files and printed as it is
(rounded for display); each carries `data-source`, `data-path` and `data-value` (the
exact value) attributes, so a test can compare the page with the files. Warnings of the
run (random image weights, excluded pairs, capped retrieval pools, ...) come first.
"""

from __future__ import annotations

import argparse
import base64
import html
import json
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import pandas as pd
import yaml

from .. import __version__
from ..scores.alignment import SCORE_NAMES
from ..atomic import atomic_path, write_text
from ..errors import InputError
from .examples import choose_examples, load_examples
from .figures import (
    DPI, SCORE_LABELS, SCORE_QUESTIONS, alignment_example, category_bars, confusion_heatmap, placeholder,
    png_bytes, similarity_histogram, training_curves,
)
from ..settings import settings_from_json
from ..features.shards import read_attrs
from ..corpus.coco import open_coco
from ..tables import read_table, table_header


@dataclass
class ReportSettings:
    """The `report` config slice."""

    n_examples: int = 6      # alignment examples: best, median, worst by AS_object, then random
    seed: int = 0            # random examples

    def validate(self, where: str = "settings") -> None:
        if not isinstance(self.n_examples, int) or self.n_examples < 0:
            raise InputError(where, f"n_examples = {self.n_examples!r}; expected a non-negative integer")
        if not isinstance(self.seed, int) or self.seed < 0:
            raise InputError(where, f"seed = {self.seed!r}; expected a non-negative integer")


@dataclass
class ReportInputs:
    """Where the run's results are."""

    testdata: Path
    train: Path
    scores: Path
    tensors: Path
    instances: Path
    images: Path
    audio: list[Path]
    visual: list[Path] = field(default_factory=list)


@dataclass
class Results:
    """The tables and summaries the report shows, read once."""

    testdata_summary: dict
    similarities: pd.DataFrame
    pairs_csv: Path          # read for the examples' utterances only (tables of millions of rows)
    words_csv: Path
    history: pd.DataFrame
    retrieval: dict
    scores_summary: dict
    categories: pd.DataFrame
    confusion: dict[str, pd.DataFrame]
    confusion_counts: pd.DataFrame
    pair_scores: pd.DataFrame
    excluded: pd.DataFrame
    audio_attrs: list[tuple[Path, dict]]
    visual_attrs: list[tuple[Path, dict]]


@dataclass
class Notice:
    level: str        # "warning" (changes how the numbers read) or "note"
    title: str
    detail: str = ""


# source names printed in the page's data-source attributes (paths relative to the results folder)
SOURCES = {
    "funnel": "testdata/summary.json", "retrieval": "train/retrieval.json", "scores": "scores/summary.json",
    "categories": "scores/category_scores.csv",
}


# ---------------------------------------------------------------- reading the results


def _read_json(path: Path) -> dict:
    if not path.is_file():
        raise InputError(path, "result file not found")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise InputError(path, f"not valid JSON ({err})") from None


def _require_keys(data: dict, keys: Sequence[str], path: Path) -> None:
    missing = [k for k in keys if k not in data]
    if missing:
        raise InputError(path, f"missing key(s) {missing}")


def read_columns(path: Path, required: Sequence[str], optional: Sequence[str] = ()) -> pd.DataFrame:
    """The columns a figure needs of a result table (ids and words as text); a missing
    file or column is an InputError naming it. Reading only these keeps memory low on
    tables of 100,000s of rows."""
    header = table_header(path, required)
    columns = list(required) + [c for c in optional if c in header and c not in required]
    text = {c: str for c in ("utt_id", "word", "category") if c in columns}
    return pd.read_csv(path, usecols=columns, dtype=text, na_filter=False)


def _require_table(path: Path, required: Sequence[str]) -> Path:
    """A table read later, in part: only that it exists and has the columns is checked now."""
    table_header(path, required)
    return path


def read_results(inputs: ReportInputs) -> Results:
    """Read every result file; a missing file or column is an InputError naming it."""
    score_columns = [f"{prefix}{s}" for prefix in ("", "random_", "chance_") for s in SCORE_NAMES]
    interval_columns = [f"{prefix}{s}_{k}" for prefix in ("", "random_") for s in SCORE_NAMES
                        for k in ("mean", "ci_low", "ci_high")]
    testdata_summary = _read_json(inputs.testdata / "summary.json")
    _require_keys(testdata_summary, ("funnel", "threshold"), inputs.testdata / "summary.json")
    retrieval = _read_json(inputs.train / "retrieval.json")
    _require_keys(retrieval, ("image_retrieval_from_captions", "caption_retrieval_from_images", "pooled_r10"),
                  inputs.train / "retrieval.json")
    scores_summary = _read_json(inputs.scores / "summary.json")
    _require_keys(scores_summary, ("options", "inputs", "counts", "overall"), inputs.scores / "summary.json")
    confusion = {
        score: read_table(inputs.scores / f"confusion_{score}.csv", required=("category", "n_pairs", "background"))
        for score in SCORE_NAMES
    }
    return Results(
        testdata_summary=testdata_summary,
        similarities=read_columns(inputs.testdata / "similarities.csv",
                                  required=("utt_id", "word_index", "category_id", "similarity")),
        pairs_csv=_require_table(inputs.testdata / "pairs.csv", ("utt_id", "word_index", "category", "similarity")),
        words_csv=_require_table(inputs.testdata / "words.csv",
                                 ("utt_id", "word_index", "word", "onset_s", "offset_s")),
        history=read_table(inputs.train / "history.csv", required=(
            "epoch", "train_loss", "val_loss", "pool_size", "pooled_r10_a2i", "pooled_r10_i2a",
            *[f"r{k}_{d}" for k in (1, 5, 10) for d in ("a2i", "i2a")])),
        retrieval=retrieval,
        scores_summary=scores_summary,
        categories=read_table(inputs.scores / "category_scores.csv",
                              required=("category", "n_pairs", "n_utterances", "mean_mask_area_share",
                                        "mean_word_duration_s", *interval_columns,
                                        *[f"chance_{s}_mean" for s in SCORE_NAMES])),
        confusion=confusion,
        confusion_counts=read_table(inputs.scores / "confusion_counts.csv", required=("category",)),
        pair_scores=read_columns(inputs.scores / "pair_scores.csv", required=(
            "utt_id", "image_id", "word_index", "word", "category", "category_id", *score_columns,
            "onset_s", "offset_s", "pad_frames"), optional=("onset_frame", "offset_frame")),
        excluded=read_columns(inputs.scores / "excluded_pairs.csv", required=("utt_id", "reason")),
        audio_attrs=[(Path(p), _shard_attrs(Path(p))) for p in inputs.audio],
        visual_attrs=[(Path(p), _shard_attrs(Path(p))) for p in inputs.visual],
    )


def _shard_attrs(path: Path) -> dict:
    if not path.is_file():
        raise InputError(path, "feature shard not found")
    try:
        return read_attrs(path)
    except OSError as err:
        raise InputError(path, f"cannot read as HDF5 ({err})") from None


# ---------------------------------------------------------------- warnings


def collect_notices(results: Results, settings: ReportSettings, threshold: float, n_example_pairs: int) -> list[Notice]:
    """What a reader must know before trusting the figures: warnings first, then notes."""
    notices = (feature_notices(results.audio_attrs, results.visual_attrs) + score_notices(results)
               + retrieval_notices(results.retrieval, results.scores_summary))
    test_threshold = float(results.testdata_summary["threshold"])
    if not math.isclose(test_threshold, threshold, rel_tol=1e-9):
        notices.append(Notice("warning", f"The test set was built with match.threshold {test_threshold:g}, "
                                         f"the configuration says {threshold:g}", "Rerun the test set."))
    if n_example_pairs < settings.n_examples:
        notices.append(Notice("note", f"Only {n_example_pairs} scored pair(s) for {settings.n_examples} alignment "
                                      "examples (report.n_examples)"))
    return sorted(notices, key=lambda n: n.level != "warning")


def feature_notices(audio_attrs: list[tuple[Path, dict]], visual_attrs: list[tuple[Path, dict]]) -> list[Notice]:
    """Random image weights, items left out of the shards, silent captions."""
    notices = []
    random_shards = [path for path, attrs in visual_attrs if attrs.get("random_weights")]
    if random_shards:
        notices.append(Notice(
            "warning", "Image features come from a CNN with random weights",
            f"{len(random_shards)} of {len(visual_attrs)} visual feature shards record random_weights = True "
            f"(visual.allow_random_weights), e.g. {random_shards[0]}. The model never saw pretrained image "
            "features; its alignments say little about what the original model learns."))
    for modality, shards in (("audio", audio_attrs), ("visual", visual_attrs)):
        rejected = sum(int(attrs.get("n_rejected", 0) or 0) for _, attrs in shards)
        if rejected:
            notices.append(Notice("warning", f"{rejected:,} {modality} item(s) left out of the feature shards",
                                  "features.on_error: skip; each shard lists them in its `rejects` group."))
    silent = sum(int(attrs.get("n_silent", 0) or 0) for _, attrs in audio_attrs)
    if silent:
        notices.append(Notice("note", f"{silent:,} silent caption(s) in the test split's audio shards",
                              "Their log-mel energies sit at the floor."))
    return notices


def score_notices(results: Results) -> list[Notice]:
    """Excluded pairs (by reason), pairs without attention, foreign tensors, small categories."""
    notices = []
    counts = results.scores_summary["counts"]
    excluded = int(counts.get("pairs_excluded", 0))
    if excluded:
        reasons = counts.get("exclusion_reasons", {})
        detail = "; ".join(f"{reason}: {n:,} ({reasons.get(reason, '')})"
                           for reason, n in sorted(counts.get("excluded_by_reason", {}).items()))
        notices.append(Notice("warning", f"{excluded:,} of {int(counts['pairs_in_table']):,} test pairs were "
                                         "excluded from the scores",
                              f"{detail}. They are listed in scores/excluded_pairs.csv."))
    if len(results.excluded) != excluded:
        notices.append(Notice("warning", "scores/excluded_pairs.csv and scores/summary.json disagree",
                              f"{len(results.excluded):,} rows in the table, {excluded:,} in the summary."))
    zero = int(counts.get("pairs_with_zero_attention", 0))
    if zero:
        notices.append(Notice("warning", f"{zero:,} pair(s) with no attention at all during the word",
                              "They score 0 (possible only without softmax)."))
    inputs = results.scores_summary["inputs"]
    source = str(inputs.get("tensor_attrs", {}).get("source", "not recorded"))
    if inputs.get("tensor_format") != "h5" or "vgsalign tensors" not in source:
        notices.append(Notice("note", "The tensors were not dumped by this pipeline's tensors step",
                              f"Format {inputs.get('tensor_format')}, source {source!r}."))
    few = results.categories.loc[results.categories["n_pairs"] < 5, "category"].astype(str).tolist()
    if few:
        notices.append(Notice("note", f"{len(few)} categor{'y has' if len(few) == 1 else 'ies have'} fewer than "
                                      "5 pairs", "Their intervals are wide: " + ", ".join(few[:20]) + "."))
    return notices


def retrieval_notices(retrieval: dict, scores_summary: dict) -> list[Notice]:
    """Capped pools, subsampled validation, chance-level retrieval, another run's figures."""
    notices = []
    pooled = retrieval["pooled_r10"]
    if int(pooled.get("pool_size", 0)) < int(pooled.get("pool_size_requested", 0)):
        notices.append(Notice(
            "warning", f"Pooled R@10 uses pools of {int(pooled['pool_size']):,} images, "
                       f"not {int(pooled['pool_size_requested']):,} (train.pool_size)",
            f"The validation split has only {int(pooled['pool_size']):,} images; chance is "
            f"{pooled.get('chance', float('nan')):.3f}, so the figure is not comparable with the original's pools "
            "of 1000."))
    if int(retrieval.get("n_images", 0)) < int(retrieval.get("n_images_in_split", 0)):
        notices.append(Notice("note", f"Full-split retrieval over {int(retrieval['n_images']):,} of "
                                      f"{int(retrieval['n_images_in_split']):,} validation images "
                                      "(train.eval_max_images)"))
    chance = retrieval.get("chance", {})
    for key, name in (("image_retrieval_from_captions", "image retrieval from captions"),
                      ("caption_retrieval_from_images", "caption retrieval from images")):
        r10, level = retrieval[key].get("r10"), chance.get(key, {}).get("r10")
        if r10 is not None and level is not None and r10 <= level:
            notices.append(Notice("warning", f"The model does no better than chance at {name}",
                                  f"R@10 {r10:.3f}, chance {level:.3f}: its attention maps may not mean anything yet."))
    if scores_summary.get("retrieval") is None:
        notices.append(Notice("note", "The scores were computed without --retrieval",
                              "scores/summary.json holds no retrieval figures; train/retrieval.json is shown."))
    elif scores_summary["retrieval"] != retrieval:
        notices.append(Notice("warning", "scores/summary.json holds other retrieval figures than train/retrieval.json",
                              "The scores may come from another training run; rerun the scores."))
    return notices


# ---------------------------------------------------------------- HTML pieces


def esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def format_number(value: Any, digits: int | None = 3) -> str:
    """Counts with thousands separators, shares with `digits` decimals, missing as an en dash."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if digits is None or (isinstance(value, int) and not isinstance(value, bool)):
        return f"{int(value):,}"
    return f"{float(value):.{digits}f}"


def number(value: Any, source: str, path: Sequence, digits: int | None = 3) -> str:
    """A number as shown, with where it comes from (data-source, data-path) and its exact value."""
    exact = "" if value is None else repr(float(value)) if digits is not None else str(int(value))
    return (f'<span class="value" data-source="{esc(source)}" data-path="{esc(json.dumps(list(path)))}" '
            f'data-value="{esc(exact)}">{esc(format_number(value, digits))}</span>')


def table(header: Sequence[str], rows: Sequence[Sequence[str]], table_id: str, numeric_from: int = 1,
          caption: str = "") -> str:
    """An HTML table; cells are HTML already (escaped by their makers); columns from
    `numeric_from` on are right-aligned numbers."""
    def cell(tag: str, content: str, j: int) -> str:
        return f'<{tag}{" class=num" if j >= numeric_from else ""}>{content}</{tag}>'

    head = "".join(cell("th", esc(h), j) for j, h in enumerate(header))
    body = "\n".join("<tr>" + "".join(cell("td", c, j) for j, c in enumerate(row)) + "</tr>" for row in rows)
    title = f"<caption>{esc(caption)}</caption>" if caption else ""
    return f'<table id="{esc(table_id)}">{title}<thead><tr>{head}</tr></thead>\n<tbody>\n{body}\n</tbody></table>'


@dataclass
class Picture:
    name: str        # file stem under the figures folder
    title: str
    caption: str
    png: bytes
    width: int
    height: int
    full_size: bool = False    # shown at its own size, scrolling sideways, instead of shrunk to the page

    def html(self) -> str:
        data = base64.b64encode(self.png).decode("ascii")
        image = (f'<img src="data:image/png;base64,{data}" alt="{esc(self.title)}" '
                 f'width="{self.width}" height="{self.height}">')
        if self.full_size:
            image = f'<div class="full-size">{image}</div>'
        return (f'<figure id="figure-{esc(self.name)}">{image}'
                f"<figcaption><strong>{esc(self.title)}.</strong> {esc(self.caption)}</figcaption></figure>")


def picture(name: str, title: str, caption: str, fig, figures_dir: Path, full_size: bool = False) -> Picture:
    """Render a figure once: the PNG file for Snakemake's report and the bytes for the page."""
    png = png_bytes(fig, DPI)
    with atomic_path(figures_dir / f"{name}.png") as tmp:
        tmp.write_bytes(png)
    width, height = (int(round(v * DPI)) for v in fig.get_size_inches())
    return Picture(name, title, caption, png, width, height, full_size)


CSS = """
body { font-family: "DejaVu Sans", "Segoe UI", Helvetica, Arial, sans-serif; margin: 0; color: #1d1d1d;
       background: #f3f3f3; line-height: 1.45; }
main { max-width: 1400px; margin: 0 auto; padding: 20px 32px 64px; background: white; }
h1 { font-size: 1.75rem; margin-bottom: 0.2em; }
h2 { font-size: 1.35rem; border-bottom: 2px solid #d0d0d0; padding-bottom: 4px; margin-top: 2.2em; }
h3 { font-size: 1.1rem; margin-top: 1.6em; }
.subtitle { color: #555; margin-top: 0; }
table { border-collapse: collapse; margin: 8px 0 18px; font-size: 0.92rem; }
caption { text-align: left; font-weight: bold; padding-bottom: 4px; }
th, td { border: 1px solid #d8d8d8; padding: 3px 9px; text-align: left; vertical-align: top; }
th { background: #f0f0f0; }
.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
.notices { border: 3px solid #d9480f; background: #fff4e6; padding: 6px 20px 10px; border-radius: 6px; }
.notices.clean { border-color: #2b8a3e; background: #ebfbee; }
.notices h2 { border: none; margin-top: 0.4em; }
.notices li { margin: 5px 0; }
.level-warning > strong { color: #c92a2a; }
.level-note > strong { color: #1c5d99; }
figure { margin: 14px 0 30px; }
figure img { max-width: 100%; height: auto; border: 1px solid #e6e6e6; }
.full-size { overflow-x: auto; }
.full-size img { max-width: none; }
figcaption { font-size: 0.9rem; color: #3d3d3d; max-width: 1150px; margin-top: 4px; }
pre { background: #f6f6f6; padding: 10px 14px; overflow-x: auto; font-size: 0.85rem; border: 1px solid #e3e3e3; }
nav ol { columns: 2; max-width: 900px; }
details summary { cursor: pointer; font-weight: bold; margin: 8px 0; }
.glance td:first-child { font-weight: bold; white-space: nowrap; }
"""


# ---------------------------------------------------------------- sections


def notices_html(notices: list[Notice]) -> str:
    if not notices:
        return ('<section class="notices clean" id="warnings"><h2>Warnings</h2>'
                "<p>The run raised no warning.</p></section>")
    n_warnings = sum(n.level == "warning" for n in notices)
    items = "\n".join(f'<li class="level-{esc(n.level)}"><strong>{esc(n.level.upper())}: {esc(n.title)}.</strong> '
                      f"{esc(n.detail)}</li>" for n in notices)
    return (f'<section class="notices" id="warnings"><h2>Warnings ({n_warnings}) and notes '
            f'({len(notices) - n_warnings})</h2><ul>\n{items}\n</ul></section>')


def glance_html(results: Results, run_config: dict, threshold: float) -> str:
    """The settings that decide how to read every number, at the top."""
    counts = results.scores_summary["counts"]
    dataset = run_config.get("dataset", {})
    rows = [
        ("Dataset", _dataset_text(dataset) if dataset else "not given"),
        ("Test set", f"{counts['pairs_scored']:,} pairs scored of {counts['pairs_in_table']:,} "
                     f"({counts['utterances_scored']:,} utterances, {counts['images_scored']:,} images, "
                     f"{counts['categories_scored']:,} categories); match.threshold {threshold:g}"),
        ("Model", _model_text(results.retrieval, run_config.get("model", {}))),
        ("Training", _training_text(results.retrieval, run_config.get("train", {}))),
        ("Image features", _features_text(results.visual_attrs[0][1]) if results.visual_attrs else "not given"),
        ("Scoring", _scoring_text(results.scores_summary["options"])),
        ("Tensors", _tensors_text(results.scores_summary["inputs"])),
    ]
    body = "\n".join(f"<tr><td>{esc(k)}</td><td>{esc(v)}</td></tr>" for k, v in rows)
    return f'<table class="glance" id="glance"><tbody>\n{body}\n</tbody></table>'


def _dataset_text(dataset: dict) -> str:
    splits = ", ".join(f"{role} {split}" for role, split in dataset.get("splits", {}).items())
    return f"{dataset.get('name', '?')} (source {dataset.get('source', '?')}); splits: {splits}"


def _model_text(retrieval: dict, model: dict) -> str:
    text = f"{retrieval.get('arch', model.get('arch', '?'))}, similarity {retrieval.get('similarity', '?')}"
    if model:
        text += f"; embed_dim {model.get('embed_dim')}, dropout {model.get('dropout')}"
    return text


def _training_text(retrieval: dict, train: dict) -> str:
    text = (f"{retrieval.get('epochs_trained', '?')} epoch(s), best epoch {retrieval.get('best_epoch', '?')} "
            f"by {retrieval.get('select_by', '?')}")
    if train:
        text += f"; loss {train.get('loss')}, lr {train.get('lr')}, batch {train.get('batch_size')}"
    return text


def _features_text(visual: dict) -> str:
    if visual.get("random_weights"):
        weights = "RANDOM WEIGHTS"
    else:
        weights = f"weights sha256 {str(visual.get('weights_sha256', ''))[:12]}"
    grid = f"{visual.get('grid')} x {visual.get('grid')} x {visual.get('channels')}"
    return f"{visual.get('backbone')} {visual.get('layer', '')} ({grid}), {weights}"


def _scoring_text(options: dict) -> str:
    def family(on) -> str:
        return "softmax" if on else "no softmax (clipped at 0)"

    return (f"mode {options['mode']}; softmax {options['softmax']} (AS family: {family(options['softmax_as_family'])}, "
            f"GS family: {family(options['softmax_gs_family'])}); AS_word normalised by "
            f"{options['as_word_normalization']}; grid {options['grid']}, mask threshold {options['mask_threshold']}; "
            f"seed {options['seed']}, {options['bootstrap']:,} bootstrap resamples")


def _tensors_text(inputs: dict) -> str:
    mapping = inputs.get("time_mapping", {})
    return (f"{inputs.get('tensor_format')} {tuple(inputs.get('tensor_shape', []))}, "
            f"{mapping.get('input_frames_per_frame')} input frames ({mapping.get('hop_s')} s each) per tensor frame; "
            f"{inputs.get('tensor_attrs', {}).get('source', 'source not recorded')}")


def overall_html(results: Results) -> str:
    overall, source = results.scores_summary["overall"], SOURCES["scores"]
    rows = []
    for s in SCORE_NAMES:
        def cell(key: str) -> str:
            return number(overall.get(key), source, ["overall", key])
        rows.append([f"<strong>{esc(SCORE_LABELS[s])}</strong><br><small>{esc(SCORE_QUESTIONS[s])}</small>",
                     cell(f"{s}_mean"), cell(f"{s}_ci_low") + " – " + cell(f"{s}_ci_high"),
                     cell(f"random_{s}_mean"), cell(f"random_{s}_ci_low") + " – " + cell(f"random_{s}_ci_high"),
                     cell(f"chance_{s}_mean")])
    counts = results.scores_summary["counts"]
    count_rows = [[esc(label), number(counts.get(key), source, ["counts", key], digits=None)] for key, label in (
        ("pairs_in_table", "pairs in the test set"), ("pairs_scored", "pairs scored"),
        ("pairs_excluded", "pairs excluded"), ("utterances_scored", "utterances"), ("images_scored", "images"),
        ("categories_scored", "categories"), ("pairs_with_zero_attention", "pairs with no attention during the word"))]
    for reason, n in sorted(counts.get("excluded_by_reason", {}).items()):
        count_rows.append([esc(f"excluded: {reason}"),
                           number(n, source, ["counts", "excluded_by_reason", reason], digits=None)])
    return (table(["score", "model mean", "95% interval", "random tensor", "95% interval", "chance"], rows, "overall",
                  caption="Mean over all scored pairs (bootstrap intervals resample utterances)")
            + table(["count", "value"], count_rows, "counts"))


def retrieval_html(retrieval: dict) -> str:
    source = SOURCES["retrieval"]
    chance = retrieval.get("chance", {})
    rows = []
    for key, name in (("image_retrieval_from_captions", "image from caption (a2i)"),
                      ("caption_retrieval_from_images", "caption from image (i2a)")):
        figures = retrieval[key]
        row = [esc(name)]
        for k in ("r1", "r5", "r10"):
            level = chance.get(key, {}).get(k)
            shown = number(figures.get(k), source, [key, k])
            if level is not None:
                shown += f' <small>(chance {number(level, source, ["chance", key, k])})</small>'
            row.append(shown)
        row.append(number(figures.get("median_rank"), source, [key, "median_rank"], digits=1))
        rows.append(row)
    pooled = retrieval["pooled_r10"]
    pooled_rows = [[esc(label), number(pooled.get(k), source, ["pooled_r10", k], digits=d)] for k, label, d in (
        ("r10_a2i", "pooled R@10, image from caption", 3), ("r10_i2a", "pooled R@10, caption from image", 3),
        ("chance", "chance", 3), ("pool_size", "pool size (images)", None),
        ("pool_size_requested", "pool size requested (train.pool_size)", None), ("trials", "pools drawn", None))]
    about = (f"Validation split {retrieval.get('split', '?')}: {retrieval.get('n_captions', '?')} captions, "
             f"{retrieval.get('n_images', '?')} images; best checkpoint (epoch {retrieval.get('best_epoch', '?')}, "
             f"validation loss {format_number(retrieval.get('val_loss'), 4)})")
    return (table(["direction", "R@1", "R@5", "R@10", "median rank"], rows, "retrieval", caption=about)
            + table(["the original's protocol", "value"], pooled_rows, "pooled"))


def funnel_html(summary: dict) -> str:
    source = SOURCES["funnel"]
    rows = [[esc(name), number(value, source, ["funnel", name], digits=None if isinstance(value, int) else 3)]
            for name, value in summary["funnel"].items()]
    return table(["step", "count"], rows, "funnel", caption="From captions read to test pairs")


def categories_html(categories: pd.DataFrame) -> str:
    source = SOURCES["categories"]
    columns = [("n_pairs", "pairs", None), ("n_utterances", "utterances", None),
               ("mean_mask_area_share", "mask area share", 3), ("mean_word_duration_s", "word duration (s)", 3)]
    columns += [(f"{s}_mean", SCORE_LABELS[s], 3) for s in SCORE_NAMES]
    columns += [(f"random_{s}_mean", f"random {SCORE_LABELS[s]}", 3) for s in SCORE_NAMES]
    rows = []
    for record in categories.sort_values("category").to_dict("records"):
        rows.append([esc(record["category"])] + [
            number(int(record[c]) if d is None else record[c], source, ["category", record["category"], c], digits=d)
            for c, _, d in columns])
    return table(["category"] + [label for _, label, _ in columns], rows, "categories")


class _SettingsDumper(yaml.SafeDumper):
    """YAML with one key per line and lists of plain values on one line ([NN, NNS])."""


def _represent_list(dumper: yaml.SafeDumper, data: list):
    flat = all(not isinstance(v, (list, tuple, dict)) for v in data)
    return dumper.represent_sequence("tag:yaml.org,2002:seq", data, flow_style=flat)


_SettingsDumper.add_representer(list, _represent_list)


def yaml_block(heading: str, data: dict, sort_keys: bool = False) -> str:
    """A settings dictionary as readable YAML under a heading."""
    text = yaml.dump(data, Dumper=_SettingsDumper, sort_keys=sort_keys, width=110, default_flow_style=False)
    return f"<h3>{esc(heading)}</h3>\n<pre>{esc(text)}</pre>"


def settings_html(results: Results, run_config: dict, inputs: ReportInputs) -> str:
    blocks = [yaml_block("Scoring options (scores/summary.json)", results.scores_summary["options"]),
              yaml_block("Tensors and time mapping (scores/summary.json)", results.scores_summary["inputs"])]
    if results.visual_attrs:
        blocks.append(yaml_block("Image features (first visual shard's attributes)", results.visual_attrs[0][1], True))
    if results.audio_attrs:
        blocks.append(yaml_block("Audio features (first audio shard's attributes)", results.audio_attrs[0][1], True))
    if run_config:
        blocks.append(yaml_block("Configuration of the run (the slices the report was given)", run_config))
    files = [inputs.testdata, inputs.train, inputs.scores, inputs.tensors, inputs.instances, inputs.images,
             *inputs.audio, *inputs.visual]
    blocks += ["<h3>Inputs</h3>", "<ul>" + "".join(f"<li><code>{esc(f)}</code></li>" for f in files) + "</ul>"]
    return "\n".join(blocks)


def page(title: str, sections: list[tuple[str, str, str]], header: str) -> str:
    """The whole document: header, table of contents, sections (id, heading, body)."""
    toc = "".join(f'<li><a href="#{esc(sid)}">{esc(heading)}</a></li>' for sid, heading, _ in sections)
    body = "\n".join(f'<section id="{esc(sid)}"><h2>{esc(heading)}</h2>\n{content}\n</section>'
                     for sid, heading, content in sections)
    return (f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">\n'
            f"<title>{esc(title)}</title>\n<style>{CSS}</style>\n</head>\n<body>\n<main>\n{header}\n"
            f'<nav><h2>Contents</h2><ol>{toc}</ol></nav>\n{body}\n</main>\n</body>\n</html>\n')


# ---------------------------------------------------------------- the report


EXAMPLE_CAPTION = (
    "Left: the image with the share of the word's attention per cell (the AS family's spatial map averaged over "
    "the word's frames) and the outline of the category's annotated instances; the category's crowd regions "
    "(iscrowd 1), which are not part of the ground truth and not scored, are outlined in green dashes. Right: "
    "the log-mel input, the attention of the object's pixels over time (the AS family's temporal map) with the "
    "word's span shaded, and the words of the caption (grey: padding). Scores from scores/pair_scores.csv."
)


def draw_figures(results: Results, examples: list, settings: ReportSettings, threshold: float, vectors_name: str,
                 figures_dir: Path) -> dict[str, list[Picture]]:
    """Every figure of the page, by section, each also written as a PNG under figures_dir."""
    figures_dir.mkdir(parents=True, exist_ok=True)
    pictures: dict[str, list[Picture]] = {
        "test-set": [picture(
            "similarities", "Noun-label similarities",
            "Word-vector similarity of every noun to every label of its image (grey) and of its best label (blue); "
            "nouns whose best label reaches the threshold (dashed) become test pairs. From testdata/similarities.csv.",
            similarity_histogram(results.similarities, threshold, vectors_name), figures_dir)],
        "training": [picture(
            "training", "Training curves",
            "Loss and validation retrieval per epoch (train/history.csv); chance levels and the kept epoch from "
            "train/retrieval.json. Pooled R@10 is the original's protocol (random pools of train.pool_size images, "
            "one caption each).",
            training_curves(results.history, results.retrieval), figures_dir)],
        "categories": [picture(
            f"category_{s}", f"{SCORE_LABELS[s]} per category",
            f"{SCORE_LABELS[s]} ({SCORE_QUESTIONS[s]}) per category of the spoken word: the model's mean (blue) and "
            "the random tensor's (orange), each with its bootstrap 95% interval over utterances, and the analytic "
            "chance level (black tick). From scores/category_scores.csv.",
            category_bars(results.categories, s), figures_dir) for s in SCORE_NAMES],
        "confusions": [picture(
            f"confusion_{s}", f"{SCORE_LABELS[s]} confusion",
            f"Rows: the category the word names; columns: the regions of its image. Each cell is the mean "
            f"{SCORE_LABELS[s]} of the row's pairs against that region (0 where the category is not in the pair's "
            f"image); the outlined diagonal is the score itself. From scores/confusion_{s}.csv and "
            "scores/confusion_counts.csv.",
            confusion_heatmap(results.confusion[s], results.confusion_counts, s), figures_dir,
            # many categories: small labels, which shrinking to the page would make unreadable
            full_size=len(results.confusion[s]) > 20) for s in SCORE_NAMES],
        "examples": [],
    }
    # one file per example the workflow declares, a placeholder where there are too few pairs
    for k in range(settings.n_examples):
        name = f"example_{k + 1:02d}"
        if k < len(examples):
            example = examples[k]
            pictures["examples"].append(picture(
                name, f"Example {k + 1}: {example.reason}",
                f"“{example.pair['word']}” naming {example.pair['category']}. {EXAMPLE_CAPTION}",
                alignment_example(example), figures_dir))
        else:
            pictures["examples"].append(picture(
                name, f"Example {k + 1}: none", "There are not enough scored pairs.",
                placeholder(f"Example {k + 1}: fewer scored pairs than report.n_examples ({settings.n_examples})"),
                figures_dir))
    return pictures


def scores_intro(options: dict) -> str:
    text = (f"Mode {options['mode']}, softmax {options['softmax']}, "
            f"AS_word normalised by {options['as_word_normalization']}.")
    if options.get("softmax_as_family") and options.get("softmax_gs_family"):
        text += (" With the softmaxes in both families, GS_object equals AS_object and GS_word equals AS_word "
                 "(object normalisation) exactly; the four scores differ only on unnormalised tensors.")
    return f"<p>{esc(text)}</p>"


def build_report(inputs: ReportInputs, out: Path, figures_dir: Path, settings: ReportSettings,
                 run_config: dict | None = None, threshold: float | None = None) -> dict:
    """Read the results, draw the figures, write the page; returns what was written."""
    started = time.time()
    settings.validate()
    run_config = run_config or {}
    results = read_results(inputs)
    threshold = float(results.testdata_summary["threshold"] if threshold is None else threshold)
    choices = choose_examples(results.pair_scores, settings.n_examples, settings.seed)
    coco = open_coco(inputs.instances) if choices else None
    examples = load_examples(choices, results.pair_scores, results.scores_summary, inputs.tensors, coco,
                             inputs.instances, inputs.images, inputs.audio, results.words_csv, results.pairs_csv)
    notices = collect_notices(results, settings, threshold, len(choices))
    pictures = draw_figures(results, examples, settings, threshold,
                            run_config.get("word_vectors", {}).get("source", ""), figures_dir)

    def figures(section: str) -> str:
        return "".join(p.html() for p in pictures[section])

    chosen = (f"Chosen among the scored pairs: the best, the median and the worst by AS_object, then random ones "
              f"(report.seed {settings.seed}).")
    sections = [
        ("glance", "The run at a glance", glance_html(results, run_config, threshold)),
        ("scores", "Alignment and glancing scores",
         scores_intro(results.scores_summary["options"]) + overall_html(results)),
        ("retrieval-section", "Retrieval", retrieval_html(results.retrieval)),
        ("test-set", "The test set", funnel_html(results.testdata_summary) + figures("test-set")),
        ("training", "Training", figures("training")),
        ("categories-section", "Scores per category", figures("categories")
         + "<details><summary>Per-category table (scores/category_scores.csv)</summary>"
         + categories_html(results.categories) + "</details>"),
        ("confusions", "Confusions", figures("confusions")),
        ("examples", "Alignment examples", f"<p>{esc(chosen)}</p>" + figures("examples")),
        ("settings", "Settings and inputs", settings_html(results, run_config, inputs)),
    ]
    dataset_name = run_config.get("dataset", {}).get("name") or inputs.scores.parent.name
    header = (f"<h1>{esc(f'Alignment report: {dataset_name}')}</h1>"
              f'<p class="subtitle">{esc(f"vgsalign {__version__}; results in {inputs.scores.parent}")}</p>\n'
              + notices_html(notices))
    document = page(f"vgsalign report: {dataset_name}", sections, header)
    write_text(document, out)
    return {"out": str(out), "figures": [p.name for section in pictures.values() for p in section],
            "notices": [f"{n.level}: {n.title}" for n in notices], "bytes": len(document.encode()),
            "seconds": round(time.time() - started, 2), "examples": [c.reason for c in choices]}


# ---------------------------------------------------------------- command line


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vgsalign report",
                                     description="The run's report: one self-contained HTML page.")
    parser.add_argument("--testdata", required=True, type=Path,
                        help="test-set folder: summary.json, similarities.csv, pairs.csv, words.csv")
    parser.add_argument("--train", required=True, type=Path, help="training folder: history.csv, retrieval.json")
    parser.add_argument("--scores", required=True, type=Path, help="scores folder (vgsalign score --out)")
    parser.add_argument("--tensors", required=True, type=Path, help="the tensors the scores were computed on")
    parser.add_argument("--instances", required=True, type=Path, help="COCO instances JSON of the test split")
    parser.add_argument("--images", required=True, type=Path, help="folder of the test split's images")
    parser.add_argument("--audio", required=True, nargs="+", type=Path, help="audio feature shards of the test split")
    parser.add_argument("--visual", nargs="*", default=[], type=Path,
                        help="visual feature shards the model saw (checked for random weights)")
    parser.add_argument("--threshold", type=float,
                        help="match.threshold of the configuration (default: the test set's)")
    parser.add_argument("--settings", help="the report config slice as JSON (n_examples, seed)")
    parser.add_argument("--run-config", help="config slices to show in the report, as one JSON object")
    parser.add_argument("--out", required=True, type=Path, help="report.html")
    parser.add_argument("--figures", type=Path, help="folder for one PNG per figure (default: <out folder>/report)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    settings = settings_from_json(ReportSettings, args.settings) if args.settings else ReportSettings()
    settings.validate("--settings" if args.settings else "options")
    run_config = {}
    if args.run_config:
        try:
            run_config = json.loads(args.run_config)
        except json.JSONDecodeError as err:
            raise InputError("--run-config", f"not valid JSON ({err})") from None
        if not isinstance(run_config, dict):
            raise InputError("--run-config", "expected a JSON object")
    inputs = ReportInputs(testdata=args.testdata, train=args.train, scores=args.scores, tensors=args.tensors,
                          instances=args.instances, images=args.images, audio=list(args.audio),
                          visual=list(args.visual))
    done = build_report(inputs, args.out, args.figures or args.out.parent / "report", settings,
                        run_config=run_config, threshold=args.threshold)
    print(f"wrote {done['out']} ({done['bytes'] / 1e6:.1f} MB, {len(done['figures'])} figures) in {done['seconds']} s",
          file=sys.stderr)
    for line in done["notices"]:
        print(f"  {line}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    from ..cli import run_main

    raise SystemExit(run_main("report", main))
