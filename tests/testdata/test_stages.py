"""Unit tests of the test-set steps on hand-made cases."""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import pandas as pd
import pytest

import tests.helpers.testdata as h
from vgsalign.testdata import frames
from vgsalign.testdata import labels
from vgsalign.testdata import pairs
from vgsalign.testdata import similarities
from vgsalign.testdata import vocab
from vgsalign.errors import InputError


@lru_cache(maxsize=1)
def tiny_kv(drop: tuple[str, ...] = ()):
    from gensim.models import KeyedVectors

    vectors = {w: v for w, v in h.glove_vectors(h.corpus_vocabulary()).items() if w not in drop}
    kv = KeyedVectors(vector_size=50)
    kv.add_vectors(list(vectors), np.stack(list(vectors.values())))
    return kv


# ----------------------------------------------------------------------------- frames

def _frames(words, durations, padding="start", max_frames=200, end="true_end"):
    settings = frames.FrameSettings(hop_s=0.01, max=max_frames, padding=padding)
    utts = pd.DataFrame({"utt_id": list(durations), "duration_s": list(durations.values())})
    table = pd.DataFrame(words, columns=["utt_id", "word_index", "word", "onset_s", "offset_s"])
    table["image_id"], table["wav"] = 1, "x.wav"
    return frames.word_frames(table, frames.utterance_grid(utts, settings), settings,
                              frames.WordSpanSettings(end=end))


def test_original_word_end_rule_by_hand():
    # "a dog <pause> runs" and "cat": onsets 103, 250, 800 ms and 500 ms
    words = [("u", 0, "a", 0.103, 0.2), ("u", 1, "dog", 0.25, 0.61), ("u", 2, "runs", 0.8, 0.95),
             ("v", 0, "cat", 0.5, 0.7)]
    original = _frames(words, {"u": 1.0, "v": 1.0}, padding="end", end="next_onset")
    # frames = ceil(ms / 10): 103 ms -> 11; a word ends at the next onset (dog keeps the pause
    # before "runs"); a caption-final word ends two frames after its onset
    assert original[["word", "onset_frame", "offset_frame"]].values.tolist() == [
        ["a", 11, 25], ["dog", 25, 80], ["runs", 80, 82], ["cat", 50, 52]]
    assert original["offset_s"].tolist() == pytest.approx([0.25, 0.8, 0.82, 0.52])
    true_end = _frames(words, {"u": 1.0, "v": 1.0}, padding="end")
    assert true_end[["onset_frame", "offset_frame"]].values.tolist() == [[10, 20], [25, 61], [80, 95], [50, 70]]
    # start padding shifts both rules alike: 1.0 s = 101 audio frames, 99 pad frames
    padded = _frames(words, {"u": 1.0, "v": 1.0}, padding="start", end="next_onset")
    assert (padded["offset_frame"] - original["offset_frame"]).tolist() == [99] * 4
    with pytest.raises(InputError, match="word_spans.end"):
        frames.WordSpanSettings(end="onset_plus_two")


def test_padding_shifts_frames_and_spans_are_half_open():
    words = [("u", 0, "dog", 0.03, 0.25), ("u", 1, "cat", 0.255, 0.2551)]
    start = _frames(words, {"u": 1.0}, padding="start")
    end = _frames(words, {"u": 1.0}, padding="end")
    # 1.0 s -> 1 + 100 = 101 audio frames; 200 - 101 = 99 pad frames before the audio
    assert start["n_frames"].iloc[0] == 101 and start["pad_frames"].iloc[0] == 99 and not start["cut"].iloc[0]
    assert end["pad_frames"].iloc[0] == 0
    # 0.03 s is exactly frame 3 (not 2 by float error); 0.25 s ends at frame 25 (exclusive)
    assert end[["onset_frame", "offset_frame"]].values.tolist() == [[3, 25], [25, 26]]
    assert (start["onset_frame"] - end["onset_frame"]).tolist() == [99, 99]
    assert (start["offset_frame"] - end["offset_frame"]).tolist() == [99, 99]


def test_frame_count_matches_the_audio_features():
    from vgsalign.features.logmel import LogMelSettings, n_frames_of

    from vgsalign.settings import settings_from_dict

    settings = settings_from_dict(LogMelSettings, {"sample_rate": 16000, "win_s": 0.025, "hop_s": 0.01}, section="audio")
    for n_samples in (16000, 16159, 16160, 32001, 8000):
        assert frames.audio_frames(n_samples / 16000, 0.01) == n_frames_of(n_samples, settings)


