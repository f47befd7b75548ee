import json
import shlex

import h5py
import numpy as np
import pandas as pd
import pytest
import torch

import vgsalign.train.loop as train_mod
from tests.helpers.train import tiny_frames, tiny_model, tiny_train_settings, write_split
from vgsalign.errors import InputError
from vgsalign.train.losses import draw_impostors, triplet_random
from vgsalign.train.models import InputShape, build_model
from vgsalign.train.loop import FrameSettings, TrainSettings, load_checkpoint, run_training
from vgsalign.train.data import check_frames, check_splits_agree, cut_batches, epoch_order, load_split


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    root = tmp_path_factory.mktemp("shards")
    train = write_split(root, "train", 40, seed=0)
    val = write_split(root, "val", 16, seed=1, first_image_id=5000)
    return root, train, val


@pytest.fixture(scope="module")
def splits(shards):
    _, train, val = shards
    return load_split("train", *train), load_split("val", *val)


def test_load_split_joins_captions_to_images(splits):
    train, _ = splits
    assert train.n_captions == 120 and train.n_images == 40
    assert train.logmel.shape == (120, 32, 8) and train.features.shape == (40, 4, 4, 6)
    for k in (0, 57, 119):
        utt = train.utt_ids[k]
        assert int(utt.split("_")[1]) == train.image_ids[train.caption_image[k]]


def test_epoch_order_uses_every_caption_once_in_rounds():
    cap_img = np.repeat(np.arange(10), 3)
    order = epoch_order(cap_img, np.random.default_rng(0))
    assert sorted(order.tolist()) == list(range(30))
    for r in range(3):  # each round holds every image once
        assert sorted(cap_img[order[10 * r:10 * r + 10]].tolist()) == list(range(10))
    again = epoch_order(cap_img, np.random.default_rng(0))
    assert (order == again).all()
    batches = cut_batches(np.arange(9), 4)
    assert [len(b) for b in batches] == [4, 5]


def test_tiny_model_overfits_a_tiny_batch(splits):
    """Loss falls and in-batch recall rises when training on one batch repeatedly."""
    train, _ = splits
    torch.manual_seed(0)
    shape = InputShape(frames=32, n_mels=8, grid_h=4, grid_w=4, channels=6)
    model = build_model(tiny_model("cnnatt"), shape)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    caps = np.arange(0, 48, 3)  # 16 captions of 16 different images
    logmel = torch.from_numpy(train.logmel[caps])
    feats = torch.from_numpy(train.features[train.caption_image[caps]])
    rows = train.caption_image[caps]
    rng = np.random.default_rng(0)

    def r1():
        model.eval()
        with torch.no_grad():
            sim = model.similarity_matrix(model.encode_audio(logmel), model.encode_image(feats))
        model.train()
        return (sim.argmax(1) == torch.arange(16)).float().mean().item()

    before = r1()
    losses = []
    for _ in range(60):
        a, v = model.encode_audio(logmel), model.encode_image(feats)
        imp_i, imp_c = draw_impostors(rows, rng), draw_impostors(rows, rng)
        loss = triplet_random(model.pair_similarity(a, v), model.pair_similarity(a, v[imp_i]),
                              model.pair_similarity(a[imp_c], v), 0.1)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert np.mean(losses[-5:]) < 0.5 * np.mean(losses[:5])
    assert r1() > max(before, 0.5)


@pytest.mark.parametrize("loss", ["triplet_random", "triplet_hardest", "infonce"])
def test_run_writes_outputs_and_learns(splits, tmp_path, loss):
    train, val = splits
    settings = TrainSettings(**tiny_train_settings(loss=loss, epochs=3, select_by="recall", validation="split"))
    summary = run_training(train, val, tiny_model("matchmap" if loss == "infonce" else "cnnatt"), settings,
                           FrameSettings(**tiny_frames()), tmp_path, log=lambda _: None)
    for name in ("checkpoint_best.pt", "checkpoint_last.pt", "history.csv", "timing.csv", "curves.png", "retrieval.json"):
        assert (tmp_path / name).is_file()
    hist = pd.read_csv(tmp_path / "history.csv")
    assert hist["epoch"].tolist() == [1, 2, 3]
    assert (pd.read_csv(tmp_path / "timing.csv")["samples_per_s"] > 0).all() and (hist["pool_size"] == 16).all()
    assert hist["train_loss"].iloc[-1] < hist["train_loss"].iloc[0]
    saved = json.loads((tmp_path / "retrieval.json").read_text())
    assert saved["best_epoch"] == summary["best_epoch"]
    assert saved["n_images"] == 16 and saved["pooled_r10"]["pool_size"] == 16
    assert saved["chance"]["image_retrieval_from_captions"]["r10"] == pytest.approx(10 / 16)
    best = hist.loc[hist["epoch"] == saved["best_epoch"]].iloc[0]
    assert saved["image_retrieval_from_captions"]["r10"] == pytest.approx(best["r10_a2i"], abs=1e-6)
    # recall selection: the best epoch has the highest mean R@10
    means = (hist["r10_a2i"] + hist["r10_i2a"]) / 2
    assert means[hist["epoch"] == saved["best_epoch"]].iloc[0] == pytest.approx(means.max())


