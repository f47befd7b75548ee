import numpy as np
import pytest
import torch

from tests.helpers.train import tiny_model
from vgsalign.errors import InputError
from vgsalign.settings import settings_from_dict
from vgsalign.features.logmel import PAD_VALUE
from vgsalign.train.geometry import SameMaxPool1d, tf_same_padding
from vgsalign.train.models import CNNatt, InputShape, Matchmap, ModelSettings, build_model, matchmap_similarity

SHAPE = InputShape(frames=32, n_mels=8, grid_h=4, grid_w=3, channels=6)


def model_settings(**values) -> ModelSettings:
    """The original's sizes (config/original_model.yaml), the rest from the schema's defaults."""
    original = {"embed_dim": 512, "dropout": 0.3, "audio_channels": [128, 256, 256, 512]}
    return settings_from_dict(ModelSettings, {**original, **values}, "model", section="model")


def inputs(b=5, shape=SHAPE, seed=0):
    g = torch.Generator().manual_seed(seed)
    logmel = torch.randn(b, shape.frames, shape.n_mels, generator=g)
    feats = torch.randn(b, shape.grid_h, shape.grid_w, shape.channels, generator=g)
    return logmel, feats


def test_default_sizes_follow_the_original():
    shape = InputShape(frames=512, n_mels=40, grid_h=14, grid_w=14, channels=512)
    model = build_model(model_settings(), shape).eval()
    convs = [m for m in model.audio.net if isinstance(m, torch.nn.Conv1d)]
    assert [c.out_channels for c in convs] == [128, 256, 256, 512, 512]
    assert [c.kernel_size[0] for c in convs] == [5, 11, 17, 17, 17]
    assert shape.tensor_frames == 64
    logmel = torch.randn(2, 512, 40)
    feats = torch.randn(2, 14, 14, 512)
    with torch.no_grad():
        a, v = model.encode_audio(logmel), model.encode_image(feats)
        assert a.shape == (2, 64, 512) and v.shape == (2, 196, 512)
        emb_a, emb_v = model.embeddings(a, v)
        assert emb_a.shape == (2, 1536) and emb_v.shape == (2, 1536)
        assert torch.allclose(emb_a.norm(dim=1), torch.ones(2), atol=1e-5)
        assert model.alignment(a, v).shape == (2, 64, 14, 14)


@pytest.mark.parametrize("arch,similarity", [("cnnatt", "misa"), ("matchmap", "sisa"), ("matchmap", "misa"), ("matchmap", "sima")])
def test_shapes_and_matrix_agrees_with_pairs(arch, similarity):
    model = build_model(tiny_model(arch, similarity), SHAPE).eval()
    logmel, feats = inputs()
    with torch.no_grad():
        a, v = model.encode_audio(logmel), model.encode_image(feats)
        assert a.shape == (5, SHAPE.tensor_frames, 16) and v.shape == (5, 12, 16)
        pairs = model.pair_similarity(a, v)
        matrix = model.similarity_matrix(a, v, chunk_elements=50)  # forces several chunks
        assert pairs.shape == (5,) and matrix.shape == (5, 5)
        assert torch.allclose(matrix.diagonal(), pairs, atol=1e-5)
        # off-diagonal entries are the pair similarity of other combinations
        assert torch.allclose(matrix[1, 3], model.pair_similarity(a[1:2], v[3:4])[0], atol=1e-5)
        tensor = model.alignment(a, v)
        assert tensor.shape == (5, SHAPE.tensor_frames, 4, 3)
        assert pairs.abs().max() <= 1 + 1e-5  # cosines


def test_cnnatt_alignment_is_the_score_matrix_before_softmax():
    model = build_model(tiny_model("cnnatt"), SHAPE).eval()
    logmel, feats = inputs(2)
    with torch.no_grad():
        a, v = model.encode_audio(logmel), model.encode_image(feats)
        tensor = model.alignment(a, v)
        expected = torch.einsum("td,pd->tp", a[1], v[1]).view(-1, 4, 3)
    assert torch.allclose(tensor[1], expected, atol=1e-5)
    assert not torch.allclose(tensor[1].flatten(1).sum(1), torch.ones(tensor.shape[1]))  # not a softmax


