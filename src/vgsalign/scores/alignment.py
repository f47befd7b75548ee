"""Alignment (AS) and glancing (GS) scores of one alignment tensor, at native resolution.

A tensor A(k, c) has T frames k and P = H * W pixel cells c. The scores are defined on
the upsampled grid (docs/design.md): every input frame t of the word and every pixel p of the
object mask M. Because the upsampling is a repetition, each sum over that grid equals a
weighted sum over the native grid:

    word weights    w_k = how much of the word falls into tensor frame k
    frame totals    n_k = how much of the whole time axis falls into tensor frame k
    region weights  m_c = how much of the mask falls into cell c
    cell totals     a_c = how much of the whole image falls into cell c

(reference mode: counts of input frames and of 224 x 224 pixels; exact mode: fractional
lengths and areas, see `vgsalign.scores.masks` and the frame-weight functions below). With
S the spatial tensor (softmax over cells per frame) and Q the temporal tensor (softmax
over frames per cell):

    AS_object = sum_k w_k (S_k . m) / (S_k . a)  /  sum_k w_k
    GS_object = sum_k w_k (S_k . m)  /  sum_k w_k (S_k . a)
    AS_word   = sum_c m_c (sum_k w_k Q_kc) / (sum_k n_k Q_kc)  /  Z
                with Z = sum_c m_c (object normalisation) or sum_c a_c (image normalisation)
    GS_word   = sum_k w_k (Q_k . m)  /  sum_k n_k (Q_k . m)

A share whose denominator is 0 (a frame, cell or word with no attention at all, possible
only without softmax after clipping at 0) counts as 0: no attention, none on the object.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

import numpy as np

SCORE_NAMES = ("as_object", "as_word", "gs_object", "gs_word")
SOFTMAX_CHOICES = ("both", "as", "gs", "none")
NORMALIZATIONS = ("object", "image")


# ---------------------------------------------------------------- tensor preparation


def spatial_softmax(avt: np.ndarray) -> np.ndarray:
    """Softmax over cells for each frame; avt is (..., T, P)."""
    shifted = np.exp(avt - avt.max(axis=-1, keepdims=True))
    return shifted / shifted.sum(axis=-1, keepdims=True)


def temporal_softmax(avt: np.ndarray) -> np.ndarray:
    """Softmax over frames for each cell; avt is (..., T, P)."""
    shifted = np.exp(avt - avt.max(axis=-2, keepdims=True))
    return shifted / shifted.sum(axis=-2, keepdims=True)


@dataclass(frozen=True)
class PreparedTensor:
    """The four (T, P) tensors the scores read: S and Q for the AS and the GS family
    (or (n, T, P) for a batch of utterances; `item(i)` is one of them)."""

    s_as: np.ndarray
    q_as: np.ndarray
    s_gs: np.ndarray
    q_gs: np.ndarray

    def item(self, index) -> "PreparedTensor":
        """One utterance (an int) or several (an index array) of a batch."""
        return PreparedTensor(self.s_as[index], self.q_as[index], self.s_gs[index], self.q_gs[index])


def softmax_families(softmax: str) -> tuple[bool, bool]:
    """(softmax for the AS family, softmax for the GS family) of a `softmax` option."""
    if softmax not in SOFTMAX_CHOICES:
        raise ValueError(f"softmax must be one of {SOFTMAX_CHOICES}, got {softmax!r}")
    return softmax in ("both", "as"), softmax in ("both", "gs")


def prepare_tensor(avt: np.ndarray, softmax: str) -> PreparedTensor:
    """S and Q of a (T, P) tensor (or a batch (n, T, P)) for each score family.

    With softmax for a family, S = softmax over cells per frame and Q = softmax over
    frames per cell (the original); without, S = Q = max(A, 0). Clipping at 0 changes
    nothing after a softmax, so both cases are "clipped at 0" as in docs/design.md.
    """
    avt = np.asarray(avt, dtype=np.float64)
    softmax_as, softmax_gs = softmax_families(softmax)
    clipped = np.maximum(avt, 0.0) if not (softmax_as and softmax_gs) else None
    spatial = temporal = None
    if softmax_as or softmax_gs:
        spatial, temporal = spatial_softmax(avt), temporal_softmax(avt)
    s_as, q_as = (spatial, temporal) if softmax_as else (clipped, clipped)
    s_gs, q_gs = (spatial, temporal) if softmax_gs else (clipped, clipped)
    return PreparedTensor(s_as=s_as, q_as=q_as, s_gs=s_gs, q_gs=q_gs)


# ---------------------------------------------------------------- time weights


def reference_input_frames(n_tensor_frames: int, input_frames_per_frame: float) -> int:
    """Length L of the input-frame grid a tensor covers (T * r), which must be whole."""
    length = Fraction(input_frames_per_frame).limit_denominator(1_000_000) * n_tensor_frames
    if length.denominator != 1:
        raise ValueError(
            f"{n_tensor_frames} tensor frames x {input_frames_per_frame} input frames each "
            "is not a whole number of input frames; use mode exact"
        )
    return int(length)


def reference_frame_bounds(n_tensor_frames: int, n_input_frames: int) -> np.ndarray:
    """(T + 1,) input-frame boundaries: tensor frame k holds input frames [b_k, b_k+1).

    Upsampling by repetition (nearest neighbour) sends input frame t to tensor frame
    floor(t * T / L); the first t of frame k is therefore ceil(k * L / T). With L = T * r
    and whole r this is [k r, (k+1) r).
    """
    k = np.arange(n_tensor_frames + 1, dtype=np.int64)
    return (k * n_input_frames + n_tensor_frames - 1) // n_tensor_frames


def reference_word_weights(
    onset_frames: np.ndarray, offset_frames: np.ndarray, frame_bounds: np.ndarray
) -> np.ndarray:
    """(n_words, T): how many input frames of each word [onset, offset) fall in frame k."""
    onsets = np.asarray(onset_frames, dtype=np.int64)[:, None]
    offsets = np.asarray(offset_frames, dtype=np.int64)[:, None]
    overlap = np.minimum(offsets, frame_bounds[None, 1:]) - np.maximum(onsets, frame_bounds[None, :-1])
    return np.clip(overlap, 0, None).astype(np.float64)


def reference_frame_totals(frame_bounds: np.ndarray) -> np.ndarray:
    return np.diff(frame_bounds).astype(np.float64)


def exact_word_weights(
    starts: np.ndarray, ends: np.ndarray, n_tensor_frames: int, input_frames_per_frame: float
) -> np.ndarray:
    """(n_words, T): overlap length of [start, end) (input-frame units) with [k r, (k+1) r)."""
    starts = np.asarray(starts, dtype=np.float64)[:, None]
    ends = np.asarray(ends, dtype=np.float64)[:, None]
    lows = np.arange(n_tensor_frames, dtype=np.float64)[None, :] * input_frames_per_frame
    highs = lows + input_frames_per_frame
    return np.clip(np.minimum(ends, highs) - np.maximum(starts, lows), 0.0, None)


def exact_frame_totals(n_tensor_frames: int, input_frames_per_frame: float) -> np.ndarray:
    return np.full(n_tensor_frames, float(input_frames_per_frame))


# ---------------------------------------------------------------- scores


def _share(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """numerator / denominator, 0 where the denominator is 0 (no attention at all)."""
    # dividing by inf gives exactly 0 for the finite, non-negative numerators here
    return numerator / np.where(denominator > 0, denominator, np.inf)


# Just over 60 lines: the four scores side by side, each formula next to the one it mirrors.
def score_regions(
    prepared: PreparedTensor,
    word_weights: np.ndarray,
    frame_totals: np.ndarray,
    region_weights: np.ndarray,
    cell_totals: np.ndarray,
    as_word_normalization: str,
    word_utterance: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """All four scores of every word against every region: name -> (n_words, n_regions).

    prepared: S and Q shaped (T, P), or (U, T, P) for U utterances of one image with
    word_utterance (n_words,) naming each word's utterance. word_weights (n_words, T),
    frame_totals (T,), region_weights (P, n_regions), cell_totals (P,). A region is any
    set of pixels (an object mask, a mask minus another, the background); the same
    formula serves the scores and the confusions.
    """
    if as_word_normalization not in NORMALIZATIONS:
        raise ValueError(f"as_word_normalization must be one of {NORMALIZATIONS}")
    s_as, q_as, s_gs, q_gs = (np.asarray(x, dtype=np.float64) for x in
                              (prepared.s_as, prepared.q_as, prepared.s_gs, prepared.q_gs))
    if s_as.ndim == 2:
        s_as, q_as, s_gs, q_gs = s_as[None], q_as[None], s_gs[None], q_gs[None]
    n_utt, n_frames, _ = s_as.shape
    word_weights = np.asarray(word_weights, dtype=np.float64)
    region_weights = np.asarray(region_weights, dtype=np.float64)
    n_words = len(word_weights)
    utt = np.zeros(n_words, dtype=np.int64) if word_utterance is None else np.asarray(word_utterance)
    word_lengths = word_weights.sum(axis=1)
    # each word's weights placed in its utterance's block: one matrix product sums
    # a per-frame quantity over the word's frames for all words at once
    block = np.zeros((n_words, n_utt, n_frames))
    block[np.arange(n_words), utt] = word_weights
    block = block.reshape(n_words, n_utt * n_frames)

    def over_word(per_frame: np.ndarray) -> np.ndarray:      # (U, T, k) -> (n_words, k)
        return block @ per_frame.reshape(n_utt * n_frames, -1)

    # AS_object: per-frame share inside the region, averaged over the word's frames
    s_in = s_as @ region_weights                               # (U, T, R)
    s_all = s_as @ cell_totals                                 # (U, T)
    as_object = _share(over_word(_share(s_in, s_all[..., None])), word_lengths[:, None])

    # GS_object: one map summed over the word's frames, share inside the region
    g_in = over_word(s_gs @ region_weights)                    # (n_words, R)
    g_all = over_word(s_gs @ cell_totals)                      # (n_words, 1)
    gs_object = _share(g_in, g_all)

    # AS_word: per-cell share of its temporal attention inside the word, over the region
    q_word = over_word(q_as)                                   # (n_words, P)
    q_all = frame_totals @ q_as                                # (U, P)
    per_cell = _share(q_word, q_all[utt])
    normaliser = region_weights.sum(axis=0) if as_word_normalization == "object" else np.full(
        region_weights.shape[1], cell_totals.sum()
    )
    as_word = _share(per_cell @ region_weights, normaliser[None, :])

    # GS_word: one curve summed over the region's cells, share inside the word
    q_region = q_gs @ region_weights                           # (U, T, R)
    gs_word = _share(over_word(q_region), (frame_totals @ q_region)[utt])

    return {"as_object": as_object, "as_word": as_word, "gs_object": gs_object, "gs_word": gs_word}


def chance_levels(
    mask_share: np.ndarray, duration_share: np.ndarray, as_word_normalization: str
) -> dict[str, np.ndarray]:
    """Analytic chance: the score of a tensor that attends uniformly.

    Object scores: the mask's share of the image. Word scores: the word's share of the
    tensor's time axis; with image normalisation AS_word shrinks by the mask share too.
    """
    mask_share = np.asarray(mask_share, dtype=np.float64)
    duration_share = np.asarray(duration_share, dtype=np.float64)
    as_word = duration_share * mask_share if as_word_normalization == "image" else duration_share
    return {"as_object": mask_share, "as_word": as_word, "gs_object": mask_share, "gs_word": duration_share}
