"""`vgsalign report-html`: figures on synthetic tables, the numbers on the page against the
result files, rendering in headless Chromium, bad input."""

from __future__ import annotations

import base64
import contextlib
import io
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from tests.helpers.report import SPLIT, make_run
from tests.report.pages import Page, drawn, many_categories, overlapping, texts_outside_figure
from tests.helpers.workflow import ROOT, opted_out, output_of, run_env, tiny_demo_config

from vgsalign.scores.alignment import SCORE_NAMES
from vgsalign.cli import run_main
from vgsalign.report.headline import headline
from vgsalign.report.page import main
from vgsalign.report.examples import choose_examples, frame_weights
from vgsalign.report.figures import (
    alignment_example, category_bars, confusion_heatmap, similarity_histogram, training_curves,
)

N_EXAMPLES = 4
RUN_CONFIG = {"dataset": {"name": "synthetic", "source": "demo", "splits": {"train": "val2014", "val": "val2014",
                                                                            "test": "val2014"}},
              "word_vectors": {"source": "glove-6b-50d"}, "match": {"threshold": 0.7},
              "model": {"arch": "cnnatt", "embed_dim": 128, "dropout": 0.0},
              "train": {"loss": "triplet_random", "lr": 0.001, "batch_size": 16}}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    # random_weights: the page must warn about it; one pair names a category its image lacks;
    # two rejected items in each rejects table
    return make_run(tmp_path_factory.mktemp("report_run"), n_categories=6, n_images=8, captions_per_image=2,
                    pairs_per_caption=2, random_weights=True, n_unscorable=1, n_rejected=2)


@pytest.fixture(scope="module")
def built(run):
    out = run.root / "report.html"
    assert main(run.report_args(out, run.root / "figures", n_examples=N_EXAMPLES, run_config=RUN_CONFIG)) == 0
    return {"html": out.read_text(), "path": out, "figures": run.root / "figures"}


def _lookup(results: Path, source: str, path: list):
    if source.endswith(".json"):
        value = json.loads((results / source).read_text())
        for key in path:
            value = value[key]
        return value
    key_column, key, column = path
    table = pd.read_csv(results / source, keep_default_na=False)
    return table.loc[table[key_column].astype(str) == key, column].item()


# ---------------------------------------------------------------- figures on synthetic tables


def test_category_bars_sorted_legible_and_sized_to_the_count(run):
    categories = pd.read_csv(run.results / "scores/category_scores.csv")
    for table in (categories, many_categories(categories, 80)):
        fig = category_bars(table, "as_object")
        renderer = drawn(fig)
        ax = fig.axes[0]
        labels = [t.get_text().split(" (n=")[0] for t in ax.get_yticklabels()]
        expected = table.sort_values("as_object_mean")["category"].tolist()        # best at the top
        assert labels == expected
        assert overlapping(ax.get_yticklabels(), renderer, "y") == []
        assert texts_outside_figure(fig) == []
        assert ax.get_xlabel().startswith("AS_object") and "0 to 1" in ax.get_xlabel()
        # the model's bars are the table's means and intervals, as they are
        model = [c for c in ax.containers if c.get_label().startswith("model")][0]
        widths = [bar.get_width() for bar in model.patches]
        np.testing.assert_allclose(sorted(widths), sorted(table["as_object_mean"]))
    assert category_bars(many_categories(categories, 80), "as_object").get_size_inches()[1] > 20


