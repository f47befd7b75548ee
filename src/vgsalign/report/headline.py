"""The line a run ends on: the report's path and the headline result.

    report: results/demo/report.html — AS_object 0.507 [0.468, 0.546] (chance 0.050), AS_word ...

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


def headline(report: str | os.PathLike, scores_summary: dict) -> str:
    """AS_object and AS_word with their 95% intervals and chance levels (scores/summary.json's `overall`)."""
    overall = scores_summary["overall"]
    parts = [f"{SCORE_LABELS[s]} {overall[f'{s}_mean']:.3f} [{overall[f'{s}_ci_low']:.3f}, "
             f"{overall[f'{s}_ci_high']:.3f}] (chance {overall[f'chance_{s}_mean']:.3f})" for s in HEADLINE_SCORES]
    return f"report: {report} — " + ", ".join(parts)


def run_ending(report: str | os.PathLike, scores_summary: str | os.PathLike, started: float) -> str | None:
    """The headline if `report` was written since `started` (a time.time()), else None (a
    run that stopped at the scores, or made nothing new). A summary that cannot be read
    gives the path alone with the reason: the run's ending never fails the run."""
    report = Path(report)
    if not report.is_file() or report.stat().st_mtime < started:
        return None
    try:
        return headline(report, read_json(Path(scores_summary), ("overall",)))
    except (InputError, KeyError, TypeError, ValueError) as err:
        return f"report: {report} (no headline: {err})"
