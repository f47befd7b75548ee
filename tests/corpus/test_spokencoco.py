"""SpokenCOCO reader with MFA TextGrids, and MSCOCO's unzipped layout: hand-written fixtures."""

from __future__ import annotations

import pytest

import tests.helpers.corpus as fx
from vgsalign.corpus import coco, spokencoco, textgrid
from vgsalign.errors import InputError


def image_ids_of(coco_root):
    return lambda split: coco.coco_image_ids(coco.instances_path(coco_root, split))


def test_train_index_words_times_and_restval_images(tmp_path):
    speech, grids = fx.spokencoco_corpus(tmp_path)
    coco_root = fx.coco_corpus(tmp_path)
    result = spokencoco.read_spokencoco(speech, grids, "train2014", image_ids_of(coco_root), on_error="stop")
    got = {u.utt_id: (u.image_id, u.image_split, [(w.word, w.onset_s, w.offset_s) for w in u.words])
           for u in result.utterances}
    expected = {k: v for k, v in fx.SPOKENCOCO_WORDS.items() if k != "m1a2b3-3STUVWX_74_301"}
    assert got.keys() == expected.keys()
    for utt_id, (image_id, split, words) in expected.items():
        assert got[utt_id][:2] == (image_id, split)
        assert [w for w, _, _ in got[utt_id][2]] == [w for w, _, _ in words]
        assert [x for t in got[utt_id][2] for x in t[1:]] == pytest.approx([x for t in words for x in t[1:]], abs=1e-9)
    # image 42 is a val2014 image in the train index: found in instances_val2014.json, not dropped
    assert got["f9z8y7-3GHIJKL_42_202"][1] == "val2014"
    # the caption without a TextGrid is a counted drop naming its wav
    assert result.drops == [(str(speech / "wavs/train/1/f9z8y7-3MNOPQR_42_203.wav"), "no TextGrid alignment")]


def test_val_index_is_found_without_the_year(tmp_path):
    speech, grids = fx.spokencoco_corpus(tmp_path)
    assert spokencoco.spokencoco_index(speech, "val2014") == speech / "SpokenCOCO_val.json"
    result = spokencoco.read_spokencoco(speech, grids, "val2014", image_ids_of(fx.coco_corpus(tmp_path)),
                                        on_error="stop")
    (utt,) = result.utterances
    assert (utt.image_id, utt.speaker, [w.word for w in utt.words]) == (74, "m1a2b3", ["a", "red", "car"])


def test_image_split_comes_from_the_image_path():
    assert spokencoco.image_of("val2014/COCO_val2014_000000000042.jpg", "x.json") == (42, "val2014")
    assert spokencoco.image_of("COCO_train2014_000000391895.jpg", "x.json") == (391895, "train2014")
    with pytest.raises(InputError, match="not a COCO image path"):
        spokencoco.image_of("val2014/picture.jpg", "x.json")


def test_textgrid_words_skip_silences_and_other_tiers(tmp_path):
    path = fx.FIXTURES / "mfa/m1a2b3/m1a2b3-3ABCDEF_9_101.TextGrid"
    words = textgrid.words_from_textgrid(path)
    assert [(w.word, w.onset_s, w.offset_s) for w in words] == [
        ("a", 0.18, 0.27), ("dog", 0.27, 0.61), ("on", 0.75, 0.86), ("the", 0.86, 0.93), ("grass", 0.93, 1.5)]
    no_words = tmp_path / "phones_only.TextGrid"
    no_words.write_text(path.read_text().replace('name = "words"', 'name = "syllables"'))
    with pytest.raises(InputError, match="no `words` tier"):
        textgrid.words_from_textgrid(no_words)


def test_broken_textgrid_stops_or_is_rejected(tmp_path):
    speech, grids = fx.spokencoco_corpus(tmp_path)
    broken = grids / "m1a2b3/m1a2b3-3ABCDEF_9_101.TextGrid"
    broken.write_text("File type = \"ooTextFile\"\nnot a grid\n")
    ids = image_ids_of(fx.coco_corpus(tmp_path))
    with pytest.raises(InputError, match="unreadable TextGrid") as err:
        spokencoco.read_spokencoco(speech, grids, "train2014", ids, on_error="stop")
    assert err.value.where == str(broken)
    result = spokencoco.read_spokencoco(speech, grids, "train2014", ids, on_error="skip")
    assert [u.utt_id for u in result.utterances] == ["f9z8y7-3GHIJKL_42_202"]
    assert [f for f, _ in result.rejects] == [str(broken)]


def test_coco_unzipped_layout(tmp_path):
    coco_root = fx.coco_corpus(tmp_path)
    folder = coco.image_folder(coco_root, "val2014")
    assert folder == coco_root / "val2014"
    assert (folder / "COCO_val2014_000000000042.jpg").is_file()
    assert coco.coco_image_ids(coco.instances_path(coco_root, "train2014")) == {9}
    # the demo corpus's layout, images/<split>/, is found when the unzipped one is absent
    (tmp_path / "demo/images/val2014").mkdir(parents=True)
    assert coco.image_folder(tmp_path / "demo", "val2014") == tmp_path / "demo/images/val2014"


def test_mfa_corpus_has_one_folder_per_speaker_with_wav_and_lab(tmp_path):
    import json
    import subprocess

    speech, _ = fx.spokencoco_corpus(tmp_path)
    out = tmp_path / "mfa_corpus/train2014"
    proc = subprocess.run(["vgsalign", "alignments-corpus", "--speech-root", str(speech), "--split", "train2014",
                           "--out", str(out)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    files = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file() or p.is_symlink())
    assert files == ["f9z8y7/f9z8y7-3GHIJKL_42_202.lab", "f9z8y7/f9z8y7-3GHIJKL_42_202.wav",
                     "f9z8y7/f9z8y7-3MNOPQR_42_203.lab", "f9z8y7/f9z8y7-3MNOPQR_42_203.wav",
                     "m1a2b3/m1a2b3-3ABCDEF_9_101.lab", "m1a2b3/m1a2b3-3ABCDEF_9_101.wav",
                     "vgsalign_mfa_corpus.json"]
    assert (out / "f9z8y7/f9z8y7-3GHIJKL_42_202.lab").read_text() == "Two cats sleeping.\n"
    wav = out / "m1a2b3/m1a2b3-3ABCDEF_9_101.wav"
    assert wav.resolve() == (speech / "wavs/train/0/m1a2b3-3ABCDEF_9_101.wav").resolve()
    assert json.loads((out / "vgsalign_mfa_corpus.json").read_text())["speakers"] == 2
    # MFA's output in the same layout is where the reader looks first
    assert textgrid.textgrid_candidates(tmp_path / "grids", "wavs/train/0/m1a2b3-3ABCDEF_9_101.wav", "m1a2b3")[0] \
        == tmp_path / "grids/m1a2b3/m1a2b3-3ABCDEF_9_101.TextGrid"
