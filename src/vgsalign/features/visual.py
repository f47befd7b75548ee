"""`vgsalign features-visual`: CNN feature grids of one shard's images into an HDF5 shard.

Images (from the split's `images.csv` index) are decoded in DataLoader worker processes:
any PIL mode is converted to RGB (grayscale and 16-bit grayscale replicated, CMYK
converted, palette and alpha images composited onto white), resized to the backbone's
input square with PIL bilinear, whole (no crop). The backbone (vgsalign.features.backbones) runs
in batches, on CUDA with autocast (bfloat16 where supported, else float16) when a GPU
is present, else on the CPU in float32. Output: `image_id`, `features` (N, H, W, C),
`width`, `height` (the image's own size) and attributes with every setting, the
weights' SHA-256 and `random_weights`. A missing or unreadable image stops the job
naming the file, or with `features.on_error: skip` is listed in the shard's rejects.
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
from tqdm import tqdm

from .backbones import BackboneSpec, load_backbone, normalise
from ..runtime import set_torch_threads
from ..errors import InputError
from ..settings import settings_from_json
from .shards import ShardingSettings, handle_problems, write_shard

RESIZE = "PIL bilinear, whole image to the input square (aspect ratio not kept)"


@dataclasses.dataclass(frozen=True)
class VisualSettings:
    """The `visual` config section (batch_size and num_workers come as options: they change no number)."""

    backbone: str
    weights: str | None
    allow_random_weights: bool
    dtype: str
    batch_size: int = 32
    num_workers: int = 0


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


@torch.inference_mode()
def extract(paths: list[str], extractor: torch.nn.Module, spec: BackboneSpec, on_error: str, batch_size: int,
            num_workers: int, device: torch.device | None = None, amp: torch.dtype | None = None,
            out_dtype: str = "float32", ids: list | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, list[dict]]:
    """(kept mask, features (N, H, W, C), width, height, rejects) for the images at `paths`."""
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
    with tqdm(total=n, desc="images", unit="img", mininterval=1, file=sys.stderr) as bar:
        for index, pixels, widths, heights, problems in loader:
            ok = [j for j, p in enumerate(problems) if p is None]
            for j, problem in enumerate(problems):
                if problem is not None:
                    item = {"id": ids[index[j]] if ids is not None else index[j], "path": paths[index[j]], "problem": problem}
                    handle_problems([item], on_error)
                    rejects.append(item)
            if ok:
                x = normalise(pixels[ok].to(device, non_blocking=True), spec)
                if device.type == "cuda":
                    x = x.contiguous(memory_format=torch.channels_last)
                with torch.autocast(device_type=device.type, dtype=amp, enabled=amp is not None):
                    grid = extractor(x)
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
        "resize": RESIZE, "dtype": settings.dtype, "weights_path": weights_path or "",
        "weights_sha256": weights_sha256 or "", "random_weights": bool(random_weights),
        "shard_size": sharding.shard_size, "shuffle": sharding.shuffle, "shuffle_seed": sharding.shuffle_seed,
        "on_error": sharding.on_error,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="vgsalign features-visual", description="CNN feature grids of one shard.")
    parser.add_argument("--images", required=True, help="images.csv of the split (shard index)")
    parser.add_argument("--image-dir", required=True, help="folder holding the split's image files")
    parser.add_argument("--split", required=True)
    parser.add_argument("--shard", type=int, required=True)
    parser.add_argument("--n-shards", type=int, required=True)
    parser.add_argument("--settings", required=True, help="the visual config section as JSON")
    parser.add_argument("--sharding", required=True, help="the features config section as JSON")
    parser.add_argument("--batch-size", type=int, default=None, help="overrides visual.batch_size")
    parser.add_argument("--num-workers", type=int, default=None, help="overrides visual.num_workers")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)

    settings = settings_from_json(VisualSettings, args.settings, "--settings")
    if settings.dtype not in ("float32", "float16"):
        raise InputError("visual.dtype", f"{settings.dtype!r}: expected float32 or float16")
    sharding = settings_from_json(ShardingSettings, args.sharding, "--sharding")
    set_torch_threads(max(1, args.threads))
    loaded = load_backbone(settings.backbone, settings.weights, settings.allow_random_weights)
    if loaded.random_weights:
        print(f"WARNING: {settings.backbone} runs with RANDOM weights (visual.allow_random_weights); "
              f"every shard records random_weights=True", file=sys.stderr)

    index = pd.read_csv(args.images, dtype={"file_name": str})
    images = index[index["shard"] == args.shard]
    paths = [str(Path(args.image_dir) / name) for name in images["file_name"]]
    image_ids = images["image_id"].to_numpy(dtype=np.int64)
    device, amp = pick_device()
    keep, features, width, height, rejects = extract(
        paths, loaded.extractor, loaded.spec, sharding.on_error,
        batch_size=args.batch_size or settings.batch_size,
        num_workers=settings.num_workers if args.num_workers is None else args.num_workers,
        device=device, amp=amp, out_dtype=settings.dtype, ids=image_ids.tolist(),
    )
    attrs = {
        **visual_attrs(settings, loaded.spec, loaded.weights_path, loaded.weights_sha256, loaded.random_weights, sharding),
        "split": args.split, "shard_index": args.shard, "n_shards": args.n_shards, "n_items": int(keep.sum()),
        "device": device.type, "amp": str(amp).replace("torch.", "") if amp else "none",
    }
    datasets = {"image_id": image_ids[keep], "features": features[keep], "width": width[keep], "height": height[keep]}
    write_shard(Path(args.out), datasets, attrs, rejects)
    print(f"{args.out}: {int(keep.sum())} images, {len(rejects)} rejected, backbone {settings.backbone}"
          f"{' (RANDOM weights)' if loaded.random_weights else ''}, device {device.type}")
    return 0


if __name__ == "__main__":
    from ..cli import run_main

    raise SystemExit(run_main("features-visual", main))
