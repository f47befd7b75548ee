"""`vgsalign features-visual`: CNN feature grids of one shard's images into an HDF5 shard.

The images of shard k (the split's `images.csv` plan) that have a caption in
`captions.csv` (vgsalign.features.plan) are decoded in `--threads` - 1 DataLoader worker
processes; a worker that dies fails the step within seconds, naming the shard. Any PIL
mode becomes RGB (grayscale and 16-bit grayscale replicated, CMYK converted, palette and
alpha images composited onto white), resized to the backbone's input square with PIL
bilinear, whole (no crop), and fed to the backbone in `visual.channel_order`: rgb, what
the weights expect, or bgr, the original's (OpenCV read BGR and Keras' preprocess_input
flipped it again, so the BGR-trained VGG16 saw its channels reversed). The backbone
(vgsalign.features.backbones) runs in batches, on CUDA with autocast (bfloat16 where
supported, else float16) when a GPU is present, else on the CPU in float32.

Output: `image_id`, `features` (N, H, W, C) as `visual.dtype`, `width`, `height` (the
image's own size), every chunk checksummed and compressed as `features.compression`
(vgsalign.features.shard_writer), and attributes with every setting, the weights'
SHA-256 and `random_weights`. A missing or unreadable image stops the job naming the
file, or with `features.on_error: skip` is listed in the shard's rejects.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from PIL import Image

from ..config import section_defaults
from ..errors import InputError
from ..runtime import progress_bar, set_torch_threads
from ..settings import json_object, settings_from_dict, settings_from_json
from .backbones import BackboneSpec, load_backbone, normalise
from .plan import ShardingSettings, handle_problems
from .shard_writer import kept_rows, remove_leftovers, write_shard

RESIZE = "PIL bilinear, whole image to the input square (aspect ratio not kept)"
CHANNEL_ORDERS = ("rgb", "bgr")  # bgr: channels reversed from the weights' order (the original)
OPERATIONAL = ("batch_size", "num_workers")  # visual keys that change no number


@dataclasses.dataclass(frozen=True)
class VisualSettings:
    """The `visual` config section less batch_size and num_workers: they change no number
    and come as the step's --batch-size and --threads."""

    backbone: str
    weights: str | None
    allow_random_weights: bool
    dtype: str
    channel_order: str

    def check(self) -> None:
        if self.dtype not in ("float32", "float16"):
            raise InputError("visual.dtype", f"{self.dtype!r}: expected float32 or float16")
        if self.channel_order not in CHANNEL_ORDERS:
            raise InputError("visual.channel_order", f"{self.channel_order!r}: expected one of {list(CHANNEL_ORDERS)}")


def to_rgb(image: Image.Image) -> Image.Image:
    """Any PIL image as 8-bit RGB; transparent pixels are composited onto white."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        values = np.asarray(image, dtype=np.float64)
        top = 65535.0 if values.max() > 255 else 255.0
        image = Image.fromarray(np.clip(values / top * 255.0 + 0.5, 0, 255).astype(np.uint8), mode="L")
    if image.mode == "F":
        image = Image.fromarray(np.clip(np.asarray(image) * 255.0 + 0.5, 0, 255).astype(np.uint8), mode="L")
    if image.mode == "P":
        image = image.convert("RGBA") if "transparency" in image.info else image.convert("RGB")
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, rgba)
    return image.convert("RGB")


def load_image(path: str | Path, size: int) -> tuple[np.ndarray, int, int]:
    """(size, size, 3) uint8 RGB array and the original width, height; InputError if unreadable."""
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "image file not found")
    try:
        with Image.open(path) as image:
            image.load()
            width, height = image.size
            rgb = to_rgb(image).resize((size, size), Image.BILINEAR)
    except InputError:
        raise
    except Exception as err:  # PIL raises many types for a corrupt file
        raise InputError(path, f"cannot read image ({type(err).__name__}: {err})") from None
    return np.asarray(rgb, dtype=np.uint8), width, height


class ImageFiles(torch.utils.data.Dataset):
    """Decodes images in DataLoader workers; failures come back as a problem, not an exception."""

    def __init__(self, paths: list[str], size: int):
        self.paths, self.size = paths, size

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int):
        try:
            pixels, width, height = load_image(self.paths[i], self.size)
            return i, pixels, width, height, None
        except InputError as err:
            return i, np.zeros((self.size, self.size, 3), np.uint8), 0, 0, err.problem


def _collate(items):
    index, pixels, width, height, problem = zip(*items)
    return list(index), torch.from_numpy(np.stack(pixels)), list(width), list(height), list(problem)


def pick_device() -> tuple[torch.device, torch.dtype | None]:
    """CUDA with autocast (bfloat16 if supported, else float16) when present; else CPU in float32."""
    if torch.cuda.is_available():
        amp = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.device("cuda"), amp
    return torch.device("cpu"), None


def _grids(pixels: torch.Tensor, extractor: torch.nn.Module, spec: BackboneSpec, device: torch.device,
           amp: torch.dtype | None, channel_order: str) -> torch.Tensor:
    """(B, C, H, W) feature grids of a batch of (B, S, S, 3) uint8 RGB images."""
    if channel_order == "bgr":
        pixels = pixels.flip(-1)  # the original protocol: channels reversed from the weights' order
    x = normalise(pixels.to(device, non_blocking=True), spec)
    if device.type == "cuda":
        x = x.contiguous(memory_format=torch.channels_last)
    with torch.autocast(device_type=device.type, dtype=amp, enabled=amp is not None):
        return extractor(x)


def _batches(loader: torch.utils.data.DataLoader, where: str):
    """The loader's batches; a decoding worker that dies ends the step with one line naming the shard."""
    iterator = iter(loader)
    while True:
        try:
            batch = next(iterator)
        except StopIteration:
            return
        except RuntimeError as err:  # DataLoader's report of a killed or crashed worker process
            if "DataLoader worker" not in str(err):
                raise
            first = str(err).strip().splitlines()[0]
            raise InputError(where, f"an image decoding worker died ({first}); out of memory or killed? "
                                    f"rerun, or lower visual.num_workers / visual.batch_size") from None
        yield batch


