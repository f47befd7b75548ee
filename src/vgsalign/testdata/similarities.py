"""Word-vector similarity of every kept noun to every label of its image, and their histogram.

`similarity = KeyedVectors.n_similarity([noun], label_tokens)`: the cosine between the noun's
vector and the mean vector of the label's words ("dining table" -> ["dining", "table"]).
A label word the vectors do not know is left out of that mean and reported; a label none
of whose words is known gets no similarity row (counted as `labels_unknown`), never a NaN.

    vgsalign similarities compute --vocab vocab.csv --labels labels.csv --vectors X.kv --out similarities.csv --report ...
    vgsalign similarities histogram --similarities similarities.csv --threshold 0.6 --out similarities.png

Output `similarities.csv`: utt_id, image_id, word_index, word, category_id, category,
similarity, tokens_used, tokens_missing. The histogram is a separate step so that a new
`match.threshold` redraws it without recomputing anything.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

from ..atomic import atomic_path, write_json
from ..errors import InputError
from ..settings import settings_from_json
from ..tables import read_table
from .csv_writer import write_table

SIMILARITY_COLUMNS = ["utt_id", "image_id", "word_index", "word", "category_id", "category",
                      "similarity", "tokens_used", "tokens_missing"]


def noun_label_similarities(nouns: pd.DataFrame, labels: pd.DataFrame, kv) -> tuple[pd.DataFrame, dict]:
    """One row per (kept noun, label of its image); and a report of unknown label words.

    Each distinct label is split and looked up once, and each distinct (noun, label) pair
    asks the vectors once: a split has millions of noun-label rows but a few thousand
    distinct pairs."""
    known = kv.key_to_index
    pairs = nouns.merge(labels[["image_id", "category_id", "category", "label_tokens"]], on="image_id", how="inner")
    # distinct labels in order of first appearance, so the report's counts keep that order
    label_code, label_texts = pd.factorize(pairs["label_tokens"].to_numpy(dtype=object))
    label_rows = np.bincount(label_code, minlength=len(label_texts))
    unknown_tokens: dict[str, int] = {}
    unknown_labels: dict[str, int] = {}
    present_of, used_of, missing_of = [], [], []
    for label, rows in zip(label_texts, label_rows.tolist()):
        tokens = label.split()
        present = [t for t in tokens if t in known]
        absent = [t for t in tokens if t not in known]
        for t in absent:
            unknown_tokens[t] = unknown_tokens.get(t, 0) + rows
        if not present:
            unknown_labels[label] = unknown_labels.get(label, 0) + rows
        present_of.append(present)
        used_of.append(" ".join(present))
        missing_of.append(" ".join(absent))
    word_code, word_texts = pd.factorize(pairs["word"].to_numpy(dtype=object))
    n_labels = max(1, len(label_texts))
    distinct, row_of = np.unique(word_code.astype(np.int64) * n_labels + label_code, return_inverse=True)
    values = np.full(len(distinct), np.nan)
    for k, key in enumerate(distinct.tolist()):
        word, label = divmod(key, n_labels)
        if present_of[label]:
            values[k] = float(kv.n_similarity([word_texts[word]], present_of[label]))
    pairs["similarity"] = values[row_of.ravel()]
    pairs["tokens_used"] = np.array(used_of, dtype=object)[label_code]
    pairs["tokens_missing"] = np.array(missing_of, dtype=object)[label_code]
    scored = pairs[pairs["similarity"].notna()]
    report = {
        "noun_label_pairs": len(pairs), "similarities": len(scored),
        "labels_unknown": int(pairs["similarity"].isna().sum()),
        "unknown_label_words": unknown_tokens, "unknown_labels": unknown_labels,
        "nouns_with_labels": int(nouns["image_id"].isin(labels["image_id"]).sum()),
        "nouns_without_labels": int((~nouns["image_id"].isin(labels["image_id"])).sum()),
    }
    return scored.sort_values(["utt_id", "word_index", "category_id"])[SIMILARITY_COLUMNS], report


def compute(vocab_csv: Path, labels_csv: Path, vectors: Path, out: Path, report_path: Path) -> dict:
    from ..resources.vectors import load_vectors

    vocab = read_table(vocab_csv, required=("utt_id", "image_id", "word_index", "word", "kept"))
    labels = read_table(labels_csv, required=("image_id", "category_id", "category", "label_tokens"))
    nouns = vocab[vocab["kept"]]
    kv = load_vectors(vectors)
    unknown_nouns = sorted(w for w in nouns["word"].unique() if w not in kv.key_to_index)
    if unknown_nouns:
        raise InputError(vocab_csv, f"kept nouns unknown to {vectors}: {unknown_nouns[:5]} "
                                    "(vocab.csv was made with other vectors; rerun the vocab step)")
    table, report = noun_label_similarities(nouns, labels, kv)
    write_table(table, out)
    report.update({"vectors": str(vectors), "nouns": len(nouns)})
    if len(table):
        report["similarity_quantiles"] = {
            str(q): float(v) for q, v in table["similarity"].quantile([0.05, 0.25, 0.5, 0.75, 0.95]).items()
        }
    write_json(report, report_path)
    return report


def best_per_noun(similarities: pd.DataFrame) -> pd.DataFrame:
    """The best-matching label of each noun (ties: the lower category id)."""
    ordered = similarities.sort_values(["utt_id", "word_index", "similarity", "category_id"],
                                       ascending=[True, True, False, True], kind="stable")
    return ordered.drop_duplicates(["utt_id", "word_index"], keep="first")


def histogram(similarities_csv: Path, threshold: float, out: Path, vectors_name: str = "") -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    table = read_table(similarities_csv, required=("utt_id", "word_index", "similarity", "category_id"))
    best = best_per_noun(table)
    bins = np.linspace(-0.2, 1.0, 61)
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.hist(table["similarity"], bins=bins, alpha=0.5, label=f"every noun-label pair (n={len(table)})")
    ax.hist(best["similarity"], bins=bins, alpha=0.7, label=f"best label per noun (n={len(best)})")
    ax.axvline(threshold, color="k", linestyle="--", label=f"match.threshold = {threshold:g}")
    accepted = int((best["similarity"] >= threshold).sum())
    ax.set_title(f"Noun-label similarities{f' ({vectors_name})' if vectors_name else ''}: "
                 f"{accepted} of {len(best)} nouns at or above the threshold", fontsize=9)
    ax.set_xlabel("word-vector similarity (n_similarity)")
    ax.set_ylabel("count")
    ax.legend(fontsize=8)
    fig.tight_layout()
    with atomic_path(out) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="vgsalign similarities", description="Noun-label word-vector similarities.")
    sub = parser.add_subparsers(dest="what", required=True)
    comp = sub.add_parser("compute", prog="vgsalign testdata-similarities")
    comp.add_argument("--vocab", required=True, type=Path)
    comp.add_argument("--labels", required=True, type=Path)
    comp.add_argument("--vectors", required=True, type=Path)
    comp.add_argument("--out", required=True, type=Path)
    comp.add_argument("--report", required=True, type=Path)
    hist = sub.add_parser("histogram", prog="vgsalign testdata-histogram")
    hist.add_argument("--similarities", required=True, type=Path)
    hist.add_argument("--match", required=True, help="the match config slice as JSON (the threshold line)")
    hist.add_argument("--word-vectors", required=True, help="the word_vectors config slice as JSON (named in the title)")
    hist.add_argument("--out", required=True, type=Path)
    args = parser.parse_args(argv)
    if args.what == "compute":
        report = compute(args.vocab, args.labels, args.vectors, args.out, args.report)
        print(f"{report['similarities']} similarities for {report['nouns']} nouns; "
              f"{report['labels_unknown']} noun-label pairs with no known label word")
    else:
        from ..resources.vectors import VectorSettings
        from .pairs import MatchSettings

        match = settings_from_json(MatchSettings, args.match, where="--match", section="match")
        vectors = settings_from_json(VectorSettings, args.word_vectors, where="--word-vectors", section="word_vectors")
        if vectors.source == "glove-6b-50d":   # the offline stand-in: say so in every run's log
            print(f"word vectors: GloVe 6B 50d stands in for the original's GoogleNews word2vec "
                  f"(match.threshold {match.threshold:g}; word_vectors.source: word2vec reads the original's)")
        histogram(args.similarities, match.threshold, args.out, vectors.source)
    return 0


if __name__ == "__main__":
    from ..cli import run_main

    raise SystemExit(run_main("similarities", main))
