"""Writing a scoring run: the tables and summary.json, into the output folder as a whole.

Every file is written into a temporary sibling folder (`.<name>.part-<pid>-<random>`),
which then replaces the output folder by two renames: a run that is killed, or runs out
of disk, leaves the previous folder as it was, never new tables beside an old
summary.json. A leftover temporary folder of a process that no longer runs is removed by
the next run. Disk-full and permission errors name the path they hit.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import pandas as pd

from .. import __version__
from ..atomic import write_csv, write_json
from ..errors import InputError
from .aggregates import ConfusionSums, category_table, confusion_counts, confusion_tables, overall_summary
from .alignment import SCORE_NAMES, softmax_families
from .plan import EXCLUSION_REASONS, ScoringPlan
from .worker import VALUE_COLUMNS

OPTION_COLUMNS = ("mode", "softmax", "as_word_normalization")
PAIR_KEY_COLUMNS = ["utt_id", "image_id", "word_index", "word", "category"]
RANDOM_BASELINE_TEXT = {
    "native": "uniform [0, 1) tensor of the same shape per utterance, seeded from (seed, utt_id), "
              "scored with the same functions and options",
    "original": "the original's: uniform [0, 1) tensor of L input frames x grid x grid pixels per utterance "
                "(512 x 224 x 224), seeded from (seed, utt_id), scored without softmax",
}


@dataclass
class Scored:
    """What the chunks gave, merged: per-pair values and reasons, the confusion sums."""

    values: np.ndarray | None      # (n_pairs, len(VALUE_COLUMNS)), NaN where not scored (None once in the frame)
    reason: np.ndarray             # "" scored, else an exclusion reason
    confusion: ConfusionSums       # the confusion rows of the scored pairs, summed per cell


def count_reasons(reason: np.ndarray) -> dict[str, int]:
    names, counts = np.unique(reason[reason != ""].astype(str), return_counts=True)
    return {str(n): int(c) for n, c in zip(names, counts)}


# ---------------------------------------------------------------- the output folder


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _remove_leftovers(out_dir: Path) -> None:
    """Temporary folders of earlier runs over the same --out whose process is gone."""
    for leftover in out_dir.parent.glob(f".{out_dir.name}.part-*"):
        pid = leftover.name.split(".part-", 1)[1].split("-", 1)[0]
        if pid.isdigit() and not _process_alive(int(pid)):
            shutil.rmtree(leftover, ignore_errors=True)


@contextlib.contextmanager
def atomic_directory(out_dir: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary folder beside out_dir; when the block succeeds it becomes out_dir."""
    out_dir = Path(out_dir)
    try:
        out_dir.parent.mkdir(parents=True, exist_ok=True)
        _remove_leftovers(out_dir)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.part-{os.getpid()}-", dir=out_dir.parent))
        os.chmod(tmp, 0o777 & ~_umask())
    except OSError as err:
        raise InputError(err.filename or out_dir.parent, f"cannot create the output folder ({err.strerror})") from None
    try:
        yield tmp
        old = None
        if out_dir.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.old-{os.getpid()}-", dir=out_dir.parent))
            os.replace(out_dir, old / out_dir.name)
        os.replace(tmp, out_dir)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except OSError as err:
        raise InputError(err.filename or out_dir, f"cannot write the scores ({err.strerror})") from None
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# ---------------------------------------------------------------- tables

# pairs.csv columns copied into pair_scores.csv after the scores, where present
TIMING_COLUMNS = ("onset_s", "offset_s", "onset_frame", "offset_frame", "pad_frames")
# pair_scores.csv is written this many rows at a time, so it never exists whole in memory
PAIR_BLOCK_ROWS = 4096


def utterance_codes(utt_ids: list[str]) -> np.ndarray:
    """Per tensor row, the rank of its utterance id in sorted order: grouping and sorting
    these integers gives what the ids themselves give, without a string per pair."""
    ranks = np.empty(len(utt_ids), dtype=np.int64)
    ranks[sorted(range(len(utt_ids)), key=utt_ids.__getitem__)] = np.arange(len(utt_ids))
    return ranks


def scored_frame(plan: ScoringPlan, scored: Scored) -> pd.DataFrame:
    """The scored pairs' numbers in pair order: what the per-category tables, the
    confusions and the summary read (utt_id holds `utterance_codes`, not the ids)."""
    index = np.flatnonzero(scored.reason == "")
    pairs = plan.pairs
    frame = pd.DataFrame({
        "utt_id": utterance_codes(plan.utt_ids)[plan.rows[index]],
        "image_id": plan.image_ids[index],
        "category": pairs["category"].iloc[index].reset_index(drop=True),
        "category_id": plan.category_ids[index],
    })
    for k, column in enumerate(VALUE_COLUMNS):
        frame[column] = scored.values[index, k]
    frame["zero_attention"] = frame["zero_attention"].astype(bool)
    scored.values = None            # the frame holds them now
    if "onset_s" in pairs.columns and "offset_s" in pairs.columns:
        frame["word_duration_s"] = (pairs["offset_s"].to_numpy(dtype=np.float64)[index]
                                    - pairs["onset_s"].to_numpy(dtype=np.float64)[index])
    else:
        frame["word_duration_s"] = ((pairs["offset_frame"].to_numpy()[index] - pairs["onset_frame"].to_numpy()[index])
                                    * plan.setup.timing.hop_s)
    return frame


