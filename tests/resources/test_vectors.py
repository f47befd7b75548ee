"""Word vectors as gensim KeyedVectors: the packaged GloVe and GoogleNews-style word2vec files."""

from __future__ import annotations

import json
import subprocess

import numpy as np
import pytest

import tests.helpers.testdata as h
from vgsalign.errors import InputError
from vgsalign.resources import vectors as resources


def test_word2vec_binary_becomes_keyed_vectors(tmp_path):
    rng = np.random.default_rng(0)
    vectors = {w: rng.standard_normal(8).astype(np.float32) for w in ("dog", "cat", "dining", "table")}
    binary = h.write_word2vec(tmp_path / "tiny.bin", vectors)
    proc = subprocess.run(
        ["vgsalign", "word-vectors", "--word-vectors", json.dumps({"source": "word2vec", "path": str(binary)}),
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
