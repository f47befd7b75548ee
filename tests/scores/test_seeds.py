"""`vgsalign seeds-summary`: one row per seed from each seed's result files, and the mean,
sd (ddof=1), min, max and n across seeds, on hand-made inputs."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd

from vgsalign.cli import run_main
from vgsalign.scores.alignment import SCORE_NAMES
from vgsalign.scores.seeds import main

# per seed: AS_object, AS_word, R@10 a2i, R@10 i2a, mean-pooled R@10 a2i and i2a, best epoch
FIGURES = {
    0: (0.40, 0.15, 0.50, 0.60, 0.70, 0.80, 7),
    3: (0.45, 0.17, 0.55, 0.65, 0.72, 0.81, 9),
    1: (0.53, 0.19, 0.45, 0.70, 0.74, 0.85, 10),
}


def write_seed(root: Path, seed: int, epochs: int = 10) -> tuple[Path, Path]:
    as_object, as_word, a2i, i2a, meanpool_a2i, meanpool_i2a, best = FIGURES[seed]
    train, scores = root / f"seed_{seed}/train", root / f"seed_{seed}/scores"
    train.mkdir(parents=True)
    scores.mkdir(parents=True)
    overall = {}
    # with the softmaxes GS equals AS; the intervals are the mean -/+ 0.03
    for name, mean in (("as_object", as_object), ("as_word", as_word), ("gs_object", as_object), ("gs_word", as_word)):
        overall.update({f"{name}_mean": mean, f"{name}_ci_low": mean - 0.03, f"{name}_ci_high": mean + 0.03,
                        f"chance_{name}_mean": 0.05})
    (scores / "summary.json").write_text(json.dumps({"overall": overall, "seconds": 1.0}))
    (train / "retrieval.json").write_text(json.dumps({
        "best_epoch": best, "image_retrieval_from_captions": {"r1": 0.1, "r10": a2i},
        "caption_retrieval_from_images": {"r1": 0.2, "r10": i2a},
        "pooled_r10": {"r10_a2i": 0.9, "r10_i2a": 0.9},
        "pooled_r10_meanpool": {"r10_a2i": meanpool_a2i, "r10_i2a": meanpool_i2a}}))
    pd.DataFrame({"epoch": range(1, epochs + 1), "val_loss": [0.5] * epochs}).to_csv(train / "history.csv", index=False)
    return train, scores


def run(root: Path, seeds: list[int]) -> int:
    argv = ["--seeds", *map(str, seeds), "--train-dirs", *[str(root / f"seed_{s}/train") for s in seeds],
            "--scores-dirs", *[str(root / f"seed_{s}/scores") for s in seeds],
            "--table", str(root / "seed_scores.csv"), "--summary", str(root / "summary.json")]
    return run_main("seeds-summary", main, argv)


def test_one_row_per_seed_and_mean_sd_by_hand(tmp_path, capsys):
    for seed in FIGURES:
        write_seed(tmp_path, seed)
    assert run(tmp_path, [0, 3, 1]) == 0
    table = pd.read_csv(tmp_path / "seed_scores.csv")
    assert table["seed"].tolist() == [0, 3, 1]                      # train.seed's model first, as given
    assert table["as_object_mean"].tolist() == [0.40, 0.45, 0.53]
    assert table["as_word_ci_low"].tolist() == [0.15 - 0.03, 0.17 - 0.03, 0.19 - 0.03]
    assert table["gs_object_ci_high"].tolist() == [0.40 + 0.03, 0.45 + 0.03, 0.53 + 0.03]
    assert table["meanpool_r10_i2a"].tolist() == [0.80, 0.81, 0.85]
    assert table["best_epoch"].tolist() == [7, 9, 10] and table["epochs_trained"].tolist() == [10, 10, 10]
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["seeds"] == [0, 3, 1] and summary["main_seed"] == 0 and "ddof=1" in summary["sd"]
    as_object = summary["figures"]["as_object_mean"]
    # mean 0.46; deviations -0.06, -0.01, 0.07; sd = sqrt((0.0036 + 0.0001 + 0.0049) / 2)
    assert abs(as_object["mean"] - 0.46) < 1e-12
    assert abs(as_object["sd"] - math.sqrt(0.0043)) < 1e-12
    assert (as_object["min"], as_object["max"], as_object["n"]) == (0.40, 0.53, 3)
    # R@10 a2i 0.50, 0.55, 0.45: mean 0.50, sd sqrt((0 + 0.0025 + 0.0025) / 2) = 0.05
    assert abs(summary["figures"]["r10_a2i"]["sd"] - 0.05) < 1e-12
    best = summary["figures"]["best_epoch"]
    assert abs(best["mean"] - 26 / 3) < 1e-12 and (best["min"], best["max"]) == (7, 10)
    assert abs(best["sd"] - math.sqrt(((7 - 26 / 3) ** 2 + (9 - 26 / 3) ** 2 + (10 - 26 / 3) ** 2) / 2)) < 1e-12
    # the interval bounds are per seed only
    assert set(summary["figures"]) == {*[f"{s}_mean" for s in SCORE_NAMES], "r10_a2i", "r10_i2a",
                                       "meanpool_r10_a2i", "meanpool_r10_i2a", "best_epoch"}
    assert "AS_object 0.460 ± 0.066 (mean ± sd, ddof=1) over 3 seeds" in capsys.readouterr().out


def test_a_single_seed_has_no_sd(tmp_path):
    write_seed(tmp_path, 0)
    assert run(tmp_path, [0]) == 0
    stats = json.loads((tmp_path / "summary.json").read_text())["figures"]["as_object_mean"]
    assert stats["sd"] is None and stats["n"] == 1 and stats["mean"] == 0.40


def test_bad_inputs_are_named(tmp_path, capsys):
    for seed in (0, 3):
        write_seed(tmp_path, seed)
    (tmp_path / "seed_3/scores/summary.json").unlink()
    assert run(tmp_path, [0, 3]) == 2
    assert f"{tmp_path / 'seed_3/scores/summary.json'}: result file not found" in capsys.readouterr().err
    assert not (tmp_path / "seed_scores.csv").exists() and not (tmp_path / "summary.json").exists()
    # a best epoch the history does not have
    write_seed(tmp_path, 1, epochs=5)
    assert run(tmp_path, [0, 1]) == 2
    assert "history.csv: no row for best_epoch 10" in capsys.readouterr().err
    # a retrieval figure missing
    retrieval = tmp_path / "seed_0/train/retrieval.json"
    retrieval.write_text(json.dumps({"best_epoch": 7}))
    assert run(tmp_path, [0]) == 2
    assert "missing key image_retrieval_from_captions.r10" in capsys.readouterr().err
    argv = ["--seeds", "0", "3", "--train-dirs", str(tmp_path), "--scores-dirs", str(tmp_path), str(tmp_path),
            "--table", str(tmp_path / "t.csv"), "--summary", str(tmp_path / "s.json")]
    assert run_main("seeds-summary", main, argv) == 2
    assert "2 seeds but 1 training and 2 scores folders" in capsys.readouterr().err


def test_a_seed_given_twice_is_refused(tmp_path, capsys):
    write_seed(tmp_path, 0)
    assert run(tmp_path, [0, 0]) == 2
    assert "a seed is given twice" in capsys.readouterr().err
