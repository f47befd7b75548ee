"""Tables over scored pairs: the confusion sums and the pairs table's numeric columns."""

import numpy as np
import pandas as pd
import pytest

from vgsalign.errors import InputError
from vgsalign.scores.aggregates import ConfusionSums, confusion_counts, confusion_tables
from vgsalign.scores.alignment import SCORE_NAMES
from vgsalign.scores.masks import BACKGROUND, OTHER
from vgsalign.scores.plan import read_pairs

NAMES = {1: "person", 3: "car", 18: "dog", 62: "chair"}


def _rows(rng, n_pairs):
    """Confusion rows of n_pairs pairs: each against its own category, one or two others, background, other."""
    pair_category = rng.choice(list(NAMES), size=n_pairs)
    pair, region = [], []
    for p, own in enumerate(pair_category):
        others = [c for c in rng.permutation(list(NAMES))[: rng.integers(1, 3)] if c != own]
        for r in [own, *others, BACKGROUND, OTHER]:
            pair.append(p)
            region.append(r)
    pair, region = np.array(pair), np.array(region, dtype=np.int64)
    return pair_category, pair, region, rng.random((len(pair), len(SCORE_NAMES)))


def test_confusion_sums_match_a_groupby_and_ignore_chunk_order():
    rng = np.random.default_rng(5)
    pair_category, pair, region, values = _rows(rng, 300)
    chunks = np.array_split(np.arange(len(pair)), 7)
    in_order, shuffled = ConfusionSums(NAMES), ConfusionSums(NAMES)
    for index, rows in enumerate(chunks):
        in_order.add(index, pair_category[pair[rows]], region[rows], values[rows])
    for index in rng.permutation(len(chunks)):
        shuffled.add(int(index), pair_category[pair[chunks[index]]], region[chunks[index]], values[chunks[index]])
    in_order.check_complete(len(chunks))
    shuffled.check_complete(len(chunks))
    assert np.array_equal(in_order.sums, shuffled.sums) and np.array_equal(in_order.counts, shuffled.counts)

    scored = pd.DataFrame({"category_id": pair_category})
    tables = confusion_tables(scored, in_order, NAMES)
    long = pd.DataFrame({"row": pair_category[pair], "region": region})
    for k, score in enumerate(SCORE_NAMES):
        table = tables[score].set_index("category")
        assert list(table.index) == sorted(NAMES.values())
        assert list(table.columns) == ["n_pairs", *sorted(NAMES.values()), "background", "other_categories"]
        expected = long.assign(value=values[:, k]).groupby(["row", "region"])["value"].sum()
        for (row, reg), total in expected.items():
            column = {BACKGROUND: "background", OTHER: "other_categories"}.get(reg, NAMES.get(reg))
            n = int((pair_category == row).sum())
            assert table.loc[NAMES[row], "n_pairs"] == n
            assert table.loc[NAMES[row], column] == pytest.approx(total / n, rel=1e-12)
    counts = confusion_counts(in_order, NAMES).set_index("category")
    named = long[long["region"] >= 0].groupby(["row", "region"]).size()
    for (row, reg), n in named.items():
        assert counts.loc[NAMES[row], NAMES[reg]] == n
    assert counts.to_numpy().sum() == named.sum()


def test_incomplete_confusion_sums_are_refused():
    sums = ConfusionSums(NAMES)
    sums.add(1, np.array([1]), np.array([BACKGROUND]), np.ones((1, len(SCORE_NAMES))))
    with pytest.raises(RuntimeError, match="0 of 2 chunks"):
        sums.check_complete(2)


def test_pairs_numbers_parsed_as_read_and_bad_values_named(tmp_path):
    header = "utt_id,image_id,word_index,word,category,onset_frame,offset_frame,similarity\n"
    path = tmp_path / "pairs.csv"
    path.write_text(header + "u1,7,0,dog,dog,10,25,0.8125\nu2,8,1,car,car,3,9,\n")
    pairs = read_pairs(path, "reference")
    assert pairs["image_id"].dtype == np.int64 and pairs["onset_frame"].tolist() == [10, 3]
    assert pairs["similarity"].iloc[0] == 0.8125 and np.isnan(pairs["similarity"].iloc[1])   # optional
    assert pairs["utt_id"].tolist() == ["u1", "u2"]
    path.write_text(header + "u1,7,0,dog,dog,10,25,0.5\nu2,8,1,car,car,three,9,0.5\nu3,8,2,cat,cat,,9,0.5\n")
    with pytest.raises(InputError, match=r"column onset_frame: 2 missing or non-numeric value\(s\), lines \[3, 4\]"):
        read_pairs(path, "reference")
