"""NLTK's averaged-perceptron POS tagger, run on many sentences at once.

`nltk.pos_tag_sents` tags a sentence word by word in Python: for every word not in the
model's tag dictionary it sums the weights of 14 features over 45 tags in dictionaries,
about 150 us a word, half an hour of CPU for SPEECH-COCO's 4 million words. This module
computes exactly what `nltk.tag.perceptron.PerceptronTagger.tag` computes, with the same
model files, but with the weights in a dense array (one row per feature, one column per
tag) and the words at one position of many sentences scored together:

- a word in the tag dictionary gets its tag from it (NLTK's `use_tagdict`);
- otherwise NLTK's 14 features (same strings, same order: bias, suffix, first letter, the
  two previous tags, ..., the next two words), each of value 1; the score of a tag is
  0.0 plus the weight of each feature, added in that order, as NLTK adds them (a feature
  the model lacks adds 0.0, which changes no sum), so every score is the same float;
- the tag with the highest score wins, ties going to the greater tag name (NLTK's
  `max(classes, key=(score, tag))`).

Tests compare it with `nltk.pos_tag_sents` on the demo corpus and on random word sequences.
Reading the model's JSON files directly also spares the step NLTK's import (about 4 s of
CPU: it loads scikit-learn and scipy).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

START = ("-START-", "-START2-")
END = ("-END-", "-END2-")
MODEL_DIR = "taggers/averaged_perceptron_tagger_eng"
MODEL_FILES = tuple(f"averaged_perceptron_tagger_eng.{part}.json" for part in ("weights", "tagdict", "classes"))
# sentences scored together (bounds the per-batch arrays to a few tens of MB)
BATCH_SENTENCES = 20_000


def normalize(word: str) -> str:
    """NLTK's PerceptronTagger.normalize."""
    if "-" in word and word[0] != "-":
        return "!HYPHEN"
    if word.isdigit() and len(word) == 4:
        return "!YEAR"
    if word and word[0].isdigit():
        return "!DIGITS"
    return word.lower()