def test_long_utterance_cut_marks_straddling_and_later_words():
    words = [("u", 0, "a", 0.1, 0.5), ("u", 1, "dog", 1.5, 2.05), ("u", 2, "runs", 2.1, 2.5),
             ("u", 3, "away", 1.95, 1.995)]
    table = _frames(words, {"u": 3.0}, padding="start", max_frames=200)
    assert table["cut"].all() and (table["n_frames"] == 200).all() and (table["pad_frames"] == 0).all()
    assert table["status"].tolist() == ["kept", "partly_cut", "beyond_cut", "kept"]
    assert table["offset_frame"].iloc[3] == 200  # ends inside the last kept frame (199): still kept


# ----------------------------------------------------------------------------- nouns / vocab

def test_tagger_finds_nouns_in_lower_cased_words(tmp_path):
    from vgsalign.testdata import nouns
    from vgsalign.resources import tagger as resources

    resources.provision_tagger("aptagger", tmp_path / "nltk_data")
    words = pd.DataFrame({"utt_id": ["u"] * 6, "word_index": range(6),
                          "word": ["Two", "Dogs", "near", "a", "red", "car"]})
    tags = nouns.tag_utterances(words, nouns.load_tagger(tmp_path / "nltk_data")).tolist()
    assert tags[1] == "NNS" and tags[5] == "NN" and tags[2] != "NN"


def test_vocab_policies():
    nouns_table = pd.DataFrame({"utt_id": ["a", "a", "b"], "word": ["person", "zorbleflax", "dog"]})
    known = {"person", "dog"}
    by_utt = vocab.apply_policy(nouns_table, known, "drop_utterance")
    by_word = vocab.apply_policy(nouns_table, known, "drop_word")
    assert by_utt["kept"].tolist() == [False, False, True]
    assert by_word["kept"].tolist() == [True, False, True]
    assert by_utt["in_vocab"].tolist() == [True, False, True]
    with pytest.raises(InputError, match="vocab.policy"):
        vocab.VocabSettings(policy="keep")


# ----------------------------------------------------------------------------- labels / similarities

def test_labels_skip_crowds_and_split_multi_word_names(tmp_path):
    path = h.write_instances(tmp_path / "instances.json")
    coco = labels.load_coco(path)
    table, unlabelled = labels.image_labels(coco, [1, 2, 3, 4])
    assert table.loc[table["image_id"] == 1, ["category", "n_instances", "label_tokens"]].values.tolist() == [
        ["dog", 2, "dog"], ["dining table", 1, "dining table"]]
    assert unlabelled == {"images_without_annotations": [4], "images_crowd_only": [3]}
    assert labels.label_tokens("Hair-Drier") == ["hair", "drier"]


def test_annotation_with_unknown_category_is_an_error(tmp_path):
    path = h.write_instances(tmp_path / "instances.json", categories=[c for c in h.CATEGORIES if c["id"] != 67])
    with pytest.raises(InputError, match="category_id 67") as err:
        labels.load_coco(path)
    assert err.value.where == str(path)


def test_multi_word_labels_use_gensim_n_similarity_and_unknown_words_are_reported():
    nouns_table = pd.DataFrame({"utt_id": ["u", "u"], "image_id": [1, 1], "word_index": [1, 4],
                                "word": ["table", "dog"]})
    label_table = pd.DataFrame({"image_id": [1, 1, 1], "category_id": [67, 18, 90],
                                "category": ["dining table", "dog", "blorp thing"],
                                "label_tokens": ["dining table", "dog", "blorp thingz"]})
    kv = tiny_kv()
    table, report = similarities.noun_label_similarities(nouns_table, label_table, kv)
    row = table[(table["word"] == "table") & (table["category_id"] == 67)].iloc[0]
    assert row["similarity"] == pytest.approx(float(kv.n_similarity(["table"], ["dining", "table"])))
    assert row["similarity"] != pytest.approx(float(kv.similarity("table", "dining")))
    # a label none of whose words is known: no row, counted; never a NaN
    assert 90 not in table["category_id"].tolist() and report["labels_unknown"] == 2
    assert table["similarity"].notna().all()
    assert report["unknown_label_words"] == {"blorp": 2, "thingz": 2}
    # a label with one unknown word: the known words are used, the unknown one listed
    partial = label_table.assign(label_tokens=["dining tablez", "dog", "blorp thingz"])
    table2, _ = similarities.noun_label_similarities(nouns_table, partial, kv)
    row2 = table2[(table2["word"] == "table") & (table2["category_id"] == 67)].iloc[0]
    assert (row2["tokens_used"], row2["tokens_missing"]) == ("dining", "tablez")
    assert row2["similarity"] == pytest.approx(float(kv.similarity("table", "dining")), rel=1e-5)


