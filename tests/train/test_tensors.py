import json
import shutil

import h5py
import numpy as np
import pytest
import torch

from tests.helpers.train import tiny_frames, tiny_model, tiny_train_settings, write_pairs, write_split
from vgsalign.errors import InputError
from vgsalign.scores.tensor_io import TensorReader, inspect_tensors
from vgsalign.train import tensors as tensors_mod
from vgsalign.train.tensors import main as tensors_main
from vgsalign.train.loop import FrameSettings, TrainSettings, load_checkpoint, model_from_checkpoint, run_training
from vgsalign.train.data import load_split


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("dump")
    train = write_split(root, "train", 20, seed=0)
    val = write_split(root, "val", 12, seed=1, first_image_id=5000, images_per_shard=5)
    out = {}
    for name, arch, pooling in (("cnnatt", "cnnatt", "torch"), ("matchmap", "matchmap", "torch"),
                                ("cnnatt_tf", "cnnatt", "tf_same")):
        run_training(load_split("train", *train), load_split("val", *val), tiny_model(arch, "sima", pooling),
                     TrainSettings(**tiny_train_settings(epochs=1)), FrameSettings(**tiny_frames()),
                     root / name, log=lambda _: None)
        out[name] = root / name / "checkpoint_best.pt"
    return root, val, out


def run_dump(root, val, ckpt, arch, pairs, out, pooling="torch", audio=None):
    argv = ["--checkpoint", str(ckpt), "--pairs", str(pairs), "--audio", *map(str, audio or val[0]),
            "--visual", *map(str, val[1]), "--model", json.dumps(tiny_model(arch, "sima", pooling).__dict__),
            "--frames", json.dumps(tiny_frames()), "--device", "cpu", "--threads", "1", "--out", str(out)]
    return tensors_main(argv)


@pytest.mark.parametrize("arch", ["cnnatt", "matchmap"])
def test_tensor_file_matches_the_contract(trained, arch):
    root, val, ckpts = trained
    # utterances from several shards, out of shard order
    utts = ["val_5011_2", "val_5000_0", "val_5006_1", "val_5000_1"]
    images = [5011, 5000, 5006, 5000]
    pairs = root / f"pairs_{arch}.csv"
    write_pairs(pairs, utts, images)
    out = root / f"tensors_{arch}.h5"
    assert run_dump(root, val, ckpts[arch], arch, pairs, out) == 0
    with h5py.File(out, "r") as h5:
        avt = h5["avt"][...]
        assert avt.dtype == np.float32 and avt.shape == (4, 4, 4, 4)  # 32 frames / 8, 4x4 grid
        assert [u.decode() for u in h5["utt_id"][...]] == utts
        assert h5["image_id"][...].tolist() == images and h5["image_id"].dtype == np.int64
        assert h5["pad_frames"].dtype == np.int32 and h5["n_frames"].dtype == np.int32
        attrs = dict(h5.attrs)
        assert attrs["input_frames_per_frame"] == 8.0
        assert attrs["seconds_per_frame"] == pytest.approx(0.08)
        assert attrs["hop_s"] == 0.01 and attrs["max_frames"] == 32 and attrs["padding"] == "start"
        assert attrs["model"] == arch and "checkpoint" in attrs["source"]
        pad, nfr = h5["pad_frames"][...], h5["n_frames"][...]
    assert (pad + nfr == 32).all()
    # the tensor is the model's own alignment of that utterance with its image
    data = load_split("val", *val)
    state = load_checkpoint(ckpts[arch])
    model = model_from_checkpoint(state, ckpts[arch]).eval()
    k = list(data.utt_ids).index("val_5006_1")
    with torch.no_grad():
        a = model.encode_audio(torch.from_numpy(data.logmel[k:k + 1]))
        v = model.encode_image(torch.from_numpy(data.features[data.caption_image[k:k + 1]]))
        expected = model.alignment(a, v)[0].numpy()
    np.testing.assert_allclose(avt[2], expected, rtol=1e-4, atol=1e-5)
    assert int(pad[2]) == int(data.pad_frames[k])


def test_missing_utterances_and_wrong_architecture(trained):
    root, val, ckpts = trained
    pairs = root / "pairs_missing.csv"
    write_pairs(pairs, ["val_5000_0", "nope_1", "nope_2"], [5000, 1, 2])
    with pytest.raises(InputError, match=r"2 test utterance\(s\).*first: \['nope_1', 'nope_2'\]"):
        run_dump(root, val, ckpts["cnnatt"], "cnnatt", pairs, root / "x.h5")
    assert not (root / "x.h5").exists()
    write_pairs(pairs, ["val_5000_0"], [5000])
    with pytest.raises(InputError, match="checkpoint of architecture 'matchmap'"):
        run_dump(root, val, ckpts["matchmap"], "cnnatt", pairs, root / "x.h5")


TEST_UTTS = ["val_5011_2", "val_5000_0", "val_5006_1", "val_5000_1", "val_5003_2", "val_5008_0"]
TEST_IMAGES = [5011, 5000, 5006, 5000, 5003, 5008]


@pytest.mark.parametrize("name,pooling,offset", [("cnnatt", "torch", -4.0), ("cnnatt_tf", "tf_same", 3.0)])
def test_time_mapping_follows_the_pooling(trained, name, pooling, offset):
    root, val, ckpts = trained
    pairs = root / f"pairs_{name}_offset.csv"
    write_pairs(pairs, TEST_UTTS[:2], TEST_IMAGES[:2])
    out = root / f"tensors_{name}_offset.h5"
    assert run_dump(root, val, ckpts[name], "cnnatt", pairs, out, pooling=pooling) == 0
    with h5py.File(out, "r") as h5:
        assert h5.attrs["input_frames_offset"] == offset and h5.attrs["pooling"] == pooling
        assert h5.attrs["input_frames_per_frame"] == 8.0
    # the scores' reader sees the same mapping
    assert inspect_tensors(out).attrs["input_frames_offset"] == offset


