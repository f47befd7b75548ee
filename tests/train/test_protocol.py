"""Validation protocol and the original-protocol switches: held-out validation, chunk
impostors, summed loss, pooled R@10 on mean-pooled outputs."""

import json

import numpy as np
import pandas as pd
import pytest
import torch

from tests.helpers.train import tiny_frames, tiny_model, tiny_train_settings, write_split
from vgsalign.errors import InputError
from vgsalign.train.data import Batch, cut_batches, epoch_plan, training_batches
from vgsalign.train.loop import FrameSettings, TrainSettings, batch_loss, build_parts, input_shape, run_training
from vgsalign.train.losses import triplet_hardest, triplet_random
from vgsalign.train.streaming import open_split
from vgsalign.train.validation import Encoded, heldout_images, similarities


@pytest.fixture(scope="module")
def split_files(tmp_path_factory):
    return write_split(tmp_path_factory.mktemp("protocol"), "train", 40, seed=0, images_per_shard=10)


def test_heldout_images_by_id_hash_not_by_position():
    ids = np.arange(1000, 1200)
    held = heldout_images(ids, 0.1)
    assert held.sum() == 20
    permutation = np.random.default_rng(0).permutation(len(ids))
    assert (heldout_images(ids[permutation], 0.1) == held[permutation]).all()  # shard order does not matter
    assert not (held[:20]).all() and heldout_images(ids[:5], 0.1).sum() == 2  # spread out; at least two


def test_heldout_validation_never_trains_on_validation_images(split_files, tmp_path):
    settings = TrainSettings(**tiny_train_settings(epochs=1, heldout_share=0.25))
    summary = run_training(open_split("train", *split_files), None, tiny_model(), settings,
                           FrameSettings(**tiny_frames()), tmp_path, log=lambda _: None)
    split = open_split("train", *split_files)
    held = heldout_images(split.image_ids, 0.25)
    assert summary["validation"] == "heldout" and summary["split"] == "train"
    assert summary["n_images"] == held.sum() == 10 and summary["n_captions"] == 30
    history = pd.read_csv(tmp_path / "history.csv")
    assert history["train_captions"].iloc[0] == 120 - 30
    use = ~held[split.caption_image]
    trained = np.concatenate([p.order for p in epoch_plan(split, use, 2, np.random.default_rng(0))])
    assert not held[split.caption_image[trained]].any()


def test_validation_on_a_named_split_needs_its_shards(split_files, tmp_path):
    settings = TrainSettings(**tiny_train_settings(epochs=1, validation="split"))
    with pytest.raises(InputError, match="train.validation: is split, but no validation shards"):
        run_training(open_split("train", *split_files), None, tiny_model(), settings, FrameSettings(**tiny_frames()),
                     tmp_path, log=lambda _: None)


def test_chunk_impostors_come_from_the_group_and_may_be_the_pair_itself(split_files):
    split = open_split("train", *split_files)
    plans = epoch_plan(split, np.ones(split.n_captions, dtype=bool), 1, np.random.default_rng(0))
    group_logmel = {s: torch.from_numpy(split.read_group([s]).logmel) for s in range(split.n_audio_shards)}
    self_hits = 0
    for _ in range(5):
        plan_of_batch = [p for p in plans for _ in cut_batches(p.order, 16)]
        for plan, batch in zip(plan_of_batch,
                               training_batches(split, plans, 16, torch.device("cpu"), np.random.default_rng(1), True)):
            assert batch.impostor_logmel.shape == batch.logmel.shape
            held = group_logmel[plan.shards[0]]
            for row in batch.impostor_logmel:  # every impostor caption is a caption of this group
                assert (held == row).flatten(1).all(1).any()
            self_hits += int((batch.impostor_logmel == batch.logmel).flatten(1).all(1).sum())
    assert self_hits > 0  # 5 epochs x 120 draws among 30 captions: the item itself now and then


def test_chunk_impostors_need_the_random_triplet_loss():
    with pytest.raises(InputError, match="train.impostors: chunk impostors apply to loss triplet_random"):
        TrainSettings(**tiny_train_settings(loss="infonce", impostors="chunk"))


def test_summed_loss_is_the_batch_size_times_the_mean(split_files):
    pos, imp_i, imp_c = torch.tensor([0.5, 0.2, 0.3]), torch.tensor([0.45, 0.0, 0.4]), torch.tensor([0.1, 0.5, 0.3])
    mean, total = triplet_random(pos, imp_i, imp_c, 0.1), triplet_random(pos, imp_i, imp_c, 0.1, reduction="sum")
    assert total.item() == pytest.approx((0.05 + 0.4 + 0.2 + 0.1)) and total.item() == pytest.approx(3 * mean.item())
    sim = torch.tensor([[0.9, 0.2], [0.1, 0.5]])
    assert triplet_hardest(sim, torch.tensor([0, 1]), 0.1, "sum").item() == pytest.approx(
        2 * triplet_hardest(sim, torch.tensor([0, 1]), 0.1).item())
    split = open_split("train", *split_files)
    mean_settings = TrainSettings(**tiny_train_settings(impostors="chunk"))
    sum_settings = TrainSettings(**tiny_train_settings(impostors="chunk", loss_reduction="sum"))
    parts = build_parts(tiny_model(), mean_settings, input_shape(split), torch.device("cpu"))
    group = split.read_group([0])
    caps = np.arange(16)
    batch = Batch(group.caption_tensor(caps), group.image_tensor(split.caption_image[caps]), split.caption_image[caps],
                  group.caption_tensor(caps[::-1].copy()), group.image_tensor(split.caption_image[caps[::-1]]))
    parts.model.eval()
    with torch.no_grad():
        a = batch_loss(parts.model, None, mean_settings, batch, np.random.default_rng(0))
        b = batch_loss(parts.model, None, sum_settings, batch, np.random.default_rng(0))
    assert b.item() == pytest.approx(16 * a.item(), rel=1e-5)


def test_meanpool_similarity_is_the_dot_product_of_mean_pooled_outputs(split_files):
    split = open_split("train", *split_files)
    parts = build_parts(tiny_model(), TrainSettings(**tiny_train_settings()), input_shape(split), torch.device("cpu"))
    audio, image = torch.randn(5, 4, 16), torch.randn(3, 16, 16)
    sim, meanpool = similarities(parts.model.eval(), Encoded(audio, image), torch.device("cpu"))
    assert sim.shape == meanpool.shape == (5, 3)
    assert meanpool[2, 1] == pytest.approx(float(audio[2].mean(0) @ image[1].mean(0)), rel=1e-5)
    assert not np.allclose(sim, meanpool)


def test_history_reports_both_pooled_recalls(split_files, tmp_path):
    settings = TrainSettings(**tiny_train_settings(epochs=1, impostors="chunk", loss_reduction="sum"))
    summary = run_training(open_split("train", *split_files), None, tiny_model(), settings,
                           FrameSettings(**tiny_frames()), tmp_path, log=lambda _: None)
    history = pd.read_csv(tmp_path / "history.csv")
    for column in ("pooled_r10_a2i", "pooled_meanpool_r10_a2i", "pooled_r10_i2a", "pooled_meanpool_r10_i2a"):
        assert 0 <= history[column].iloc[0] <= 1
    saved = json.loads((tmp_path / "retrieval.json").read_text())
    assert saved["pooled_r10_meanpool"]["pool_size"] == summary["n_images"]
    assert np.isfinite(history["train_loss"]).all()
