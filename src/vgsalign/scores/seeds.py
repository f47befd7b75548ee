"""`vgsalign seeds-summary`: the same run trained with several seeds, side by side.

For each seed (its training folder and its scores folder) one row of `seed_scores.csv`:
the four scores with their bootstrap 95% intervals (scores/summary.json, `overall`), the
validation retrieval of the best checkpoint, R@10 both directions over the evaluated
validation images and the original's pooled R@10 on mean-pooled outputs
(train/retrieval.json), the best epoch and the epochs trained (train/history.csv).
`summary.json` gives, for each figure, the mean, the sample standard deviation (ddof=1;
null for a single seed), min, max and n across the seeds. The interval bounds stay per
seed: they describe one model's test set, not the spread between seeds.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Sequence

import pandas as pd

from ..atomic import write_csv, write_json
from ..errors import InputError
from ..tables import read_table
from .alignment import SCORE_NAMES

SD_DDOF = 1
# train/retrieval.json: (key path, column)
RETRIEVAL_FIGURES = (
    (("image_retrieval_from_captions", "r10"), "r10_a2i"),
    (("caption_retrieval_from_images", "r10"), "r10_i2a"),
    (("pooled_r10_meanpool", "r10_a2i"), "meanpool_r10_a2i"),
    (("pooled_r10_meanpool", "r10_i2a"), "meanpool_r10_i2a"),
)
# the columns summarised across seeds (the intervals are per seed only)
FIGURES = (*[f"{s}_mean" for s in SCORE_NAMES], *[column for _, column in RETRIEVAL_FIGURES], "best_epoch")


def _read_json(path: Path) -> dict:
    if not path.is_file():
        raise InputError(path, "result file not found")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise InputError(path, f"not valid JSON ({err})") from None
    if not isinstance(data, dict):
        raise InputError(path, "expected a JSON object")
    return data


def _lookup(data: dict, keys: Sequence[str], path: Path) -> float:
    value = data
    for key in keys:
        if not isinstance(value, dict) or key not in value:
            raise InputError(path, f"missing key {'.'.join(keys)}")
        value = value[key]
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise InputError(path, f"{'.'.join(keys)} = {value!r}; expected a number")
    return float(value)


def seed_row(seed: int, train_dir: Path, scores_dir: Path) -> dict:
    """One seed's figures, read from its training and scores folders."""
    scores_path, retrieval_path, history_path = (scores_dir / "summary.json", train_dir / "retrieval.json",
                                                 train_dir / "history.csv")
    scores = _read_json(scores_path)
    row: dict = {"seed": seed}
    for s in SCORE_NAMES:
        for part in ("mean", "ci_low", "ci_high"):
            row[f"{s}_{part}"] = _lookup(scores, ("overall", f"{s}_{part}"), scores_path)
    retrieval = _read_json(retrieval_path)
    for keys, column in RETRIEVAL_FIGURES:
        row[column] = _lookup(retrieval, keys, retrieval_path)
    history = read_table(history_path, required=("epoch",))
    best_epoch = int(_lookup(retrieval, ("best_epoch",), retrieval_path))
    if best_epoch not in set(history["epoch"]):
        raise InputError(history_path, f"no row for best_epoch {best_epoch} of {retrieval_path}")
    row["best_epoch"] = best_epoch
    row["epochs_trained"] = int(len(history))
    return row


def figure_stats(values: Sequence[float]) -> dict:
    """mean, sd (ddof=1; None for a single value), min, max and n of one figure across seeds."""
    n = len(values)
    mean = sum(values) / n
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - SD_DDOF)) if n > SD_DDOF else None
    return {"mean": mean, "sd": sd, "min": min(values), "max": max(values), "n": n}


def summarise(rows: list[dict]) -> dict:
    """The across-seeds summary of the per-seed rows (the first row is train.seed's model)."""
    return {
        "seeds": [row["seed"] for row in rows],
        "main_seed": rows[0]["seed"],
        "sd": f"sample standard deviation across seeds (ddof={SD_DDOF}); null with one seed",
        "figures": {name: figure_stats([row[name] for row in rows]) for name in FIGURES},
    }


def seeds_summary(seeds: Sequence[int], train_dirs: Sequence[Path], scores_dirs: Sequence[Path],
                  table: Path, summary: Path) -> dict:
    """Read every seed's results, write `table` (one row per seed) and `summary`, atomically."""
    if not seeds:
        raise InputError("--seeds", "no seed given")
    if not len(seeds) == len(train_dirs) == len(scores_dirs):
        raise InputError("--seeds", f"{len(seeds)} seeds but {len(train_dirs)} training and "
                                    f"{len(scores_dirs)} scores folders; expected one of each per seed")
    if len(set(seeds)) != len(seeds):
        raise InputError("--seeds", f"a seed is given twice: {list(seeds)}")
    rows = [seed_row(seed, Path(train_dir), Path(scores_dir))
            for seed, train_dir, scores_dir in zip(seeds, train_dirs, scores_dirs)]
    result = {**summarise(rows), "sources": {str(seed): {"train": str(train_dir), "scores": str(scores_dir)}
                                             for seed, train_dir, scores_dir in zip(seeds, train_dirs, scores_dirs)}}
    write_csv(pd.DataFrame(rows), table)
    write_json(result, summary)
    return result


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vgsalign seeds-summary",
                                     description="Scores and retrieval of models trained with several seeds, "
                                                 "one row per seed, with mean and sd (ddof=1) across seeds.")
    parser.add_argument("--seeds", required=True, nargs="+", type=int, help="the seeds, the run's main one first")
    parser.add_argument("--train-dirs", required=True, nargs="+", type=Path,
                        help="each seed's training folder (history.csv, retrieval.json), in the order of --seeds")
    parser.add_argument("--scores-dirs", required=True, nargs="+", type=Path,
                        help="each seed's scores folder (summary.json), in the order of --seeds")
    parser.add_argument("--table", required=True, type=Path, help="seed_scores.csv: one row per seed")
    parser.add_argument("--summary", required=True, type=Path, help="summary.json: mean, sd, min, max, n per figure")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    result = seeds_summary(args.seeds, args.train_dirs, args.scores_dirs, args.table, args.summary)
    stats = result["figures"]["as_object_mean"]
    sd = "–" if stats["sd"] is None else f"{stats['sd']:.3f}"
    print(f"wrote {args.table} and {args.summary}: AS_object {stats['mean']:.3f} ± {sd} (mean ± sd, ddof=1) "
          f"over {stats['n']} seeds, range {stats['min']:.3f}-{stats['max']:.3f}", flush=True)
    return 0


if __name__ == "__main__":
    from ..cli import run_main

    raise SystemExit(run_main("seeds-summary", main))
