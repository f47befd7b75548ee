"""Cross-modal retrieval figures from a caption x image similarity matrix.

`sim[c, i]` is the similarity of caption c with image i; `caption_image[c]` is the column
of caption c's own image. Ranks are 1-based; ties count against the true item (a caption
scoring equal to the true one ranks ahead of it), so a constant model gets no credit.

- Image retrieval from captions (a2i): for each caption, rank all images of the split;
  R@K = share of captions whose own image is in the top K; median rank of that image.
- Caption retrieval from images (i2a): for each image, rank all captions; a hit at K if
  ANY of its captions is in the top K; the rank of an image is that of its best-ranked
  own caption.
- Pooled R@10 (the original protocol): each trial draws `pool_size` distinct images
  (capped at the number of images) and one random caption per image, ranks within the
  pool in both directions and counts hits in the top 10; the mean over trials. The
  original drew with replacement, and ranked the dot products of MEAN-POOLED branch
  outputs (audio frames averaged, image pixels averaged), not the model's similarity;
  in its model/train.py the two calls swap the arguments, so they are the two directions
  (its earlier model/train_validate.py passed them in the same order twice). Training reports
  both: pooled R@10 of the model's similarity and of the mean-pooled outputs
  (vgsalign.train.validation.similarities).
"""

from __future__ import annotations

import math

import numpy as np


def _ranks_of(scores: np.ndarray, true_scores: np.ndarray) -> np.ndarray:
    """1-based rank of each row's true score among the row (ties count against it)."""
    return (scores >= true_scores[:, None]).sum(1)


def image_ranks(sim: np.ndarray, caption_image: np.ndarray) -> np.ndarray:
    """Rank of each caption's own image among all images (1-based)."""
    true = sim[np.arange(len(sim)), caption_image]
    # own image counted once (>= includes it); every other image scoring >= ranks ahead
    return _ranks_of(sim, true)


def caption_ranks(sim: np.ndarray, caption_image: np.ndarray) -> np.ndarray:
    """For each image, the rank of its best-ranked own caption among all captions (1-based)."""
    n_images = sim.shape[1]
    cols = sim.T  # (images, captions)
    own = np.zeros_like(cols, dtype=bool)
    own[caption_image, np.arange(len(caption_image))] = True
    if not own.any(1).all():
        missing = int((~own.any(1)).sum())
        raise ValueError(f"{missing} of {n_images} images have no caption")
    best_own = np.where(own, cols, -np.inf).max(1)
    # captions of other images scoring >= the best own caption rank ahead of it
    return np.where(own, False, cols >= best_own[:, None]).sum(1) + 1


def recall_summary(ranks: np.ndarray, ks: tuple[int, ...] = (1, 5, 10)) -> dict:
    out = {f"r{k}": float(np.mean(ranks <= k)) for k in ks}
    out["median_rank"] = float(np.median(ranks))
    return out


def full_split_retrieval(sim: np.ndarray, caption_image: np.ndarray) -> dict:
    """R@1/5/10 and median rank in both directions over the whole matrix."""
    return {
        "a2i": recall_summary(image_ranks(sim, caption_image)),
        "i2a": recall_summary(caption_ranks(sim, caption_image)),
    }


def pooled_recall_at_10(
    sim: np.ndarray, caption_image: np.ndarray, pool_size: int, trials: int, rng: np.random.Generator, k: int = 10,
) -> dict:
    """The original's validation recall: random pools of images with one caption each."""
    n_images = sim.shape[1]
    captions_of = [[] for _ in range(n_images)]
    for c, i in enumerate(caption_image):
        captions_of[i].append(c)
    pool = min(pool_size, n_images)
    hits_a2i, hits_i2a = [], []
    for _ in range(trials):
        images = rng.choice(n_images, size=pool, replace=False)
        captions = np.array([captions_of[i][rng.integers(len(captions_of[i]))] for i in images])
        block = sim[np.ix_(captions, images)]  # row j: caption of images[j]
        diag = np.arange(pool)
        hits_a2i.append(np.mean(_ranks_of(block, block[diag, diag]) <= k))
        hits_i2a.append(np.mean(_ranks_of(block.T, block[diag, diag]) <= k))
    return {
        "pool_size": int(pool), "pool_size_requested": int(pool_size), "trials": int(trials),
        "r10_a2i": float(np.mean(hits_a2i)), "r10_i2a": float(np.mean(hits_i2a)),
        "chance": min(1.0, k / pool),
    }


def chance_levels(caption_image: np.ndarray, n_images: int, ks: tuple[int, ...] = (1, 5, 10)) -> dict:
    """Expected recall of a random ranking, both directions.

    a2i: K / N images. i2a: an image with c captions among N captions has at least one in
    a random top K with probability 1 - C(N-c, K) / C(N, K); averaged over images.
    """
    n_captions = len(caption_image)
    per_image = np.bincount(caption_image, minlength=n_images)
    out: dict = {"a2i": {}, "i2a": {}}
    for k in ks:
        out["a2i"][f"r{k}"] = min(1.0, k / n_images)
        probs = []
        for c in per_image:
            if k >= n_captions or n_captions - c < k:
                probs.append(1.0)
            else:
                log_miss = (
                    math.lgamma(n_captions - c + 1) - math.lgamma(n_captions - c - k + 1)
                    - math.lgamma(n_captions + 1) + math.lgamma(n_captions - k + 1)
                )
                probs.append(1.0 - math.exp(log_miss))
        out["i2a"][f"r{k}"] = float(np.mean(probs))
    out["a2i"]["median_rank"] = (n_images + 1) / 2
    return out
