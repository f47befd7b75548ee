"""COCO category masks and how much of each mask falls into each cell of a tensor grid.

Ground truth (docs/design.md): the mask M of category c in an image is the union of all
non-crowd instances of c, rasterised at the image's own size with pycocotools
(`vgsalign.scores.instances`, which also checks the annotations).

- reference mode: M is resized to grid x grid (default 224) bilinearly and thresholded
  at >= mask_threshold (0.01). Tensor cell (i, j) is upsampled by repetition (nearest
  neighbour): grid pixel y belongs to row floor(y * H / grid), so row i holds pixels
  [ceil(i * grid / H), ceil((i + 1) * grid / H)); with grid divisible by H that is a
  block of grid / H pixels. A cell's weight is the number of mask pixels it holds.
- exact mode: M stays at the image's own size h x w; cell (i, j) covers the region
  [i h / H, (i + 1) h / H) x [j w / W, (j + 1) w / W) and its weight is the area of mask
  pixels inside it (fractional at the borders), so any tensor resolution works.

The bilinear resize uses half-pixel centres without antialiasing (source coordinate
(y + 0.5) * h / grid - 0.5, clamped to the image), as OpenCV's INTER_LINEAR and
torch's interpolate(mode="bilinear", align_corners=False) do.

Regions: besides each object mask the confusion tables need, for a word of category c,
every other annotated category d with the pixels of c removed (M_d minus M_c), all other
categories together minus M_c, and the background (pixels in no annotated mask).
"""

from __future__ import annotations

from collections import OrderedDict
from functools import lru_cache
from dataclasses import dataclass
from typing import Iterable

import numpy as np
from scipy import sparse

from .instances import ImageAnnotations, category_mask

OTHER = -1        # region key: all other annotated categories, pixels of c removed
BACKGROUND = -2   # region key: pixels in no annotated (non-crowd) mask


# ---------------------------------------------------------------- resizing and cell weights


