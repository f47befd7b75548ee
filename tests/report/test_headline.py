"""How a run ends: the report's path and the headline result on one line."""

from __future__ import annotations

import json
import os
import time

import pytest
from tests.helpers.report import make_run

from vgsalign.report.headline import headline, run_ending
from vgsalign.report.page import main

LINE = r"report: {path} — AS_object {0:.3f} [{1:.3f}, {2:.3f}] (chance {3:.3f}), AS_word {4:.3f} [{5:.3f}, {6:.3f}] (chance {7:.3f})"


def _expected(path, overall: dict) -> str:
    values = [overall[f"{s}_{k}"] for s in ("as_object", "as_word") for k in ("mean", "ci_low", "ci_high")]
    chance = [overall["chance_as_object_mean"], overall["chance_as_word_mean"]]
    return LINE.format(*values[:3], chance[0], *values[3:], chance[1], path=path)


def test_headline_names_the_report_and_both_scores_with_intervals_and_chance():
    overall = {"as_object_mean": 0.5071, "as_object_ci_low": 0.4679, "as_object_ci_high": 0.5462,
               "chance_as_object_mean": 0.0504, "as_word_mean": 0.1824, "as_word_ci_low": 0.1561,
               "as_word_ci_high": 0.2064, "chance_as_word_mean": 0.0712}
    assert headline("results/demo/report.html", {"overall": overall}) == (
        "report: results/demo/report.html — AS_object 0.507 [0.468, 0.546] (chance 0.050), "
        "AS_word 0.182 [0.156, 0.206] (chance 0.071)")


def test_the_report_step_ends_on_the_headline(tmp_path, capsys):
    run = make_run(tmp_path / "run", n_categories=4, n_images=4, captions_per_image=2, pairs_per_caption=2)
    out = tmp_path / "report.html"
    assert main(run.report_args(out, tmp_path / "figures", n_examples=1)) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    overall = json.loads((run.results / "scores/summary.json").read_text())["overall"]
    assert lines[-1] == _expected(out, overall)


def test_run_ending_only_for_a_report_this_run_wrote(tmp_path):
    report, summary = tmp_path / "report.html", tmp_path / "summary.json"
    overall = {f"{p}{s}_{k}": 0.25 for p in ("", "chance_") for s in ("as_object", "as_word")
               for k in ("mean", "ci_low", "ci_high")}
    summary.write_text(json.dumps({"overall": overall}))
    assert run_ending(report, summary, started=time.time()) is None           # no report (a run to the scores)
    report.write_text("<html></html>")
    old = time.time() - 3600
    os.utime(report, (old, old))
    assert run_ending(report, summary, started=time.time() - 60) is None      # a report from an earlier run
    assert run_ending(report, summary, started=old - 1) == _expected(report, overall)
    summary.write_text("{not json")
    line = run_ending(report, summary, started=old - 1)
    assert line.startswith(f"report: {report} (no headline: ") and "not valid JSON" in line
    summary.unlink()
    assert "result file not found" in run_ending(report, summary, started=old - 1)


@pytest.mark.parametrize("key", ["overall", "as_word_ci_low"])
def test_run_ending_survives_a_summary_without_the_scores(tmp_path, key):
    report, summary = tmp_path / "report.html", tmp_path / "summary.json"
    report.write_text("")
    summary.write_text(json.dumps({"overall": {"as_object_mean": 0.5}} if key != "overall" else {}))
    assert run_ending(report, summary, started=0).startswith(f"report: {report} (no headline: ")


def test_with_several_seeds_as_object_adds_its_mean_and_sd_across_them(tmp_path):
    overall = {"as_object_mean": 0.5071, "as_object_ci_low": 0.4679, "as_object_ci_high": 0.5462,
               "chance_as_object_mean": 0.0504, "as_word_mean": 0.1824, "as_word_ci_low": 0.1561,
               "as_word_ci_high": 0.2064, "chance_as_word_mean": 0.0712}
    seeds = {"figures": {"as_object_mean": {"mean": 0.4803, "sd": 0.0314, "min": 0.45, "max": 0.51, "n": 3}}}
    assert headline("r.html", {"overall": overall}, seeds) == (
        "report: r.html — AS_object 0.507 [0.468, 0.546] (chance 0.050; 0.480 ± 0.031 mean ± sd over 3 seeds), "
        "AS_word 0.182 [0.156, 0.206] (chance 0.071)")
    one = {"figures": {"as_object_mean": {"mean": 0.5071, "sd": None, "min": 0.5071, "max": 0.5071, "n": 1}}}
    assert "(chance 0.050; 0.507 over 1 seed)" in headline("r.html", {"overall": overall}, one)
    # the run's ending reads the seeds' summary beside the scores'
    report, summary, seeds_file = tmp_path / "report.html", tmp_path / "summary.json", tmp_path / "seeds.json"
    report.write_text("")
    summary.write_text(json.dumps({"overall": overall}))
    seeds_file.write_text(json.dumps(seeds))
    assert run_ending(report, summary, 0, seeds_file) == headline(report, {"overall": overall}, seeds)
    seeds_file.unlink()
    assert "(no headline: " in run_ending(report, summary, 0, seeds_file)