def test_similarities_of_distinct_pairs_equal_one_call_per_row():
    """Each distinct (noun, label) asks the vectors once: every row equals its own
    n_similarity call, and the report counts every row, in order of first appearance."""
    rng = np.random.default_rng(2)
    words = ["table", "dog", "car", "person"]
    labels_of = {1: [(67, "dining table", "dining table"), (18, "dog", "dog")],
                 2: [(90, "blorp thing", "blorp thingz"), (3, "car", "car")], 3: [(18, "dog", "dog")]}
    nouns_table = pd.DataFrame({"utt_id": [f"u{k // 3}" for k in range(60)], "image_id": rng.choice([1, 2, 3, 4], 60),
                                "word_index": [k % 3 for k in range(60)], "word": rng.choice(words, 60)})
    label_table = pd.DataFrame([{"image_id": i, "category_id": c, "category": n, "label_tokens": t}
                                for i, rows in labels_of.items() for c, n, t in rows])
    kv = tiny_kv()
    table, report = similarities.noun_label_similarities(nouns_table, label_table, kv)
    merged = nouns_table.merge(label_table, on="image_id")
    expected_unknown: dict[str, int] = {}
    for label in merged["label_tokens"]:
        for token in label.split():
            if token not in kv.key_to_index:
                expected_unknown[token] = expected_unknown.get(token, 0) + 1
    assert list(report["unknown_label_words"].items()) == list(expected_unknown.items())
    assert report["noun_label_pairs"] == len(merged) and len(table) == int((merged["category_id"] != 90).sum())
    for row in table.itertuples():
        label = labels_of[row.image_id]
        tokens = next(t for c, _, t in label if c == row.category_id).split()
        present = [t for t in tokens if t in kv.key_to_index]
        assert row.similarity == float(kv.n_similarity([row.word], present))
        assert row.tokens_used == " ".join(present)


# ----------------------------------------------------------------------------- pairs

def test_threshold_edge_and_ties():
    sims = pd.DataFrame({
        "utt_id": ["u", "u", "u", "u", "v"], "image_id": [1, 1, 1, 1, 2], "word_index": [1, 1, 3, 3, 0],
        "word": ["dog", "dog", "pup", "pup", "car"], "category_id": [18, 67, 18, 17, 3],
        "category": ["dog", "dining table", "dog", "cat", "car"],
        "similarity": [0.5, 0.2, 0.4999999, 0.4999999, 0.6],
    })
    timing = pd.DataFrame({"utt_id": ["u", "u", "v"], "word_index": [1, 3, 0], "onset_s": [0.1, 0.5, 0.0],
                           "offset_s": [0.4, 0.9, 0.3], "onset_frame": [10, 50, 0], "offset_frame": [40, 90, 30],
                           "pad_frames": [0, 0, 0], "n_frames": [100, 100, 50], "duration_s": [1.0, 1.0, 0.5]})
    utts = pd.DataFrame({"utt_id": ["u", "v"], "wav": ["u.wav", "v.wav"], "split": ["s", "s"]})
    chosen, best = pairs.select_pairs(sims, timing, utts, threshold=0.5)
    # exactly at the threshold: accepted; just below: not
    assert chosen[["utt_id", "word", "category"]].values.tolist() == [["u", "dog", "dog"], ["v", "car", "car"]]
    # a tie goes to the lower category id
    pup = best[best["word"] == "pup"].iloc[0]
    assert pup["category_id"] == 17 and not pup["accepted"]
    assert chosen.columns.tolist() == pairs.PAIR_COLUMNS
    assert chosen.iloc[0][["onset_frame", "offset_frame"]].tolist() == [10, 40]


def test_histogram_step_reads_the_match_and_word_vectors_slices(tmp_path):
    import json
    import subprocess

    sims = pd.DataFrame({"utt_id": ["u", "u", "v"], "image_id": [1, 1, 2], "word_index": [1, 1, 0],
                         "word": ["dog", "dog", "car"], "category_id": [18, 67, 3],
                         "category": ["dog", "dining table", "car"], "similarity": [0.9, 0.2, 0.6]})
    sims.to_csv(tmp_path / "similarities.csv", index=False)
    proc = subprocess.run(["vgsalign", "testdata-histogram", "--similarities", str(tmp_path / "similarities.csv"),
                           "--match", json.dumps({"threshold": 0.5}), "--word-vectors", json.dumps({}),
                           "--out", str(tmp_path / "h.png")], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "h.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    bad = subprocess.run(["vgsalign", "testdata-histogram", "--similarities", str(tmp_path / "similarities.csv"),
                          "--match", json.dumps({"thresh": 0.5}), "--word-vectors", "{}", "--out", str(tmp_path / "x.png")],
                         capture_output=True, text=True)
    assert bad.returncode == 2 and "unknown setting(s) ['thresh']" in bad.stderr
