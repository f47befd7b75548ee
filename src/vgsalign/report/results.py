"""Reading a run's result files for the report, once (docs/formats.md).

    testdata/  summary.json (the funnel), similarities.csv, pairs.csv, words.csv
    train/     history.csv, retrieval.json
    scores/    summary.json, category_scores.csv, confusion_<score>.csv,
               confusion_counts.csv, pair_scores.csv, excluded_pairs.csv
    seeds/     seed_scores.csv, summary.json (only when the run trained several seeds)
    tensors.h5, the test split's instances JSON and images, its audio feature shards,
    the visual shards the model saw (for their `random_weights` flag), and the rejects
    tables of the stages that read the corpus

A missing file, key or column is an InputError naming the file. Large tables (pairs.csv,
words.csv) are only checked here and read in part later, for the examples.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import pandas as pd

from ..errors import InputError
from ..features.shards import read_attrs
from ..scores.alignment import SCORE_NAMES
from ..scores.seeds import RETRIEVAL_FIGURES
from ..tables import read_table, table_header

# the page's data-source attributes name the files relative to the results folder
SOURCES = {
    "funnel": "testdata/summary.json", "retrieval": "train/retrieval.json", "scores": "scores/summary.json",
    "categories": "scores/category_scores.csv", "seed_table": "seeds/seed_scores.csv",
    "seeds_summary": "seeds/summary.json",
}


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
    visual: list[Path]
    rejects: list[Path]       # rejects tables (CSV, one row per item left out) of the stages that read the corpus
    seeds: Path | None = None  # seeds/ of a run with several seeds (seed_scores.csv, summary.json), else None

    @property
    def results(self) -> Path:
        """The run's results folder (the scores folder's parent)."""
        return self.scores.parent


@dataclass(frozen=True)
class RejectCount:
    """Items a stage left out, from one rejects table or from the feature shards' counts."""

    stage: str                   # "testdata", "features", ...
    source: str                  # the table (relative to the results folder) or the shards it was counted in
    count: int
    example: str = ""            # the first row's problem, as the stage wrote it (tables only)


@dataclass
class Results:
    """The tables and summaries the report shows."""

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
    rejects: list[RejectCount]
    seed_table: pd.DataFrame | None = None   # seeds/seed_scores.csv, with several seeds
    seeds_summary: dict | None = None        # seeds/summary.json, with several seeds


def read_json(path: Path, keys: Sequence[str] = ()) -> dict:
    """A result file's JSON object, with the keys the report needs."""
    if not path.is_file():
        raise InputError(path, "result file not found")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise InputError(path, f"not valid JSON ({err})") from None
    missing = [k for k in keys if k not in data]
    if missing:
        raise InputError(path, f"missing key(s) {missing}")
    return data


def read_columns(path: Path, required: Sequence[str], optional: Sequence[str] = ()) -> pd.DataFrame:
    """The columns a figure needs of a result table (ids and words as text). Reading only
    these keeps memory low on tables of 100,000s of rows."""
    header = table_header(path, required)
    columns = list(required) + [c for c in optional if c in header and c not in required]
    text = {c: str for c in ("utt_id", "word", "category") if c in columns}
    return pd.read_csv(path, usecols=columns, dtype=text, na_filter=False)


def _require_table(path: Path, required: Sequence[str]) -> Path:
    """A table read later, in part: only that it exists and has the columns is checked now."""
    table_header(path, required)
    return path


def shard_attrs(path: Path) -> dict:
    if not path.is_file():
        raise InputError(path, "feature shard not found")
    try:
        return read_attrs(path)
    except OSError as err:
        raise InputError(path, f"cannot read as HDF5 ({err})") from None