@lru_cache(maxsize=256)
def _bilinear_taps(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Indices (lo, hi) and weight of hi for half-pixel-centre linear interpolation."""
    source = (np.arange(n_out, dtype=np.float64) + 0.5) * (n_in / n_out) - 0.5
    source = np.clip(source, 0.0, n_in - 1)
    lo = np.floor(source).astype(np.int64)
    hi = np.minimum(lo + 1, n_in - 1)
    return lo, hi, source - lo


def _resize_first_axis(image: np.ndarray, n_out: int) -> np.ndarray:
    lo, hi, frac = _bilinear_taps(image.shape[0], n_out)
    return image[lo] * (1.0 - frac)[:, None] + image[hi] * frac[:, None]


def bilinear_resize(image: np.ndarray, out_height: int, out_width: int) -> np.ndarray:
    """Resize a 2-D array bilinearly (half-pixel centres, no antialiasing)."""
    image = np.asarray(image)
    if image.dtype == bool:
        image = image.view(np.uint8)
    # interpolate first along the axis whose lines lie contiguous in memory (pycocotools
    # masks are column-major): whole-line gathers are fast
    if image.flags.f_contiguous and not image.flags.c_contiguous:
        columns = _resize_first_axis(image.T, out_width)                       # (out_width, h)
        return _resize_first_axis(np.ascontiguousarray(columns.T), out_height)
    rows = _resize_first_axis(image, out_height)                                # (out_height, w)
    return np.ascontiguousarray(_resize_first_axis(np.ascontiguousarray(rows.T), out_width).T)


def reference_mask(mask: np.ndarray, grid: int, threshold: float) -> np.ndarray:
    """The original's mask: resized to grid x grid (bilinear), thresholded at >= threshold.

    Only the output rows and columns whose interpolation taps reach the object's
    bounding box can be non-zero, so only the box (one pixel wider) is resized; every
    output value is the same as from resizing the whole mask.
    """
    out = np.zeros((grid, grid), dtype=bool)
    rows_any, cols_any = mask.any(axis=1), mask.any(axis=0)
    if not rows_any.any():
        return out
    ys, xs = np.flatnonzero(rows_any), np.flatnonzero(cols_any)
    y_lo, y_hi = max(int(ys[0]) - 1, 0), min(int(ys[-1]) + 2, mask.shape[0])
    x_lo, x_hi = max(int(xs[0]) - 1, 0), min(int(xs[-1]) + 2, mask.shape[1])
    box = mask[y_lo:y_hi, x_lo:x_hi].astype(np.float64)
    y_taps, x_taps = _bilinear_taps(mask.shape[0], grid), _bilinear_taps(mask.shape[1], grid)
    out_rows = np.flatnonzero((y_taps[1] >= ys[0]) & (y_taps[0] <= ys[-1]))
    out_cols = np.flatnonzero((x_taps[1] >= xs[0]) & (x_taps[0] <= xs[-1]))

    def interpolate(values: np.ndarray, taps, picked: np.ndarray, offset: int) -> np.ndarray:
        lo, hi, frac = (t[picked] for t in taps)
        return values[lo - offset] * (1.0 - frac)[:, None] + values[hi - offset] * frac[:, None]

    rows = interpolate(box, y_taps, out_rows, y_lo)                                # (rows, box width)
    values = interpolate(np.ascontiguousarray(rows.T), x_taps, out_cols, x_lo).T   # (rows, cols)
    out[np.ix_(out_rows, out_cols)] = values >= threshold
    return out


def interval_overlap_matrix(bounds: np.ndarray, n_pixels: int) -> np.ndarray:
    """(n_cells, n_pixels) overlap length of pixel [y, y+1) with cell [bounds_i, bounds_i+1)."""
    pixels = np.arange(n_pixels, dtype=np.float64)[None, :]
    lows, highs = bounds[:-1, None], bounds[1:, None]
    return np.clip(np.minimum(pixels + 1.0, highs) - np.maximum(pixels, lows), 0.0, None)


def reference_cell_bounds(n_cells: int, grid: int) -> np.ndarray:
    """Pixel boundaries of nearest-neighbour upsampling: cell i holds [ceil(i g/n), ceil((i+1) g/n))."""
    i = np.arange(n_cells + 1, dtype=np.int64)
    return ((i * grid + n_cells - 1) // n_cells).astype(np.float64)


def exact_cell_bounds(n_cells: int, n_pixels: int) -> np.ndarray:
    """Cell i covers [i n_pixels / n_cells, (i+1) n_pixels / n_cells) in pixel units."""
    return np.arange(n_cells + 1, dtype=np.float64) * (n_pixels / n_cells)


@dataclass(frozen=True)
class CellGrid:
    """How the pixels of a mask of one size fall into the H x W cells of a tensor."""

    rows: sparse.csr_matrix      # (H, mask height)
    cols: sparse.csr_matrix      # (W, mask width)

    @classmethod
    def reference(cls, height: int, width: int, grid: int) -> "CellGrid":
        if grid < max(height, width):
            raise ValueError(f"grid {grid} is smaller than the tensor grid {height} x {width}")
        return cls(
            rows=sparse.csr_matrix(interval_overlap_matrix(reference_cell_bounds(height, grid), grid)),
            cols=sparse.csr_matrix(interval_overlap_matrix(reference_cell_bounds(width, grid), grid)),
        )

    @classmethod
    def exact(cls, height: int, width: int, image_height: int, image_width: int) -> "CellGrid":
        return cls(
            rows=sparse.csr_matrix(interval_overlap_matrix(exact_cell_bounds(height, image_height), image_height)),
            cols=sparse.csr_matrix(interval_overlap_matrix(exact_cell_bounds(width, image_width), image_width)),
        )

    def weights(self, masks: np.ndarray) -> np.ndarray:
        """(n, h, w) masks -> (H * W, n) mask area in each cell."""
        n, h, w = masks.shape
        by_row = self.rows @ np.ascontiguousarray(masks.transpose(1, 0, 2), dtype=np.float64).reshape(h, n * w)
        by_row = by_row.reshape(-1, n, w).transpose(1, 0, 2).reshape(-1, w)          # (n * H, w)
        cells = (self.cols @ by_row.T).T.reshape(n, self.rows.shape[0], self.cols.shape[0])
        return cells.reshape(n, -1).T

    def totals(self) -> np.ndarray:
        """(H * W,) area of the whole image in each cell."""
        return np.outer(np.asarray(self.rows.sum(axis=1)).ravel(), np.asarray(self.cols.sum(axis=1)).ravel()).ravel()


# ---------------------------------------------------------------- regions of one image


@dataclass
class ImageRegions:
    """Cell weights of every region an image's pairs are scored against."""

    image_id: int
    weights: np.ndarray                       # (P, n_regions)
    cell_totals: np.ndarray                   # (P,)
    columns: dict[tuple[int, int], int]       # (word category, region key) -> column
    annotated: tuple[int, ...]                # category ids with a non-crowd instance
    mask_share: dict[int, float]              # category -> mask area / image area

    def own_column(self, category_id: int) -> int:
        return self.columns[(category_id, category_id)]

    def vanished(self, category_id: int) -> bool:
        return self.mask_share[category_id] <= 0.0

    def confusion_columns(self, category_id: int) -> tuple[np.ndarray, np.ndarray]:
        """(region keys, columns) of a word category's confusion row: every annotated
        category (its own mask for itself), OTHER, BACKGROUND."""
        keys = np.array(self.annotated + (OTHER, BACKGROUND), dtype=np.int64)
        return keys, np.array([self.columns[(category_id, int(k))] for k in keys], dtype=np.int64)


@lru_cache(maxsize=64)
def _cell_grid(mode: str, tensor_height: int, tensor_width: int, mask_height: int, mask_width: int) -> CellGrid:
    if mode == "reference":
        return CellGrid.reference(tensor_height, tensor_width, mask_height)
    return CellGrid.exact(tensor_height, tensor_width, mask_height, mask_width)


@lru_cache(maxsize=32)
def _reference_cell_of_pixel(tensor_height: int, tensor_width: int, grid: int) -> np.ndarray:
    """(grid * grid,) flat cell index of each pixel under nearest-neighbour upsampling."""
    rows = (np.arange(grid) * tensor_height) // grid
    cols = (np.arange(grid) * tensor_width) // grid
    return (rows[:, None] * tensor_width + cols[None, :]).ravel()


def _atom_weights(codes: np.ndarray, mode: str, tensor_height: int, tensor_width: int,
                  cell_grid: "CellGrid") -> tuple[np.ndarray, np.ndarray]:
    """Split the image into atoms (pixels with the same set of categories, `codes` holds
    one bit per category) and weigh each atom in each cell: (codes present, (P, n_atoms))."""
    shape = codes.shape
    codes = codes.ravel()
    if codes.dtype == object or int(codes.max()) >= 1 << 16:
        present, inverse = np.unique(codes, return_inverse=True)
    else:                                   # few categories: a lookup table is quicker than sorting
        present = np.flatnonzero(np.bincount(codes))
        lookup = np.zeros(int(present[-1]) + 1, dtype=np.int64)
        lookup[present] = np.arange(len(present))
        inverse = lookup[codes]
    n_atoms, n_cells = len(present), tensor_height * tensor_width
    if mode == "reference":
        cell = _reference_cell_of_pixel(tensor_height, tensor_width, shape[0])
        counts = np.bincount(cell * n_atoms + inverse, minlength=n_cells * n_atoms)
        return present, counts.reshape(n_cells, n_atoms).astype(np.float64)
    atoms = inverse.reshape(shape)[None, :, :] == np.arange(n_atoms)[:, None, None]
    return present, cell_grid.weights(atoms)


def build_image_regions(
    image: ImageAnnotations,
    categories: Iterable[int],
    mode: str,
    tensor_height: int,
    tensor_width: int,
    grid: int = 224,
    mask_threshold: float = 0.01,
) -> ImageRegions:
    """Regions for the words of `categories` (each must be annotated in the image).

    Every region (a mask, a mask minus another, the background) is a union of atoms,
    the sets of pixels covered by exactly the same categories; the atoms are weighed
    once per cell and each region sums its atoms.
    """
    annotated = tuple(sorted(image.segmentations))
    if mode == "reference":
        cell_grid = _cell_grid("reference", tensor_height, tensor_width, grid, grid)
        shape = (grid, grid)
    else:
        cell_grid = _cell_grid("exact", tensor_height, tensor_width, image.height, image.width)
        shape = (image.height, image.width)
    codes = np.zeros(shape, dtype=object if len(annotated) > 62 else np.int64)
    for bit, category_id in enumerate(annotated):
        mask = category_mask(image, category_id)
        if mode == "reference":
            mask = reference_mask(mask, grid, mask_threshold)
        codes[mask] += 1 << bit
    present, atom_weights = _atom_weights(codes, mode, tensor_height, tensor_width, cell_grid)

    def has(bit: int) -> np.ndarray:
        return np.array([(int(code) >> bit) & 1 == 1 for code in present])

    bit_of = {c: b for b, c in enumerate(annotated)}
    selectors, columns = [np.array([int(code) == 0 for code in present])], {}
    for category_id in sorted(set(categories)):
        own = has(bit_of[category_id])
        columns[(category_id, category_id)] = len(selectors)
        selectors.append(own)
        others = np.zeros(len(present), dtype=bool)
        for other_id in annotated:
            if other_id != category_id:
                columns[(category_id, other_id)] = len(selectors)
                selectors.append(has(bit_of[other_id]) & ~own)
                others |= has(bit_of[other_id])
        columns[(category_id, OTHER)] = len(selectors)
        selectors.append(others & ~own)
        columns[(category_id, BACKGROUND)] = 0
    weights = atom_weights @ np.stack(selectors, axis=1).astype(np.float64)
    total = float(shape[0] * shape[1])
    mask_share = {c: float(weights[:, columns[(c, c)]].sum() / total) for c in sorted(set(categories))}
    return ImageRegions(
        image_id=image.image_id,
        weights=weights,
        cell_totals=cell_grid.totals(),
        columns=columns,
        annotated=annotated,
        mask_share=mask_share,
    )


class RegionCache:
    """Regions per image, built once and kept for the images seen most recently.

    The caller passes each image's annotations with the categories its pairs ask for
    over the whole run (not only the current chunk's), so an image's regions are the
    same whichever chunk builds them."""

    def __init__(self, mode: str, tensor_height: int, tensor_width: int, grid: int, mask_threshold: float,
                 size: int = 512):
        self.mode = mode
        self.tensor_height, self.tensor_width = tensor_height, tensor_width
        self.grid, self.mask_threshold = grid, mask_threshold
        self.size = size
        self._cache: OrderedDict[int, ImageRegions] = OrderedDict()

    def get(self, image: ImageAnnotations, categories: tuple[int, ...]) -> ImageRegions:
        regions = self._cache.get(image.image_id)
        if regions is None:
            regions = build_image_regions(image, categories, self.mode, self.tensor_height, self.tensor_width,
                                          self.grid, self.mask_threshold)
            self._cache[image.image_id] = regions
            if len(self._cache) > self.size:
                self._cache.popitem(last=False)
        else:
            self._cache.move_to_end(image.image_id)
        return regions