def test_cnnatt_embedding_matches_the_unreduced_definition():
    """Averaging the attention weights over time first equals averaging attended vectors."""
    model = build_model(tiny_model("cnnatt"), SHAPE).eval()
    logmel, feats = inputs(1)
    with torch.no_grad():
        a, v = model.encode_audio(logmel), model.encode_image(feats)
        s = a[0] @ v[0].T
        att_soft = torch.softmax(s, 1) @ v[0]  # (T, D), then mean over time
        att_dense = torch.sigmoid(model.dense_pixels(s)) @ v[0]
        audio_emb = torch.cat([att_soft.mean(0), att_dense.mean(0), a[0].mean(0)])
        img_soft = torch.softmax(s.T, 1) @ a[0]
        img_dense = torch.sigmoid(model.dense_frames(s.T)) @ a[0]
        image_emb = torch.cat([img_soft.mean(0), img_dense.mean(0), v[0].mean(0)])
        expected = torch.nn.functional.cosine_similarity(audio_emb, image_emb, dim=0)
        assert torch.allclose(model.pair_similarity(a, v)[0], expected, atol=1e-5)


def test_matchmap_similarities_by_hand():
    m = torch.tensor([[[0.1, 0.9, -0.2], [0.4, 0.3, 0.0]]])  # (1, T=2, P=3)
    assert matchmap_similarity(m, "sisa").item() == pytest.approx((0.1 + 0.9 - 0.2 + 0.4 + 0.3 + 0.0) / 6)
    assert matchmap_similarity(m, "misa").item() == pytest.approx((0.9 + 0.4) / 2)
    assert matchmap_similarity(m, "sima").item() == pytest.approx((0.4 + 0.9 + 0.0) / 3)
    # the three differ here (the original computed all three as the mean)
    values = {k: matchmap_similarity(m, k).item() for k in ("sisa", "misa", "sima")}
    assert len({round(v, 6) for v in values.values()}) == 3


def test_matchmap_uses_unit_embeddings_and_configured_similarity():
    logmel, feats = inputs(3)
    model = build_model(tiny_model("matchmap", "sima"), SHAPE).eval()
    assert isinstance(model, Matchmap)
    with torch.no_grad():
        a, v = model.encode_audio(logmel), model.encode_image(feats)
        assert torch.allclose(a.norm(dim=-1), torch.ones(a.shape[:2]), atol=1e-5)
        mm = model.alignment(a, v).flatten(2)
        assert torch.allclose(model.pair_similarity(a, v), mm.max(dim=1).values.mean(1), atol=1e-6)


def test_visual_branch_adapts_to_grid_and_channels():
    shape = InputShape(frames=32, n_mels=8, grid_h=7, grid_w=7, channels=1280)
    model = build_model(tiny_model("cnnatt"), shape)
    assert isinstance(model, CNNatt)
    assert model.dense_pixels.in_features == 49
    logmel = torch.randn(2, 32, 8)
    feats = torch.randn(2, 7, 7, 1280)
    assert model(logmel, feats).shape == (2,)


def test_bad_settings_name_the_key():
    with pytest.raises(InputError, match="model.arch"):
        model_settings(arch="resnet")
    with pytest.raises(InputError, match="audio_channels"):
        model_settings(audio_channels=[1, 2])
    assert np.isfinite(SHAPE.pixels)


# ---------------------------------------------------------------- time geometry


