"""Validation every epoch: which captions and images, their encodings (streamed), the
validation loss, and retrieval.

Validation set (`train.validation`):
- `heldout` (the default, as the original): a share `train.heldout_share` of the TRAINING
  split's images with all their captions, never trained on. An image is held out when a
  hash of its id (blake2b with a fixed key, not train.seed, so every seed validates on the
  same images) ranks among the lowest; the choice does not depend on shard order.
  The test split never selects a checkpoint.
- `split`: the split named in `dataset.splits.val`.
At most `train.eval_max_images` of those images (a fixed seeded sample) and all their
captions are evaluated.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
import torch

from ..errors import InputError
from .device import autocast
from .losses import draw_impostors, infonce, triplet_hardest, triplet_random
from .models import VGSModel
from .retrieval import full_split_retrieval, pooled_recall_at_10
from .streaming import ShardedSplit, group_reader, in_order_plan, prefetched
from .data import cut_batches, epoch_order


def heldout_images(image_ids: np.ndarray, share: float) -> np.ndarray:
    """Bool per image: the round(share * N) images (at least 2) of lowest id hash."""
    keys = np.array([int.from_bytes(hashlib.blake2b(str(int(i)).encode(), digest_size=8, key=b"vgsalign-heldout").digest(), "big")
                     for i in image_ids], dtype=np.uint64)
    count = min(len(image_ids) - 1, max(2, int(round(share * len(image_ids)))))
    held = np.zeros(len(image_ids), dtype=bool)
    held[np.argsort(keys, kind="stable")[:count]] = True
    return held


@dataclass
class EvalSet:
    """The validation captions and images evaluated (all candidates, or a fixed sample of images)."""

    split: ShardedSplit
    captions: np.ndarray  # caption indices into the split, ascending
    images: np.ndarray  # image rows into the split, ascending
    caption_image: np.ndarray  # column (into `images`) of each evaluated caption
    n_candidates: int  # images eligible for validation (before the eval_max_images sample)


def eval_set(split: ShardedSplit, candidates: np.ndarray, max_images: int, seed: int) -> EvalSet:
    """Evaluated images: the candidate rows (bool per image), sampled down to max_images."""
    rows = np.flatnonzero(candidates)
    if len(rows) > max_images:
        rows = np.sort(np.random.default_rng([seed, 7]).choice(rows, max_images, replace=False))
    column = np.full(split.n_images, -1)
    column[rows] = np.arange(len(rows))
    captions = np.flatnonzero(column[split.caption_image] >= 0)
    return EvalSet(split=split, captions=captions, images=rows, caption_image=column[split.caption_image[captions]],
                   n_candidates=int(candidates.sum()))


@dataclass
class Encoded:
    """Branch outputs of the evaluated items: per frame (N, T, D) and per pixel (M, P, D)."""

    audio: torch.Tensor
    image: torch.Tensor


@torch.no_grad()
def encode(model: VGSModel, es: EvalSet, device: torch.device, shards_per_group: int, batch: int = 256) -> Encoded:
    """Encode the evaluated captions and images, streaming their shards (model in eval mode)."""
    model.eval()
    caption_column = np.full(es.split.n_captions, -1)
    caption_column[es.captions] = np.arange(len(es.captions))
    image_column = np.full(es.split.n_images, -1)
    image_column[es.images] = np.arange(len(es.images))
    audio: list = [None] * len(es.captions)
    image: list = [None] * len(es.images)
    plans = in_order_plan(es.split, es.captions, shards_per_group)
    reader = group_reader(es.split, device)
    for group in prefetched(reader, plans):
        on_device = group.to(device)
        rows = np.unique(es.split.caption_image[group.order])
        rows = rows[[image[image_column[r]] is None for r in rows]]
        with autocast(device):
            for chunk in np.array_split(group.order, max(1, -(-len(group.order) // batch))):
                for column, encoded in zip(caption_column[chunk], model.encode_audio(on_device.caption_tensor(chunk)).float()):
                    audio[column] = encoded
            for chunk in np.array_split(rows, max(1, -(-len(rows) // batch))) if len(rows) else []:
                for column, encoded in zip(image_column[chunk], model.encode_image(on_device.image_tensor(chunk)).float()):
                    image[column] = encoded
        reader.release(group)  # the encoded outputs are new tensors
        del group, on_device
    return Encoded(audio=torch.stack(audio), image=torch.stack(image))


@torch.no_grad()
def similarities(model: VGSModel, encoded: Encoded, device: torch.device) -> tuple[np.ndarray, np.ndarray]:
    """The model's caption x image similarity, and the dot product of the mean-pooled
    branch outputs (what the original's pooled R@10 ranked)."""
    with autocast(device):
        sim = model.similarity_matrix(encoded.audio, encoded.image).float()
    pooled = encoded.audio.mean(1) @ encoded.image.mean(1).T
    return sim.cpu().numpy(), pooled.float().cpu().numpy()


def validation_loss(sim: np.ndarray, es: EvalSet, settings, log_temperature: torch.Tensor | None) -> float:
    """The training loss per pair on the validation pairs, impostors and batches fixed by the seed."""
    rng = np.random.default_rng([settings.seed, 11])
    cap_img = es.caption_image
    n, n_images = len(cap_img), sim.shape[1]
    if settings.loss == "triplet_random":
        if settings.impostors == "chunk":  # any caption and any image, possibly its own
            imp_caption, other_image = rng.integers(n, size=n), rng.integers(n_images, size=n)
            valid = np.ones(n, dtype=bool)
        else:
            imp_caption = draw_impostors(cap_img, rng)
            other_image = (cap_img + rng.integers(1, max(2, n_images), size=n)) % n_images
            valid = (imp_caption != np.arange(n)) & (other_image != cap_img)
        loss = triplet_random(torch.from_numpy(sim[np.arange(n), cap_img]), torch.from_numpy(sim[np.arange(n), other_image]),
                              torch.from_numpy(sim[imp_caption, cap_img]), settings.margin, torch.from_numpy(valid))
        return float(loss)
    total, count = 0.0, 0
    for b in cut_batches(epoch_order(cap_img, rng), settings.batch_size):
        block, rows = torch.from_numpy(sim[np.ix_(b, cap_img[b])]), torch.from_numpy(cap_img[b])
        if settings.loss == "triplet_hardest":
            value = triplet_hardest(block, rows, settings.margin)
        else:
            value = infonce(block, rows, log_temperature)
        total += float(value) * len(b)
        count += len(b)
    return total / count


def evaluate(model: VGSModel, log_temperature: torch.Tensor | None, es: EvalSet, settings, device: torch.device,
             epoch: int) -> dict:
    """Validation loss, full-split retrieval and the pooled R@10 of both kinds."""
    sim, meanpool = similarities(model, encode(model, es, device, settings.shards_per_group), device)
    if not np.isfinite(sim).all():
        raise InputError("train.lr", f"non-finite validation similarities at epoch {epoch} from finite inputs: "
                                     f"the model diverged; lower train.lr")
    pools = dict(pool_size=settings.pool_size, trials=settings.pool_trials)
    return {
        "val_loss": validation_loss(sim, es, settings, log_temperature),
        "full": full_split_retrieval(sim, es.caption_image),
        "pooled": pooled_recall_at_10(sim, es.caption_image, rng=np.random.default_rng([settings.seed, epoch, 1]), **pools),
        "pooled_meanpool": pooled_recall_at_10(meanpool, es.caption_image, rng=np.random.default_rng([settings.seed, epoch, 1]), **pools),
    }
