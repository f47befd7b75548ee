import math

import numpy as np
import pytest
import torch

from vgsalign.train.losses import InfoNCE, draw_impostors, infonce, triplet_hardest, triplet_random
from vgsalign.train.retrieval import caption_ranks, chance_levels, full_split_retrieval, image_ranks, pooled_recall_at_10


def test_triplet_random_by_hand():
    pos = torch.tensor([0.5, 0.2])
    imp_image = torch.tensor([0.45, 0.0])
    imp_caption = torch.tensor([0.1, 0.5])
    # pair 0: max(0, .1+.45-.5)=.05 + max(0, .1+.1-.5)=0 ; pair 1: max(0,.1+0-.2)=0 + max(0,.1+.5-.2)=.4
    assert triplet_random(pos, imp_image, imp_caption, 0.1).item() == pytest.approx((0.05 + 0.4) / 2)
    valid = torch.tensor([True, False])
    assert triplet_random(pos, imp_image, imp_caption, 0.1, valid).item() == pytest.approx(0.05)


def test_impostors_never_share_the_image():
    ids = np.array([1, 1, 2, 3, 3, 3])
    rng = np.random.default_rng(0)
    for _ in range(20):
        imp = draw_impostors(ids, rng)
        assert (ids[imp] != ids).all()
    assert (draw_impostors(np.array([4, 4]), rng) == [0, 1]).all()  # no other image: itself (masked later)


def test_triplet_hardest_by_hand():
    sim = torch.tensor([[0.9, 0.2, 0.85], [0.1, 0.5, 0.3], [0.4, 0.7, 0.6]])
    ids = torch.tensor([0, 1, 2])
    # captions: row 0 hardest .85 -> .1+.85-.9=.05; row 1: .3 -> .1+.3-.5=0 (hinge); row 2: .7 -> .2
    # images: col 0 hardest .4 -> 0 ; col 1: .7 -> .3 ; col 2: .85 -> .35
    expected = ((0.05 + 0.0) + (0.0 + 0.3) + (0.2 + 0.35)) / 3
    assert triplet_hardest(sim, ids, 0.1).item() == pytest.approx(expected)
    # captions 0 and 2 of the same image: their cross entries are not negatives
    same = torch.tensor([0, 1, 0])
    # row 0: only col 1 (.2) -> 0; row 1: max(.1, .3) -> 0; row 2: col 1 .7 -> .1+.7-.6=.2
    # col 0: row 1 .1 -> 0; col 1: max(.2,.7) -> .3; col 2: row 1 .3 -> 0
    assert triplet_hardest(sim, same, 0.1).item() == pytest.approx((0.2 + 0.3) / 3)


def test_infonce_by_hand():
    sim = torch.tensor([[0.8, 0.1], [0.3, 0.6]])
    ids = torch.tensor([0, 1])
    t = 0.5
    rows = [-math.log(math.exp(0.8 / t) / (math.exp(0.8 / t) + math.exp(0.1 / t))),
            -math.log(math.exp(0.6 / t) / (math.exp(0.3 / t) + math.exp(0.6 / t)))]
    cols = [-math.log(math.exp(0.8 / t) / (math.exp(0.8 / t) + math.exp(0.3 / t))),
            -math.log(math.exp(0.6 / t) / (math.exp(0.1 / t) + math.exp(0.6 / t)))]
    expected = 0.5 * (np.mean(rows) + np.mean(cols))
    assert infonce(sim, ids, torch.tensor(math.log(t))).item() == pytest.approx(expected, rel=1e-5)
    module = InfoNCE(temperature=t)
    loss = module(sim, ids)
    loss.backward()
    assert module.log_temperature.grad is not None and module.temperature == pytest.approx(t)


def test_retrieval_ranks_by_hand():
    # 3 captions, 2 images; captions 0,1 of image 0, caption 2 of image 1
    sim = np.array([[0.9, 0.1], [0.2, 0.3], [0.5, 0.4]])
    cap_img = np.array([0, 0, 1])
    assert image_ranks(sim, cap_img).tolist() == [1, 2, 2]
    # image 0: own captions .9/.2 -> best .9 rank 1; image 1: own .4, others .1,.3 -> rank 1
    assert caption_ranks(sim, cap_img).tolist() == [1, 1]
    out = full_split_retrieval(sim, cap_img)
    assert out["a2i"]["r1"] == pytest.approx(1 / 3) and out["a2i"]["median_rank"] == 2
    assert out["i2a"]["r1"] == 1.0


def test_ties_count_against_the_true_item():
    sim = np.zeros((4, 4))
    assert (image_ranks(sim, np.arange(4)) == 4).all()


def test_pooled_recall_caps_the_pool_and_hits_perfect_model():
    n = 30
    sim = np.eye(n) + 0.01 * np.random.default_rng(0).random((n, n))
    out = pooled_recall_at_10(sim, np.arange(n), pool_size=1000, trials=5, rng=np.random.default_rng(0))
    assert out["pool_size"] == 30 and out["pool_size_requested"] == 1000
    assert out["r10_a2i"] == 1.0 and out["r10_i2a"] == 1.0
    assert out["chance"] == pytest.approx(10 / 30)


def test_chance_levels():
    cap_img = np.repeat(np.arange(20), 5)
    ch = chance_levels(cap_img, 20)
    assert ch["a2i"]["r10"] == pytest.approx(0.5)
    # 1 - C(95,10)/C(100,10)
    assert ch["i2a"]["r1"] == pytest.approx(5 / 100)
    assert ch["i2a"]["r10"] == pytest.approx(1 - math.comb(95, 10) / math.comb(100, 10))