def positive_audio_branch(pooling: str, shape: InputShape):
    """An audio branch whose output rises with every input frame it sees (positive weights, eval mode)."""
    settings = tiny_model("cnnatt")
    settings.pooling = pooling
    model = build_model(settings, shape).eval()
    with torch.no_grad():
        for layer in model.audio.net:
            if isinstance(layer, torch.nn.Conv1d):
                layer.weight.fill_(1.0 / (layer.in_channels * layer.kernel_size[0]))
                layer.bias.zero_()
    return model


def impulse_receptive_fields(model, shape: InputShape) -> list[tuple[int, int]]:
    """For each tensor frame, the first and last input frame whose impulse changes it."""
    base = torch.ones(1, shape.frames, shape.n_mels)
    impulses = base.repeat(shape.frames, 1, 1)
    impulses[torch.arange(shape.frames), torch.arange(shape.frames)] += 10.0
    with torch.no_grad():
        changed = (model.audio(impulses) - model.audio(base)).abs().amax(-1) > 1e-6  # (input frame, T)
    fields = []
    for k in range(changed.shape[1]):
        frames = torch.nonzero(changed[:, k]).flatten()
        fields.append((int(frames.min()), int(frames.max())))
    return fields


@pytest.mark.parametrize("pooling,first_centre", [("torch", 0), ("tf_same", 7)])
def test_time_geometry_matches_the_receptive_fields(pooling, first_centre):
    shape = InputShape(frames=128, n_mels=2, grid_h=2, grid_w=2, channels=3)
    model = positive_audio_branch(pooling, shape)
    geometry = model.time_geometry
    assert geometry.stride == 8 and geometry.first_centre == first_centre
    assert geometry.offset == first_centre - 4
    fields = impulse_receptive_fields(model, shape)
    assert len(fields) == shape.tensor_frames == 16
    # away from the edges (where the zero padding clips them) the fields are whole and centred
    for k in range(5, 11):
        low, high = fields[k]
        assert (low + high) / 2 == geometry.first_centre + 8 * k, (k, fields[k])
    # the two poolings differ by 7 input frames (70 ms at a 10 ms hop)
    other = positive_audio_branch("tf_same" if pooling == "torch" else "torch", shape)
    shift = other.time_geometry.first_centre - geometry.first_centre
    assert abs(shift) == 7


def test_original_size_offsets():
    shape = InputShape(frames=512, n_mels=40, grid_h=14, grid_w=14, channels=512)
    offsets = {p: build_model(model_settings(pooling=p), shape).time_geometry.offset for p in ("torch", "tf_same")}
    assert offsets == {"torch": -4, "tf_same": 3}


def test_tf_same_pool_windows_by_hand():
    pool = SameMaxPool1d(3, 2)
    x = torch.tensor([[[5.0, 1.0, 2.0, 7.0, 3.0, 4.0]]])  # even: windows [0..2], [2..4], [4..5]
    assert pool(x).flatten().tolist() == [5.0, 7.0, 4.0]
    torch_pool = torch.nn.MaxPool1d(3, stride=2, padding=1)  # [-1..1], [1..3], [3..5]
    assert torch_pool(x).flatten().tolist() == [5.0, 7.0, 7.0]
    y = torch.tensor([[[5.0, 1.0, 2.0, 7.0, 3.0]]])  # odd: TF pads one each side, as torch does
    assert pool(y).flatten().tolist() == torch_pool(y).flatten().tolist() == [5.0, 7.0, 7.0]
    assert tf_same_padding(512, 3, 2) == (0, 1) and tf_same_padding(5, 3, 2) == (1, 1)


# ---------------------------------------------------------------- padding frames


def padded(logmel: torch.Tensor, start: int = 0, end: int = 0) -> torch.Tensor:
    out = logmel.clone()
    out[:, :start] = PAD_VALUE
    if end:
        out[:, out.shape[1] - end:] = PAD_VALUE
    return out


PADDED_SHAPE = InputShape(frames=64, n_mels=8, grid_h=4, grid_w=3, channels=6)