def write_pair_scores(path: Path, plan: ScoringPlan, scored: Scored, frame: pd.DataFrame, options: dict) -> None:
    """pair_scores.csv, PAIR_BLOCK_ROWS rows at a time (the same bytes as one whole table)."""
    index = np.flatnonzero(scored.reason == "")
    pairs = plan.pairs
    with open(path, "w", newline="") as fh:
        for first in range(0, len(index), PAIR_BLOCK_ROWS):
            block = slice(first, first + PAIR_BLOCK_ROWS)
            base = pairs.iloc[index[block]].reset_index(drop=True)
            table = base[PAIR_KEY_COLUMNS].copy()
            table["category_id"] = frame["category_id"].to_numpy()[block]
            for column in [*VALUE_COLUMNS, "word_duration_s"]:
                table[column] = frame[column].to_numpy()[block]
            for column in TIMING_COLUMNS:
                if column in base.columns:
                    table[column] = base[column].to_numpy()
            for key, value in options.items():
                table[key] = value
            table.to_csv(fh, index=False, header=first == 0)


def run_options(plan: ScoringPlan) -> dict:
    """The options every table repeats in its last columns."""
    return {k: getattr(plan.setup.settings, k) for k in OPTION_COLUMNS}


def build_tables(plan: ScoringPlan, scored: Scored, frame: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """Every CSV of the run but pair_scores.csv (`write_pair_scores`), by file name."""
    settings, reason = plan.setup.settings, scored.reason
    options = run_options(plan)
    excluded = plan.pairs.iloc[np.flatnonzero(reason != "")][PAIR_KEY_COLUMNS].copy()
    excluded["reason"] = reason[reason != ""].astype(str)
    categories = category_table(frame, settings.bootstrap, settings.seed)
    confusion = scored.confusion
    names = plan.instances.category_names
    tables = {"excluded_pairs.csv": excluded, "category_scores.csv": categories}
    tables.update({f"confusion_{s}.csv": t for s, t in confusion_tables(frame, confusion, names).items()})
    for table in tables.values():
        for key, value in options.items():
            table[key] = value
    tables["confusion_counts.csv"] = confusion_counts(confusion, names)
    return tables


def build_summary(*, plan: ScoringPlan, scored: Scored, frame: pd.DataFrame, inputs: dict,
                  retrieval_figures: dict | None, workers: int, started: float) -> dict:
    settings, info, timing = plan.setup.settings, plan.setup.info, plan.setup.timing
    instances = plan.instances
    softmax_as, softmax_gs = softmax_families(settings.softmax)
    return {
        "options": {
            **asdict(settings), "softmax_as_family": softmax_as, "softmax_gs_family": softmax_gs,
            "without_softmax": "S = Q = max(A, 0): the tensor clipped at 0, no normalisation before the shares",
            "on_zero_attention": "a frame, cell or word with no attention at all has share 0",
            "random_baseline_tensor": RANDOM_BASELINE_TEXT[settings.random_baseline],
        },
        "inputs": {
            **inputs, "tensor_format": info.format, "tensor_shape": list(info.shape),
            "tensor_attrs": {k: v for k, v in info.attrs.items() if isinstance(v, (str, int, float, bool))},
            "time_mapping": {
                "input_frames_per_frame": timing.input_frames_per_frame,
                "input_frames_offset": timing.input_frames_offset, "hop_s": timing.hop_s,
                "input_frames_covered": timing.n_input_frames, "sources": timing.sources,
            },
        },
        "counts": {
            "pairs_in_table": int(len(plan.pairs)), "pairs_scored": int(len(frame)),
            "pairs_excluded": int((scored.reason != "").sum()), "excluded_by_reason": count_reasons(scored.reason),
            "exclusion_reasons": dict(EXCLUSION_REASONS),
            "annotations_skipped": dict(instances.skipped),
            "annotations_skipped_examples": list(instances.skipped_examples),
            "utterances_scored": int(frame["utt_id"].nunique()),
            "images_scored": int(frame["image_id"].nunique()),
            "categories_scored": int(frame["category"].nunique()),
            "pairs_with_zero_attention": int(frame["zero_attention"].sum()),
            # scored with their span clipped to the frames the tensor covers (input_frames_offset)
            "pairs_clipped_to_tensor": int((plan.clipped & (scored.reason == "")).sum()),
        },
        "overall": overall_summary(frame, settings.bootstrap, settings.seed),
        "retrieval": retrieval_figures,
        "outputs": ["pair_scores.csv", "excluded_pairs.csv", "category_scores.csv",
                    *[f"confusion_{s}.csv" for s in SCORE_NAMES], "confusion_counts.csv", "summary.json"],
        "vgsalign_version": __version__,
        "workers": workers,
        "seconds": round(time.time() - started, 3),
    }


def write_run(out_dir: str | os.PathLike, plan: ScoringPlan, scored: Scored, frame: pd.DataFrame,
              tables: dict[str, pd.DataFrame], summary: dict) -> None:
    """pair_scores.csv, the other tables and summary.json, replacing out_dir as a whole."""
    with atomic_directory(out_dir) as tmp:
        write_pair_scores(tmp / "pair_scores.csv", plan, scored, frame, run_options(plan))
        for name, table in tables.items():
            write_csv(table, tmp / name)
        write_json(summary, tmp / "summary.json")
