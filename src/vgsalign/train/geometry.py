"""Where the audio branch's tensor frames sit in time, computed from its layers.

The alignment tensor has T frames for the L input frames of a caption. Scoring needs to
know which input frames each tensor frame stands for. Both max-pool variants keep
ceil(L / 2) frames, but they place them differently:

- `torch` (nn.MaxPool1d(3, stride=2, padding=1)) pads one frame at each end: output j
  pools inputs [2j - 1, 2j + 1], centred on input 2j;
- `tf_same` (the original Keras model's MaxPooling1D(3, 2, padding='same')) pads as
  TensorFlow does: (out - 1) * 2 + 3 - L frames in all, the smaller half on the left.
  For an even L that is one frame on the right only, so output j pools [2j, 2j + 2],
  centred on input 2j + 1.

The convolutions pad symmetrically (odd kernels) and shift nothing. Positions are in
input frames of time (t / hop_s): input frame i is centred at i (vgsalign.features.logmel
computes centred STFT frames), as the test set's word times are counted. After three
pools the centre of tensor frame k is input frame 8k (torch) or 8k + 7 (tf_same, even
lengths). The nominal mapping "tensor frame k -> input frames [8k, 8k + 8)" centres on
8k + 4; the geometry records the difference as an offset:

    tensor frame k covers input frames [offset + k * stride, offset + (k + 1) * stride)

(offset -4 for torch, +3 for tf_same at the original's 512 frames: 40 ms early or 30 ms
late against the nominal mapping, 70 ms apart).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..features.logmel import PAD_VALUE

POOLINGS = ("torch", "tf_same")
POOL_SIZE = 3
POOL_STRIDE = 2


def tf_same_padding(length: int, size: int, stride: int) -> tuple[int, int]:
    """TensorFlow's 'same' padding (left, right) of a window `size`, `stride` over `length` frames."""
    out = -(-length // stride)
    total = max((out - 1) * stride + size - length, 0)
    return total // 2, total - total // 2


class SameMaxPool1d(nn.Module):
    """Max-pool with TensorFlow's 'same' padding; padded frames never win (they are -inf)."""

    def __init__(self, size: int, stride: int):
        super().__init__()
        self.size, self.stride = size, stride

    def left_padding(self, length: int) -> int:
        return tf_same_padding(length, self.size, self.stride)[0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        left, right = tf_same_padding(x.shape[-1], self.size, self.stride)
        padded = F.pad(x, (left, right), value=float("-inf"))
        return F.max_pool1d(padded, self.size, self.stride)


def make_pool(pooling: str) -> nn.Module:
    if pooling == "torch":
        return nn.MaxPool1d(POOL_SIZE, stride=POOL_STRIDE, padding=1)
    if pooling == "tf_same":
        return SameMaxPool1d(POOL_SIZE, POOL_STRIDE)
    raise ValueError(f"unknown pooling {pooling!r}")


@dataclass(frozen=True)
class TimeGeometry:
    """Receptive-field centres of the tensor frames, in input frames.

    centre(k) = first_centre + k * stride, with input frame i centred at i, so a layer stack
    that keeps frame positions has first_centre 0.
    """

    stride: int
    first_centre: float

    @property
    def offset(self) -> float:
        """Start of tensor frame 0's cell: cells of `stride` input frames centred on the centres."""
        return self.first_centre - self.stride / 2

    def centres(self, n_tensor_frames: int) -> torch.Tensor:
        return self.first_centre + self.stride * torch.arange(n_tensor_frames, dtype=torch.float64)


def _window(layer: nn.Module, length: int) -> tuple[int, int, int, float] | None:
    """(stride, output length, left padding, window centre from the window's first input) of a layer."""
    if isinstance(layer, nn.Conv1d):
        kernel, stride, dilation = layer.kernel_size[0], layer.stride[0], layer.dilation[0]
        pad = layer.padding[0]
        span = dilation * (kernel - 1)
    elif isinstance(layer, nn.MaxPool1d):
        kernel, stride, dilation, pad = layer.kernel_size, layer.stride, layer.dilation, layer.padding
        span = dilation * (kernel - 1)
        if layer.ceil_mode:
            raise ValueError("ceil_mode max-pools are not supported by the time geometry")
    elif isinstance(layer, SameMaxPool1d):
        stride, pad, span = layer.stride, layer.left_padding(length), layer.size - 1
        return stride, -(-length // stride), pad, span / 2
    else:
        return None  # elementwise layers (ReLU, dropout, batch norm) keep every frame in place
    out = (length + 2 * pad - span - 1) // stride + 1
    return stride, out, pad, span / 2


def time_geometry(layers: nn.Sequential, n_input_frames: int) -> tuple[TimeGeometry, int]:
    """Compose the layers' windows: (geometry, number of tensor frames) for `n_input_frames` input frames.

    Output index j of a layer is centred on its input index stride * j - pad + span / 2;
    composing these affine maps gives tensor frame k's centre as an input-frame index.
    """
    first, step, length = 0.0, 1, n_input_frames
    for layer in layers:
        window = _window(layer, length)
        if window is None:
            continue
        stride, length, pad, centre = window
        first += step * (centre - pad)
        step *= stride
    return TimeGeometry(stride=step, first_centre=first), length


def padding_runs(logmel: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per row of (B, L, n_mels): the number of padding frames at the start and at the end.

    A padding frame holds PAD_VALUE in every band (features.logmel.place_on_grid); only runs
    touching either end count, so a caption's own frames are never taken for padding.
    """
    is_pad = (logmel == PAD_VALUE).all(-1).to(torch.int32)  # (B, L)
    lead = torch.cumprod(is_pad, dim=1).sum(1)
    trail = torch.cumprod(is_pad.flip(1), dim=1).sum(1)
    return lead, trail


def caption_tensor_frames(logmel: torch.Tensor, geometry: TimeGeometry, n_tensor_frames: int) -> torch.Tensor:
    """(B, T) bool: tensor frames whose receptive-field centre lies in the caption's input frames.

    A caption shorter than one stride keeps the tensor frame centred nearest to it; a row of
    padding only keeps every frame (there is nothing to tell them apart).
    """
    lead, trail = padding_runs(logmel)
    length = logmel.shape[1]
    start, end = lead.to(torch.float64)[:, None], (length - trail).to(torch.float64)[:, None]
    centres = geometry.centres(n_tensor_frames).to(logmel.device)[None, :]
    inside = (centres >= start) & (centres < end)
    nearest = (centres - (start + end) / 2).abs().argmin(dim=1, keepdim=True)
    fallback = torch.zeros_like(inside).scatter_(1, nearest, True)
    empty = ~inside.any(1, keepdim=True)
    all_padding = (lead == length)[:, None]
    return torch.where(all_padding, torch.ones_like(inside), torch.where(empty, fallback, inside))