@torch.inference_mode()
def extract(paths: list[str], extractor: torch.nn.Module, spec: BackboneSpec, on_error: str, batch_size: int,
            num_workers: int, device: torch.device | None = None, amp: torch.dtype | None = None,
            out_dtype: str = "float32", ids: list | None = None, channel_order: str = "rgb",
            where: str = "visual shard") -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, list[dict]]:
    """(kept mask, features (N, H, W, C), width, height, rejects) for the images at `paths`.

    Memory: the output arrays of this shard and `batch_size` decoded images per worker.
    """
    if device is None:
        device, amp = pick_device()
    extractor = extractor.to(device)
    if device.type == "cuda":
        extractor = extractor.to(memory_format=torch.channels_last)
        torch.backends.cudnn.benchmark = True
    n = len(paths)
    features = np.zeros((n, spec.grid, spec.grid, spec.channels), dtype=np.dtype(out_dtype))
    width, height = np.zeros(n, np.int32), np.zeros(n, np.int32)
    keep = np.zeros(n, dtype=bool)
    rejects: list[dict] = []
    loader = torch.utils.data.DataLoader(
        ImageFiles(paths, spec.input_size), batch_size=batch_size, num_workers=num_workers,
        collate_fn=_collate, pin_memory=device.type == "cuda", persistent_workers=False,
    )
    with progress_bar(total=n, desc="images", unit="img") as bar:
        for index, pixels, widths, heights, problems in _batches(loader, where):
            for j, problem in enumerate(problems):
                if problem is not None:
                    item = {"id": ids[index[j]] if ids is not None else index[j], "path": paths[index[j]], "problem": problem}
                    handle_problems([item], on_error)
                    rejects.append(item)
            ok = [j for j, p in enumerate(problems) if p is None]
            if ok:
                grid = _grids(pixels[ok], extractor, spec, device, amp, channel_order)
                rows = [index[j] for j in ok]
                features[rows] = grid.float().permute(0, 2, 3, 1).cpu().numpy().astype(out_dtype, copy=False)
                width[rows] = [widths[j] for j in ok]
                height[rows] = [heights[j] for j in ok]
                keep[rows] = True
            bar.update(len(index))
    return keep, features, width, height, rejects


def visual_attrs(settings: VisualSettings, spec: BackboneSpec, weights_path: str | None, weights_sha256: str | None,
                 random_weights: bool, sharding: ShardingSettings) -> dict:
    """Every parameter that determines a visual shard's numbers (compared between shards)."""
    return {
        "modality": "visual", "backbone": spec.name, "layer": spec.layer, "input_size": spec.input_size,
        "grid": spec.grid, "channels": spec.channels, "mean": list(spec.mean), "std": list(spec.std),
        "resize": RESIZE, "dtype": settings.dtype, "channel_order": settings.channel_order,
        "weights_path": weights_path or "", "weights_sha256": weights_sha256 or "", "random_weights": bool(random_weights),
        "shard_size": sharding.shard_size, "shuffle": sharding.shuffle, "shuffle_seed": sharding.shuffle_seed,
        "on_error": sharding.on_error,
    }