def test_confusion_heatmap_greys_categories_never_in_the_image_and_stays_legible(run):
    table = pd.read_csv(run.results / "scores/confusion_as_object.csv")
    counts = pd.read_csv(run.results / "scores/confusion_counts.csv")
    fig = confusion_heatmap(table, counts, "as_object")
    renderer = drawn(fig)
    ax = fig.axes[0]
    image = ax.get_images()[0]
    columns = [t.get_text() for t in ax.get_xticklabels()]
    assert columns[-1] == "background" and "other_categories" not in columns
    data = image.get_array()
    np.testing.assert_allclose(data.data, table[columns].to_numpy())
    together = counts.set_index("category").reindex(index=table["category"], columns=columns[:-1], fill_value=0)
    np.testing.assert_array_equal(data.mask[:, :-1], together.to_numpy() == 0)
    assert not data.mask[:, -1].any()
    assert overlapping(ax.get_xticklabels(), renderer, "x") == []
    assert overlapping(ax.get_yticklabels(), renderer, "y") == []
    assert texts_outside_figure(fig) == []

    # 80 categories: no value printed in the cells, labels still apart
    names = [f"category name {k:02d}" for k in range(80)]
    rng = np.random.default_rng(0)
    big = pd.DataFrame(rng.random((80, 81)) / 10, columns=names + ["background"])
    big.insert(0, "n_pairs", 50)
    big.insert(0, "category", names)
    big_counts = pd.DataFrame(rng.integers(0, 3, size=(80, 80)), columns=names)
    big_counts.insert(0, "category", names)
    fig = confusion_heatmap(big, big_counts, "gs_word")
    renderer = drawn(fig)
    ax = fig.axes[0]
    assert overlapping(ax.get_xticklabels(), renderer, "x") == []
    assert overlapping(ax.get_yticklabels(), renderer, "y") == []
    assert texts_outside_figure(fig) == []
    assert len(ax.texts) == 0


def test_training_curves_and_histogram(run):
    history = pd.read_csv(run.results / "train/history.csv")
    retrieval = json.loads((run.results / "train/retrieval.json").read_text())
    fig = training_curves(history, retrieval)
    assert [ax.get_xlabel() for ax in fig.axes] == ["epoch"] * 3
    assert all(ax.get_ylabel() for ax in fig.axes)
    assert any(line.get_xdata()[0] == retrieval["best_epoch"] for line in fig.axes[0].lines if len(line.get_xdata()) == 2)
    assert texts_outside_figure(fig) == []
    similarities = pd.read_csv(run.results / "testdata/similarities.csv")
    fig = similarity_histogram(similarities, 0.7, "glove-6b-50d")
    assert any(np.allclose(line.get_xdata(), 0.7) for line in fig.axes[0].lines)
    assert texts_outside_figure(fig) == []


