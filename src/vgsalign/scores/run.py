"""`vgsalign score-pairs`: alignment and glancing scores of every test pair, and their tables.

Reads alignment tensors (tensors.h5, .npy or .mat, see `vgsalign.scores.tensor_io`), the test
pairs (pairs.csv) and the COCO instances JSON of the test split; writes to --out:

    pair_scores.csv        one row per scored pair: scores, random-tensor baseline, chance
    excluded_pairs.csv     pairs that could not be scored, each with its reason
    category_scores.csv    per category: counts, means, bootstrap 95% intervals
    confusion_<score>.csv  word category x (annotated category + background), per score
    confusion_counts.csv   how often each category appears in the images of another's pairs
    summary.json           options, inputs, exclusions, overall means, retrieval figures

Three steps: planning (`vgsalign.scores.plan`: what is scored, in which chunks), scoring
(`vgsalign.scores.pool` over `vgsalign.scores.worker`: chunks of utterances over --threads
processes, exact at the tensor's native resolution) and writing (`vgsalign.scores.outputs`:
the folder replaced as a whole). Every number depends only on its own utterance, so the
results do not depend on the number of processes.

Memory: the worker processes start before the pairs are read and hold one chunk at a
time; this process keeps the pairs table and a row of numbers per scored pair (numeric
arrays, no Python object per pair), sums the confusion rows into the tables' cells as
each chunk arrives, and writes pair_scores.csv a block of rows at a time.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import time
from typing import Any

import numpy as np

from ..errors import InputError
from ..runtime import release_freed_memory, usable_cpus
from ..settings import settings_from_json
from .aggregates import ConfusionSums
from .alignment import NORMALIZATIONS, SCORE_NAMES, SOFTMAX_CHOICES
from .instances import ON_ERROR_CHOICES
from .outputs import Scored, build_summary, build_tables, count_reasons, scored_frame, write_run
from .plan import (MODES, RANDOM_BASELINES, FrameSettings, ScoreSettings, ScoringPlan, inspect_scoring,
                   plan_scoring)
from .pool import WorkerPool, run_here
from .worker import VALUE_COLUMNS


def _read_retrieval(path) -> dict | None:
    if path is None:
        return None
    try:
        with open(path) as fh:
            return json.load(fh)
    except FileNotFoundError:
        raise InputError(path, "retrieval figures not found") from None
    except json.JSONDecodeError as err:
        raise InputError(path, f"not valid JSON ({err})") from None


def score_plan(plan: ScoringPlan, pool: WorkerPool | None) -> Scored:
    """Run every chunk (over the pool's workers, or here without one) and merge the results.

    The per-pair values are kept (pair_scores.csv has a row per pair); a chunk's confusion
    rows, several per pair, are summed into the confusion tables' cells as it arrives."""
    n_pairs = len(plan.pairs)
    values = np.full((n_pairs, len(VALUE_COLUMNS)), np.nan)
    reason = plan.reason.copy()
    confusion = ConfusionSums(plan.instances.category_ids.values())
    for index, result in (run_here(plan) if pool is None else pool.run(plan)):
        values[result.pair_index] = result.values
        status = np.array(result.status, dtype=object)
        reason[result.pair_index] = np.where(status == "", reason[result.pair_index], status)
        # only the rows of pairs scored in the end count (an excluded pair has no row in the tables)
        kept = reason[result.conf_pair] == ""
        confusion.add(index, plan.category_ids[result.conf_pair[kept]], result.conf_region[kept],
                      result.conf_values[kept])
    confusion.check_complete(plan.n_chunks)
    if not (reason == "").any():
        raise InputError(plan.pairs_path, f"no pair could be scored; exclusions: {count_reasons(reason)}")
    if not np.isfinite(values[reason == ""]).all():      # defensive: never a NaN in a mean
        raise RuntimeError("internal error: a scored pair has a non-finite value")
    return Scored(values=values, reason=reason, confusion=confusion)


def worker_count(threads: int, n_tensors: int, chunk_utterances: int) -> int:
    """Worker processes to start before the chunks are known: at most one per chunk the
    tensor file could give (1: score in this process)."""
    return max(1, min(threads, -(-n_tensors // max(1, chunk_utterances))))


def run_scores(*, tensors: str | os.PathLike, pairs_csv: str | os.PathLike, instances_json: str | os.PathLike,
               out_dir: str | os.PathLike, settings: ScoreSettings, frames: FrameSettings | None = None,
               utt_ids: str | os.PathLike | None = None, frames_per_tensor_frame: float | None = None,
               threads: int | None = None, retrieval: str | os.PathLike | None = None, on_missing: str = "error",
               chunk_utterances: int = 64, workers: int | None = None) -> dict:
    """Score every pair and write the tables under out_dir; returns the summary.

    threads: worker processes (default: the usable CPUs); `workers` is its earlier name."""
    started = time.time()
    settings.validate()
    threads = threads if threads is not None else workers
    threads = usable_cpus() if threads is None else max(1, int(threads))
    retrieval_figures = _read_retrieval(retrieval)
    frames = frames or FrameSettings(hop_s=None, max=None)
    inspected = inspect_scoring(tensors=tensors, settings=settings, frames=frames, utt_ids=utt_ids,
                                frames_per_tensor_frame=frames_per_tensor_frame)
    n_workers = worker_count(threads, inspected[0].shape[0], chunk_utterances)
    # started before the pairs and annotations are read, so that no worker holds them
    with WorkerPool(inspected[1], n_workers) if n_workers > 1 else contextlib.nullcontext() as pool:
        plan = plan_scoring(tensors=tensors, pairs_csv=pairs_csv, instances_json=instances_json, settings=settings,
                            frames=frames, utt_ids=utt_ids, frames_per_tensor_frame=frames_per_tensor_frame,
                            on_missing=on_missing, chunk_utterances=chunk_utterances, inspected=inspected)
        del inspected
        release_freed_memory()  # what reading the pairs and annotations freed, before the results arrive
        if plan.instances.skipped:
            print(f"vgsalign score-pairs: warning: {sum(plan.instances.skipped.values())} annotation(s) of "
                  f"{instances_json} left out (on_error skip): {plan.instances.skipped}; first: "
                  f"{plan.instances.skipped_examples[0]}", flush=True)
        scored = score_plan(plan, pool)
    frame = scored_frame(plan, scored)
    tables = build_tables(plan, scored, frame)
    inputs = {"tensors": str(tensors), "pairs": str(pairs_csv), "instances": str(instances_json),
              "retrieval": None if retrieval is None else str(retrieval), "utt_ids": utt_ids and str(utt_ids)}
    summary = build_summary(plan=plan, scored=scored, frame=frame, inputs=inputs,
                            retrieval_figures=retrieval_figures, workers=threads, started=started)
    release_freed_memory()      # the tables' temporaries, before pair_scores.csv's blocks
    write_run(out_dir, plan, scored, frame, tables, summary)
    return summary


# ---------------------------------------------------------------- command line


SETTING_FLAGS = {
    "mode": "--mode", "softmax": "--softmax", "as_word_normalization": "--as-word-normalization",
    "grid": "--grid", "mask_threshold": "--mask-threshold", "seed": "--seed", "bootstrap": "--bootstrap",
    "on_error": "--on-error", "random_baseline": "--random-baseline",
}
FRAME_KEYS = ("hop_s", "max", "padding")      # the config's frames section; scoring reads hop_s and max


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vgsalign score-pairs",
        description="Alignment and glancing scores of alignment tensors against COCO object masks.",
    )
    parser.add_argument("--tensors", required=True, help="tensors.h5, .npy (N,T,H,W) or .mat (out_layer N,T,H*W)")
    parser.add_argument("--pairs", required=True, help="pairs.csv of the test set")
    parser.add_argument("--instances", required=True, help="COCO instances JSON of the test split")
    parser.add_argument("--out", required=True, help="output folder (replaced as a whole when the run succeeds)")
    parser.add_argument("--scores", help="JSON object: the config's `scores` section (explicit flags must agree)")
    parser.add_argument("--frames", help='JSON object: the config\'s `frames` section, e.g. {"hop_s": 0.01, '
                                         '"max": 512}; the tensor file\'s own attributes must agree')
    parser.add_argument("--mode", choices=MODES, help="reference (default) | exact")
    parser.add_argument("--softmax", choices=SOFTMAX_CHOICES, help="which families get softmax (default both)")
    parser.add_argument("--as-word-normalization", choices=NORMALIZATIONS, help="object (default) | image")
    parser.add_argument("--grid", type=int, help="reference mask resolution (default 224)")
    parser.add_argument("--mask-threshold", type=float, help="reference resized-mask threshold (default 0.01)")
    parser.add_argument("--seed", type=int, help="random baseline and bootstrap seed (default 0)")
    parser.add_argument("--bootstrap", type=int, help="bootstrap resamples (default 1000)")
    parser.add_argument("--on-error", choices=ON_ERROR_CHOICES,
                        help="a malformed annotation: stop (default) or skip it and count it")
    parser.add_argument("--random-baseline", choices=RANDOM_BASELINES,
                        help="native (default): tensor-shaped, scored as the model | original: 512 x 224 x 224, "
                             "no softmax")
    parser.add_argument("--utt-ids", help="utterance ids, one per line (default <tensors stem>.utt_ids.txt "
                                          "for .npy/.mat; overrides utt_id of an .h5)")
    parser.add_argument("--frames-per-tensor-frame", type=float,
                        help="input frames per tensor frame r, when the file does not record it "
                             "(default frames max / T)")
    parser.add_argument("--threads", type=int, default=None, help="worker processes (default: the usable CPUs)")
    parser.add_argument("--on-missing", choices=("error", "exclude"), default="error",
                        help="pairs whose utterance has no tensor: stop (default) or exclude and report")
    parser.add_argument("--retrieval", help="retrieval.json of training, joined into summary.json")
    return parser


def settings_from_args(args: argparse.Namespace) -> ScoreSettings:
    """--scores (the rule's config slice) plus flags; a flag that contradicts it is an error."""
    settings = settings_from_json(ScoreSettings, args.scores or "{}", where="--scores", section="scores")
    for name, flag in SETTING_FLAGS.items():
        value = getattr(args, name)
        if value is None:
            continue
        if args.scores and value != getattr(settings, name):
            raise InputError(flag, f"{value!r} contradicts --scores ({name} = {getattr(settings, name)!r})")
        setattr(settings, name, value)
    settings.validate("--scores" if args.scores else "options")
    return settings


def frames_from_args(text: str | None) -> FrameSettings:
    if not text:
        return FrameSettings(hop_s=None, max=None)
    try:
        values: Any = json.loads(text)
    except json.JSONDecodeError as err:
        raise InputError("--frames", f"not valid JSON ({err})") from None
    if not isinstance(values, dict) or set(values) - set(FRAME_KEYS):
        raise InputError("--frames", f"expected a JSON object with keys among {list(FRAME_KEYS)}, got {text}")
    hop, max_frames = values.get("hop_s"), values.get("max")
    if hop is not None and not (isinstance(hop, (int, float)) and hop > 0):
        raise InputError("--frames", f"hop_s = {hop!r}; expected a positive number")
    if max_frames is not None and not (isinstance(max_frames, int) and max_frames >= 1):
        raise InputError("--frames", f"max = {max_frames!r}; expected a positive integer")
    return FrameSettings(hop_s=hop, max=max_frames)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    settings = settings_from_args(args)
    summary = run_scores(
        tensors=args.tensors, pairs_csv=args.pairs, instances_json=args.instances, out_dir=args.out,
        settings=settings, frames=frames_from_args(args.frames), utt_ids=args.utt_ids,
        frames_per_tensor_frame=args.frames_per_tensor_frame, threads=args.threads, retrieval=args.retrieval,
        on_missing=args.on_missing,
    )
    counts, overall = summary["counts"], summary["overall"]
    print(f"scored {counts['pairs_scored']} pairs ({counts['pairs_excluded']} excluded: "
          f"{counts['excluded_by_reason']}) in {summary['seconds']} s")
    for score in SCORE_NAMES:
        print(f"  {score:10s} {overall[f'{score}_mean']:.4f} "
              f"[{overall[f'{score}_ci_low']:.4f}, {overall[f'{score}_ci_high']:.4f}]  "
              f"random {overall[f'random_{score}_mean']:.4f}  chance {overall[f'chance_{score}_mean']:.4f}")
    return 0


if __name__ == "__main__":
    from ..cli import run_main

    raise SystemExit(run_main("score-pairs", main))
