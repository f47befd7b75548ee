"""Nouns of each utterance: NLTK POS tags on the lower-cased words, tags in `nouns.tags`.

Each utterance is tagged as one sentence (all its words, also those past the length cut,
so the tagger sees the whole context); only words whose frames are kept (frames.csv
status `kept`) become test-set nouns. The tagger is the one the `resources` rule
provisioned (its folder goes first on `nltk.data.path`; `nltk.pos_tag_sents` is NLTK's own).

Output `nouns.csv`: utt_id, image_id, word_index, word (lower-cased), tag, onset_s, offset_s,
onset_frame, offset_frame, n_frames, pad_frames, duration_s.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from ..atomic import write_csv, write_json
from ..errors import InputError
from ..resources.tagger import use_tagger
from ..settings import settings_from_json
from ..tables import read_table

NOUN_COLUMNS = ["utt_id", "image_id", "word_index", "word", "tag", "onset_s", "offset_s",
                "onset_frame", "offset_frame", "n_frames", "pad_frames", "duration_s"]


@dataclass
class NounSettings:
    """The `nouns` config section."""

    tags: list[str]


def tag_utterances(words: pd.DataFrame) -> pd.Series:
    """Penn Treebank tag of every word (rows in utterance, word_index order), lower-cased first."""
    import nltk

    ordered = words.sort_values(["utt_id", "word_index"], kind="stable")
    sentences, rows = [], []
    for _, group in ordered.groupby("utt_id", sort=False):
        tokens = [(i, w.lower()) for i, w in zip(group.index, group["word"]) if w.strip()]
        sentences.append([w for _, w in tokens])
        rows.append([i for i, _ in tokens])
    flat_rows = [i for ids in rows for i in ids]
    flat_tags = [t for tagged in nltk.pos_tag_sents(sentences) for _, t in tagged]
    tags = pd.Series("", index=words.index, dtype=object)
    tags.loc[flat_rows] = flat_tags  # one assignment: per-utterance .loc is slow
    return tags


def build(frames_csv: Path, nltk_data: Path, settings: NounSettings, out: Path, report_path: Path) -> dict:
    use_tagger(nltk_data)
    words = read_table(frames_csv, required=("utt_id", "word_index", "word", "status", "onset_frame"))
    words["tag"] = tag_utterances(words) if len(words) else pd.Series(dtype=object)
    words["word"] = words["word"].str.lower()
    is_noun = words["tag"].isin(settings.tags)
    nouns = words[is_noun & (words["status"] == "kept")].sort_values(["utt_id", "word_index"])
    write_csv(nouns[NOUN_COLUMNS], out)
    report = {
        "tags": settings.tags,
        "words_tagged": len(words),
        "nouns": int(is_noun.sum()),
        "nouns_kept": len(nouns),
        "nouns_lost_to_cut": int((is_noun & (words["status"] != "kept")).sum()),
        "utterances_with_nouns": int(nouns["utt_id"].nunique()),
        "tag_counts": {k: int(v) for k, v in words.loc[is_noun, "tag"].value_counts().items()},
    }
    write_json(report, report_path)
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="vgsalign testdata-nouns", description="POS-tag the words and keep the nouns.")
    parser.add_argument("--frames", required=True, type=Path, help="frames.csv")
    parser.add_argument("--tagger", required=True, type=Path, help="the tagger manifest (vgsalign_tagger.json)")
    parser.add_argument("--nouns", required=True, help="the nouns config slice as JSON")
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--report", required=True, type=Path)
    args = parser.parse_args(argv)
    settings = settings_from_json(NounSettings, args.nouns, where="--nouns", section="nouns")
    if not args.tagger.is_file():
        raise InputError(args.tagger, "tagger manifest not found (run the `resources` rule)")
    manifest = json.loads(args.tagger.read_text())
    report = build(args.frames, args.tagger.parent, settings, args.out, args.report)
    print(f"tagger {manifest.get('tagger')}: {report['nouns_kept']} nouns kept of {report['nouns']} "
          f"({report['nouns_lost_to_cut']} past the cut)")
    return 0


if __name__ == "__main__":
    from ..cli import run_main

    raise SystemExit(run_main("nouns", main))