def test_resume_after_interruption_reproduces_history(splits, tmp_path):
    train, val = splits
    frames = FrameSettings(**tiny_frames())
    full = tmp_path / "full"
    run_training(train, val, tiny_model(), TrainSettings(**tiny_train_settings(epochs=3)), frames, full, log=lambda _: None)

    part = tmp_path / "part"

    def interrupt(epoch, step):
        if epoch == 3 and step == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_training(train, val, tiny_model(), TrainSettings(**tiny_train_settings(epochs=3)), frames, part,
                     log=lambda _: None, on_step=interrupt)
    assert not (part / "history.csv").exists() and (part / "state" / "last.pt").is_file()
    logs = []
    run_training(train, val, tiny_model(), TrainSettings(**tiny_train_settings(epochs=3, resume=True)), frames, part, log=logs.append)
    assert any("resuming" in line and "after epoch 2" in line for line in logs)
    assert (full / "history.csv").read_bytes() == (part / "history.csv").read_bytes()
    assert (full / "retrieval.json").read_text().replace(str(full), "X") == (part / "retrieval.json").read_text().replace(str(part), "X")


def test_checkpoint_of_another_architecture_is_refused(splits, tmp_path):
    train, val = splits
    frames = FrameSettings(**tiny_frames())
    run_training(train, val, tiny_model("matchmap"), TrainSettings(**tiny_train_settings(epochs=1)), frames, tmp_path, log=lambda _: None)
    with pytest.raises(InputError, match=r"checkpoint_best.pt.*architecture 'matchmap'.*'cnnatt'"):
        load_checkpoint(tmp_path / "checkpoint_best.pt", "cnnatt")
    with pytest.raises(InputError, match=r"last.pt: cannot resume, settings differ .*model.arch 'matchmap' -> 'cnnatt'"):
        run_training(train, val, tiny_model("cnnatt"), TrainSettings(**tiny_train_settings(epochs=2, resume=True)),
                     frames, tmp_path, log=lambda _: None)
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(InputError, match="junk.pt"):
        load_checkpoint(tmp_path / "junk.pt")


def test_disagreeing_shards_are_named(shards, tmp_path):
    root, train, val = shards
    a_files, v_files = write_split(tmp_path, "odd", 12, seed=3, images_per_shard=6, audio_attrs={"sample_rate": 8000})
    with h5py.File(a_files[1], "a") as h5:
        h5.attrs["sample_rate"] = 16000
    with pytest.raises(InputError, match=r"shard_00001.h5: .*sample_rate = 16000 vs 8000"):
        load_split("odd", a_files, v_files)
    other = write_split(tmp_path / "m", "val", 6, seed=4, n_mels=10)
    with pytest.raises(InputError, match="logmel rows shaped"):
        check_splits_agree(load_split("train", *train), load_split("val", *other))
    with pytest.raises(InputError, match="frames.max is 64"):
        check_frames(load_split("train", *train), 64, "start", 0.01)
    with pytest.raises(InputError, match="padding"):
        check_frames(load_split("train", *train), 32, "end", 0.01)


def test_empty_split_and_missing_images(tmp_path):
    a_files, v_files = write_split(tmp_path, "e", 4, seed=5)
    with h5py.File(a_files[0], "w") as h5:
        h5["utt_id"] = np.array([], dtype=h5py.string_dtype())
        for name, empty in (("image_id", np.zeros(0, dtype=np.int64)), ("logmel", np.zeros((0, 32, 8), dtype=np.float32)),
                            ("n_frames", np.zeros(0, dtype=np.int32)), ("pad_frames", np.zeros(0, dtype=np.int32))):
            h5.create_dataset(name, data=empty, maxshape=(None, *empty.shape[1:]), fletcher32=True)
        h5.attrs["integrity"] = "fletcher32"
    with pytest.raises(InputError, match="split e is empty"):
        load_split("e", a_files, v_files)
    with pytest.raises(InputError, match="0 audio and 1 visual"):
        load_split("e", [], v_files)
    b_files, w_files = write_split(tmp_path / "b", "b", 4, seed=6)
    other_v = write_split(tmp_path / "c", "c", 4, seed=6, first_image_id=9000)[1]
    with pytest.raises(InputError, match="missing from its visual shards, first: \\[1000"):
        load_split("b", b_files, other_v)


def test_cli(shards, tmp_path):
    _, (ta, tv), (va, vv) = shards
    files = lambda fs: " ".join(str(f) for f in fs)  # noqa: E731
    argv = shlex.split(
        f"--train-audio {files(ta)} --train-visual {files(tv)} --val-audio {files(va)} --val-visual {files(vv)} "
        f"--model '{json.dumps(tiny_model().__dict__)}' --train '{json.dumps(tiny_train_settings(epochs=1))}' "
        f"--frames '{json.dumps(tiny_frames())}' --out-dir {tmp_path}"
    )
    assert train_mod.main(argv) == 0
    assert (tmp_path / "retrieval.json").is_file()
    from vgsalign.cli import run_main

    bad = argv[:argv.index("--model") + 1] + [json.dumps({**tiny_model().__dict__, "arch": "rnn"})] + argv[argv.index("--model") + 2:]
    assert run_main("train", train_mod.main, bad) == 2
