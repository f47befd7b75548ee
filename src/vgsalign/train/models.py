"""The two visually grounded speech models: CNNatt and the matchmap model (CNN0).

Both share the interface the training loop and the tensor dump use:

    A = model.encode_audio(logmel)        # (B, frames, n_mels) -> (B, T, D)
    V = model.encode_image(features)      # (B, H, W, C)        -> (B, P, D), P = H*W
    model.pair_similarity(A, V)           # row i with row i    -> (B,)
    model.similarity_matrix(A, V)         # every row with every row -> (Na, Ni)
    model.alignment(A, V)                 # row i with row i    -> (B, T, H, W)

Encoding is separable (each branch sees one modality), so a retrieval over N captions
and M images encodes each item once and only the cheap cross-modal part runs N x M times.

CNNatt (Khorrami & Räsänen 2021). Audio: batch norm over the mel bands (our addition: the
dB input is far from zero mean and unit scale), then five 1-D convolutions, each followed by ReLU,
dropout and batch norm, with a max-pool (size 3, stride 2) after the 2nd, 3rd and 4th,
so 512 input frames become T = 64. The pools pad as PyTorch does (`model.pooling: torch`,
one frame at each end) or as the original's TF 'same' (`tf_same`, right only for even
lengths); vgsalign.train.geometry computes where each tensor frame sits in time from the
layers, and the tensor dump records it. Visual: batch norm, 3x3 convolution to D (linear),
dropout, batch norm, flattened to P = H*W vectors. Cross-modal attention, as in the
original Keras model:
    s = A V^T  (T x P)                    the alignment tensor (scores before softmax)
    audio query:  softmax over pixels of s, and a "dense" path sigmoid(s W_p + b_p)
                  (a learned P x P layer on the score rows); each weights the pixel
                  vectors, the attended vectors are averaged over time
    image query:  the same on s^T (softmax over frames, a T x T sigmoid layer)
    audio embedding = [mean_t softmax-attended V, mean_t sigmoid-attended V, mean_t A]
    image embedding = [mean_p softmax-attended A, mean_p sigmoid-attended A, mean_p V]
Both 3D-vectors are L2-normalised; the similarity is their cosine. Because the attended
vectors are averaged, mean_t(W_att V) = (mean_t W_att) V: the time average is taken on
the weights first, which is exact and saves a T x P x D product per pair.

Matchmap (CNN0, DAVEnet-like): the same branches, each followed by a linear layer to D
and L2 normalisation per frame / per pixel; the matchmap M = A V^T (T x H x W) is the
alignment tensor, and the similarity is SISA (mean over M), MISA (mean over frames of
the max over pixels) or SIMA (mean over pixels of the max over frames). As DAVEnet's
`nframes` does, these see only the frames of the caption: padding input frames (every
band at the log-mel PAD_VALUE, a run at the start or end of the grid) are found in the
input itself, a tensor frame whose receptive-field centre lies in them is padding, and
its embedding is set to the zero vector, which the similarities read as "no frame".
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import InputError
from .geometry import POOLINGS, caption_tensor_frames, make_pool, time_geometry

ARCHS = ("cnnatt", "matchmap")
SIMILARITIES = ("sisa", "misa", "sima")
# the max-pools sit after these audio conv layers (0-based), as in the original
POOL_AFTER = (1, 2, 3)


@dataclass
class ModelSettings:
    """The `model` config slice (values and their defaults: the schema's model section)."""

    arch: str
    similarity: str  # matchmap only
    embed_dim: int  # last audio conv, the visual conv (and matchmap's projection)
    dropout: float
    audio_channels: list[int]  # convs 1-4
    audio_kernels: list[int]  # convs 1-5
    pooling: str  # torch | tf_same (the original's), vgsalign.train.geometry

    def __post_init__(self) -> None:
        if self.arch not in ARCHS:
            raise InputError("model.arch", f"{self.arch!r} is not one of {list(ARCHS)}")
        if self.similarity not in SIMILARITIES:
            raise InputError("model.similarity", f"{self.similarity!r} is not one of {list(SIMILARITIES)}")
        if self.pooling not in POOLINGS:
            raise InputError("model.pooling", f"{self.pooling!r} is not one of {list(POOLINGS)}")
        if len(self.audio_channels) != 4 or len(self.audio_kernels) != 5:
            raise InputError(
                "model.audio_channels/audio_kernels",
                f"expected 4 channel counts (the 5th conv has embed_dim) and 5 kernel sizes, "
                f"got {self.audio_channels} and {self.audio_kernels}",
            )
        even = [k for k in self.audio_kernels if k % 2 == 0]
        if even:
            # an even kernel cannot be centred: 'same' padding would shift the frames by half a frame
            raise InputError("model.audio_kernels", f"kernel sizes must be odd, got {self.audio_kernels}")


@dataclass(frozen=True)
class InputShape:
    """What the feature shards feed the model: audio frames x mel bands, image grid x channels."""

    frames: int
    n_mels: int
    grid_h: int
    grid_w: int
    channels: int

    @property
    def tensor_frames(self) -> int:
        """Frames after the three stride-2 max-pools (each keeps ceil(L / 2))."""
        length = self.frames
        for _ in POOL_AFTER:
            length = (length + 1) // 2
        return length

    @property
    def pixels(self) -> int:
        return self.grid_h * self.grid_w

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


class AudioBranch(nn.Module):
    """Batch norm on the input, five 1-D convolutions (conv, ReLU, dropout, batch norm), max-pools after 2nd-4th."""

    def __init__(self, n_mels: int, channels: list[int], kernels: list[int], dropout: float, pooling: str):
        super().__init__()
        # log-mel input spans about -100 to +5 dB with padding at 0 dB: normalising each
        # band first (as the visual branch does its channels) lets Adam train at a useful lr
        layers: list[nn.Module] = [nn.BatchNorm1d(n_mels)]
        in_ch = n_mels
        for index, (out_ch, kernel) in enumerate(zip(channels, kernels)):
            layers += [
                nn.Conv1d(in_ch, out_ch, kernel, padding=kernel // 2),
                nn.ReLU(),
                nn.Dropout(dropout),
                nn.BatchNorm1d(out_ch),
            ]
            if index in POOL_AFTER:
                layers.append(make_pool(pooling))
            in_ch = out_ch
        self.net = nn.Sequential(*layers)

    def forward(self, logmel: torch.Tensor) -> torch.Tensor:
        # (B, frames, n_mels) -> (B, T, D)
        return self.net(logmel.transpose(1, 2)).transpose(1, 2)


class VisualBranch(nn.Module):
    """Batch norm, 3x3 conv to D (linear), dropout, batch norm; grid flattened to pixels."""

    def __init__(self, in_channels: int, out_channels: int, dropout: float):
        super().__init__()
        self.net = nn.Sequential(
            nn.BatchNorm2d(in_channels),
            nn.Conv2d(in_channels, out_channels, 3, padding=1),
            nn.Dropout(dropout),
            nn.BatchNorm2d(out_channels),
        )

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        # (B, H, W, C) -> (B, H*W, D), pixels in row-major order (row = H index)
        out = self.net(features.permute(0, 3, 1, 2))
        return out.flatten(2).transpose(1, 2)


class VGSModel(nn.Module):
    """Shared parts: the branches, the input shape, chunked all-pairs similarity."""

    arch: str

    def __init__(self, settings: ModelSettings, shape: InputShape):
        super().__init__()
        self.settings = settings
        self.shape = shape
        self.audio = AudioBranch(
            shape.n_mels, [*settings.audio_channels, settings.embed_dim], settings.audio_kernels, settings.dropout,
            settings.pooling,
        )
        self.visual = VisualBranch(shape.channels, settings.embed_dim, settings.dropout)
        self.time_geometry, n_tensor_frames = time_geometry(self.audio.net, shape.frames)
        if n_tensor_frames != shape.tensor_frames:
            raise InputError("model", f"the audio branch gives {n_tensor_frames} tensor frames for {shape.frames} "
                                      f"input frames, expected {shape.tensor_frames}")

    def caption_frames(self, logmel: torch.Tensor) -> torch.Tensor:
        """(B, T) bool: tensor frames whose receptive-field centre lies in the caption, not its padding."""
        return caption_tensor_frames(logmel, self.time_geometry, self.shape.tensor_frames)

    def encode_audio(self, logmel: torch.Tensor) -> torch.Tensor:
        return self.audio(logmel)

    def encode_image(self, features: torch.Tensor) -> torch.Tensor:
        return self.visual(features)

    def pair_similarity(self, audio: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        """Similarity of audio row i with image row i: (B,)."""
        return self._similarity(audio, image, paired=True)

    def similarity_matrix(self, audio: torch.Tensor, image: torch.Tensor, chunk_elements: int = 1 << 24) -> torch.Tensor:
        """Similarity of every audio row with every image row: (Na, T, D) x (Ni, P, D) -> (Na, Ni).

        The cross-modal part works on (rows, Ni, T, P) score blocks; audio rows go in chunks
        so that a block holds about `chunk_elements` values.
        """
        n_image = image.shape[0]
        per_row = n_image * audio.shape[1] * image.shape[1]
        rows = max(1, chunk_elements // max(1, per_row))
        return torch.cat(
            [self._similarity(audio[i:i + rows], image, paired=False) for i in range(0, audio.shape[0], rows)], 0
        )

    def _similarity(self, audio: torch.Tensor, image: torch.Tensor, paired: bool) -> torch.Tensor:
        raise NotImplementedError

    @staticmethod
    def _scores(audio: torch.Tensor, image: torch.Tensor, paired: bool) -> torch.Tensor:
        """Dot products frame x pixel: paired (B, T, P), or all pairs (Na, Ni, T, P)."""
        if paired:
            return torch.bmm(audio, image.transpose(1, 2))
        return torch.einsum("atd,ipd->aitp", audio, image)

    def forward(self, logmel: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
        return self.pair_similarity(self.encode_audio(logmel), self.encode_image(features))

    def _grid(self, scores: torch.Tensor) -> torch.Tensor:
        return scores.view(scores.shape[0], scores.shape[1], self.shape.grid_h, self.shape.grid_w)


class CNNatt(VGSModel):
    arch = "cnnatt"

    def __init__(self, settings: ModelSettings, shape: InputShape):
        super().__init__(settings, shape)
        # the original's Dense(196, sigmoid) on the score rows and Dense(64, sigmoid) on the columns
        self.dense_pixels = nn.Linear(shape.pixels, shape.pixels)
        self.dense_frames = nn.Linear(shape.tensor_frames, shape.tensor_frames)

    def scores(self, audio: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        """Attention scores s = A V^T of paired rows, (B, T, P): the alignment tensor (before softmax)."""
        return self._scores(audio, image, paired=True)

    def embeddings(
        self, audio: torch.Tensor, image: torch.Tensor, paired: bool = True
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """L2-normalised 3D-dim audio and image embeddings: paired (B, 3D) or all pairs (Na, Ni, 3D)."""
        s = self._scores(audio, image, paired)  # (..., T, P)
        # audio query: weights over pixels, averaged over time first (exact, see module doc)
        w_soft = torch.softmax(s, dim=-1).mean(-2)  # (..., P)
        w_dense = torch.sigmoid(self.dense_pixels(s)).mean(-2)
        # image query: weights over frames, averaged over pixels
        s_t = s.transpose(-1, -2)  # (..., P, T)
        u_soft = torch.softmax(s_t, dim=-1).mean(-2)  # (..., T)
        u_dense = torch.sigmoid(self.dense_frames(s_t)).mean(-2)
        audio_mean, image_mean = audio.mean(1), image.mean(1)
        if paired:
            weigh_image = lambda w: torch.einsum("bp,bpd->bd", w, image)  # noqa: E731
            weigh_audio = lambda u: torch.einsum("bt,btd->bd", u, audio)  # noqa: E731
        else:
            weigh_image = lambda w: torch.einsum("aip,ipd->aid", w, image)  # noqa: E731
            weigh_audio = lambda u: torch.einsum("ait,atd->aid", u, audio)  # noqa: E731
            n_audio, n_image = audio.shape[0], image.shape[0]
            audio_mean = audio_mean[:, None].expand(n_audio, n_image, -1)
            image_mean = image_mean[None].expand(n_audio, n_image, -1)
        audio_emb = torch.cat([weigh_image(w_soft), weigh_image(w_dense), audio_mean], dim=-1)
        image_emb = torch.cat([weigh_audio(u_soft), weigh_audio(u_dense), image_mean], dim=-1)
        return F.normalize(audio_emb, dim=-1), F.normalize(image_emb, dim=-1)

    def _similarity(self, audio: torch.Tensor, image: torch.Tensor, paired: bool) -> torch.Tensor:
        audio_emb, image_emb = self.embeddings(audio, image, paired)
        return (audio_emb * image_emb).sum(-1)

    def alignment(self, audio: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        return self._grid(self.scores(audio, image))


def matchmap_similarity(matchmap: torch.Tensor, kind: str, frames: torch.Tensor | None = None) -> torch.Tensor:
    """SISA / MISA / SIMA of matchmaps shaped (..., T, P), over the tensor frames where `frames` (..., T) is true."""
    if frames is None:
        frames = torch.ones(matchmap.shape[:-1], dtype=torch.bool, device=matchmap.device)
    frames = frames.expand(matchmap.shape[:-1])
    n_frames = frames.sum(-1).clamp(min=1).to(matchmap.dtype)
    if kind == "sisa":  # mean over frames and pixels
        return matchmap.masked_fill(~frames[..., None], 0).sum(dim=(-2, -1)) / (n_frames * matchmap.shape[-1])
    if kind == "misa":  # for each frame the best pixel, averaged over frames
        return matchmap.max(dim=-1).values.masked_fill(~frames, 0).sum(-1) / n_frames
    if kind == "sima":  # for each pixel the best frame, averaged over pixels
        return matchmap.masked_fill(~frames[..., None], float("-inf")).max(dim=-2).values.mean(-1)
    raise ValueError(f"unknown matchmap similarity {kind!r}")


class Matchmap(VGSModel):
    arch = "matchmap"

    def __init__(self, settings: ModelSettings, shape: InputShape):
        super().__init__(settings, shape)
        self.audio_proj = nn.Linear(settings.embed_dim, settings.embed_dim)
        self.visual_proj = nn.Linear(settings.embed_dim, settings.embed_dim)

    def encode_audio(self, logmel: torch.Tensor) -> torch.Tensor:
        """Unit frame embeddings; padding frames get the zero vector (see the module doc)."""
        embedded = F.normalize(self.audio_proj(self.audio(logmel)), dim=-1)
        return embedded * self.caption_frames(logmel)[..., None].to(embedded.dtype)

    def encode_image(self, features: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.visual_proj(self.visual(features)), dim=-1)

    def matchmap(self, audio: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        """Matchmaps of paired rows, (B, T, P): cosines of frame and pixel embeddings."""
        return self._scores(audio, image, paired=True)

    def _similarity(self, audio: torch.Tensor, image: torch.Tensor, paired: bool) -> torch.Tensor:
        frames = audio.ne(0).any(-1)  # (Na, T): zero embeddings are padding
        return matchmap_similarity(self._scores(audio, image, paired), self.settings.similarity,
                                   frames if paired else frames[:, None])

    def alignment(self, audio: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        return self._grid(self.matchmap(audio, image))


def build_model(settings: ModelSettings, shape: InputShape) -> VGSModel:
    return {"cnnatt": CNNatt, "matchmap": Matchmap}[settings.arch](settings, shape)