def test_dump_streams_a_batch_at_a_time(trained, monkeypatch):
    root, val, ckpts = trained
    pairs = root / "pairs_stream.csv"
    write_pairs(pairs, TEST_UTTS, TEST_IMAGES)
    whole = root / "tensors_whole.h5"
    assert run_dump(root, val, ckpts["matchmap"], "matchmap", pairs, whole, pooling="torch") == 0
    reads = []
    original = tensors_mod.read_block

    def recording(h5, name, rows, what):
        block = original(h5, name, rows, what)
        if name in ("logmel", "features"):
            reads.append((name, len(block)))
        return block

    monkeypatch.setattr(tensors_mod, "read_block", recording)
    small = root / "tensors_small.h5"
    n = tensors_mod.dump_tensors(ckpts["matchmap"], pairs, val[0], val[1], tiny_model("matchmap", "sima"),
                                 FrameSettings(**tiny_frames()), small, device_name="cpu", batch_size=2)
    assert n == len(TEST_UTTS)
    assert reads and all(n <= 2 for _, n in reads)
    assert sum(n for name, n in reads if name == "logmel") == len(TEST_UTTS)  # each row read once
    with h5py.File(whole, "r") as a, h5py.File(small, "r") as b:
        np.testing.assert_allclose(a["avt"][...], b["avt"][...], rtol=1e-5, atol=1e-6)
        assert a["utt_id"][...].tolist() == b["utt_id"][...].tolist()


def test_matchmap_tensors_are_zero_on_padding_frames(trained):
    root, val, ckpts = trained
    pairs = root / "pairs_pad.csv"
    write_pairs(pairs, TEST_UTTS, TEST_IMAGES)
    out = root / "tensors_pad.h5"
    assert run_dump(root, val, ckpts["matchmap"], "matchmap", pairs, out) == 0
    with h5py.File(out, "r") as h5:
        avt, pad = h5["avt"][...], h5["pad_frames"][...]
        offset, stride = h5.attrs["input_frames_offset"], h5.attrs["input_frames_per_frame"]
    centres = offset + stride * (np.arange(avt.shape[1]) + 0.5)
    assert pad.max() > stride  # some utterances have whole padding frames
    for row in range(len(pad)):
        padding = centres < pad[row]
        assert np.all(avt[row, padding] == 0) and np.all(np.abs(avt[row, ~padding]).sum((1, 2)) > 0)


def corrupt_first_chunk(path, dataset):
    with h5py.File(path, "r") as h5:
        offset = h5[dataset].id.get_chunk_info_by_coord((0,) * h5[dataset].ndim).byte_offset
    with open(path, "r+b") as fh:
        fh.seek(offset + 8)
        data = bytearray(fh.read(16))
        fh.seek(offset + 8)
        fh.write(bytes(b ^ 0x5A for b in data))  # not 0xFF: fletcher32 cannot tell 0x0000 from 0xFFFF


def test_tensor_file_checksums_catch_damage(trained):
    root, val, ckpts = trained
    pairs = root / "pairs_damage.csv"
    write_pairs(pairs, TEST_UTTS[:3], TEST_IMAGES[:3])
    out = root / "tensors_damage.h5"
    assert run_dump(root, val, ckpts["cnnatt"], "cnnatt", pairs, out) == 0
    with h5py.File(out, "r") as h5:
        assert h5.attrs["integrity"] == "fletcher32"
        assert all(h5[name].fletcher32 for name in ("avt", "image_id", "pad_frames", "n_frames"))
    reader = TensorReader(inspect_tensors(out))
    assert reader.read(np.array([0, 1, 2])).shape[0] == 3
    reader.close()
    corrupt_first_chunk(out, "avt")
    reader = TensorReader(inspect_tensors(out))
    with pytest.raises(InputError, match="rows 0-0"):
        reader.read(np.array([0]))
    reader.close()


def test_damaged_audio_shard_is_named(trained):
    root, val, ckpts = trained
    damaged = root / "damaged" / "shard_00000.h5"
    damaged.parent.mkdir(exist_ok=True)
    shutil.copy(val[0][0], damaged)
    corrupt_first_chunk(damaged, "logmel")
    pairs = root / "pairs_shard.csv"
    write_pairs(pairs, ["val_5000_0"], [5000])
    with pytest.raises(InputError, match="audio shard cannot be read") as err:
        run_dump(root, val, ckpts["cnnatt"], "cnnatt", pairs, root / "y.h5", audio=[damaged, *val[0][1:]])
    assert str(damaged) in str(err.value)
    assert not (root / "y.h5").exists()


def test_checkpoint_without_the_pooling_setting_is_refused(trained, tmp_path):
    root, val, ckpts = trained
    state = torch.load(ckpts["cnnatt"], map_location="cpu", weights_only=True)
    del state["model_settings"]["pooling"]
    old = tmp_path / "old.pt"
    torch.save(state, old)
    pairs = tmp_path / "pairs.csv"
    write_pairs(pairs, ["val_5000_0"], [5000])
    with pytest.raises(InputError, match=r"no model setting\(s\) \['pooling'\].*retrain"):
        run_dump(root, val, old, "cnnatt", pairs, tmp_path / "t.h5")
