"""Direct chunk reads (vgsalign.train.chunks): HDF5's checksums recomputed exactly, the
same rows as HDF5's own read, and every case it cannot vouch for left to HDF5."""

import os

import h5py
import numpy as np
import pytest

from vgsalign.errors import InputError
from vgsalign.features.shard_writer import write_shard
from vgsalign.train import chunks
from vgsalign.train.data import load_split
from vgsalign.train.streaming import open_split, read_block

pytest.importorskip("numba")


def write_pair(root, n_images=6, captions=2, frames=37, n_mels=5, dtype=np.float32, seed=0, compression="none",
               first_id=100):
    """One audio and one visual shard; frames x n_mels chosen so that a chunk is not a whole
    number of HDF5's 360-word checksum blocks."""
    rng = np.random.default_rng(seed)
    ids = np.arange(first_id, first_id + n_images)
    image_of = np.repeat(ids, captions)
    logmel = (rng.normal(size=(len(image_of), frames, n_mels)) * 30).astype(dtype)
    audio, visual = root / f"audio_{first_id}.h5", root / f"visual_{first_id}.h5"
    write_shard(audio, {"utt_id": np.array([f"u{i}_{k % captions}" for k, i in enumerate(image_of)]),
                        "image_id": image_of, "logmel": logmel, "n_frames": np.full(len(image_of), frames, np.int32),
                        "pad_frames": np.zeros(len(image_of), np.int32)}, {"n_mels": n_mels}, [], compression)
    features = rng.normal(size=(n_images, 3, 3, 7)).astype(dtype)
    write_shard(visual, {"image_id": ids, "features": features}, {"backbone": "test"}, [], compression)
    return audio, visual, logmel, features


def stored_checksums(path, name):
    with h5py.File(path, "r") as h5:
        dataset = h5[name]
        raw = [dataset.id.read_direct_chunk((r,) + (0,) * (dataset.ndim - 1))[1] for r in range(dataset.shape[0])]
    return raw


@pytest.mark.parametrize("shape", [(37, 5), (360, 1), (4, 3), (720, 2), (512, 40)])
@pytest.mark.parametrize("dtype", [np.float32, np.float16])
def test_the_kernel_computes_hdf5s_fletcher32(tmp_path, shape, dtype):
    """Against the checksum HDF5 stored with each chunk: sizes below, at and across the
    360-word blocks, values of every bit pattern."""
    from vgsalign.train.chunk_kernels import WEIGHTS, fletcher32

    rng = np.random.default_rng(1)
    itemsize = np.dtype(dtype).itemsize
    data = rng.integers(0, 256, size=(6, int(np.prod(shape)) * itemsize), dtype=np.uint8).view(dtype).reshape(6, *shape)
    data[0] = 0  # an all-zero chunk
    data.view(np.uint8).reshape(6, -1)[1] = 0xFF  # every byte set
    path = tmp_path / "x.h5"
    with h5py.File(path, "w") as h5:
        h5.create_dataset("v", data=data, chunks=(1, *shape), fletcher32=True)
    for raw in stored_checksums(path, "v"):
        words = np.frombuffer(raw[:-4], dtype="<u2")
        assert int(fletcher32(words, WEIGHTS)) == int.from_bytes(raw[-4:], "little")


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
def test_direct_groups_equal_hdf5_groups(tmp_path, dtype):
    files = [write_pair(tmp_path, dtype=dtype, seed=s, first_id=100 + 10 * s) for s in range(3)]
    audio, visual = [f[0] for f in files], [f[1] for f in files]
    through_hdf5, direct = open_split("t", audio, visual), open_split("t", audio, visual)
    through_hdf5.direct_reads, direct.direct_reads = False, True
    for shards in [(0,), (1, 2), (0, 1, 2)]:
        a, b = through_hdf5.read_group(shards), direct.read_group(shards)
        assert a.logmel.dtype == b.logmel.dtype == dtype
        assert np.array_equal(a.logmel, b.logmel) and np.array_equal(a.features, b.features)
    written = np.concatenate([f[2] for f in files])  # against the arrays written, not another reader
    assert np.array_equal(direct.read_group((0, 1, 2)).logmel, written)
    memory = load_split("t", audio, visual)
    assert np.array_equal(memory.logmel, written.astype(np.float32))


def test_direct_read_reports_nan_by_row(tmp_path):
    audio, visual, logmel, _ = write_pair(tmp_path)
    logmel[7, 36, 4] = np.nan
    with h5py.File(audio, "a") as h5:
        h5["logmel"][...] = logmel
    split = open_split("t", [audio], [visual])
    split.direct_reads = True
    with pytest.raises(InputError, match=r"audio_100.h5: row 7 \(u103_1\) of logmel holds NaN or inf \(1 row"):
        split.read_group((0,))


