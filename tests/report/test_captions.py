"""Report captions: one source (captions.yaml) for the page and Snakemake's report()."""

from __future__ import annotations

import re

from tests.helpers.workflow import ROOT

from vgsalign.cli import run_main
from vgsalign.report.captions import Caption, captions, main, stale_rst

CAPTIONS_DIR = ROOT / "workflow" / "report"


def test_committed_rst_captions_are_the_generated_ones():
    assert stale_rst(CAPTIONS_DIR) == []
    # every .rst there comes from captions.yaml (none is kept by hand)
    assert sorted(p.name for p in CAPTIONS_DIR.glob("*.rst")) == sorted(c.rst for c in captions().values())


def test_the_rules_name_only_generated_captions():
    report_smk = (ROOT / "workflow/rules/report.smk").read_text()
    rules = report_smk + (ROOT / "workflow/rules/scores.smk").read_text()
    named = set(re.findall(r"((?:report|scores)_\w+)\.rst", rules))
    # the figures against chance take their caption's name from a list of (file, caption) pairs
    listed = re.findall(r'\("\w+", "(\w+)"\)', report_smk)
    generated = {c.rst.removesuffix(".rst") for c in captions().values()}
    assert len(listed) == 3 and len(named) >= 6
    assert named | {f"report_{c}" for c in listed} <= generated


def test_code_spans_become_code_on_the_page_and_literals_in_rst():
    entry = Caption("x", "x.rst", "From `scores/pair_scores.csv` & the <grid>.")
    assert entry.html() == "From <code>scores/pair_scores.csv</code> &amp; the &lt;grid&gt;."
    rst = entry.rst_text()
    assert rst.startswith("..") and "From ``scores/pair_scores.csv`` & the <grid>." in rst


def test_check_names_stale_files(tmp_path, capsys):
    assert main(["--write", str(tmp_path)]) == 0
    assert main(["--check", str(tmp_path)]) == 0
    first = tmp_path / next(iter(captions().values())).rst
    first.write_text(first.read_text() + "edited by hand\n")
    assert run_main("captions", main, ["--check", str(tmp_path)]) == 2
    assert str(first) in capsys.readouterr().err
