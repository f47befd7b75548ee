"""Training losses over a batch of (caption, its image) pairs.

All three take the batch's image ids so that a caption is never contrasted with its own
image when that image appears twice in a batch (several captions of one image).

- triplet_random (the original): for each pair one random impostor image and one random
  impostor caption; hinge(margin + s(impostor) - s(pair)) for both, added. Impostors come
  from the batch, never of the pair's image (`train.impostors: batch`, the default), or,
  as the original, from the whole chunk of shards in memory, possibly the pair itself
  (`chunk`; the training loop draws those).
- `reduction`: `mean` over pairs (the default: a per-pair figure is comparable between
  batch sizes and splits) or `sum` over the batch (the original; `train.loss_reduction`).
- triplet_hardest (VSE++): the same two hinges with the hardest in-batch impostors.
- infonce: symmetric cross-entropy over the batch similarity matrix divided by a learnable
  temperature (initialised at 0.07, as in CLIP), averaged over both directions.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

LOSSES = ("triplet_random", "triplet_hardest", "infonce")


def draw_impostors(image_ids: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """For each batch row a random other row whose image differs (its own index if none does)."""
    n = len(image_ids)
    impostors = np.arange(n)
    for i in range(n):
        candidates = np.flatnonzero(image_ids != image_ids[i])
        if len(candidates):
            impostors[i] = candidates[rng.integers(len(candidates))]
    return impostors


REDUCTIONS = ("mean", "sum")


def reduce(per_pair: torch.Tensor, reduction: str) -> torch.Tensor:
    if reduction == "sum":
        return per_pair.sum()
    return per_pair.mean() if per_pair.numel() else per_pair.sum() * 0.0


def triplet_random(
    pos: torch.Tensor, impostor_image: torch.Tensor, impostor_caption: torch.Tensor, margin: float,
    valid: torch.Tensor | None = None, reduction: str = "mean",
) -> torch.Tensor:
    """Mean (or sum) over pairs of hinge(margin + s(a, v') - s(a, v)) + hinge(margin + s(a', v) - s(a, v)).

    `valid` (bool per pair) drops pairs for which no impostor exists (a batch of one image).
    """
    per_pair = F.relu(margin + impostor_image - pos) + F.relu(margin + impostor_caption - pos)
    if valid is not None:
        per_pair = per_pair[valid]
    return reduce(per_pair, reduction) if per_pair.numel() else pos.sum() * 0.0


def same_image_mask(image_ids: torch.Tensor) -> torch.Tensor:
    """(B, B) True where rows i and j show the same image (diagonal included)."""
    return image_ids[:, None] == image_ids[None, :]


def triplet_hardest(sim: torch.Tensor, image_ids: torch.Tensor, margin: float, reduction: str = "mean") -> torch.Tensor:
    """VSE++ max-of-hinges: sim is (B captions, B images) with pairs on the diagonal."""
    pos = sim.diagonal()
    negatives = sim.masked_fill(same_image_mask(image_ids), float("-inf"))
    hardest_image = negatives.max(dim=1).values  # per caption, the hardest other image
    hardest_caption = negatives.max(dim=0).values  # per image, the hardest other caption
    terms = []
    for hardest in (hardest_image, hardest_caption):
        has = torch.isfinite(hardest)  # a row with no negative contributes nothing
        terms.append(torch.where(has, F.relu(margin + hardest - pos), torch.zeros_like(pos)))
    return reduce(terms[0] + terms[1], reduction)


class InfoNCE(nn.Module):
    """Symmetric InfoNCE with a learnable temperature (stored as its log)."""

    def __init__(self, temperature: float = 0.07):
        super().__init__()
        self.log_temperature = nn.Parameter(torch.tensor(math.log(temperature)))

    @property
    def temperature(self) -> float:
        return float(self.log_temperature.detach().exp())

    def forward(self, sim: torch.Tensor, image_ids: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
        return infonce(sim, image_ids, self.log_temperature, reduction)


def infonce(sim: torch.Tensor, image_ids: torch.Tensor, log_temperature: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """Half the caption->image plus image->caption cross-entropies of sim / temperature, per
    pair averaged (or summed over the batch)."""
    # the same image elsewhere in the batch is neither positive nor negative
    off_diagonal_same = same_image_mask(image_ids) & ~torch.eye(len(image_ids), dtype=torch.bool, device=sim.device)
    logits = (sim / log_temperature.exp()).masked_fill(off_diagonal_same, float("-inf"))
    target = torch.arange(len(image_ids), device=sim.device)
    return 0.5 * (F.cross_entropy(logits, target, reduction=reduction) + F.cross_entropy(logits.t(), target, reduction=reduction))
