"""Image backbones, image decoding and visual shards."""

from __future__ import annotations

import os
import signal
import time

import h5py
import numpy as np
import pytest
import torch
from PIL import Image

from tests.helpers.features import build_plan, extract_audio, extract_visual, make_corpus
from vgsalign.cli import run_main
from vgsalign.errors import InputError
from vgsalign.features import backbones, shards
from vgsalign.features import visual as features_visual

RANDOM_VGG = {"backbone": "vgg16", "allow_random_weights": True}


@pytest.fixture(scope="module")
def lite0():
    return backbones.load_backbone("efficientnet_lite0", None, allow_random_weights=False)


def test_lite0_weights_load_strictly_and_classify_a_real_photo(lite0):
    """The packaged weights are real ImageNet weights for this architecture and preprocessing."""
    import matplotlib.cbook

    assert not lite0.random_weights and lite0.weights_sha256.startswith("57934424")  # the file's own hash prefix
    photo = matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)  # officer in uniform
    pixels, _, _ = features_visual.load_image(photo, 224)
    with torch.no_grad():
        logits = lite0.extractor.net(backbones.normalise(torch.from_numpy(pixels.copy())[None], lite0.spec))[0]
    probs = logits.softmax(-1)
    assert int(probs.argmax()) == 652  # ImageNet "military uniform"
    assert float(probs.max()) > 0.2 and float(logits.std()) > 1.0  # confident, far from uniform


def test_grids_are_14_by_14(lite0):
    x = torch.zeros(2, 3, 224, 224)
    with torch.no_grad():
        assert lite0.extractor(x).shape == (2, 112, 14, 14)
        vgg = backbones.load_backbone("vgg16", None, allow_random_weights=True)
        out = vgg.extractor(torch.randn(1, 3, 224, 224))
    assert vgg.random_weights and out.shape == (1, 512, 14, 14) and float(out.min()) >= 0  # after ReLU


def test_weights_are_required_and_checked(tmp_path):
    with pytest.raises(InputError, match="allow_random_weights"):
        backbones.load_backbone("vgg16", None, allow_random_weights=False)
    # a torchvision-style VGG16 state dict (with classifier keys) loads; a wrong one is refused
    state = backbones.VGG16Block5Conv3().state_dict()
    state["classifier.0.weight"] = torch.zeros(2, 2)
    good = tmp_path / "vgg16.pth"
    torch.save(state, good)
    loaded = backbones.load_backbone("vgg16", str(good), allow_random_weights=False)
    assert not loaded.random_weights and loaded.weights_sha256 == backbones.file_sha256(good)
    del state["features.28.bias"]
    bad = tmp_path / "bad.pth"
    torch.save(state, bad)
    with pytest.raises(InputError, match="missing.*features.28.bias"):
        backbones.load_backbone("vgg16", str(bad), allow_random_weights=False)


def test_keras_conversion_folds_caffe_preprocessing(tmp_path):
    """A Keras-layout file converts to a state dict that gives Keras' outputs on torchvision input."""
    rng = np.random.default_rng(0)
    net = backbones.VGG16Block5Conv3()
    convs = [m for m in net.features if isinstance(m, torch.nn.Conv2d)]
    names = [f"block{b}_conv{c}" for b, n in zip(range(1, 6), (2, 2, 3, 3, 3)) for c in range(1, n + 1)]
    path = tmp_path / "keras.h5"
    with h5py.File(path, "w") as h5:
        for conv, name in zip(convs, names):
            k = rng.normal(0, 0.05, size=(3, 3, conv.in_channels, conv.out_channels)).astype(np.float32)
            h5[f"{name}/{name}/kernel:0"] = k
            h5[f"{name}/{name}/bias:0"] = rng.normal(0, 0.05, conv.out_channels).astype(np.float32)
    state = backbones.keras_vgg16_to_state_dict(path)
    net.load_state_dict(state)
    first = torch.nn.Conv2d(3, 64, 3, padding=1)
    with h5py.File(path, "r") as h5:
        first.weight.data = torch.from_numpy(h5["block1_conv1/block1_conv1/kernel:0"][...].transpose(3, 2, 0, 1).copy())
        first.bias.data = torch.from_numpy(h5["block1_conv1/block1_conv1/bias:0"][...])
    rgb = torch.rand(1, 3, 32, 32)
    caffe = (rgb * 255).flip(1) - torch.tensor([103.939, 116.779, 123.68]).view(1, 3, 1, 1)
    torchvision_input = (rgb - torch.tensor(backbones.IMAGENET_MEAN).view(1, 3, 1, 1)) / torch.tensor(backbones.IMAGENET_STD).view(1, 3, 1, 1)
    with torch.no_grad():
        expected, got = first(caffe), net.features[0](torchvision_input)
    inner = (slice(None), slice(None), slice(1, -1), slice(1, -1))  # borders differ by the padding value only
    assert torch.allclose(got[inner], expected[inner], atol=1e-3)