@pytest.mark.parametrize("pooling,start,end,expected", [
    ("torch", 20, 0, [3, 4, 5, 6, 7]),      # centres 8k from 20 on
    ("tf_same", 20, 0, [2, 3, 4, 5, 6, 7]),  # centres 8k + 7
    ("torch", 0, 20, [0, 1, 2, 3, 4, 5]),    # end padding: centres below 44
    ("torch", 60, 0, [7]),                   # 4 frames of speech: the nearest frame
    ("torch", 64, 0, list(range(8))),        # padding only: nothing to tell apart
])
def test_caption_frames_from_padding(pooling, start, end, expected):
    settings = tiny_model("matchmap")
    settings.pooling = pooling
    model = build_model(settings, PADDED_SHAPE).eval()
    logmel = padded(torch.randn(1, 64, 8), start, end)
    logmel[0, 30] = PAD_VALUE  # a padding-valued frame inside the caption is not padding
    if start == 64:
        logmel = torch.full((1, 64, 8), PAD_VALUE)
    frames = model.caption_frames(logmel)[0]
    assert torch.nonzero(frames).flatten().tolist() == expected


@pytest.mark.parametrize("similarity", ["sisa", "misa", "sima"])
def test_matchmap_similarity_ignores_padding_frames(similarity):
    model = build_model(tiny_model("matchmap", similarity), PADDED_SHAPE).eval()
    logmel, feats = inputs(4, PADDED_SHAPE, seed=3)
    logmel = torch.stack([padded(logmel[0:1], start=20)[0], padded(logmel[1:2], start=41)[0],
                          padded(logmel[2:3], end=12)[0], logmel[3]])
    keep = [list(range(3, 8)), list(range(6, 8)), list(range(0, 7)), list(range(8))]
    with torch.no_grad():
        a, v = model.encode_audio(logmel), model.encode_image(feats)
        raw = torch.nn.functional.normalize(model.audio_proj(model.audio(logmel)), dim=-1)
        for row, frames in enumerate(keep):
            dropped = [k for k in range(8) if k not in frames]
            assert torch.all(a[row, dropped] == 0) and torch.allclose(a[row, frames], raw[row, frames])
            m = raw[row, frames] @ v[row].T  # (kept frames, P)
            expected = {"sisa": m.mean(), "misa": m.max(1).values.mean(), "sima": m.max(0).values.mean()}[similarity]
            assert torch.allclose(model.pair_similarity(a[row:row + 1], v[row:row + 1])[0], expected, atol=1e-6)
        matrix = model.similarity_matrix(a, v, chunk_elements=40)
        assert torch.allclose(matrix.diagonal(), model.pair_similarity(a, v), atol=1e-6)
        assert torch.allclose(matrix[1, 2], model.pair_similarity(a[1:2], v[2:3])[0], atol=1e-6)


def test_masked_matchmap_similarities_by_hand():
    m = torch.tensor([[[0.1, 0.9, -0.2], [0.4, 0.3, 0.0], [2.0, 2.0, 2.0]]])  # (1, T=3, P=3), frame 2 padding
    frames = torch.tensor([[True, True, False]])
    assert matchmap_similarity(m, "sisa", frames).item() == pytest.approx((0.1 + 0.9 - 0.2 + 0.4 + 0.3 + 0.0) / 6)
    assert matchmap_similarity(m, "misa", frames).item() == pytest.approx((0.9 + 0.4) / 2)
    assert matchmap_similarity(m, "sima", frames).item() == pytest.approx((0.4 + 0.9 + 0.0) / 3)
    assert matchmap_similarity(m, "sima").item() == pytest.approx(2.0)  # unmasked, the padding would win


def test_pooling_and_kernel_settings_are_checked():
    with pytest.raises(InputError, match="model.pooling"):
        model_settings(pooling="same")
    with pytest.raises(InputError, match="must be odd"):
        model_settings(audio_kernels=[5, 11, 16, 17, 17])