class BatchPerceptronTagger:
    """An averaged-perceptron model (NLTK's weights, tag dictionary and classes)."""

    def __init__(self, weights: dict[str, dict[str, float]], tagdict: dict[str, str], classes: Sequence[str]):
        self.tagdict = dict(tagdict)
        self.classes = sorted(set(classes))              # ascending: a tie goes to the last maximum
        column = {tag: i for i, tag in enumerate(self.classes)}
        self.feature_row = {feature: i + 1 for i, feature in enumerate(weights)}   # row 0: no such feature
        self.weights = np.zeros((len(weights) + 1, len(self.classes)), dtype=np.float64)
        rows, cols, values = [], [], []
        for feature, tag_weights in weights.items():
            row = self.feature_row[feature]
            for tag, weight in tag_weights.items():
                if tag in column:                        # NLTK scores only its classes
                    rows.append(row)
                    cols.append(column[tag])
                    values.append(weight)
        self.weights[rows, cols] = values
        # the tags a previous word can have: the classes, the dictionary's tags, the start markers
        self.tags = list(dict.fromkeys([*START, *self.classes, *self.tagdict.values()]))
        self.tag_id = {tag: i for i, tag in enumerate(self.tags)}
        self.class_tag_id = np.array([self.tag_id[tag] for tag in self.classes])
        row = self.feature_row.get
        self.prev_row = np.array([row(f"i-1 tag {t}", 0) for t in self.tags])
        self.prev2_row = np.array([row(f"i-2 tag {t}", 0) for t in self.tags])
        self.prev_prev2_row = np.array([[row(f"i tag+i-2 tag {p} {q}", 0) for q in self.tags] for p in self.tags])
        self.bias_row = row("bias", 0)

    @classmethod
    def from_folder(cls, folder: str | Path) -> "BatchPerceptronTagger":
        """The model in NLTK's three JSON files under `folder`."""
        weights, tagdict, classes = (json.loads((Path(folder) / name).read_text()) for name in MODEL_FILES)
        return cls(weights, tagdict, classes)

    def tag_sentences(self, sentences: Sequence[Sequence[str]]) -> list[list[str]]:
        """The tag of every word of every sentence, as nltk.pos_tag_sents gives them."""
        tagged: list[list[str]] = []
        for start in range(0, len(sentences), BATCH_SENTENCES):
            tagged += self._tag_batch(sentences[start:start + BATCH_SENTENCES])
        return tagged

    def _tag_batch(self, sentences: Sequence[Sequence[str]]) -> list[list[str]]:
        lengths = np.array([len(s) for s in sentences], dtype=np.int64)
        n_tokens = int(lengths.sum())
        if n_tokens == 0:
            return [[] for _ in sentences]
        # each distinct word is normalised and looked up once (a split has millions of
        # tokens and tens of thousands of distinct words)
        word_code, distinct = pd.factorize(np.array([w for s in sentences for w in s], dtype=object))
        distinct = distinct.tolist()
        context_vocab: dict[str, int] = {w: i for i, w in enumerate((*START, *END))}
        distinct_context = np.array([context_vocab.setdefault(normalize(w), len(context_vocab)) for w in distinct],
                                    dtype=np.int64)
        context_words = list(context_vocab)
        row = self.feature_row.get
        rows_of = {name: np.array([row(f"{name} {w}", 0) for w in context_words]) for name in
                   ("i word", "i-1 word", "i-2 word", "i+1 word", "i+2 word")}
        for name in ("i-1 suffix", "i+1 suffix"):
            rows_of[name] = np.array([row(f"{name} {w[-3:]}", 0) for w in context_words])
        # per token: its context words (NLTK pads each sentence with START and END); the
        # token itself sits after its sentence's 2 START markers
        padded_start = np.concatenate([[0], np.cumsum(lengths + 4)[:-1]])
        token_sentence = np.repeat(np.arange(len(sentences)), lengths)
        token_position = np.arange(n_tokens) - np.repeat(np.cumsum(lengths) - lengths, lengths)
        here = padded_start[token_sentence] + 2 + token_position
        ctx = np.empty(int((lengths + 4).sum()), dtype=np.int64)
        for k, marker in enumerate(START):
            ctx[padded_start + k] = context_vocab[marker]
        for k, marker in enumerate(END):
            ctx[padded_start + 2 + lengths + k] = context_vocab[marker]
        ctx[here] = distinct_context[word_code]
        i_word = ctx[here]
        suffix_row = np.array([row(f"i suffix {w[-3:]}", 0) for w in distinct], dtype=np.int64)
        pref1_row = np.array([row(f"i pref1 {w[0] if w else ''}", 0) for w in distinct], dtype=np.int64)
        static = np.stack([
            np.full(n_tokens, self.bias_row),
            suffix_row[word_code],
            pref1_row[word_code],
            rows_of["i word"][i_word],
            rows_of["i-1 word"][ctx[here - 1]],
            rows_of["i-1 suffix"][ctx[here - 1]],
            rows_of["i-2 word"][ctx[here - 2]],
            rows_of["i+1 word"][ctx[here + 1]],
            rows_of["i+1 suffix"][ctx[here + 1]],
            rows_of["i+2 word"][ctx[here + 2]],
        ], axis=1)
        from_dict = [self.tagdict.get(w) for w in distinct]
        known = np.array([t is not None and t != "" for t in from_dict], dtype=bool)[word_code]
        dict_tag = np.array([self.tag_id[t] if t else -1 for t in from_dict], dtype=np.int64)[word_code]
        tag = np.full(n_tokens, -1, dtype=np.int64)
        prev = np.full(len(sentences), self.tag_id[START[0]], dtype=np.int64)
        prev2 = np.full(len(sentences), self.tag_id[START[1]], dtype=np.int64)
        token_start = np.cumsum(lengths) - lengths
        prev_word_rows: dict[tuple[int, int], int] = {}
        for position in range(int(lengths.max())):
            sentence = np.flatnonzero(lengths > position)
            token = token_start[sentence] + position
            guess = ~known[token]
            tag[token[~guess]] = dict_tag[token[~guess]]
            if guess.any():
                s, t = sentence[guess], token[guess]
                p, q = prev[s], prev2[s]
                keys = list(zip(p.tolist(), i_word[t].tolist()))
                for pi, wi in set(keys).difference(prev_word_rows):
                    prev_word_rows[pi, wi] = row(f"i-1 tag+i word {self.tags[pi]} {context_words[wi]}", 0)
                prev_word = np.array([prev_word_rows[key] for key in keys], dtype=np.int64)
                feature_rows = static[t]
                # NLTK's feature order; each addition in turn, as NLTK sums a tag's score
                order = (feature_rows[:, 0], feature_rows[:, 1], feature_rows[:, 2], self.prev_row[p],
                         self.prev2_row[q], self.prev_prev2_row[p, q], feature_rows[:, 3], prev_word,
                         feature_rows[:, 4], feature_rows[:, 5], feature_rows[:, 6], feature_rows[:, 7],
                         feature_rows[:, 8], feature_rows[:, 9])
                scores = np.zeros((len(t), len(self.classes)), dtype=np.float64)
                for rows in order:
                    scores += self.weights[rows]
                best = len(self.classes) - 1 - np.argmax(scores[:, ::-1], axis=1)
                tag[t] = self.class_tag_id[best]
            prev2[sentence] = prev[sentence]
            prev[sentence] = tag[token]
        names = np.array(self.tags, dtype=object)[tag].tolist()
        out, at = [], 0
        for n in lengths.tolist():
            out.append(names[at:at + n])
            at += n
        return out