@pytest.mark.parametrize("mode", ["L", "I;16", "CMYK", "RGBA", "LA", "P", "P+transparency"])
def test_image_modes_become_rgb(tmp_path, mode):
    rng = np.random.default_rng(0)
    rgb = Image.fromarray(rng.integers(0, 256, (40, 60, 3), dtype=np.uint8))
    if mode == "I;16":
        image = Image.fromarray((np.asarray(rgb.convert("L"), dtype=np.uint16) * 257))
        path = tmp_path / "gray16.png"
    elif mode == "P+transparency":
        image = rgb.convert("P")
        image.info["transparency"] = 0
        path = tmp_path / "palette_t.png"
    else:
        image = rgb.convert(mode)
        path = tmp_path / f"img_{mode}.{'jpg' if mode in ('L', 'CMYK') else 'png'}"
    if mode == "RGBA":
        alpha = np.full((40, 60), 255, np.uint8)
        alpha[:, :30] = 0  # left half fully transparent
        image.putalpha(Image.fromarray(alpha))
    image.save(path)
    pixels, width, height = features_visual.load_image(path, 224)
    assert pixels.shape == (224, 224, 3) and pixels.dtype == np.uint8 and (width, height) == (60, 40)
    if mode == "RGBA":
        assert np.all(pixels[:, :100] == 255)  # transparent pixels composited onto white
    if mode in ("L", "I;16"):
        assert np.array_equal(pixels[..., 0], pixels[..., 1])


def test_visual_shard_matches_per_item_extraction(tmp_path, lite0):
    corpus = make_corpus(tmp_path, n_images=6)
    out = tmp_path / "visual" / "shard_00000.h5"
    assert extract_visual(build_plan(tmp_path, corpus), corpus, out) == 0
    with h5py.File(out, "r") as h5:
        ids = h5["image_id"][...].tolist()
        assert ids == sorted(corpus["image_ids"])[:4]
        assert h5["features"].shape == (4, 14, 14, 112)
        for row, image_id in enumerate(ids):
            path = corpus["coco_root"] / f"images/val2014/COCO_val2014_{image_id:012d}.jpg"
            pixels, width, height = features_visual.load_image(path, 224)
            with torch.no_grad():
                single = lite0.extractor(backbones.normalise(torch.from_numpy(pixels.copy())[None], lite0.spec))
            np.testing.assert_allclose(h5["features"][row], single[0].permute(1, 2, 0).numpy(), atol=1e-4)
            assert (h5["width"][row], h5["height"][row]) == (width, height) == Image.open(path).size
        assert h5.attrs["backbone"] == "efficientnet_lite0" and not h5.attrs["random_weights"]
        assert h5.attrs["weights_sha256"] == lite0.weights_sha256 and h5.attrs["grid"] == 14
        assert h5.attrs["channel_order"] == "rgb"


def test_only_images_with_a_caption_get_features(tmp_path):
    corpus = make_corpus(tmp_path, n_images=6)
    json_dir = corpus["speech_root"] / "val2014/json"
    uncaptioned = sorted(corpus["image_ids"])[1]
    for path in json_dir.glob(f"{uncaptioned}_*.json"):
        path.unlink()
    out = tmp_path / "shard_00000.h5"
    assert extract_visual(build_plan(tmp_path, corpus), corpus, out, visual=RANDOM_VGG) == 0
    with h5py.File(out, "r") as h5:
        assert h5["image_id"][...].tolist() == [i for i in sorted(corpus["image_ids"])[:4] if i != uncaptioned]


