"""The corpus state changes when a corpus file is edited, added or deleted, and only then."""

import json
import os

from vgsalign.corpus.state import corpus_state, refresh


def make_corpus(root):
    (root / "json").mkdir(parents=True)
    (root / "wav").mkdir()
    (root / "json/1_2_Phil_None_1-0.json").write_text('{"timecode": []}')
    (root / "wav/1_2_Phil_None_1-0.wav").write_bytes(b"RIFF0000")
    return root


def test_refresh_rewrites_only_on_change(tmp_path):
    corpus = make_corpus(tmp_path / "speech")
    out = tmp_path / "state.json"
    out.write_text(json.dumps(corpus_state([str(corpus)])))
    stamp = out.stat().st_mtime_ns
    assert not refresh(out, [str(corpus)])                      # unchanged: file untouched
    assert out.stat().st_mtime_ns == stamp

    caption = corpus / "json/1_2_Phil_None_1-0.json"
    caption.write_text('{"timecode": [[0, "WORD", "a"]]}')     # an edit (size and mtime change)
    os.utime(caption, ns=(1, 10**18))
    assert refresh(out, [str(corpus)])
    assert not refresh(out, [str(corpus)])

    (corpus / "wav/1_2_Phil_None_1-0.wav").unlink()             # a deleted wav
    assert refresh(out, [str(corpus)])
    entry = json.loads(out.read_text())["paths"][str(corpus)]
    assert entry["files"] == 1


def test_a_touched_state_file_is_left_alone(tmp_path):
    corpus = make_corpus(tmp_path / "speech")
    out = tmp_path / "state.json"
    out.write_text("")                                          # `snakemake --touch` made it
    assert not refresh(out, [str(corpus)])
    assert out.read_text() == ""


def test_missing_paths_are_recorded_as_missing(tmp_path):
    state = corpus_state([str(tmp_path / "nowhere")])
    assert state["paths"][str(tmp_path / "nowhere")] == {"missing": True}
