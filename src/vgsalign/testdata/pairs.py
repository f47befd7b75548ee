"""The test set: (utterance, noun, category) pairs whose best label similarity >= match.threshold.

For every kept noun the best-matching label of its image is taken (ties: the lower category
id); the noun becomes a pair when that similarity is at or above `match.threshold`
(a similarity exactly at the threshold is accepted). The threshold must suit the vectors:
0.5 for the GoogleNews word2vec vectors (the original), higher for GloVe-50d, which rates
unrelated words fairly high (see docs/design.md).

Output `pairs.csv`: utt_id, image_id, word_index, word, category, category_id, similarity,
onset_s, offset_s, onset_frame, offset_frame, pad_frames, n_frames, duration_s, wav, split.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from ..atomic import write_json
from ..settings import settings_from_json
from .similarities import best_per_noun
from ..tables import read_table
from .csv_writer import write_table

PAIR_COLUMNS = ["utt_id", "image_id", "word_index", "word", "category", "category_id", "similarity",
                "onset_s", "offset_s", "onset_frame", "offset_frame", "pad_frames", "n_frames", "duration_s",
                "wav", "split"]


@dataclass
class MatchSettings:
    """The `match` config section."""

    threshold: float


def select_pairs(similarities: pd.DataFrame, nouns: pd.DataFrame, utterances: pd.DataFrame,
                 threshold: float) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(pairs, best label of every noun with a `accepted` column)."""
    best = best_per_noun(similarities).copy()
    best["accepted"] = best["similarity"] >= threshold
    timing = nouns[["utt_id", "word_index", "onset_s", "offset_s", "onset_frame", "offset_frame",
                    "pad_frames", "n_frames", "duration_s"]]
    pairs = (best[best["accepted"]]
             .merge(timing, on=["utt_id", "word_index"], how="left", validate="one_to_one")
             .merge(utterances[["utt_id", "wav", "split"]], on="utt_id", how="left", validate="many_to_one"))
    return pairs.sort_values(["utt_id", "word_index"])[PAIR_COLUMNS], best


def build(similarities_csv: Path, vocab_csv: Path, utterances_csv: Path, settings: MatchSettings,
          out: Path, report_path: Path) -> dict:
    similarities = read_table(similarities_csv, required=("utt_id", "word_index", "similarity", "category_id"))
    nouns = read_table(vocab_csv, required=("utt_id", "word_index", "kept"))
    utterances = read_table(utterances_csv, required=("utt_id", "wav", "split"))
    pairs, best = select_pairs(similarities, nouns[nouns["kept"]], utterances, settings.threshold)
    write_table(pairs, out)
    report = {
        "threshold": settings.threshold,
        "nouns_scored": len(best), "nouns_below_threshold": int((~best["accepted"]).sum()),
        "pairs": len(pairs), "utterances": int(pairs["utt_id"].nunique()), "images": int(pairs["image_id"].nunique()),
        "pairs_per_category": {k: int(v) for k, v in pairs["category"].value_counts().sort_index().items()},
        "words_per_category": {
            cat: {w: int(n) for w, n in group["word"].value_counts().items()}
            for cat, group in pairs.groupby("category")
        },
    }
    write_json(report, report_path)
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="vgsalign testdata-pairs", description="Select the test pairs by threshold.")
    parser.add_argument("--similarities", required=True, type=Path)
    parser.add_argument("--vocab", required=True, type=Path)
    parser.add_argument("--utterances", required=True, type=Path)
    parser.add_argument("--match", required=True, help="the match config slice as JSON")
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--report", required=True, type=Path)
    args = parser.parse_args(argv)
    settings = settings_from_json(MatchSettings, args.match, where="--match", section="match")
    report = build(args.similarities, args.vocab, args.utterances, settings, args.out, args.report)
    print(f"threshold {settings.threshold}: {report['pairs']} pairs in {report['utterances']} utterances; "
          f"{report['nouns_below_threshold']} nouns below")
    return 0


if __name__ == "__main__":
    from ..cli import run_main

    raise SystemExit(run_main("pairs", main))
