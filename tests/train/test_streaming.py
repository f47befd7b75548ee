"""Streaming order, bounded memory, equality with the in-memory split, NaN shards."""

import gc
import weakref

import h5py
import numpy as np
import pytest
import torch

from tests.helpers.train import tiny_frames, tiny_model, tiny_train_settings, write_split
from vgsalign.errors import InputError
from vgsalign.features.shard_writer import write_shard
from vgsalign.train.data import epoch_plan, load_split, training_batches
from vgsalign.train.loop import FrameSettings, TrainSettings, run_training
from vgsalign.train.streaming import GroupPlan, open_split, prefetched


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    root = tmp_path_factory.mktemp("stream")
    return write_split(root, "train", 40, seed=0, images_per_shard=8)  # 5 shards of 24 captions


@pytest.mark.parametrize("per_group", [1, 2, 5])
def test_every_caption_once_per_epoch_same_order_for_a_seed(shards, per_group):
    split = open_split("train", *shards)
    use = np.ones(split.n_captions, dtype=bool)
    use[::7] = False  # held-out captions are never planned
    orders = {}
    for epoch in (1, 2):
        plans = epoch_plan(split, use, per_group, np.random.default_rng([0, epoch]))
        order = np.concatenate([p.order for p in plans])
        assert sorted(order.tolist()) == np.flatnonzero(use).tolist()
        for p in plans:  # a group's captions come from its shards only
            assert set(split.caption_shard[p.order].tolist()) <= set(p.shards)
        again = np.concatenate([p.order for p in epoch_plan(split, use, per_group, np.random.default_rng([0, epoch]))])
        assert (order == again).all()
        orders[epoch] = order
    assert not (orders[1] == orders[2]).all()


def test_shards_are_shuffled_across_epochs(shards):
    split = open_split("train", *shards)
    use = np.ones(split.n_captions, dtype=bool)
    firsts = {epoch_plan(split, use, 1, np.random.default_rng([0, e]))[0].shards for e in range(1, 9)}
    assert len(firsts) > 1  # the shard trained first changes between epochs
    plan = epoch_plan(split, use, 5, np.random.default_rng([0, 1]))[0]
    # within a group the captions of different shards are interleaved, not shard after shard
    assert len(set(split.caption_shard[plan.order[:10]].tolist())) > 1


def test_at_most_two_groups_are_alive(shards):
    split = open_split("train", *shards)
    alive, peak = set(), [0]

    def read(plan):
        group = split.read_group(plan.shards)
        alive.add(id(group))
        weakref.finalize(group, alive.discard, id(group))
        peak[0] = max(peak[0], len(alive))
        return group

    plans = [GroupPlan((s,), np.zeros(0, np.int64)) for s in range(split.n_audio_shards)]
    seen = 0
    for group in prefetched(read, plans):
        gc.collect()
        assert len(alive) <= 2
        seen += len(group.captions)
        del group
    assert seen == split.n_captions and peak[0] <= 2


def test_batches_from_disk_equal_batches_from_memory(shards):
    disk, memory = open_split("train", *shards), load_split("train", *shards)
    use = np.ones(disk.n_captions, dtype=bool)
    plans = epoch_plan(disk, use, 2, np.random.default_rng(3))
    cpu = torch.device("cpu")
    for a, b in zip(training_batches(disk, plans, 16, cpu, np.random.default_rng(4), True),
                    training_batches(memory, plans, 16, cpu, np.random.default_rng(4), True), strict=True):
        assert torch.equal(a.logmel, b.logmel) and torch.equal(a.features, b.features)
        assert torch.equal(a.impostor_logmel, b.impostor_logmel) and torch.equal(a.impostor_features, b.impostor_features)
        assert (a.image_rows == b.image_rows).all()


def test_same_history_whether_streamed_or_held_in_memory(shards, tmp_path):
    frames = FrameSettings(**tiny_frames())
    settings = TrainSettings(**tiny_train_settings(epochs=2, shards_per_group=1))
    run_training(open_split("train", *shards), None, tiny_model(), settings, frames, tmp_path / "disk", log=lambda _: None)
    run_training(load_split("train", *shards), None, tiny_model(), settings, frames, tmp_path / "memory", log=lambda _: None)
    assert (tmp_path / "disk/history.csv").read_bytes() == (tmp_path / "memory/history.csv").read_bytes()


