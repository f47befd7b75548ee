"""Unit tests of the test-set steps on hand-made cases."""

from __future__ import annotations

import json
import subprocess
from functools import lru_cache

import numpy as np
import pandas as pd
import pytest

import tests.helpers.testdata as h
from vgsalign.testdata import dataset
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


# ----------------------------------------------------------------------------- dataset

def test_word_ends_at_next_non_syllable_entry_and_last_word_at_caption_end():
    words = dataset.words_from_timecode(
        h.timecode([("a", 100), ("white", 300)], end=None), caption_end_s=1.25, where="x.json")
    assert [(w.word, w.onset_s, w.offset_s) for w in words] == [("a", 0.1, 0.3), ("white", 0.3, 1.25)]
    # phonemes and syllables inside a word do not end it; a SIL or SEPR does
    closed = dataset.words_from_timecode(h.timecode([("a", 100), ("dog", 300)], end=("SIL", 800)), 2.0, "x.json")
    assert closed[-1].offset_s == pytest.approx(0.8)
    sepr = dataset.words_from_timecode(h.timecode([("a", 100), ("dog", 300)], end=("SEPR", 650)), 2.0, "x.json")
    assert sepr[-1].offset_s == pytest.approx(0.65)
    # the real corpus's layout: SYL and SEPR share the next word's onset time
    real = [[1926.3068, "SYL", ""], [1926.3068, "SEPR", " "], [1926.3068, "WORD", "white"],
            [1926.3068, "PHO", "w"], [2050.7955, "PHO", "ai"], [2144.6591, "PHO", "t"],
            [2179.3182, "SYL", ""], [2179.3182, "SEPR", " "]]
    (white,) = dataset.words_from_timecode(real, 3.0, "x.json")
    assert (white.onset_s, white.offset_s) == pytest.approx((1.9263068, 2.1793182))


@pytest.mark.parametrize("timecode, problem", [
    ([[0, "SIL", ""], [500, "WORD", "a"], [300, "WORD", "dog"]], "comes before the previous one"),
    ([[-10, "WORD", "a"]], "negative time"),
    ([[0, "WORD"]], r"is not \[time_ms, kind, label\]"),
    ([["soon", "WORD", "a"]], "no valid time"),
])
def test_bad_timecodes_are_errors(timecode, problem):
    with pytest.raises(InputError, match=problem) as err:
        dataset.words_from_timecode(timecode, 2.0, "cap.json")
    assert err.value.where == "cap.json"


def test_caption_file_errors_name_the_file(tmp_path):
    speech = tmp_path / "speech"
    no_tc = h.write_caption(speech, "1_1_V_None_1-0", 1, [("a", 100)], ("SIL", 300), 1.0, timecode=None)
    with pytest.raises(InputError, match="no `timecode` entry") as err:
        dataset.read_speechcoco_caption(no_tc, speech / h.SPLIT / "wav")
    assert err.value.where == str(no_tc)

    late = h.write_caption(speech, "1_2_V_None_1-0", 1, [("a", 100), ("dog", 600)], ("SIL", 1500), 1.0)
    with pytest.raises(InputError, match="after the audio's end"):
        dataset.read_speechcoco_caption(late, speech / h.SPLIT / "wav")

    wrong = h.write_caption(speech, "1_3_V_None_1-0", 1, [("a", 100)], ("SIL", 300), 1.0, duration=1.5)
    with pytest.raises(InputError, match="lasts 1.000 s"):
        dataset.read_speechcoco_caption(wrong, speech / h.SPLIT / "wav")

    gone = h.write_caption(speech, "1_4_V_None_1-0", 1, [("a", 100)], ("SIL", 300), 1.0)
    (speech / h.SPLIT / "wav" / "1_4_V_None_1-0.wav").unlink()
    with pytest.raises(InputError, match="does not exist") as err:
        dataset.read_speechcoco_caption(gone, speech / h.SPLIT / "wav")
    assert err.value.where == str(gone)


def test_disagreeing_text_and_unknown_image_are_counted_drops(tmp_path):
    speech = tmp_path / "speech"
    h.write_caption(speech, "1_1_V_None_1-0", 1, [("a", 100), ("dog", 300)], ("SIL", 700), 1.0)
    h.write_caption(speech, "1_2_V_None_1-0", 1, [("a", 100), ("dog", 300)], ("SIL", 700), 1.0, text="A cat.")
    h.write_caption(speech, "7_3_V_None_1-0", 7, [("a", 100), ("dog", 300)], ("SIL", 700), 1.0)
    result = dataset.read_speechcoco(speech, h.SPLIT, image_ids={1})
    assert [u.utt_id for u in result.utterances] == ["1_1_V_None_1-0"]
    reasons = sorted(r for _, r in result.drops)
    assert reasons == ["aligned words disagree with the caption text", "image 7 is not in the instances file"]