def test_channel_order_bgr_feeds_the_channels_reversed(tmp_path, lite0):
    corpus = make_corpus(tmp_path, n_images=4)
    paths = build_plan(tmp_path, corpus)
    rgb, bgr = tmp_path / "rgb.h5", tmp_path / "bgr.h5"
    assert extract_visual(paths, corpus, rgb) == 0
    assert extract_visual(paths, corpus, bgr, visual={"channel_order": "bgr"}) == 0
    image_id = sorted(corpus["image_ids"])[2]
    pixels, _, _ = features_visual.load_image(corpus["coco_root"] / f"images/val2014/COCO_val2014_{image_id:012d}.jpg", 224)
    with torch.no_grad():
        reversed_input = lite0.extractor(backbones.normalise(torch.from_numpy(pixels[..., ::-1].copy())[None], lite0.spec))
    with h5py.File(rgb, "r") as a, h5py.File(bgr, "r") as b:
        assert b.attrs["channel_order"] == "bgr"
        np.testing.assert_allclose(b["features"][2], reversed_input[0].permute(1, 2, 0).numpy(), atol=1e-4)
        assert np.abs(a["features"][2] - b["features"][2]).max() > 0.1


def test_a_dead_decoding_worker_fails_the_step_fast_naming_the_shard(tmp_path, monkeypatch, capsys):
    corpus = make_corpus(tmp_path, n_images=4)
    paths = build_plan(tmp_path, corpus)
    victim = f"COCO_val2014_{sorted(corpus['image_ids'])[2]:012d}.jpg"
    load = features_visual.load_image

    def dies_on_the_victim(path, size):
        if str(path).endswith(victim):
            os.kill(os.getpid(), signal.SIGKILL)  # as the kernel's out-of-memory killer would
        return load(path, size)

    monkeypatch.setattr(features_visual, "load_image", dies_on_the_victim)  # inherited by the forked workers
    out = tmp_path / "visual" / "shard_00000.h5"
    started = time.monotonic()
    code = run_main("features-visual", lambda argv: extract_visual(paths, corpus, out, visual=RANDOM_VGG, threads=2))
    assert code == 2 and time.monotonic() - started < 30
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert "image decoding worker died" in line and f"{out} (shard 0)" in line and not out.exists()


def test_bad_images_stop_or_are_listed_and_random_weights_are_marked(tmp_path):
    """Files damaged after the plan checked them are found again by the visual step."""
    corpus = make_corpus(tmp_path, n_images=4)
    image_dir = corpus["coco_root"] / "images/val2014"
    first, second = sorted(image_dir.glob("*.jpg"))[:2]
    paths = build_plan(tmp_path, corpus)
    first.write_bytes(first.read_bytes()[:-800])  # the data cut off
    second.unlink()
    out = tmp_path / "shard_00000.h5"
    with pytest.raises(InputError, match="cannot read image") as err:
        extract_visual(paths, corpus, out, visual=RANDOM_VGG)
    assert first.name in str(err.value) and not out.exists()
    assert extract_visual(paths, corpus, out, visual=RANDOM_VGG, on_error="skip") == 0
    rejects = shards.read_rejects(out)
    assert sorted(rejects["path"]) == sorted([str(first), str(second)])
    with h5py.File(out, "r") as h5:
        assert h5.attrs["n_rejected"] == 2 and len(h5["image_id"]) == 2
        assert h5.attrs["random_weights"] and h5.attrs["weights_sha256"] == ""
        assert h5["features"].shape == (2, 14, 14, 512)


def test_training_opens_a_split_with_a_skipped_image(tmp_path):
    """on_error skip on an image: its captions leave the plan, so training finds an image for every caption."""
    from vgsalign.train.streaming import open_split

    corpus = make_corpus(tmp_path, n_images=6)
    skipped = sorted(corpus["coco_root"].glob("images/val2014/*.jpg"))[1]
    skipped.write_bytes(b"no image")
    paths = build_plan(tmp_path, corpus, on_error="skip", max_rejected_share=0.5)
    audio = [tmp_path / f"audio/shard_{k:05d}.h5" for k in range(paths["n_shards"])]
    visual = [tmp_path / f"visual/shard_{k:05d}.h5" for k in range(paths["n_shards"])]
    for k in range(paths["n_shards"]):
        assert extract_audio(paths, k, audio[k], on_error="skip", max_rejected_share=0.5) == 0
        assert extract_visual(paths, corpus, visual[k], shard=k, visual=RANDOM_VGG, on_error="skip",
                              max_rejected_share=0.5) == 0
    split = open_split("val2014", audio, visual)
    assert split.n_captions == 10 and split.n_images == 5