def test_nan_in_a_shard_stops_before_the_first_step_naming_shard_and_row(tmp_path):
    audio, visual = write_split(tmp_path, "train", 16, seed=2, images_per_shard=8)
    with h5py.File(audio[1], "a") as h5:
        logmel = h5["logmel"][...]
        logmel[5, 3, 2] = np.nan
        h5["logmel"][...] = logmel
    steps = []  # both shards in one group: the check comes before the first batch
    settings = TrainSettings(**tiny_train_settings(epochs=1, shards_per_group=2))
    with pytest.raises(InputError, match=r"audio/train/shard_00001.h5: row 5 \(train_1009_2\) of logmel holds NaN or inf"):
        run_training(open_split("train", audio, visual), None, tiny_model(), settings, FrameSettings(**tiny_frames()),
                     tmp_path / "out", log=lambda _: None, on_step=lambda epoch, step: steps.append(step))
    assert steps == []
    with h5py.File(audio[1], "a") as h5:
        h5["logmel"][...] = np.nan_to_num(logmel)
    with h5py.File(visual[0], "a") as h5:
        features = h5["features"][...]
        features[3] = np.inf
        h5["features"][...] = features
    with pytest.raises(InputError, match=r"visual/train/shard_00000.h5: row 3 \(1003\) of features holds NaN or inf"):
        load_split("train", audio, visual)


def write_layout(root, logmel_dtype):
    """3 audio shards of `logmel_dtype` and one visual shard holding their images shuffled,
    with images no caption shows between them: each group reads its images with gaps."""
    rng = np.random.default_rng(7)
    image_ids = rng.permutation(np.arange(100, 130))  # 10 images per audio shard, 10 without captions
    audio, expected = [], {}
    for s in range(3):
        ids = np.repeat(np.arange(100 + 10 * s, 110 + 10 * s), 2)
        utts = np.array([f"u{i}_{k % 2}" for k, i in enumerate(ids)])
        logmel = (rng.normal(size=(len(ids), 16, 4)) * 3).astype(logmel_dtype)
        expected.update(zip(utts.tolist(), logmel))
        audio.append(root / f"audio_{s}.h5")
        write_shard(audio[-1], {"utt_id": utts, "image_id": ids, "logmel": logmel,
                                "n_frames": np.full(len(ids), 16, np.int32), "pad_frames": np.zeros(len(ids), np.int32)},
                    {"n_mels": 4}, [])
    features = rng.normal(size=(len(image_ids), 2, 2, 3)).astype(np.float32)
    visual = root / "visual.h5"
    write_shard(visual, {"image_id": image_ids, "features": features}, {"backbone": "test"}, [])
    return audio, [visual], expected, dict(zip(image_ids.tolist(), features))


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
def test_groups_hold_the_stored_rows_as_stored(tmp_path, dtype):
    audio, visual, logmel_of, features_of = write_layout(tmp_path, dtype)
    split = open_split("train", audio, visual)
    assert split.n_images == 30 and split.n_images_without_captions == 0
    for shards in [(0,), (2,), (0, 2), (0, 1, 2)]:
        group = split.read_group(shards)
        assert group.logmel.dtype == dtype and group.features.dtype == np.float32  # float16 kept until the batch
        assert sorted(set(split.caption_shard[group.captions].tolist())) == list(shards)
        for k, c in enumerate(group.captions):  # against the arrays written, not another reader
            assert np.array_equal(group.logmel[k], logmel_of[split.utt_ids[c]])
        for k, i in enumerate(group.images):
            assert np.array_equal(group.features[k], features_of[int(split.image_ids[i])])
        batch = group.caption_tensor(group.captions[::-1].copy())
        assert batch.dtype == torch.float32
        assert torch.equal(batch[0], torch.from_numpy(logmel_of[split.utt_ids[group.captions[-1]]].astype(np.float32)))
    memory = load_split("train", audio, visual)
    assert memory.logmel.dtype == np.float32
    assert all(np.array_equal(memory.logmel[c], logmel_of[u].astype(np.float32)) for c, u in enumerate(memory.utt_ids))


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nan_or_inf_found_by_row_in_either_dtype(tmp_path, dtype, bad):
    audio, visual, _, _ = write_layout(tmp_path, dtype)
    with h5py.File(audio[1], "a") as h5:
        logmel = h5["logmel"][...]
        logmel[13, 15, 3] = bad
        h5["logmel"][...] = logmel
    split = open_split("train", audio, visual)
    split.read_group((0, 2))  # the damaged shard is not read
    with pytest.raises(InputError, match=r"audio_1.h5: row 13 \(u116_1\) of logmel holds NaN or inf \(1 row"):
        split.read_group((1,))


def test_large_finite_values_are_not_taken_for_inf(tmp_path):
    """The cheap pass sums in float32, which overflows on values near its maximum: such a
    shard must still be read, not refused."""
    audio, visual, _, _ = write_layout(tmp_path, np.float32)
    with h5py.File(audio[0], "a") as h5:
        logmel = h5["logmel"][...]
        logmel[:4] = 3e38
        h5["logmel"][...] = logmel
    group = open_split("train", audio, visual).read_group((0,))
    assert np.isfinite(group.logmel).all() and (group.logmel[:4] == np.float32(3e38)).all()
