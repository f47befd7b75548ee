"""Vocabulary check (the original "spell check"): nouns the word vectors do not know.

`vocab.policy`:
- `drop_utterance` (the original): an utterance with any out-of-vocabulary noun loses all
  its nouns (it leaves the test set);
- `drop_word`: only the unknown nouns go.

Output `vocab.csv`: every row of nouns.csv plus `in_vocab` and `kept` (True: goes on to the
similarities). The report lists the unknown words and what was dropped.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

from ..atomic import write_json
from ..errors import InputError
from ..resources.vectors import load_vectors
from ..settings import settings_from_json
from ..tables import read_table
from .csv_writer import write_table

POLICIES = ("drop_utterance", "drop_word")


@dataclass
class VocabSettings:
    """The `vocab` config section."""

    policy: str

    def __post_init__(self) -> None:
        if self.policy not in POLICIES:
            raise InputError("vocab.policy", f"{self.policy!r}: expected one of {POLICIES}")


def apply_policy(nouns, known: set[str] | object, policy: str):
    """nouns with `in_vocab` and `kept` columns; `known` supports `word in known`."""
    table = nouns.copy()
    # asked once per distinct word: a split has hundreds of thousands of nouns, a few thousand words
    table["in_vocab"] = table["word"].isin([w for w in table["word"].unique() if w in known])
    if policy == "drop_word":
        table["kept"] = table["in_vocab"]
    else:
        utterance_ok = table.groupby("utt_id")["in_vocab"].transform("all")
        table["kept"] = utterance_ok.astype(bool)
    return table


def build(nouns_csv: Path, vectors: Path, settings: VocabSettings, out: Path, report_path: Path) -> dict:
    nouns = read_table(nouns_csv, required=("utt_id", "word"))
    kv = load_vectors(vectors)
    table = apply_policy(nouns, kv.key_to_index, settings.policy)
    write_table(table, out)
    oov = table.loc[~table["in_vocab"], "word"].value_counts()
    dropped_utts = set(table.loc[~table["kept"], "utt_id"]) - set(table.loc[table["kept"], "utt_id"])
    report = {
        "policy": settings.policy, "vectors": str(vectors),
        "nouns": len(table), "nouns_oov": int((~table["in_vocab"]).sum()),
        "nouns_dropped": int((~table["kept"]).sum()), "nouns_kept": int(table["kept"].sum()),
        "utterances_dropped": len(dropped_utts) if settings.policy == "drop_utterance" else 0,
        "utterances_losing_all_nouns": len(dropped_utts),
        "oov_words": {k: int(v) for k, v in oov.items()},
    }
    write_json(report, report_path)
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="vgsalign testdata-vocab", description="Drop nouns unknown to the word vectors.")
    parser.add_argument("--nouns", required=True, type=Path)
    parser.add_argument("--vectors", required=True, type=Path, help="KeyedVectors file (.kv)")
    parser.add_argument("--vocab", required=True, help="the vocab config slice as JSON")
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--report", required=True, type=Path)
    args = parser.parse_args(argv)
    settings = settings_from_json(VocabSettings, args.vocab, where="--vocab", section="vocab")
    report = build(args.nouns, args.vectors, settings, args.out, args.report)
    print(f"{settings.policy}: {report['nouns_oov']} unknown nouns, {report['nouns_dropped']} nouns and "
          f"{report['utterances_losing_all_nouns']} utterances dropped")
    return 0


if __name__ == "__main__":
    from ..cli import run_main

    raise SystemExit(run_main("vocab", main))