def visual_settings(text: str) -> tuple[VisualSettings, int]:
    """The --visual slice as settings, and its batch size (schema default when absent).

    The workflow leaves batch_size and num_workers out of the slice (they change no
    number); a hand run may pass the whole section.
    """
    values = json_object(text, "--visual")
    operational = {key: values.pop(key) for key in OPERATIONAL if key in values}
    settings = settings_from_dict(VisualSettings, values, "--visual", section="visual")
    settings.check()
    return settings, int(operational.get("batch_size", section_defaults("visual")["batch_size"]))


def shard_images(images_csv: str, captions_csv: str, shard: int) -> pd.DataFrame:
    """The images of one shard that have a caption in the plan (the only ones anything reads)."""
    index = pd.read_csv(images_csv, dtype={"file_name": str})
    captioned = set(pd.read_csv(captions_csv, usecols=["image_id"])["image_id"].tolist())
    images = index[index["shard"] == shard]
    return images[images["image_id"].isin(captioned)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="vgsalign features-visual", description="CNN feature grids of one shard.")
    parser.add_argument("--images", required=True, help="images.csv of the split (shard plan)")
    parser.add_argument("--captions", required=True, help="captions.csv of the split: only captioned images are extracted")
    parser.add_argument("--image-dir", required=True, help="folder holding the split's image files")
    parser.add_argument("--split", required=True)
    parser.add_argument("--shard", type=int, required=True)
    parser.add_argument("--n-shards", type=int, required=True)
    parser.add_argument("--visual", required=True, help="the visual config section as JSON")
    parser.add_argument("--features", required=True, help="the features config section as JSON")
    parser.add_argument("--batch-size", type=int, default=None, help="images per forward pass (default visual.batch_size)")
    parser.add_argument("--threads", type=int, default=1, help="threads - 1 image decoding processes (0: decode in the main one)")
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)

    settings, batch_size = visual_settings(args.visual)
    sharding = settings_from_json(ShardingSettings, args.features, "--features", section="features")
    for leftover in remove_leftovers(args.out):
        print(f"removed {leftover}, left by an interrupted run", file=sys.stderr)
    set_torch_threads(max(1, args.threads))
    loaded = load_backbone(settings.backbone, settings.weights, settings.allow_random_weights)
    if loaded.random_weights:
        print(f"WARNING: {settings.backbone} runs with RANDOM weights (visual.allow_random_weights); "
              f"every shard records random_weights=True", file=sys.stderr)

    images = shard_images(args.images, args.captions, args.shard)
    paths = [str(Path(args.image_dir) / name) for name in images["file_name"]]
    image_ids = images["image_id"].to_numpy(dtype=np.int64)
    device, amp = pick_device()
    keep, features, width, height, rejects = extract(
        paths, loaded.extractor, loaded.spec, sharding.on_error, batch_size=args.batch_size or batch_size,
        num_workers=max(0, args.threads - 1), device=device, amp=amp, out_dtype=settings.dtype,
        ids=image_ids.tolist(), channel_order=settings.channel_order, where=f"{args.out} (shard {args.shard})",
    )
    attrs = {
        **visual_attrs(settings, loaded.spec, loaded.weights_path, loaded.weights_sha256, loaded.random_weights, sharding),
        "split": args.split, "shard_index": args.shard, "n_shards": args.n_shards, "n_items": int(keep.sum()),
        "device": device.type, "amp": str(amp).replace("torch.", "") if amp else "none",
    }
    datasets = {"image_id": image_ids[keep], "features": kept_rows(features, keep), "width": width[keep],
                "height": height[keep]}
    write_shard(Path(args.out), datasets, attrs, rejects, compression=sharding.compression)
    print(f"{args.out}: {int(keep.sum())} images, {len(rejects)} rejected, backbone {settings.backbone}"
          f"{' (RANDOM weights)' if loaded.random_weights else ''}, device {device.type}")
    return 0


if __name__ == "__main__":
    from ..cli import run_main

    raise SystemExit(run_main("features-visual", main))
