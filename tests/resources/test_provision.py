"""Offline resources: the converted POS tagger and the word-vector files."""

from __future__ import annotations

import collections
import json
import pickle
import subprocess

import numpy as np
import pytest

import tests.helpers.testdata as h
from vgsalign.resources import provision as resources
from vgsalign.errors import InputError


def test_restricted_unpickler_refuses_any_global_but_set(tmp_path):
    ok = tmp_path / "ok.pickle"
    ok.write_bytes(pickle.dumps(({"f": {"NN": 1.0}}, {"the": "DT"}, {"NN", "DT"})))
    weights, tagdict, classes = resources.load_aptagger_model(ok)
    assert classes == {"NN", "DT"} and tagdict == {"the": "DT"}
    evil = tmp_path / "evil.pickle"
    evil.write_bytes(pickle.dumps(({}, collections.OrderedDict(), set())))
    with pytest.raises(InputError, match="refusing global collections.OrderedDict"):
        resources.load_aptagger_model(evil)
    # the classic exploit: a reduce to os.system never gets resolved
    evil.write_bytes(b"cos\nsystem\n(S'echo pwned'\ntR.")
    with pytest.raises(InputError, match="refusing global os.system"):
        resources.load_aptagger_model(evil)


def test_aptagger_converts_to_nltk_json_and_pos_tag_works(tmp_path):
    import nltk
    from nltk.tag.perceptron import PerceptronTagger

    manifest = resources.provision_tagger("aptagger", tmp_path / "nltk_data")
    folder = tmp_path / "nltk_data" / resources.TAGGER_DIR
    # exactly the files NLTK's loader asks for
    assert sorted(p.name for p in folder.iterdir()) == sorted(PerceptronTagger(load=False).param_files("eng"))
    written = json.loads((tmp_path / "nltk_data" / "vgsalign_tagger.json").read_text())
    assert written == manifest and manifest["tagger"] == "aptagger"
    assert manifest["source"].endswith("trontagger-0.1.0.pickle") and "NNS" in manifest["classes"]
    resources.use_tagger(tmp_path / "nltk_data")
    tags = [t for _, t in nltk.pos_tag(["two", "dogs", "chase", "a", "cat"])]
    assert (tags[0], tags[1], tags[3], tags[4]) == ("CD", "NNS", "DT", "NN")
    # the converted weights are the pickle's
    weights, tagdict, _ = resources.load_aptagger_model(manifest["source"])
    tagger = PerceptronTagger(load=False)
    tagger.load_from_json(loc=str(folder.resolve()))
    assert tagger.tagdict == tagdict and len(tagger.model.weights) == len(weights)


def test_nltk_policy_needs_nltk_data(tmp_path):
    if resources.find_nltk_tagger() is not None:
        pytest.skip("NLTK's own tagger data is installed here")
    with pytest.raises(InputError, match="resources.tagger"):
        resources.provision_tagger("nltk", tmp_path / "nltk_data")
    # auto falls back to the packaged model
    assert resources.provision_tagger("auto", tmp_path / "nltk_data")["tagger"] == "aptagger"


def test_word2vec_binary_becomes_keyed_vectors(tmp_path):
    rng = np.random.default_rng(0)
    vectors = {w: rng.standard_normal(8).astype(np.float32) for w in ("dog", "cat", "dining", "table")}
    binary = h.write_word2vec(tmp_path / "tiny.bin", vectors)
    proc = subprocess.run(
        ["vgsalign", "word-vectors", "--settings", json.dumps({"source": "word2vec", "path": str(binary)}),
         "--out", str(tmp_path / "vectors" / "word2vec.kv")], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    kv = resources.load_vectors(tmp_path / "vectors" / "word2vec.kv")
    assert sorted(kv.index_to_key) == sorted(vectors)
    np.testing.assert_allclose(kv["table"], vectors["table"], rtol=1e-6)
    a, b = vectors["dog"], vectors["cat"]
    assert kv.similarity("dog", "cat") == pytest.approx(float(a @ b / np.linalg.norm(a) / np.linalg.norm(b)), rel=1e-5)


def test_bad_word2vec_file_is_one_clear_error(tmp_path):
    bad = tmp_path / "bad.bin"
    bad.write_text("not vectors\n")
    with pytest.raises(InputError) as err:
        resources.provision_vectors("word2vec", str(bad), tmp_path / "w.kv")
    assert err.value.where == str(bad)


def test_glove_package_becomes_keyed_vectors(tmp_path):
    info = resources.provision_vectors("glove-6b-50d", None, tmp_path / "glove-6b-50d.kv")
    assert info["n_words"] == 400000 and info["dim"] == 50
    kv = resources.load_vectors(tmp_path / "glove-6b-50d.kv")
    assert (tmp_path / "glove-6b-50d.kv.vectors.npy").is_file()
    direct = h.glove_vectors(["dog", "puppy", "pizza"])
    np.testing.assert_array_equal(kv["puppy"], direct["puppy"])
    assert kv.similarity("dog", "puppy") > 0.7 > kv.similarity("dog", "pizza")