def test_words_match_text_ignores_case_punctuation_and_unk():
    assert dataset.words_match_text(["a", "man's", "t-shirt"], "A man's T-shirt.")
    assert dataset.words_match_text(["<unk>", "dog"], "A dog")
    assert not dataset.words_match_text(["a", "dog"], "A cat")


def test_spokencoco_reader_with_textgrid_alignments(tmp_path):
    import textgrids

    speech, grids = tmp_path / "spoken", tmp_path / "mfa"
    wav_rel = "wavs/val/0/spk1-ABC_000000000001_5.wav"
    h.write_wav(speech / wav_rel, 1.2)
    index = {"data": [{"image": "val2014/COCO_val2014_000000000001.jpg", "captions": [
        {"text": "A DOG ON GRASS", "speaker": "spk1", "uttid": "spk1-ABC_000000000001_5", "wav": wav_rel}]}]}
    (speech / "SpokenCOCO_val.json").write_text(json.dumps(index))
    grid = textgrids.TextGrid()
    grid.xmin, grid.xmax = 0.0, 1.2
    tier = textgrids.Tier(xmin=0.0, xmax=1.2)
    for text, a, b in [("", 0.0, 0.1), ("a", 0.1, 0.2), ("dog", 0.2, 0.55), ("on", 0.55, 0.7), ("grass", 0.7, 1.1),
                       ("", 1.1, 1.2)]:
        tier.append(textgrids.Interval(text, a, b))
    grid["words"] = tier
    out = grids / "val/0/spk1-ABC_000000000001_5.TextGrid"
    out.parent.mkdir(parents=True)
    grid.write(str(out))
    result = dataset.read_spokencoco(speech, grids, "val2014", image_ids={1})
    (utt,) = result.utterances
    assert utt.image_id == 1 and utt.duration_s == pytest.approx(1.2)
    assert [(w.word, w.onset_s, w.offset_s) for w in utt.words] == [
        ("a", 0.1, 0.2), ("dog", 0.2, 0.55), ("on", 0.55, 0.7), ("grass", 0.7, 1.1)]
    # a caption without a TextGrid is a counted drop
    out.unlink()
    assert dataset.read_spokencoco(speech, grids, "val2014", image_ids={1}).drops[0][1] == "no TextGrid alignment"


# ----------------------------------------------------------------------------- frames

def _frames(words, durations, padding="start", max_frames=200):
    settings = frames.FrameSettings(hop_s=0.01, max=max_frames, padding=padding)
    utts = pd.DataFrame({"utt_id": list(durations), "duration_s": list(durations.values())})
    table = pd.DataFrame(words, columns=["utt_id", "word_index", "word", "onset_s", "offset_s"])
    table["image_id"], table["wav"] = 1, "x.wav"
    return frames.word_frames(table, frames.utterance_grid(utts, settings), settings)


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

    settings = LogMelSettings(sample_rate=16000, n_mels=40, win_s=0.025, hop_s=0.01, power=2.0, floor=1e-10, n_fft=512)
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
    from vgsalign.resources import provision as resources

    resources.provision_tagger("aptagger", tmp_path / "nltk_data")
    resources.use_tagger(tmp_path / "nltk_data")
    words = pd.DataFrame({"utt_id": ["u"] * 6, "word_index": range(6),
                          "word": ["Two", "Dogs", "near", "a", "red", "car"]})
    tags = nouns.tag_utterances(words).tolist()
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


def test_cli_reports_bad_input_in_one_line(tmp_path):
    speech = tmp_path / "speech"
    h.write_caption(speech, "1_1_V_None_1-0", 1, [("a", 100)], ("SIL", 300), 1.0, timecode=None)
    instances = h.write_instances(tmp_path / "coco" / "instances.json")
    proc = subprocess.run(
        ["vgsalign", "dataset", "--source", "speechcoco", "--speech-root", str(speech), "--instances", str(instances),
         "--split", h.SPLIT, "--out-dir", str(tmp_path / "out"), "--report", str(tmp_path / "out/r.json")],
        capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1].startswith("vgsalign dataset: error: ")
    assert "1_1_V_None_1-0.json: no `timecode` entry" in proc.stderr
    assert not (tmp_path / "out" / "words.csv").exists()
