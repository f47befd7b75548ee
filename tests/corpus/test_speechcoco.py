"""SPEECH-COCO reader: hand-written caption files in the distributed format, and bad ones."""

from __future__ import annotations


import pytest

import tests.helpers.corpus as fx
import tests.helpers.testdata as h
from vgsalign.corpus import captions, speechcoco
from vgsalign.errors import InputError


def test_fixture_words_times_and_images(tmp_path):
    speech = fx.speechcoco_corpus(tmp_path)
    result = speechcoco.read_speechcoco(speech, "val2014", {108505, 298817}, on_error="stop")
    assert not result.drops and not result.rejects
    got = {u.utt_id: [(w.word, w.onset_s, w.offset_s) for w in u.words] for u in result.utterances}
    assert got.keys() == fx.SPEECHCOCO_WORDS.keys()
    for utt_id, expected in fx.SPEECHCOCO_WORDS.items():
        assert [w for w, _, _ in got[utt_id]] == [w for w, _, _ in expected]
        assert [x for t in got[utt_id] for x in t[1:]] == pytest.approx([x for t in expected for x in t[1:]], abs=1e-9)
    by_id = {u.utt_id: u for u in result.utterances}
    assert by_id["108505_147972_Phil_Middle_0-9"].image_id == 108505
    assert by_id["298817_26763_Phil_None_0-9"].speaker == "Phil"


def test_disfluency_and_punctuation_never_become_words(tmp_path):
    speech = fx.speechcoco_corpus(tmp_path)
    path = speech / "val2014/json/108505_147972_Phil_Middle_0-9.json"
    utt = speechcoco.read_caption(path, speech / "val2014/wav")
    words = [w.word for w in utt.words]
    assert "um" not in words and "," not in words and "." not in words
    # the caption text still says "um," and its words still agree with it
    assert "um" in utt.text and captions.words_match_text(words, utt.text)


def test_image_outside_the_instances_file_is_a_counted_drop(tmp_path):
    speech = fx.speechcoco_corpus(tmp_path)
    result = speechcoco.read_speechcoco(speech, "val2014", {298817}, on_error="stop")
    assert [u.utt_id for u in result.utterances] == ["298817_26763_Phil_None_0-9"]
    assert result.drops == [(str(speech / "val2014/json/108505_147972_Phil_Middle_0-9.json"),
                             "image 108505 is not in the instances file")]


def test_word_ends_at_next_non_syllable_entry_and_last_word_at_caption_end():
    words = speechcoco.words_from_timecode(h.timecode([("a", 100), ("white", 300)], end=None), 1.25, "x.json")
    assert [(w.word, w.onset_s, w.offset_s) for w in words] == [("a", 0.1, 0.3), ("white", 0.3, 1.25)]
    closed = speechcoco.words_from_timecode(h.timecode([("a", 100), ("dog", 300)], end=("SIL", 800)), 2.0, "x.json")
    assert closed[-1].offset_s == pytest.approx(0.8)
    # the layout of SPEECH-COCO's README: SYL and SEPR share the next word's onset time
    real = [[1926.3068, "SYL", ""], [1926.3068, "SEPR", " "], [1926.3068, "WORD", "white"],
            [1926.3068, "PHO", "w"], [2050.7955, "PHO", "ai"], [2144.6591, "PHO", "t"],
            [2179.3182, "SYL", ""], [2179.3182, "SEPR", " "]]
    (white,) = speechcoco.words_from_timecode(real, 3.0, "x.json")
    assert (white.onset_s, white.offset_s) == pytest.approx((1.9263068, 2.1793182))


@pytest.mark.parametrize("timecode, problem", [
    ([[0, "SIL", ""], [500, "WORD", "a"], [300, "WORD", "dog"]], "comes before the previous one"),
    ([[-10, "WORD", "a"]], "negative time"),
    ([[0, "WORD"]], r"is not \[time_ms, kind, label\]"),
    ([["soon", "WORD", "a"]], "no valid time"),
])
def test_bad_timecodes_are_errors(timecode, problem):
    with pytest.raises(InputError, match=problem) as err:
        speechcoco.words_from_timecode(timecode, 2.0, "cap.json")
    assert err.value.where == "cap.json"


def test_caption_file_errors_name_the_file(tmp_path):
    speech = tmp_path / "speech"
    wavs = speech / h.SPLIT / "wav"
    no_tc = h.write_caption(speech, "1_1_V_None_1-0", 1, [("a", 100)], ("SIL", 300), 1.0, timecode=None)
    with pytest.raises(InputError, match="no `timecode` entry") as err:
        speechcoco.read_caption(no_tc, wavs)
    assert err.value.where == str(no_tc)
    late = h.write_caption(speech, "1_2_V_None_1-0", 1, [("a", 100), ("dog", 600)], ("SIL", 1500), 1.0)
    with pytest.raises(InputError, match="after the audio's end"):
        speechcoco.read_caption(late, wavs)
    wrong = h.write_caption(speech, "1_3_V_None_1-0", 1, [("a", 100)], ("SIL", 300), 1.0, duration=1.5)
    with pytest.raises(InputError, match="lasts 1.000 s"):
        speechcoco.read_caption(wrong, wavs)
    gone = h.write_caption(speech, "1_4_V_None_1-0", 1, [("a", 100)], ("SIL", 300), 1.0)
    (wavs / "1_4_V_None_1-0.wav").unlink()
    with pytest.raises(InputError, match="does not exist") as err:
        speechcoco.read_caption(gone, wavs)
    assert err.value.where == str(gone)


def test_broken_files_stop_or_are_rejected_with_skip(tmp_path):
    speech = fx.speechcoco_corpus(tmp_path)
    broken = speech / "val2014/json/1_5_V_None_1-0.json"
    broken.write_text('{"duration": 1.0, "timecode": [')
    with pytest.raises(InputError, match="unreadable caption JSON") as err:
        speechcoco.read_speechcoco(speech, "val2014", {108505, 298817}, on_error="stop")
    assert err.value.where == str(broken)
    result = speechcoco.read_speechcoco(speech, "val2014", {108505, 298817}, on_error="skip")
    assert len(result.utterances) == 2 and not result.drops
    assert [(f, p.split(" (")[0]) for f, p in result.rejects] == [(str(broken), "unreadable caption JSON")]


def test_disagreeing_text_is_a_counted_drop(tmp_path):
    speech = tmp_path / "speech"
    h.write_caption(speech, "1_1_V_None_1-0", 1, [("a", 100), ("dog", 300)], ("SIL", 700), 1.0)
    h.write_caption(speech, "1_2_V_None_1-0", 1, [("a", 100), ("dog", 300)], ("SIL", 700), 1.0, text="A cat.")
    result = speechcoco.read_speechcoco(speech, h.SPLIT, {1}, on_error="stop")
    assert [u.utt_id for u in result.utterances] == ["1_1_V_None_1-0"]
    assert [r for _, r in result.drops] == ["aligned words disagree with the caption text"]


def test_words_match_text_ignores_case_punctuation_disfluencies_and_unk():
    assert captions.words_match_text(["a", "man's", "t-shirt"], "A man's T-shirt.")
    assert captions.words_match_text(["<unk>", "dog"], "A dog")
    assert captions.words_match_text(["Two", "wild", "turkeys"], "Um, ah. Two wild turkeys .")
    assert not captions.words_match_text(["a", "dog"], "A cat")
