"""The line a run ends on: the report's path and the headline result.

    report: results/demo/report.html — AS_object 0.507 [0.468, 0.546] (chance 0.050), AS_word ...

With several training seeds (train.seeds) AS_object adds its mean ± sd across them:
`(chance 0.050; 0.480 ± 0.031 mean ± sd over 3 seeds)`.

The report step prints it last (its output is tee'd to the terminal), and the workflow's
`onsuccess:` handler prints it again after Snakemake's own job lines, when that run
wrote the report (`run_ending`).
"""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import InputError
from .figures import SCORE_LABELS
from .results import read_json

HEADLINE_SCORES = ("as_object", "as_word")


def across_seeds(seeds_summary: dict, score: str) -> str:
    """`0.480 ± 0.031 mean ± sd over 3 seeds` of one score (seeds/summary.json; sd with ddof=1)."""
    stats = seeds_summary["figures"][f"{score}_mean"]
    if stats["sd"] is None:
        return f"{stats['mean']:.3f} over {stats['n']} seed"
    return f"{stats['mean']:.3f} ± {stats['sd']:.3f} mean ± sd over {stats['n']} seeds"


def headline(report: str | os.PathLike, scores_summary: dict, seeds_summary: dict | None = None) -> str:
    """AS_object and AS_word with their 95% intervals and chance levels (scores/summary.json's
    `overall`); with a seeds summary, AS_object's mean ± sd across the seeds."""
    overall = scores_summary["overall"]
    parts = []
    for s in HEADLINE_SCORES:
        note = f"chance {overall[f'chance_{s}_mean']:.3f}"
        if seeds_summary is not None and s == "as_object":
            note += f"; {across_seeds(seeds_summary, s)}"
        parts.append(f"{SCORE_LABELS[s]} {overall[f'{s}_mean']:.3f} [{overall[f'{s}_ci_low']:.3f}, "
                     f"{overall[f'{s}_ci_high']:.3f}] ({note})")
    return f"report: {report} — " + ", ".join(parts)


def run_ending(report: str | os.PathLike, scores_summary: str | os.PathLike, started: float,
               seeds_summary: str | os.PathLike | None = None) -> str | None:
    """The headline if `report` was written since `started` (a time.time()), else None (a
    run that stopped at the scores, or made nothing new). A summary that cannot be read
    gives the path alone with the reason: the run's ending never fails the run."""
    report = Path(report)
    if not report.is_file() or report.stat().st_mtime < started:
        return None
    try:
        seeds = None if seeds_summary is None else read_json(Path(seeds_summary), ("figures",))
        return headline(report, read_json(Path(scores_summary), ("overall",)), seeds)
    except (InputError, KeyError, TypeError, ValueError) as err:
        return f"report: {report} (no headline: {err})"
