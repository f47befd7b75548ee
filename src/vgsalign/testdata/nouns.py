"""Nouns of each utterance: NLTK POS tags on the lower-cased words, tags in `nouns.tags`.

Each utterance is tagged as one sentence (all its words, also those past the length cut,
so the tagger sees the whole context); only words whose frames are kept (frames.csv
status `kept`) become test-set nouns. The tagger is the one the `resources` rule
provisioned, the model `nltk.pos_tag_sents` would use with its folder first on
`nltk.data.path`; `pos_tagger` computes NLTK's tags for all sentences at once.

Output `nouns.csv`: utt_id, image_id, word_index, word (lower-cased), tag, onset_s, offset_s,
onset_frame, offset_frame, n_frames, pad_frames, duration_s.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ..atomic import write_json
from ..errors import InputError
from ..resources.tagger import use_tagger
from ..settings import settings_from_json
from ..tables import read_table
from .csv_writer import write_table
from .pos_tagger import MODEL_DIR, MODEL_FILES, BatchPerceptronTagger

NOUN_COLUMNS = ["utt_id", "image_id", "word_index", "word", "tag", "onset_s", "offset_s",
                "onset_frame", "offset_frame", "n_frames", "pad_frames", "duration_s"]


@dataclass
class NounSettings:
    """The `nouns` config section."""

    tags: list[str]


def load_tagger(nltk_data: Path) -> BatchPerceptronTagger:
    """The model `nltk.pos_tag` would use with `nltk_data` first on NLTK's path: the JSON
    files there when the tagger rule converted them (read without importing NLTK), else the
    model NLTK itself finds (its own data, `resources.tagger: nltk`)."""
    folder = Path(nltk_data) / MODEL_DIR
    if all((folder / name).is_file() for name in MODEL_FILES):
        return BatchPerceptronTagger.from_folder(folder)
    from nltk.tag.perceptron import PerceptronTagger

    use_tagger(nltk_data)
    nltk_tagger = PerceptronTagger()
    return BatchPerceptronTagger(nltk_tagger.model.weights, nltk_tagger.tagdict, nltk_tagger.classes)


def tag_utterances(words: pd.DataFrame, tagger: BatchPerceptronTagger) -> pd.Series:
    """Penn Treebank tag of every word (rows in utterance, word_index order), lower-cased
    first; each utterance is one sentence, blank words are left out of it (tag "")."""
    ordered = words.sort_values(["utt_id", "word_index"], kind="stable")
    utterance = pd.factorize(ordered["utt_id"])[0]
    # Python's strip and lower (the words NLTK would be given), once per distinct word
    code, distinct = pd.factorize(ordered["word"].to_numpy(dtype=object))
    distinct = distinct.tolist()
    kept = np.array([bool(w.strip()) for w in distinct], dtype=bool)[code]
    tokens = np.array([w.lower() for w in distinct], dtype=object)[code[kept]].tolist()
    lengths = np.bincount(utterance[kept], minlength=int(utterance.max()) + 1 if len(utterance) else 0)
    ends = np.cumsum(lengths).tolist()
    sentences = [tokens[end - n:end] for end, n in zip(ends, lengths.tolist())]
    flat_tags = [t for tagged in tagger.tag_sentences(sentences) for t in tagged]
    tags = np.full(len(words), "", dtype=object)
    tags[words.index.get_indexer(ordered.index[kept])] = flat_tags
    return pd.Series(tags, index=words.index, dtype=object)


def build(frames_csv: Path, nltk_data: Path, settings: NounSettings, out: Path, report_path: Path) -> dict:
    tagger = load_tagger(nltk_data)
    words = read_table(frames_csv, required=("utt_id", "word_index", "word", "status", "onset_frame"))
    words["tag"] = tag_utterances(words, tagger) if len(words) else pd.Series(dtype=object)
    words["word"] = words["word"].str.lower()
    is_noun = words["tag"].isin(settings.tags)
    nouns = words[is_noun & (words["status"] == "kept")].sort_values(["utt_id", "word_index"])
    write_table(nouns[NOUN_COLUMNS], out)
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