def read_results(inputs: ReportInputs) -> Results:
    """Read every result file the page shows."""
    score_columns = [f"{prefix}{s}" for prefix in ("", "random_", "chance_") for s in SCORE_NAMES]
    interval_columns = [f"{prefix}{s}_{k}" for prefix in ("", "random_") for s in SCORE_NAMES
                        for k in ("mean", "ci_low", "ci_high")]
    audio_attrs = [(Path(p), shard_attrs(Path(p))) for p in inputs.audio]
    visual_attrs = [(Path(p), shard_attrs(Path(p))) for p in inputs.visual]
    scores_summary = read_json(inputs.scores / "summary.json", ("options", "inputs", "counts", "overall"))
    return Results(
        testdata_summary=read_json(inputs.testdata / "summary.json", ("funnel", "threshold")),
        similarities=read_columns(inputs.testdata / "similarities.csv",
                                  required=("utt_id", "word_index", "category_id", "similarity")),
        pairs_csv=_require_table(inputs.testdata / "pairs.csv", ("utt_id", "word_index", "category", "similarity")),
        words_csv=_require_table(inputs.testdata / "words.csv",
                                 ("utt_id", "word_index", "word", "onset_s", "offset_s")),
        history=read_table(inputs.train / "history.csv", required=(
            "epoch", "train_loss", "val_loss", "pool_size", "pooled_r10_a2i", "pooled_r10_i2a",
            *[f"r{k}_{d}" for k in (1, 5, 10) for d in ("a2i", "i2a")])),
        retrieval=read_json(inputs.train / "retrieval.json",
                            ("image_retrieval_from_captions", "caption_retrieval_from_images", "pooled_r10")),
        scores_summary=scores_summary,
        categories=read_table(inputs.scores / "category_scores.csv",
                              required=("category", "n_pairs", "n_utterances", "mean_mask_area_share",
                                        "mean_word_duration_s", *interval_columns,
                                        *[f"chance_{s}_mean" for s in SCORE_NAMES])),
        confusion={score: read_table(inputs.scores / f"confusion_{score}.csv",
                                     required=("category", "n_pairs", "background"))
                   for score in SCORE_NAMES},
        confusion_counts=read_table(inputs.scores / "confusion_counts.csv", required=("category",)),
        pair_scores=read_columns(inputs.scores / "pair_scores.csv", required=(
            "utt_id", "image_id", "word_index", "word", "category", "category_id", *score_columns,
            "mask_area_share", "word_duration_s", "onset_s", "offset_s", "pad_frames"),
            optional=("onset_frame", "offset_frame")),
        excluded=read_columns(inputs.scores / "excluded_pairs.csv", required=("utt_id", "reason")),
        audio_attrs=audio_attrs,
        visual_attrs=visual_attrs,
        rejects=count_rejects(inputs.rejects, inputs.results, audio_attrs, visual_attrs, scores_summary["counts"]),
        seed_table=None if inputs.seeds is None else read_table(inputs.seeds / "seed_scores.csv", required=(
            "seed", "best_epoch", *[f"{s}_{k}" for s in SCORE_NAMES for k in ("mean", "ci_low", "ci_high")],
            *[column for _, column in RETRIEVAL_FIGURES])),
        seeds_summary=None if inputs.seeds is None else read_json(inputs.seeds / "summary.json",
                                                                  ("seeds", "main_seed", "figures")),
    )


# ---------------------------------------------------------------- rejects


def count_rejects(tables: Sequence[Path], results: Path, audio_attrs: list[tuple[Path, dict]],
                  visual_attrs: list[tuple[Path, dict]], score_counts: dict) -> list[RejectCount]:
    """Items left out per stage: one row per rejects table, the feature shards' own counts
    (`n_rejected`, the items listed in each shard's `rejects` group), and the annotations
    the scores skipped (scores.on_error: skip; scores/summary.json)."""
    counts = [reject_table_count(Path(path), results) for path in tables]
    for modality, shards in (("audio", audio_attrs), ("visual", visual_attrs)):
        if shards:
            n = sum(int(attrs.get("n_rejected", 0) or 0) for _, attrs in shards)
            counts.append(RejectCount("features", f"{len(shards)} {modality} feature shard(s) (n_rejected)", n))
    if "annotations_skipped" in score_counts:
        examples = score_counts.get("annotations_skipped_examples") or [""]
        counts.append(RejectCount("scores", "scores/summary.json (annotations_skipped)",
                                  sum(int(n) for n in score_counts["annotations_skipped"].values()), str(examples[0])))
    return counts


def reject_table_count(path: Path, results: Path) -> RejectCount:
    """The rows of one rejects table (any columns; the first `problem` is kept as an example)."""
    if path.is_file() and path.stat().st_size == 0:     # nothing written: nothing rejected
        stage, relative = _stage_of(path, results)
        return RejectCount(stage, str(relative), 0)
    header = table_header(path)
    # a stage with nothing to reject may write only the header
    table = pd.read_csv(path, dtype=str, na_filter=False)
    example = ""
    if len(table):
        example = str(table["problem"].iloc[0]) if "problem" in header else ", ".join(table.iloc[0].astype(str))
    stage, relative = _stage_of(path, results)
    return RejectCount(stage, str(relative), len(table), example)


def _stage_of(path: Path, results: Path) -> tuple[str, Path]:
    """The stage a rejects table belongs to (its first folder under the results) and its
    path relative to the results; a table elsewhere is named by its own path."""
    try:
        relative = path.resolve().relative_to(results.resolve())
        return relative.parts[0], relative
    except ValueError:
        return path.parent.name, path
