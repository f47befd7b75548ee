import numpy as np
import pytest
import torch

from tests.helpers.train import tiny_model
from vgsalign.errors import InputError
from vgsalign.train.models import CNNatt, InputShape, Matchmap, ModelSettings, build_model, matchmap_similarity

SHAPE = InputShape(frames=32, n_mels=8, grid_h=4, grid_w=3, channels=6)


def inputs(b=5, shape=SHAPE, seed=0):
    g = torch.Generator().manual_seed(seed)
    logmel = torch.randn(b, shape.frames, shape.n_mels, generator=g)
    feats = torch.randn(b, shape.grid_h, shape.grid_w, shape.channels, generator=g)
    return logmel, feats


def test_default_sizes_follow_the_original():
    shape = InputShape(frames=512, n_mels=40, grid_h=14, grid_w=14, channels=512)
    model = build_model(ModelSettings(), shape).eval()
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
        ModelSettings(arch="resnet")
    with pytest.raises(InputError, match="audio_channels"):
        ModelSettings(audio_channels=[1, 2])
    assert np.isfinite(SHAPE.pixels)
