"""Beyond the original: scores against chance, on the page and in the figures."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from tests.helpers.report import make_run
from tests.report.pages import Page, many_categories, texts_outside_figure

from vgsalign.report.chance import (
    chance_corrected, chance_corrected_bars, corrected_by_category, scatter_mask_area, scatter_word_duration,
)
from vgsalign.report.page import main
from vgsalign.scores.alignment import SCORE_NAMES



@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return make_run(tmp_path_factory.mktemp("chance_run"), n_categories=5, n_images=6, captions_per_image=2,
                    pairs_per_caption=2)


@pytest.fixture(scope="module")
def page(run):
    out = run.root / "report.html"
    assert main(run.report_args(out, run.root / "figures", n_examples=1)) == 0
    return Page(out.read_text())


def test_chance_corrected_is_zero_at_chance_one_at_best_and_negative_below():
    np.testing.assert_allclose(chance_corrected([0.2, 1.0, 0.1, 0.6], [0.2, 0.2, 0.2, 0.5]), [0.0, 1.0, -0.125, 0.2])
    assert np.isnan(chance_corrected(1.0, 1.0))


def test_corrected_numbers_on_the_page_equal_the_tables(page, run):
    categories = pd.read_csv(run.results / "scores/category_scores.csv", keep_default_na=False)
    overall = json.loads((run.results / "scores/summary.json").read_text())["overall"]
    derived = [v for v in page.values if v.get("data-derived") == "chance_corrected"]
    assert len(derived) == len(SCORE_NAMES) * (len(categories) + 1)
    for value in derived:
        path = json.loads(value["data-path"])
        if value["data-table"] == "scores/summary.json":
            score = path[1]
            expected = (overall[f"{score}_mean"] - overall[f"chance_{score}_mean"]) / (1 - overall[f"chance_{score}_mean"])
        else:
            assert value["data-table"] == "scores/category_scores.csv"
            _, category, score = path
            row = categories.loc[categories["category"] == category].iloc[0]
            expected = (row[f"{score}_mean"] - row[f"chance_{score}_mean"]) / (1 - row[f"chance_{score}_mean"])
        assert float(value["data-value"]) == pytest.approx(expected, rel=1e-12)
        assert value["text"] == f"{expected:.3f}"


def test_corrected_bars_show_the_corrected_means_per_category(run):
    categories = pd.read_csv(run.results / "scores/category_scores.csv", keep_default_na=False)
    fig = chance_corrected_bars(categories)
    corrected = corrected_by_category(categories).set_index("category")
    for ax, score in zip(fig.axes, SCORE_NAMES):
        assert "chance-corrected" in ax.get_xlabel()
        labels = [t.get_text().split(" (n=")[0] for t in fig.axes[0].get_yticklabels()]
        model, random = ax.containers[0], ax.containers[1]
        assert model.get_label() == "model" and random.get_label() == "random tensor"
        np.testing.assert_allclose([b.get_width() for b in model.patches], corrected.loc[labels, score])
        np.testing.assert_allclose([b.get_width() for b in random.patches], corrected.loc[labels, f"random_{score}"])
    # sorted by the model's corrected AS_object, best on top
    shown = corrected.loc[labels, "as_object"].to_numpy()
    assert (np.diff(shown) >= 0).all()


def test_scatter_plots_show_every_pair_with_its_chance(run):
    pairs = pd.read_csv(run.results / "scores/pair_scores.csv", keep_default_na=False)
    for fig, column, scores, unit in ((scatter_mask_area(pairs), "mask_area_share", ("as_object", "gs_object"),
                                       "share of the image"),
                                      (scatter_word_duration(pairs), "word_duration_s", ("as_word", "gs_word"), "(s)")):
        FigureCanvasAgg(fig)
        fig.canvas.draw()
        for ax, score in zip(fig.axes, scores):
            assert unit in ax.get_xlabel()
            score_line, chance_line = ax.lines
            np.testing.assert_array_equal(score_line.get_xdata(), pairs[column])
            np.testing.assert_array_equal(score_line.get_ydata(), pairs[score])
            np.testing.assert_array_equal(chance_line.get_ydata(), pairs[f"chance_{score}"])
        assert "0 to 1" in fig.axes[0].get_ylabel()
    # the object scores' chance is the mask's share: the grey points lie on the diagonal
    np.testing.assert_allclose(pairs["chance_as_object"], pairs["mask_area_share"])


def test_chance_figures_keep_their_text_inside(run):
    categories = pd.read_csv(run.results / "scores/category_scores.csv", keep_default_na=False)
    pairs = pd.read_csv(run.results / "scores/pair_scores.csv", keep_default_na=False)
    for fig in (chance_corrected_bars(categories), chance_corrected_bars(many_categories(categories, 80)),
                scatter_mask_area(pairs), scatter_word_duration(pairs)):
        assert texts_outside_figure(fig) == []
