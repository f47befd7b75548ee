import json

import h5py
import numpy as np
import pytest
import torch

from tests.helpers.train import tiny_frames, tiny_model, tiny_train_settings, write_pairs, write_split
from vgsalign.errors import InputError
from vgsalign.train.tensors import main as tensors_main
from vgsalign.train.loop import FrameSettings, TrainSettings, load_checkpoint, model_from_checkpoint, run_training
from vgsalign.train.data import load_split


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("dump")
    train = write_split(root, "train", 20, seed=0)
    val = write_split(root, "val", 12, seed=1, first_image_id=5000, images_per_shard=5)
    out = {}
    for arch in ("cnnatt", "matchmap"):
        run_training(load_split("train", *train), load_split("val", *val), tiny_model(arch, "sima"),
                     TrainSettings(**tiny_train_settings(epochs=1)), FrameSettings(**tiny_frames()),
                     root / arch, log=lambda _: None)
        out[arch] = root / arch / "checkpoint_best.pt"
    return root, val, out


def run_dump(root, val, ckpt, arch, pairs, out):
    argv = ["--checkpoint", str(ckpt), "--pairs", str(pairs), "--audio", *map(str, val[0]),
            "--visual", *map(str, val[1]), "--model", json.dumps(tiny_model(arch, "sima").__dict__),
            "--frames", json.dumps(tiny_frames()), "--device", "cpu", "--out", str(out)]
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
