"""`vgsalign report-html`: one self-contained HTML page with the run's figures and numbers.

Reads the result files of a run (`vgsalign.report.results`), draws the figures, and writes
`--out` (report.html: inline CSS, every figure a base64 PNG, no script, no external
address) plus each figure as its own PNG under `--figures`, for Snakemake's `--report`.
Every number on the page is read from these files and printed as it is (rounded for
display), with attributes naming where it comes from (`vgsalign.report.markup`).

The first screen: the title, one line of warnings linking to their details, and the
scores with their chance levels. The step ends with one line naming the page and the
headline result (`vgsalign.report.headline`), which the workflow's log and terminal both
show.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from .. import __version__
from ..atomic import write_text
from ..corpus.coco import open_coco
from ..errors import InputError
from ..scores.alignment import SCORE_NAMES
from ..settings import json_object, settings_from_json
from . import sections
from .captions import caption
from .chance import chance_corrected_bars, scatter_mask_area, scatter_word_duration
from .examples import choose_examples, load_examples
from .figures import (
    SCORE_LABELS, SCORE_QUESTIONS, alignment_example, category_bars, confusion_heatmap, placeholder,
    similarity_histogram, training_curves,
)
from .headline import headline
from .markup import Picture, document, esc, picture
from .notices import collect_notices
from .results import ReportInputs, Results, read_results


@dataclass
class ReportSettings:
    """The `report` config slice."""

    n_examples: int   # alignment examples: best, median, worst by AS_object, then random
    seed: int         # random examples

    def validate(self, where: str = "--report") -> None:
        if not isinstance(self.n_examples, int) or self.n_examples < 0:
            raise InputError(where, f"n_examples = {self.n_examples!r}; expected a non-negative integer")
        if not isinstance(self.seed, int) or self.seed < 0:
            raise InputError(where, f"seed = {self.seed!r}; expected a non-negative integer")


# ---------------------------------------------------------------- figures


def _figure(name: str, title: str, caption_name: str, fig, figures_dir: Path, **options) -> Picture:
    return picture(name, title, caption(caption_name).html(), fig, figures_dir, **options)


def draw_figures(results: Results, examples: list, settings: ReportSettings, threshold: float, vectors_name: str,
                 figures_dir: Path) -> dict[str, list[Picture]]:
    """Every figure of the page, by section, each also written as a PNG under figures_dir."""
    figures_dir.mkdir(parents=True, exist_ok=True)
    pairs = results.pair_scores
    return {
        "test-set": [_figure("similarities", "Noun-label similarities", "similarities",
                             similarity_histogram(results.similarities, threshold, vectors_name), figures_dir)],
        "training": [_figure("training", "Training curves", "training",
                             training_curves(results.history, results.retrieval), figures_dir)],
        "categories": [_figure(f"category_{s}", f"{SCORE_LABELS[s]} per category ({SCORE_QUESTIONS[s]})",
                               "categories", category_bars(results.categories, s), figures_dir) for s in SCORE_NAMES],
        "chance": [
            _figure("chance_corrected", "Scores above chance per category", "chance_corrected",
                    chance_corrected_bars(results.categories), figures_dir),
            _figure("scatter_mask_area", "Object scores against mask area", "scatter_mask",
                    scatter_mask_area(pairs), figures_dir),
            _figure("scatter_word_duration", "Word scores against word duration", "scatter_duration",
                    scatter_word_duration(pairs), figures_dir),
        ],
        # many categories: small labels, which shrinking to the page would make unreadable
        "confusions": [_figure(f"confusion_{s}", f"{SCORE_LABELS[s]} confusion", "confusion",
                               confusion_heatmap(results.confusion[s], results.confusion_counts, s), figures_dir,
                               full_size=len(results.confusion[s]) > 20) for s in SCORE_NAMES],
        "examples": example_figures(examples, settings.n_examples, figures_dir),
    }


def example_figures(examples: list, n_examples: int, figures_dir: Path) -> list[Picture]:
    """One file per example the workflow declares, a placeholder where there are too few pairs."""
    pictures = []
    for k in range(n_examples):
        name = f"example_{k + 1:02d}"
        if k < len(examples):
            example = examples[k]
            title = f"Example {k + 1}: {example.reason}, “{example.pair['word']}” naming {example.pair['category']}"
            pictures.append(_figure(name, title, "examples", alignment_example(example), figures_dir))
        else:
            fig = placeholder(f"Example {k + 1}: fewer scored pairs than report.n_examples ({n_examples})")
            pictures.append(picture(name, f"Example {k + 1}: none", "There are not enough scored pairs.", fig,
                                    figures_dir))
    return pictures


# ---------------------------------------------------------------- the page


def page_sections(results: Results, pictures: dict[str, list[Picture]], notices: list, run_config: dict,
                  inputs: ReportInputs, threshold: float, seed: int) -> list[tuple[str, str, str]]:
    """(id, heading, body) of every section, top to bottom: the scores first."""
    def figures(section: str) -> str:
        return "".join(p.html() for p in pictures[section])

    chosen = ("Chosen among the scored pairs: the best, the median and the worst by AS_object, then random ones "
              f"(report.seed {seed}).")
    n_warnings = sum(n.level == "warning" for n in notices)
    # with several training seeds (train.seeds): each seed's scores and their spread
    across_seeds = [] if results.seeds_summary is None else [
        ("seeds-section", "Across seeds",
         sections.seeds_html(results.seed_table, results.seeds_summary, caption("seeds").html()))]
    return [
        ("scores", "Alignment and glancing scores",
         sections.overall_html(results) + sections.scores_intro(results.scores_summary["options"])),
        *across_seeds,
        ("warnings", f"Warnings ({n_warnings}) and notes ({len(notices) - n_warnings})",
         sections.notices_html(notices)),
        ("glance", "The run at a glance", sections.glance_html(results, run_config, threshold)),
        ("retrieval-section", "Retrieval", sections.retrieval_html(results.retrieval)),
        ("test-set", "The test set", sections.funnel_html(results.testdata_summary) + figures("test-set")
         + "<h3>Rejected items</h3>" + sections.rejects_html(results.rejects)),
        ("training", "Training", figures("training")),
        ("categories-section", "Scores per category", figures("categories")
         + "<details><summary>Per-category table (scores/category_scores.csv)</summary>"
         + sections.categories_html(results.categories) + "</details>"),
        ("chance", "Scores against chance", figures("chance")),
        ("confusions", "Confusions", figures("confusions")),
        ("examples", "Alignment examples", f"<p>{esc(chosen)}</p>" + figures("examples")),
        ("settings", "Settings and inputs", sections.settings_html(results, run_config, inputs)),
    ]


def build_report(inputs: ReportInputs, out: Path, figures_dir: Path, settings: ReportSettings, *,
                 run_config: dict, threshold: float | None) -> dict:
    """Read the results, draw the figures, write the page; returns what was written."""
    started = time.time()
    settings.validate()
    results = read_results(inputs)
    threshold = float(results.testdata_summary["threshold"] if threshold is None else threshold)
    choices = choose_examples(results.pair_scores, settings.n_examples, settings.seed)
    coco = open_coco(inputs.instances) if choices else None
    examples = load_examples(choices, results.pair_scores, results.scores_summary, inputs.tensors, coco,
                             inputs.instances, inputs.images, inputs.audio, results.words_csv, results.pairs_csv)
    notices = collect_notices(results, n_examples=settings.n_examples, threshold=threshold,
                              n_example_pairs=len(choices))
    pictures = draw_figures(results, examples, settings, threshold,
                            run_config.get("word_vectors", {}).get("source", ""), figures_dir)
    dataset_name = run_config.get("dataset", {}).get("name") or inputs.results.name
    header = (f"<h1>{esc(f'Alignment report: {dataset_name}')}</h1>"
              f'<p class="subtitle">{esc(f"vgsalign {__version__}; results in {inputs.results}")}</p>\n'
              + sections.notice_line_html(notices))
    text = document(f"vgsalign report: {dataset_name}", header,
                    page_sections(results, pictures, notices, run_config, inputs, threshold, settings.seed))
    write_text(text, out)
    return {"out": str(out), "figures": [p.name for section in pictures.values() for p in section],
            "notices": [f"{n.level}: {n.title}" for n in notices], "bytes": len(text.encode()),
            "seconds": round(time.time() - started, 2), "examples": [c.reason for c in choices],
            "headline": headline(out, results.scores_summary, results.seeds_summary)}


# ---------------------------------------------------------------- command line


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vgsalign report-html",
                                     description="The run's report: one self-contained HTML page.")
    parser.add_argument("--testdata-dir", required=True, type=Path,
                        help="test-set folder: summary.json, similarities.csv, pairs.csv, words.csv")
    parser.add_argument("--train-dir", required=True, type=Path, help="training folder: history.csv, retrieval.json")
    parser.add_argument("--scores-dir", required=True, type=Path, help="scores folder (vgsalign score-pairs --out)")
    parser.add_argument("--tensors", required=True, type=Path, help="the tensors the scores were computed on")
    parser.add_argument("--instances", required=True, type=Path, help="COCO instances JSON of the test split")
    parser.add_argument("--images", required=True, type=Path, help="folder of the test split's images")
    parser.add_argument("--audio", required=True, nargs="+", type=Path, help="audio feature shards of the test split")
    parser.add_argument("--visual", nargs="*", default=[], type=Path,
                        help="visual feature shards the model saw (checked for random weights)")
    parser.add_argument("--rejects", nargs="*", default=[], type=Path,
                        help="rejects tables (CSV) of the stages that read the corpus, counted per stage")
    parser.add_argument("--seeds-dir", type=Path,
                        help="seeds/ of a run with several training seeds (seed_scores.csv, summary.json): "
                             "adds the section Across seeds")
    parser.add_argument("--report", default="{}",
                        help="the report config slice as JSON (n_examples, seed; missing keys: the schema's defaults)")
    parser.add_argument("--match", help="the match config slice as JSON (its threshold; default: the test set's)")
    parser.add_argument("--run-config", help="the config slices the page shows, as one JSON object")
    parser.add_argument("--out", required=True, type=Path, help="report.html")
    parser.add_argument("--figures", type=Path, help="folder for one PNG per figure (default: <out folder>/report)")
    return parser


def _json_object(text: str | None, where: str) -> dict:
    """An optional JSON-object option: {} when not given."""
    return json_object(text, where) if text else {}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    settings = settings_from_json(ReportSettings, args.report, where="--report", section="report")
    settings.validate("--report")
    match = _json_object(args.match, "--match")
    if args.match and "threshold" not in match:
        raise InputError("--match", "missing setting 'threshold'")
    inputs = ReportInputs(testdata=args.testdata_dir, train=args.train_dir, scores=args.scores_dir,
                          tensors=args.tensors, instances=args.instances, images=args.images, audio=list(args.audio),
                          visual=list(args.visual), rejects=list(args.rejects), seeds=args.seeds_dir)
    done = build_report(inputs, args.out, args.figures or args.out.parent / "report", settings,
                        run_config=_json_object(args.run_config, "--run-config"), threshold=match.get("threshold"))
    print(f"wrote {done['out']} ({done['bytes'] / 1e6:.1f} MB, {len(done['figures'])} figures) in {done['seconds']} s",
          file=sys.stderr)
    for line in done["notices"]:
        print(f"  {line}", file=sys.stderr)
    # last, on stdout: the line a run ends on
    print(done["headline"], flush=True)
    return 0


if __name__ == "__main__":
    from ..cli import run_main

    raise SystemExit(run_main("report-html", main))
