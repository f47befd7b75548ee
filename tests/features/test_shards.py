"""Reading shards: attribute checks, readers, checksums, truncation, compression."""

from __future__ import annotations

import os

import h5py
import numpy as np
import pytest

from tests.helpers.features import AUDIO, build_plan, extract_audio, make_corpus
from vgsalign.cli import run_main
from vgsalign.errors import InputError
from vgsalign.features import shards
from vgsalign.features.shard_writer import write_shard


@pytest.fixture()
def audio_shards(tmp_path):
    corpus = make_corpus(tmp_path, n_images=6)
    paths = build_plan(tmp_path, corpus)
    files = [tmp_path / "a" / f"shard_{k:05d}.h5" for k in range(paths["n_shards"])]
    for k, path in enumerate(files):
        assert extract_audio(paths, k, path) == 0
    return paths, files


def test_check_compatible_and_readers(tmp_path, audio_shards):
    import pandas as pd

    paths, files = audio_shards
    captions = pd.read_csv(paths["captions"], dtype={"utt_id": str})
    shared = shards.check_compatible(files, {"n_mels": 40, "padding": "start"})
    assert shared["sample_rate"] == 16000
    with pytest.raises(InputError, match="n_mels"):
        shards.check_compatible(files, {"n_mels": 64})
    with shards.ShardReader(files, key="utt_id") as reader:
        assert len(reader) == 12 and reader.ids.tolist() == captions["utt_id"].tolist()
        item = reader.get(captions["utt_id"].iloc[5])
        assert item["image_id"] == captions["image_id"].iloc[5] and item["logmel"].shape == (128, 40)
        with shards.ShardReader(files, key="utt_id", in_memory=True) as memory:
            assert np.array_equal(memory[7]["logmel"], reader[7]["logmel"])
    streamed = list(shards.iter_shards(files, fields=["utt_id", "n_frames"]))
    assert [len(s["utt_id"]) for s in streamed] == [8, 4]
    # a shard made with other settings is refused, naming the file
    other = tmp_path / "b" / "shard_00001.h5"
    assert extract_audio(paths, 1, other, audio={**AUDIO, "n_mels": 20}) == 0
    with pytest.raises(InputError, match="n_mels") as err:
        shards.check_compatible([files[0], other])
    assert str(other) in str(err.value)


def data_offset(path, name: str, chunk: int) -> int:
    with h5py.File(path, "r") as h5:
        return h5[name].id.get_chunk_info(chunk).byte_offset


def one_line_error(read, capsys) -> str:
    """What the CLI prints when `read` raises: exactly one line."""
    def step(argv):
        read()
        return 0

    assert run_main("test-read", step, []) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    return lines[0]


def test_flipped_bytes_in_the_data_give_one_line_naming_the_file(audio_shards, capsys):
    _, files = audio_shards
    damaged = files[0]
    offset = data_offset(damaged, "logmel", 2) + 100
    with open(damaged, "r+b") as f:  # a plausible change: one byte of one log-mel value
        f.seek(offset)
        byte = f.read(1)
        f.seek(offset)
        f.write(bytes([byte[0] ^ 0x01]))
    with shards.ShardReader(files, key="utt_id") as reader:
        reader[0], reader[1]  # undamaged rows still read
        line = one_line_error(lambda: reader[2], capsys)
    assert str(damaged) in line and "checksum" in line and "rebuild" in line
    line = one_line_error(lambda: list(shards.iter_shards(files)), capsys)
    assert str(damaged) in line and "checksum" in line
    with shards.open_shard(files[1]) as h5:  # the other shard is untouched
        assert h5["logmel"][...].shape == (4, 128, 40)


def test_a_truncated_shard_gives_one_line_naming_the_file(audio_shards, capsys):
    _, files = audio_shards
    size = files[1].stat().st_size
    os.truncate(files[1], size // 2)
    line = one_line_error(lambda: shards.check_compatible(files), capsys)
    assert str(files[1]) in line and "truncated" in line
    files[0].write_bytes(b"")
    assert str(files[0]) in one_line_error(lambda: shards.ShardReader(files[:1], key="utt_id"), capsys)


def test_a_shard_without_checksums_is_refused(tmp_path):
    plain = tmp_path / "old.h5"
    with h5py.File(plain, "w") as h5:
        h5["utt_id"] = np.array([b"a"])
    with pytest.raises(InputError, match="records no checksums"):
        shards.read_attrs(plain)


@pytest.mark.parametrize("compression", ["none", "gzip", "lzf"])
@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_compressed_shards_round_trip(tmp_path, compression, dtype):
    rng = np.random.default_rng(0)
    logmel = rng.normal(-40, 10, size=(5, 64, 40)).astype(dtype)
    logmel[:, :30] = 0.0  # padding compresses
    ids = np.array(["u1", "u22", "u333", "ü4", "u5"], dtype=object)
    out = tmp_path / "shard.h5"
    write_shard(out, {"utt_id": ids, "logmel": logmel, "n_frames": np.arange(5)}, {"modality": "audio"}, [],
                compression=compression)
    with shards.ShardReader([out], key="utt_id") as reader:
        assert reader.ids.tolist() == ids.tolist()
        assert reader[3]["logmel"].dtype == np.dtype(dtype) and np.array_equal(reader[3]["logmel"], logmel[3])
        assert reader.attrs["modality"] == "audio"
    with h5py.File(out, "r") as h5:
        assert h5["logmel"].fletcher32 and h5["logmel"].chunks == (1, 64, 40) and h5["utt_id"].fletcher32
        assert h5["logmel"].compression == (None if compression == "none" else compression)
        assert h5.attrs["compression"] == compression


def test_kept_rows_compacts_in_place_without_a_copy():
    from vgsalign.features.shard_writer import kept_rows

    values = np.arange(6 * 3, dtype=np.float32).reshape(6, 3)
    keep = np.array([False, True, True, False, False, True])
    expected = values[keep].copy()
    kept = kept_rows(values, keep)
    assert np.array_equal(kept, expected) and np.shares_memory(kept, values)