def flip_byte(path, name, row, at):
    with h5py.File(path, "r") as h5:
        offset = h5[name].id.get_chunk_info_by_coord((row,) + (0,) * (h5[name].ndim - 1)).byte_offset
    with open(path, "r+b") as fh:
        fh.seek(offset + at)
        byte = fh.read(1)
        fh.seek(offset + at)
        fh.write(bytes([byte[0] ^ 0x5A]))


@pytest.mark.parametrize("at", [3, 37 * 5 * 4 + 1])  # a data byte; a byte of the stored checksum
def test_damage_is_left_to_hdf5_and_named(tmp_path, at):
    audio, visual, logmel, _ = write_pair(tmp_path)
    flip_byte(audio, "logmel", 4, at)
    out = np.empty_like(logmel)
    with h5py.File(audio, "r") as h5:
        done, _ = chunks.read_rows(str(audio), h5["logmel"], 0, out)
    assert not done  # a checksum that does not match is never accepted here
    labels = np.array([f"u{k}" for k in range(len(logmel))])
    with pytest.raises(InputError, match="checksum") as err:
        read_block(str(audio), "logmel", np.arange(len(logmel)), labels, out, direct=True)
    assert str(audio) in str(err.value)


def test_a_truncated_shard_is_left_to_hdf5(tmp_path):
    audio, visual, logmel, _ = write_pair(tmp_path, n_images=40)
    with h5py.File(audio, "r") as h5:
        end = h5["logmel"].id.get_chunk_info_by_coord((60, 0, 0)).byte_offset
    os.truncate(audio, end + 10)
    out = np.empty_like(logmel)
    try:
        h5 = h5py.File(audio, "r")
    except OSError:
        return  # HDF5 itself refuses to open it: nothing reaches the direct read
    with h5:
        done, _ = chunks.read_rows(str(audio), h5["logmel"], 0, out)
    assert not done


def test_compressed_or_other_layouts_go_through_hdf5(tmp_path):
    audio, visual, logmel, _ = write_pair(tmp_path, compression="lzf")
    out = np.empty_like(logmel)
    with h5py.File(audio, "r") as h5:
        assert not chunks.eligible(h5["logmel"], out)
        other = tmp_path / "rows.h5"
        with h5py.File(other, "w") as h5o:  # several rows per chunk
            h5o.create_dataset("logmel", data=logmel, chunks=(4, *logmel.shape[1:]), fletcher32=True)
        with h5py.File(other, "r") as h5o:
            assert not chunks.eligible(h5o["logmel"], out)
    split = open_split("t", [audio], [visual])
    split.direct_reads = True
    assert np.array_equal(split.read_group((0,)).logmel, logmel)


def test_automatic_choice_switches_after_the_threshold(monkeypatch):
    monkeypatch.setattr(chunks, "_hdf5_bytes", 0)
    monkeypatch.setattr(chunks, "SWITCH_AFTER_BYTES", 1000)
    assert [chunks.direct_now(400) for _ in range(4)] == [False, False, False, True]


def test_buffer_pool_reuses_only_what_it_lent():
    from vgsalign.train.streaming import BufferPool

    pool = BufferPool(keep=2)
    a = pool.array((4, 3), np.float32)
    a[...] = 1
    base = a.base
    pool.give_back(a)
    b = pool.array((2, 5), np.float16)  # smaller, another dtype: the same memory
    assert b.base is base and b.shape == (2, 5) and b.dtype == np.float16
    foreign = np.zeros((4, 3), np.float32)
    pool.give_back(foreign)  # not lent here: ignored
    c = pool.array((4, 3), np.float32)
    assert c.base is not base and c.base is not foreign
    pool.give_back(b)
    assert pool.array((100,), np.float32).base is not base  # too large for the buffer given back


def test_streamed_batches_stay_intact_when_buffers_are_reused(tmp_path):
    """Five groups of one shard through one reader: each group's memory is reused two groups
    later, and every batch still equals the in-memory split's."""
    import torch

    from vgsalign.train.data import epoch_plan, training_batches

    files = [write_pair(tmp_path, seed=s, first_id=100 + 10 * s) for s in range(5)]
    audio, visual = [f[0] for f in files], [f[1] for f in files]
    disk, memory = open_split("t", audio, visual), load_split("t", audio, visual)
    plans = epoch_plan(disk, np.ones(disk.n_captions, dtype=bool), 1, np.random.default_rng(2))
    kept = []
    for a, b in zip(training_batches(disk, plans, 4, torch.device("cpu"), np.random.default_rng(3)),
                    training_batches(memory, plans, 4, torch.device("cpu"), np.random.default_rng(3)), strict=True):
        assert torch.equal(a.logmel, b.logmel) and torch.equal(a.features, b.features)
        kept.append((a, b))
    assert all(torch.equal(a.logmel, b.logmel) and torch.equal(a.features, b.features) for a, b in kept)
