"""The test-set funnel: from utterances read to (utterance, noun, category) pairs.

Reads the per-step reports under `testdata/reports/` and `pairs.csv`; writes `summary.json`
and a readable `summary.md`.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..atomic import write_json, write_text
from ..errors import InputError

STEPS = ("dataset", "frames", "nouns", "vocab", "labels", "similarities", "pairs")


def load_reports(report_dir: Path) -> dict[str, dict]:
    reports = {}
    for step in STEPS:
        path = report_dir / f"{step}.json"
        if not path.is_file():
            raise InputError(path, f"report of the {step} step not found")
        reports[step] = json.loads(path.read_text())
    return reports


def funnel(reports: dict[str, dict]) -> list[tuple[str, int | float | str]]:
    d, f, n, v, lab, s, p = (reports[k] for k in STEPS)
    return [
        ("captions read", d["captions_read"]),
        # reports written before broken files could be skipped have no count
        ("caption files rejected (broken, skipped)", d.get("captions_rejected", 0)),
        ("captions dropped while reading", d["captions_dropped"]),
        ("utterances", d["utterances"]),
        ("words", d["words"]),
        ("utterances cut by length", f["utterances_cut"]),
        ("words partly past the cut (dropped)", f["words_partly_cut"]),
        ("words past the cut (dropped)", f["words_beyond_cut"]),
        ("nouns (all words)", n["nouns"]),
        ("nouns inside the input", n["nouns_kept"]),
        ("nouns unknown to the word vectors", v["nouns_oov"]),
        (f"nouns dropped by vocabulary ({v['policy']})", v["nouns_dropped"]),
        ("utterances dropped by vocabulary", v["utterances_losing_all_nouns"]),
        ("test images", lab["images"]),
        ("images without labels", lab["images_without_labels"]),
        ("nouns of images without labels", s["nouns_without_labels"]),
        ("noun-label similarities", s["similarities"]),
        ("noun-label pairs with no known label word", s["labels_unknown"]),
        (f"nouns below the threshold ({p['threshold']:g})", p["nouns_below_threshold"]),
        ("pairs (the test set)", p["pairs"]),
        ("utterances in the test set", p["utterances"]),
        ("images in the test set", p["images"]),
    ]


def markdown(rows: list[tuple[str, object]], reports: dict[str, dict]) -> str:
    lines = ["# Test set funnel", "", "| step | count |", "|---|---:|"]
    lines += [f"| {name} | {value} |" for name, value in rows]
    lines += ["", "## Pairs per category", "", "| category | pairs |", "|---|---:|"]
    per_cat = reports["pairs"]["pairs_per_category"]
    lines += [f"| {cat} | {n} |" for cat, n in sorted(per_cat.items(), key=lambda kv: (-kv[1], kv[0]))]
    drops = reports["dataset"]["drop_reasons"]
    if drops:
        lines += ["", "## Captions dropped while reading", "", "| reason | captions |", "|---|---:|"]
        lines += [f"| {reason} | {n} |" for reason, n in sorted(drops.items())]
    oov = reports["vocab"]["oov_words"]
    if oov:
        lines += ["", "Nouns unknown to the word vectors: " + ", ".join(f"{w} ({n})" for w, n in list(oov.items())[:30])]
    unknown = reports["similarities"]["unknown_label_words"]
    if unknown:
        lines += ["", "Label words unknown to the word vectors: " + ", ".join(sorted(unknown))]
    return "\n".join(lines) + "\n"


def build(report_dir: Path, out_json: Path, out_md: Path) -> dict:
    reports = load_reports(report_dir)
    rows = funnel(reports)
    summary = {
        "funnel": {name: value for name, value in rows},
        "pairs_per_category": reports["pairs"]["pairs_per_category"],
        "threshold": reports["pairs"]["threshold"],
        "vocab_policy": reports["vocab"]["policy"],
        "frames": reports["frames"]["settings"],
        "steps": reports,
    }
    write_json(summary, out_json)
    write_text(markdown(rows, reports), out_md)
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="vgsalign testdata-summary", description="The test-set funnel.")
    parser.add_argument("--reports", required=True, type=Path, help="folder of the per-step reports")
    parser.add_argument("--pairs", required=True, type=Path, help="pairs.csv (the summary follows it)")
    parser.add_argument("--out-json", required=True, type=Path)
    parser.add_argument("--out-md", required=True, type=Path)
    args = parser.parse_args(argv)
    if not args.pairs.is_file():
        raise InputError(args.pairs, "pairs table not found")
    summary = build(args.reports, args.out_json, args.out_md)
    print(f"{summary['funnel']['pairs (the test set)']} pairs")
    return 0


if __name__ == "__main__":
    from ..cli import run_main

    raise SystemExit(run_main("testdata-summary", main))