def test_choose_examples_best_median_worst_then_seeded_random(run):
    pairs = pd.read_csv(run.results / "scores/pair_scores.csv")
    chosen = choose_examples(pairs, 6, seed=3)
    scores = pairs["as_object"].to_numpy()
    assert [c.reason for c in chosen[:3]] == ["best AS_object", "median AS_object", "worst AS_object"]
    assert scores[chosen[0].row] == scores.max() and scores[chosen[2].row] == scores.min()
    assert scores[chosen[1].row] == np.sort(scores)[(len(scores) - 1) // 2]
    assert len({c.row for c in chosen}) == 6
    assert chosen == choose_examples(pairs, 6, seed=3)
    assert chosen[3:] != choose_examples(pairs, 6, seed=4)[3:]
    assert len(choose_examples(pairs.iloc[:2], 5, seed=0)) == 2
    assert choose_examples(pairs, 0, seed=0) == []


def _examples(run, scores_dir: Path, n: int = 3, choose=None) -> tuple[list, dict]:
    """The examples of a run; choose(pair_scores) picks them (default: the report's choice of n)."""
    from vgsalign.report.results import ReportInputs, read_results
    from vgsalign.report.examples import load_examples
    from vgsalign.corpus.coco import open_coco

    inputs = ReportInputs(testdata=run.results / "testdata", train=run.results / "train", scores=scores_dir,
                          tensors=run.results / "tensors/tensors.h5", instances=run.instances, images=run.images,
                          audio=run.audio, visual=run.visual, rejects=run.rejects)
    results = read_results(inputs)
    choices = choose(results.pair_scores) if choose else choose_examples(results.pair_scores, n, seed=0)
    examples = load_examples(choices, results.pair_scores, results.scores_summary, inputs.tensors,
                             open_coco(run.instances), run.instances, run.images, run.audio, results.words_csv,
                             results.pairs_csv)
    return examples, results.scores_summary["inputs"]["time_mapping"]


def _check_maps_reproduce_the_table(examples, mapping) -> None:
    """The spatial map summed over the mask is the pair's AS_object, the temporal curve
    summed over the word its AS_word (object normalisation): the figure shows what was scored."""
    for example in examples:
        pair = example.pair
        np.testing.assert_allclose((example.spatial_share * example.cell_mask_share).sum(), pair["as_object"],
                                   rtol=1e-9, atol=1e-12)
        weights, totals, _ = frame_weights(pair, len(example.temporal_share), mapping, example.mode)
        np.testing.assert_allclose((example.temporal_share * weights / totals).sum(), pair["as_word"],
                                   rtol=1e-9, atol=1e-12)
        offset = mapping.get("input_frames_offset", 0.0)
        assert example.frame_edges_s[0] == pytest.approx((offset - pair["pad_frames"]) * 0.01)
        assert example.image.shape[:2] == example.mask.shape


def test_example_maps_are_the_scored_ones_and_the_figure_is_legible(run):
    examples, mapping = _examples(run, run.results / "scores")
    _check_maps_reproduce_the_table(examples, mapping)
    for example in examples:
        np.testing.assert_allclose(example.spatial_share.sum(), 1.0)

    fig = alignment_example(examples[0])
    renderer = drawn(fig)
    assert texts_outside_figure(fig) == []
    words_axis = fig.axes[3]
    assert words_axis.get_xlabel() == "time after the audio starts (s)"
    assert len(words_axis.texts) == len(examples[0].words)
    for row in {round(t.get_position()[1], 3) for t in words_axis.texts}:
        same_row = [t for t in words_axis.texts if round(t.get_position()[1], 3) == row]
        assert overlapping(same_row, renderer, "x") == []


def test_example_maps_follow_the_tensor_time_offset(tmp_path):
    """tensors.h5 says its frames start 4 input frames early (the audio branch's padding):
    the examples shift the word and the frame edges as the scores do, and still
    reproduce the table."""
    shifted = make_run(tmp_path, n_categories=4, n_images=4, captions_per_image=2, pairs_per_caption=2,
                       input_frames_offset=-4)
    examples, mapping = _examples(shifted, shifted.results / "scores")
    assert mapping["input_frames_offset"] == -4
    _check_maps_reproduce_the_table(examples, mapping)


def test_examples_draw_the_crowd_regions_they_do_not_score(run):
    """A pair whose image has a crowd region of its category: the region is loaded
    (decoded by pycocotools from COCO's uncompressed RLE), drawn dashed and named under
    the image, while the scored mask and the maps stay those of the non-crowd instances."""
    from vgsalign.report.examples import ExampleChoice
    from vgsalign.corpus.coco import open_coco

    coco = open_coco(run.instances)
    crowd_of = {(a["image_id"], a["category_id"]): coco.annToMask(a).astype(bool)
                for a in coco.dataset["annotations"] if a["iscrowd"]}

    def one_with_and_one_without(pairs):
        has_crowd = [(int(i), int(c)) in crowd_of for i, c in zip(pairs["image_id"], pairs["category_id"])]
        return [ExampleChoice(has_crowd.index(True), "crowd"), ExampleChoice(has_crowd.index(False), "no crowd")]

    examples, mapping = _examples(run, run.results / "scores", choose=one_with_and_one_without)
    with_crowd, without = examples
    key = (int(with_crowd.pair["image_id"]), int(with_crowd.pair["category_id"]))
    np.testing.assert_array_equal(with_crowd.crowd_mask, crowd_of[key])
    assert with_crowd.crowd_mask.any() and not without.crowd_mask.any()
    _check_maps_reproduce_the_table(examples, mapping)

    fig = alignment_example(with_crowd)
    assert "crowd region (iscrowd 1, not scored)" in fig.axes[0].get_xlabel()
    # a dashed line style is (offset, dash pattern); a solid one has no pattern
    dashed = [c for c in fig.axes[0].collections if any(dashes for _, dashes in c.get_linestyle())]
    assert dashed, "the crowd region is not drawn"
    assert texts_outside_figure(fig) == []
    assert "crowd" not in alignment_example(without).axes[0].get_xlabel()


def test_example_maps_follow_the_scoring_options(run, tmp_path):
    """Exact mode without softmax: the maps are prepared as those scores were."""
    from vgsalign.scores.plan import score_settings
    from vgsalign.scores.run import run_scores

    run_scores(tensors=run.results / "tensors/tensors.h5", pairs_csv=run.results / "testdata/pairs.csv",
               instances_json=run.instances, out_dir=tmp_path / "scores",
               settings=score_settings(mode="exact", softmax="none", bootstrap=20), threads=1,
               retrieval=run.results / "train/retrieval.json")
    examples, mapping = _examples(run, tmp_path / "scores")
    assert all(e.mode == "exact" and not e.softmax_as for e in examples)
    _check_maps_reproduce_the_table(examples, mapping)


# ---------------------------------------------------------------- the page


def test_page_shows_every_figure_embedded_and_the_scores_first(built, run):
    html = built["html"]
    page = Page(html)
    names = (["similarities", "training"] + [f"category_{s}" for s in SCORE_NAMES]
             + ["chance_corrected", "scatter_mask_area", "scatter_word_duration"]
             + [f"confusion_{s}" for s in SCORE_NAMES] + [f"example_{k:02d}" for k in range(1, N_EXAMPLES + 1)])
    assert len(page.images) == len(names)
    for image in page.images:
        assert image["src"].startswith("data:image/png;base64,")
        with Image.open(io.BytesIO(base64.b64decode(image["src"].split(",", 1)[1]))) as png:
            assert png.size == (int(image["width"]), int(image["height"]))
    # each figure also as its own PNG, named as workflow/rules/report.smk declares them
    assert sorted(p.stem for p in built["figures"].glob("*.png")) == sorted(names)
    smk = (ROOT / "workflow/rules/report.smk").read_text()
    for pattern in ("similarities.png", "training.png", "category_{name}.png", "confusion_{name}.png",
                    "example_{k:02d}.png", '"chance_corrected"', '"scatter_mask_area"', '"scatter_word_duration"'):
        assert pattern in smk
    # self-contained: no script, no stylesheet link, no external address; the style sheet inlined
    assert not {"script", "link", "iframe"} & page.tags
    assert not re.search(r"(src|href)=\"(https?:|//|file:)", html) and "url(" not in html
    assert ".notice-line {" in html
    # first screen: title, one line of notices, then the scores table; the contents after it
    body = html[html.index("<body>"):]
    line = re.search(r'<p class="notice-line" id="notice-line">(.*?)</p>', body)
    assert line and "\n" not in line.group(1)
    assert body.index('id="notice-line"') < body.index('id="overall"') < body.index("<nav>") \
        < body.index('id="warnings"')
    # the line links every notice to its details further down, which name what the run raised
    links = re.findall(r'href="#(notice-\d+)"', line.group(1))
    warnings = body[body.index('<section id="warnings">'):body.index('<section id="glance">')]
    details = re.findall(r'<li class="level-\w+" id="(notice-\d+)">', warnings)
    assert links == details and len(links) >= 4
    assert 'href="#warnings"' in line.group(1) and "warnings" in line.group(1)
    assert "random weights" in warnings
    assert "1 of" in warnings and "category_not_in_image: 1" in warnings
    assert "Pooled R@10 uses pools of 60 images" in warnings
    assert "6 item(s) of the corpus were rejected and left out (testdata 2, features 4)" in warnings
    assert {"glance", "overall", "counts", "retrieval", "pooled", "funnel", "categories", "rejects"} <= page.ids
    assert "mode reference; softmax both" in html


def test_numbers_on_the_page_equal_the_result_files(built, run):
    page = Page(built["html"])
    assert all("data-source" in v or "data-derived" in v or "data-rejects" in v for v in page.values)
    for value in (v for v in page.values if "data-source" in v):
        path = json.loads(value["data-path"])
        expected = _lookup(run.results, value["data-source"], path)
        shown = value["text"].replace(",", "")
        if isinstance(expected, float):
            assert float(value["data-value"]) == expected, value
            decimals = len(shown.split(".")[1]) if "." in shown else 0
            assert shown == f"{expected:.{decimals}f}", value
        else:
            assert int(value["data-value"]) == int(expected) and int(shown) == int(expected), value
    summary = json.loads((run.results / "scores/summary.json").read_text())
    for score in SCORE_NAMES:
        for key in (f"{score}_mean", f"{score}_ci_low", f"{score}_ci_high", f"random_{score}_mean",
                    f"chance_{score}_mean"):
            assert any(v.get("data-source") == "scores/summary.json" and json.loads(v["data-path"]) == ["overall", key]
                       for v in page.values), key
    retrieval = json.loads((run.results / "train/retrieval.json").read_text())
    for direction in ("image_retrieval_from_captions", "caption_retrieval_from_images"):
        for k in ("r1", "r5", "r10"):
            assert any(json.loads(v.get("data-path", "null")) == [direction, k] for v in page.values)
    assert any(json.loads(v.get("data-path", "null")) == ["pooled_r10", "r10_a2i"] for v in page.values)
    funnel = json.loads((run.results / "testdata/summary.json").read_text())["funnel"]
    assert sum(v.get("data-source") == "testdata/summary.json" for v in page.values) == len(funnel)
    assert summary["counts"]["pairs_excluded"] == 1 and retrieval["pooled_r10"]["pool_size"] == 60


def test_rejects_are_counted_per_stage(built, run):
    page = Page(built["html"])
    shown = {v["data-rejects"]: int(v["data-value"]) for v in page.values if "data-rejects" in v}
    tables = {str(path.relative_to(run.results)): len(pd.read_csv(path)) for path in run.rejects}
    assert tables == {"testdata/rejects_dataset.csv": 2, f"features/index/{SPLIT}/images_rejected.csv": 2,
                      f"features/index/{SPLIT}/captions_rejected.csv": 2}
    assert {k: v for k, v in shown.items() if k in tables} == tables
    # the shards' own counts (n_rejected) and the annotations the scores skipped are rows as well, 0 here
    others = {k: v for k, v in shown.items() if k not in tables}
    assert others == {"1 audio feature shard(s) (n_rejected)": 0, "1 visual feature shard(s) (n_rejected)": 0,
                      "scores/summary.json (annotations_skipped)": 0}
    rejects = built["html"][built["html"].index('<table id="rejects">'):]
    assert "testdata" in rejects and "wav file not found" in rejects and "cannot identify image file" in rejects


def test_no_rejects_no_notice(run, tmp_path):
    from vgsalign.report.notices import rejects_notices
    from vgsalign.report.results import RejectCount, count_rejects, reject_table_count

    empty = tmp_path / "testdata" / "rejects_dataset.csv"
    empty.parent.mkdir()
    empty.write_text("file,problem\n")
    count = reject_table_count(empty, tmp_path)
    assert count == RejectCount("testdata", "testdata/rejects_dataset.csv", 0, "")
    assert rejects_notices([count]) == []
    empty.write_text("")                        # a stage that wrote nothing rejected nothing
    assert reject_table_count(empty, tmp_path).count == 0
    notice, = rejects_notices([count, RejectCount("features", "a.csv", 3, "x"), RejectCount("features", "b", 1)])
    assert notice.level == "warning" and notice.title.startswith("4 item(s)") and "features 4" in notice.title
    # annotations the scores skipped, from scores/summary.json's counts
    skipped = {"annotations_skipped": {"polygon": 2, "rle": 1}, "annotations_skipped_examples": ["ann 7: bad polygon"]}
    *_, scores = count_rejects([], tmp_path, [], [], skipped)
    assert scores == RejectCount("scores", "scores/summary.json (annotations_skipped)", 3, "ann 7: bad polygon")
    assert count_rejects([], tmp_path, [], [], {}) == []


def test_page_renders_in_headless_chromium(built, tmp_path):
    if reason := opted_out("VGSALIGN_TEST_CHROMIUM"):
        pytest.skip(reason)
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.skip("Debian's `chromium` is not installed (apt-get install chromium); CI installs it")
    url = built["path"].resolve().as_uri()
    base = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", f"--user-data-dir={tmp_path / 'profile'}",
            "--enable-logging=stderr", "--v=0"]
    dom = subprocess.run(base + ["--dump-dom", url], capture_output=True, text=True, timeout=120)
    assert dom.returncode == 0, dom.stderr[-2000:]
    rendered = Page(dom.stdout)
    assert "Alignment report: synthetic" in dom.stdout
    assert len(rendered.images) == len(Page(built["html"]).images) > 0
    assert all(image["src"].startswith("data:image/png;base64,") for image in rendered.images)
    assert not re.search(r"Failed to load resource|Uncaught|ERR_FILE_NOT_FOUND", dom.stderr)
    shot = tmp_path / "page.png"
    proc = subprocess.run(base + [f"--screenshot={shot}", "--window-size=1400,6000", url],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and shot.is_file(), proc.stderr[-2000:]
    with Image.open(shot) as png:
        assert png.size == (1400, 6000)
        grey = np.asarray(png.convert("L"), dtype=np.float64)
    assert grey.std() > 20                      # text and figures, not a blank page
    # the line of warnings (orange left border, 6 px wide) is drawn near the top
    rgb = np.asarray(Image.open(shot).convert("RGB"))[:300].reshape(-1, 3).astype(int)
    assert ((abs(rgb[:, 0] - 0xd9) < 12) & (abs(rgb[:, 1] - 0x48) < 12) & (abs(rgb[:, 2] - 0x0f) < 12)).sum() > 100


# ---------------------------------------------------------------- bad input


def test_missing_result_file_names_it(run, tmp_path, capsys):
    results = tmp_path / "results"
    shutil.copytree(run.results, results, ignore=shutil.ignore_patterns("corpus", "features", "tensors"))
    (results / "scores/category_scores.csv").unlink()
    args = run.report_args(tmp_path / "report.html", n_examples=1)
    args[args.index("--scores-dir") + 1] = str(results / "scores")
    assert run_main("report", main, args) == 2
    err = capsys.readouterr().err
    assert str(results / "scores/category_scores.csv") in err and "not found" in err
    assert not (tmp_path / "report.html").exists()

    (results / "scores/category_scores.csv").write_text("category,n_pairs\ncat,3\n")
    assert run_main("report", main, args) == 2
    assert "category_scores.csv: missing column(s)" in capsys.readouterr().err

    args = run.report_args(tmp_path / "report.html", n_examples=1)
    args[args.index("--images") + 1] = str(tmp_path / "no_images")
    assert run_main("report", main, args) == 2
    assert f"{tmp_path / 'no_images'}" in capsys.readouterr().err


def test_bad_settings_are_named(run, tmp_path, capsys):
    args = run.report_args(tmp_path / "report.html")
    args[args.index("--report") + 1] = json.dumps({"n_examples": 2, "colour": "red"})
    assert run_main("report", main, args) == 2
    assert "unknown setting(s) ['colour']" in capsys.readouterr().err
    args[args.index("--report") + 1] = json.dumps({"n_examples": -1, "seed": 0})
    assert run_main("report", main, args) == 2
    assert "--report: n_examples = -1" in capsys.readouterr().err
    args[args.index("--report") + 1] = json.dumps({"n_examples": 1, "seed": 0})
    assert run_main("report", main, args + ["--match", '{"min": 0.7}']) == 2
    assert "--match: missing setting 'threshold'" in capsys.readouterr().err
    assert run_main("report", main, args + ["--match", "[0.7]"]) == 2
    assert "--match: expected a JSON object" in capsys.readouterr().err


def test_a_bad_rejects_table_is_named(run, tmp_path, capsys):
    missing = tmp_path / "rejects_dataset.csv"
    args = run.report_args(tmp_path / "report.html", n_examples=1)
    args[args.index("--rejects") + 1] = str(missing)
    assert run_main("report", main, args) == 2
    assert f"{missing}: table not found" in capsys.readouterr().err


# ---------------------------------------------------------------- the workflow's rule


@pytest.mark.slow
def test_workflow_rule_builds_the_page_and_snakemakes_report(tmp_path):
    """`snakemake report` runs the report rule on a results folder (every upstream output
    recorded as done with --touch), and `snakemake --report` collects the marked figures."""
    work = tmp_path / "work"
    config = tiny_demo_config(tmp_path / "tiny.yaml", n_images=8, shard_size=10000,
                              report={"n_examples": 2, "seed": 0})
    make_run(work, name="tiny", n_categories=6, n_images=8, captions_per_image=2, pairs_per_caption=2)

    def snakemake(*args):
        command = ["timeout", "-s", "INT", "240", sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"),
                   "-d", str(work), "--configfile", str(config), "--cores", "2", *args]
        proc = subprocess.run(command, capture_output=True, text=True, env=run_env(), timeout=300)
        assert proc.returncode == 0, output_of(proc)
        return proc

    # every other output of the workflow exists (empty where make_run wrote nothing) and is recorded as done
    summary = snakemake("--summary", "report").stdout
    for line in summary.splitlines()[1:]:
        path = work / line.split("\t")[0]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch()
    snakemake("--touch", "--forceall", "report")
    proc = snakemake("--forcerun", "report_html", "report")
    assert "report_html" in proc.stderr and "tensors_dump" not in proc.stderr.split("Job stats:")[1]
    # the run ends on the report's path and the headline: printed by the step and by onsuccess
    scores = json.loads((work / "results/tiny/scores/summary.json").read_text())
    expected = headline("results/tiny/report.html", scores)
    assert expected in proc.stdout.splitlines()
    endings = [line for line in proc.stderr.splitlines() if line.startswith("report: ")]
    assert endings == [expected]
    assert proc.stderr.strip().splitlines()[-1] == expected           # the run's very last line
    # a run that does not write the report ends without it, and without failing
    # (the target first: --forcerun takes every name after it)
    proc = snakemake("scores", "--touch", "--forcerun", "score_pairs")
    stats = proc.stderr.split("Job stats:")[1]
    assert "score_pairs" in stats and "report_html" not in stats
    assert not [line for line in proc.stderr.splitlines() if line.startswith("report: ")]
    page = (work / "results/tiny/report.html").read_text()
    assert "Alignment report: tiny" in page and len(Page(page).images) == 15
    with Image.open(work / "results/tiny/report/example_02.png") as png:
        assert png.size[0] > 1000
    proc = snakemake("--report", str(tmp_path / "snakemake_report.zip"), "report")
    for name in ("similarities.png", "training.png", "category_as_object.png", "confusion_gs_word.png", "example_01.png"):
        assert f"Adding {name}" in proc.stderr


# ---------------------------------------------------------------- several seeds


@pytest.fixture(scope="module")
def seeds_page(run):
    """The page of a run with three seeds: seed 0 is the run's own model, seeds 1 and 2
    copies of its results with other AS_object and retrieval figures."""
    from vgsalign.scores.seeds import seeds_summary

    seeds = run.results / "seeds"
    dirs = {0: (run.results / "train", run.results / "scores")}
    for seed, shift in ((1, -0.04), (2, 0.02)):
        train, scores = seeds / f"seed_{seed}/train", seeds / f"seed_{seed}/scores"
        shutil.copytree(run.results / "train", train)
        shutil.copytree(run.results / "scores", scores)
        summary = json.loads((scores / "summary.json").read_text())
        for key in ("as_object_mean", "as_object_ci_low", "as_object_ci_high"):
            summary["overall"][key] += shift
        (scores / "summary.json").write_text(json.dumps(summary))
        retrieval = json.loads((train / "retrieval.json").read_text())
        retrieval["image_retrieval_from_captions"]["r10"] += shift
        (train / "retrieval.json").write_text(json.dumps(retrieval))
        dirs[seed] = (train, scores)
    seeds_summary(list(dirs), [d[0] for d in dirs.values()], [d[1] for d in dirs.values()],
                  seeds / "seed_scores.csv", seeds / "summary.json")
    out, printed = run.root / "report_seeds.html", io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert main(run.report_args(out, run.root / "figures_seeds", n_examples=1, run_config=RUN_CONFIG)
                    + ["--seeds-dir", str(seeds)]) == 0
    return {"html": out.read_text(), "headline": printed.getvalue().strip().splitlines()[-1]}


def test_across_seeds_shows_each_seed_and_the_spread_from_the_files(seeds_page, built, run):
    headline_line, seeds_page = seeds_page["headline"], seeds_page["html"]
    page = Page(seeds_page)
    assert "seeds" in page.ids and "Across seeds" in seeds_page
    body = seeds_page[seeds_page.index("<body>"):]
    assert body.index('id="overall"') < body.index('id="seeds"') < body.index('id="warnings"')
    seed_values = [v for v in page.values if v.get("data-source", "").startswith("seeds/")]
    for value in seed_values:
        expected = _lookup(run.results, value["data-source"], json.loads(value["data-path"]))
        if isinstance(expected, float):
            assert float(value["data-value"]) == expected, value
        else:
            assert int(value["data-value"]) == int(expected), value
    cells = {(v["data-source"], tuple(json.loads(v["data-path"]))) for v in seed_values}
    for seed in ("0", "1", "2"):
        assert ("seeds/seed_scores.csv", ("seed", seed, "as_object_mean")) in cells
        assert ("seeds/seed_scores.csv", ("seed", seed, "as_object_ci_low")) in cells
        assert ("seeds/seed_scores.csv", ("seed", seed, "r10_a2i")) in cells
        assert ("seeds/seed_scores.csv", ("seed", seed, "best_epoch")) in cells
    for stat in ("mean", "sd", "min", "max"):
        assert ("seeds/summary.json", ("figures", "as_object_mean", stat)) in cells
    # the spread really is the seeds': 0.02 and -0.04 around seed 0's AS_object
    stats = json.loads((run.results / "seeds/summary.json").read_text())["figures"]["as_object_mean"]
    main_score = json.loads((run.results / "scores/summary.json").read_text())["overall"]["as_object_mean"]
    assert abs(stats["mean"] - (main_score - 0.02 / 3)) < 1e-12 and abs(stats["max"] - (main_score + 0.02)) < 1e-12
    assert "0 (main)" in seeds_page
    # the headline the step ends on adds AS_object's mean ± sd over the seeds
    assert f"(chance {json.loads((run.results / 'scores/summary.json').read_text())['overall']['chance_as_object_mean']:.3f}; " \
        f"{stats['mean']:.3f} ± {stats['sd']:.3f} mean ± sd over 3 seeds)" in headline_line
    # a run with one model has no such section
    assert "seeds" not in Page(built["html"]).ids and "Across seeds" not in built["html"]
