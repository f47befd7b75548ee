"""Synthetic scenes for the demo corpus: images, their objects and COCO annotations.

Each COCO category used here has its own look (outline, colour and texture), so that an
image model can tell them apart; backgrounds are drawn independently of the objects.
An object's annotation is exactly what was drawn: its mask is the union of the polygons
that were filled, stored either as those polygons (COCO style) or as the RLE of the
filled pixels. Objects never overlap, so no annotated pixel is hidden by another object.
"""

# Over 400 lines: every category's look (outline, texture, details) is drawn here, next to the
# placing and the annotation records that must agree with what was drawn.

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from PIL import Image, ImageDraw
from pycocotools import mask as mask_utils

# Real MSCOCO ids, names and supercategories of the categories the demo draws.
CATEGORIES: list[dict] = [
    {"supercategory": "person", "id": 1, "name": "person"},
    {"supercategory": "vehicle", "id": 3, "name": "car"},
    {"supercategory": "outdoor", "id": 10, "name": "traffic light"},
    {"supercategory": "outdoor", "id": 13, "name": "stop sign"},
    {"supercategory": "animal", "id": 17, "name": "cat"},
    {"supercategory": "animal", "id": 18, "name": "dog"},
    {"supercategory": "kitchen", "id": 44, "name": "bottle"},
    {"supercategory": "kitchen", "id": 47, "name": "cup"},
    {"supercategory": "food", "id": 52, "name": "banana"},
    {"supercategory": "food", "id": 53, "name": "apple"},
    {"supercategory": "food", "id": 59, "name": "pizza"},
    {"supercategory": "indoor", "id": 88, "name": "teddy bear"},
]
CATEGORY_BY_NAME = {c["name"]: c for c in CATEGORIES}

# Backgrounds (drawn independently of the objects) and non-category clutter.
BACKGROUNDS = ["grass", "sky", "wall", "floor", "sand", "water", "road", "table"]
CLUTTER = ["box", "rock"]

Polygon = list[tuple[float, float]]


@dataclass
class Instance:
    """One drawn object (or crowd cluster) with the exact mask of its pixels."""

    category: str
    polygons: list[Polygon]      # image coordinates; their union is the mask
    mask: np.ndarray             # bool (H, W): the filled pixels
    iscrowd: bool = False
    rle: bool = False            # store as RLE instead of polygons


@dataclass
class Scene:
    width: int
    height: int
    background: str
    instances: list[Instance] = field(default_factory=list)
    clutter: list[str] = field(default_factory=list)


# --- outlines in a box of height 1 and width `aspect` (x right, y down) ----------------

def _circle(cx: float, cy: float, r: float, n: int = 28) -> Polygon:
    return [(cx + r * math.cos(2 * math.pi * k / n), cy + r * math.sin(2 * math.pi * k / n)) for k in range(n)]


def _ellipse(cx: float, cy: float, rx: float, ry: float, n: int = 28) -> Polygon:
    return [(cx + rx * math.cos(2 * math.pi * k / n), cy + ry * math.sin(2 * math.pi * k / n)) for k in range(n)]


def _rect(x0: float, y0: float, x1: float, y1: float) -> Polygon:
    return [(x0, y0), (x1, y0), (x1, y1), (x0, y1)]


def _octagon(cx: float, cy: float, r: float) -> Polygon:
    return [(cx + r * math.cos(math.pi / 8 + k * math.pi / 4), cy + r * math.sin(math.pi / 8 + k * math.pi / 4)) for k in range(8)]


def _crescent(aspect: float, n: int = 20) -> Polygon:
    # a band along an arc, thick in the middle and pointed at both ends
    cx, cy, radius = aspect / 2, -0.3, 1.15
    half = math.asin(min(0.99, (aspect / 2 - 0.02) / radius))
    outer, inner = [], []
    for k in range(n + 1):
        t = k / n
        theta = math.pi / 2 - half + 2 * half * t
        thick = 0.55 * math.sin(math.pi * t) + 0.03
        outer.append((cx + radius * math.cos(theta), cy + radius * math.sin(theta)))
        inner.append((cx + (radius - thick) * math.cos(theta), cy + (radius - thick) * math.sin(theta)))
    return outer + inner[::-1]


# category -> (aspect w/h, outline polygons, detail drawer name, texture, colours)
SHAPES: dict[str, dict] = {
    "person": {"aspect": 0.45, "outline": lambda: [
        _circle(0.225, 0.12, 0.11), _rect(0.07, 0.23, 0.38, 0.62),
        _rect(0.10, 0.62, 0.20, 1.0), _rect(0.25, 0.62, 0.35, 1.0)],
        "texture": "hstripes", "colours": [(120, 60, 170), (170, 120, 220)]},
    "car": {"aspect": 2.0, "outline": lambda: [
        [(0, 0.45), (0.35, 0.45), (0.55, 0.1), (1.35, 0.1), (1.6, 0.45), (2.0, 0.5), (2.0, 0.82), (0, 0.82)],
        _circle(0.45, 0.8, 0.18), _circle(1.55, 0.8, 0.18)],
        "texture": "gradient", "colours": [(30, 70, 200), (90, 140, 240)]},
    "traffic light": {"aspect": 0.38, "outline": lambda: [_rect(0, 0, 0.38, 1.0)],
                      "texture": "noise", "colours": [(45, 45, 50), (75, 75, 80)]},
    "stop sign": {"aspect": 0.8, "outline": lambda: [_octagon(0.4, 0.38, 0.38), _rect(0.36, 0.7, 0.44, 1.0)],
                  "texture": "solid", "colours": [(210, 20, 25), (230, 40, 40)]},
    "cat": {"aspect": 1.0, "outline": lambda: [
        _circle(0.5, 0.58, 0.4), [(0.14, 0.42), (0.18, 0.0), (0.46, 0.22)], [(0.86, 0.42), (0.82, 0.0), (0.54, 0.22)]],
        "texture": "dstripes", "colours": [(235, 140, 40), (160, 80, 20)]},
    "dog": {"aspect": 1.5, "outline": lambda: [
        _ellipse(0.9, 0.5, 0.52, 0.22), _circle(0.3, 0.32, 0.24),
        _ellipse(0.12, 0.38, 0.08, 0.16), _rect(0.55, 0.6, 0.68, 1.0), _rect(1.15, 0.6, 1.28, 1.0),
        [(1.38, 0.4), (1.5, 0.12), (1.44, 0.45)]],
        "texture": "spots", "colours": [(150, 100, 55), (70, 40, 20)]},
    "bottle": {"aspect": 0.38, "outline": lambda: [
        [(0, 0.42), (0.12, 0.3), (0.26, 0.3), (0.38, 0.42), (0.38, 1.0), (0, 1.0)], _rect(0.12, 0.0, 0.26, 0.32)],
        "texture": "vgradient", "colours": [(20, 120, 40), (90, 200, 110)]},
    "cup": {"aspect": 1.1, "outline": lambda: [
        [(0, 0.1), (0.8, 0.1), (0.7, 1.0), (0.1, 1.0)], _ellipse(0.82, 0.5, 0.27, 0.24)],
        "texture": "checker", "colours": [(240, 240, 235), (120, 160, 230)]},
    "banana": {"aspect": 1.8, "outline": lambda: [_crescent(1.8)],
               "texture": "solid", "colours": [(245, 215, 40), (200, 170, 20)]},
    "apple": {"aspect": 1.0, "outline": lambda: [
        _circle(0.5, 0.58, 0.42), _rect(0.47, 0.02, 0.54, 0.2), _ellipse(0.66, 0.1, 0.13, 0.06)],
        "texture": "speckle", "colours": [(200, 20, 30), (240, 90, 90)]},
    "pizza": {"aspect": 1.1, "outline": lambda: [[(0.03, 0.05), (1.07, 0.05), (0.55, 1.0)]],
              "texture": "noise", "colours": [(245, 190, 70), (225, 160, 50)]},
    "teddy bear": {"aspect": 0.85, "outline": lambda: [
        _circle(0.425, 0.3, 0.22), _circle(0.22, 0.1, 0.09), _circle(0.63, 0.1, 0.09), _ellipse(0.425, 0.72, 0.33, 0.28)],
        "texture": "fur", "colours": [(190, 140, 90), (150, 105, 60)]},
    # clutter: drawn, never annotated
    "box": {"aspect": 1.2, "outline": lambda: [_rect(0, 0.15, 1.2, 1.0)], "texture": "planks",
            "colours": [(165, 120, 70), (140, 95, 50)]},
    "rock": {"aspect": 1.4, "outline": lambda: [[(0, 1.0), (0.15, 0.45), (0.45, 0.15), (0.95, 0.1), (1.3, 0.5), (1.4, 1.0)]],
             "texture": "noise", "colours": [(120, 120, 120), (90, 90, 95)]},
}


# --- textures: (h, w) RGB arrays, vectorised ---------------------------------------

def _texture(kind: str, h: int, w: int, colours, rng: np.random.Generator) -> np.ndarray:
    a = np.array(colours[0], dtype=np.float64)
    b = np.array(colours[1], dtype=np.float64)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    period = max(4.0, min(h, w) / rng.uniform(5, 8))
    if kind == "solid":
        t = np.zeros((h, w))
    elif kind == "hstripes":
        t = ((yy // period) % 2)
    elif kind == "dstripes":
        t = (((xx + yy) // period) % 2)
    elif kind == "checker":
        t = ((xx // period + yy // period) % 2)
    elif kind == "gradient":
        t = xx / max(1, w - 1)
    elif kind == "vgradient":
        t = yy / max(1, h - 1)
    elif kind == "planks":
        t = ((yy // (period * 1.5)) % 2) * 0.6 + rng.uniform(0, 0.15, size=(h, w))
    elif kind in ("noise", "fur", "speckle"):
        scale = {"noise": 0.5, "fur": 0.9, "speckle": 0.35}[kind]
        t = np.clip(rng.normal(0.5, scale / 2, size=(h, w)), 0, 1)
    elif kind == "spots":
        t = np.zeros((h, w))
        for _ in range(max(3, (h * w) // 700)):
            cy, cx, r = rng.uniform(0, h), rng.uniform(0, w), rng.uniform(2, max(3, min(h, w) / 8))
            t[(yy - cy) ** 2 + (xx - cx) ** 2 <= r * r] = 1
    else:
        raise ValueError(f"unknown texture {kind!r}")
    rgb = a[None, None, :] * (1 - t[..., None]) + b[None, None, :] * t[..., None]
    return rgb


def _background(kind: str, h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    noise = rng.normal(0, 1, size=(h, w))
    if kind == "grass":
        base = np.array([70, 150, 60]) + rng.uniform(-15, 15, 3)
        img = base + (noise * 18)[..., None] * np.array([0.6, 1.0, 0.5])
    elif kind == "sky":
        top, bottom = np.array([60, 120, 220]), np.array([170, 210, 250])
        t = (yy / max(1, h - 1))[..., None]
        img = top * (1 - t) + bottom * t + (noise * 3)[..., None]
        for _ in range(int(rng.integers(1, 4))):  # clouds
            cy, cx = rng.uniform(0, h), rng.uniform(0, w)
            ry, rx = rng.uniform(h / 14, h / 7), rng.uniform(w / 8, w / 4)
            img[((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1] = (245, 245, 250)
    elif kind == "wall":
        brick_h = rng.uniform(h / 14, h / 9)
        brick_w = brick_h * 2.2
        row = (yy // brick_h)
        mortar = ((yy % brick_h) < 2) | (((xx + (row % 2) * brick_w / 2) % brick_w) < 2)
        img = np.where(mortar[..., None], np.array([200, 195, 185.0]), np.array([165, 75, 55.0]) + (noise * 8)[..., None])
    elif kind == "floor":
        tile = rng.uniform(min(h, w) / 8, min(h, w) / 5)
        t = ((xx // tile + yy // tile) % 2)[..., None]
        img = np.array([215, 200, 170.0]) * (1 - t) + np.array([185, 170, 140.0]) * t + (noise * 4)[..., None]
    elif kind == "sand":
        img = np.array([225, 200, 150.0]) + (noise * 10)[..., None] * np.array([1.0, 0.9, 0.7])
    elif kind == "water":
        wave = np.sin(xx / rng.uniform(6, 12) + 2 * np.sin(yy / rng.uniform(8, 16)))
        img = np.array([40, 100, 160.0]) + (wave * 20)[..., None] * np.array([0.5, 0.8, 1.0]) + (noise * 4)[..., None]
    elif kind == "road":
        img = np.array([95, 95, 100.0]) + (noise * 9)[..., None]
        mid = h * rng.uniform(0.4, 0.6)
        dash = (np.abs(yy - mid) < max(2, h / 80)) & ((xx // max(8, w / 12)) % 2 == 0)
        img[dash] = (235, 235, 230)
    elif kind == "table":
        plank = rng.uniform(h / 9, h / 5)
        grain = np.sin(xx / rng.uniform(3, 7) + 3 * np.sin(yy / 20)) * 10
        t = ((yy // plank) % 2)[..., None]
        img = np.array([150, 95, 55.0]) * (1 - t) + np.array([130, 80, 45.0]) * t + grain[..., None] + (noise * 4)[..., None]
    else:
        raise ValueError(f"unknown background {kind!r}")
    return img


def _details(draw: ImageDraw.ImageDraw, category: str, P, s: float, rng: np.random.Generator) -> None:
    """Parts in other colours, drawn inside the object's outline (only masked pixels are kept).

    P maps shape units to image pixels (including a horizontal flip); s is pixels per unit.
    """

    def disc(cx: float, cy: float, r: float, colour) -> None:
        draw.polygon([P(x, y) for x, y in _circle(cx, cy, r)], fill=colour)

    if category == "person":
        disc(0.225, 0.12, 0.11, (235, 190, 150))
        draw.polygon([P(x, y) for x, y in _rect(0.10, 0.62, 0.35, 1.0)], fill=(40, 50, 90))
    elif category == "car":
        draw.polygon([P(x, y) for x, y in [(0.62, 0.16), (1.3, 0.16), (1.48, 0.42), (0.45, 0.42)]], fill=(190, 225, 245))
        disc(0.45, 0.8, 0.18, (25, 25, 25))
        disc(1.55, 0.8, 0.18, (25, 25, 25))
        disc(0.45, 0.8, 0.07, (180, 180, 180))
        disc(1.55, 0.8, 0.07, (180, 180, 180))
    elif category == "traffic light":
        for cy, colour in ((0.2, (230, 30, 30)), (0.5, (240, 200, 30)), (0.8, (40, 200, 70))):
            disc(0.19, cy, 0.12, colour)
    elif category == "stop sign":
        draw.polygon([P(x, y) for x, y in _octagon(0.4, 0.38, 0.38)], outline=(250, 250, 250), width=max(2, int(0.04 * s)))
        draw.polygon([P(x, y) for x, y in _rect(0.36, 0.76, 0.44, 1.0)], fill=(150, 150, 155))
        draw.polygon([P(x, y) for x, y in _rect(0.14, 0.34, 0.66, 0.42)], fill=(250, 250, 250))
    elif category == "cat":
        disc(0.36, 0.5, 0.06, (90, 190, 80))
        disc(0.64, 0.5, 0.06, (90, 190, 80))
        draw.polygon([P(x, y) for x, y in [(0.45, 0.66), (0.55, 0.66), (0.5, 0.73)]], fill=(240, 130, 150))
    elif category == "dog":
        draw.polygon([P(x, y) for x, y in _ellipse(0.12, 0.38, 0.08, 0.16)], fill=(60, 35, 15))
        disc(0.26, 0.28, 0.035, (10, 10, 10))
        disc(0.1, 0.42, 0.05, (10, 10, 10))
    elif category == "bottle":
        draw.polygon([P(x, y) for x, y in _rect(0.0, 0.55, 0.38, 0.78)], fill=(245, 240, 220))
        draw.polygon([P(x, y) for x, y in _rect(0.12, 0.0, 0.26, 0.06)], fill=(200, 170, 40))
    elif category == "cup":
        draw.polygon([P(x, y) for x, y in _ellipse(0.82, 0.5, 0.13, 0.11)], fill=(240, 240, 235))
        draw.polygon([P(x, y) for x, y in _rect(0.0, 0.1, 0.8, 0.18)], fill=(110, 70, 40))
    elif category == "banana":
        pts = _crescent(1.8)
        draw.polygon([P(x, y) for x, y in pts[:2] + pts[-2:]], fill=(110, 80, 30))
    elif category == "apple":
        draw.polygon([P(x, y) for x, y in _rect(0.47, 0.02, 0.54, 0.2)], fill=(110, 70, 30))
        draw.polygon([P(x, y) for x, y in _ellipse(0.66, 0.1, 0.13, 0.06)], fill=(60, 160, 50))
        disc(0.36, 0.45, 0.07, (255, 200, 200))
    elif category == "pizza":
        draw.polygon([P(x, y) for x, y in _rect(0.03, 0.05, 1.07, 0.15)], fill=(185, 120, 50))
        for _ in range(int(rng.integers(3, 7))):
            t, u = rng.uniform(0.2, 0.75), rng.uniform(-0.5, 0.5)
            half = 0.52 * (1 - t) - 0.09
            if half > 0.02:
                disc(0.55 + u * half * 2, 0.05 + t * 0.95, 0.06, (180, 30, 30))
    elif category == "teddy bear":
        disc(0.34, 0.26, 0.03, (20, 15, 10))
        disc(0.51, 0.26, 0.03, (20, 15, 10))
        disc(0.425, 0.36, 0.06, (225, 195, 150))
        disc(0.425, 0.34, 0.025, (20, 15, 10))
    elif category == "box":
        draw.polygon([P(x, y) for x, y in _rect(0.54, 0.15, 0.66, 1.0)], fill=(215, 190, 130))


# --- placing and drawing ----------------------------------------------------------

def _place(rng: np.random.Generator, taken: list[tuple[float, float, float, float]], width: int, height: int,
           bw: float, bh: float, margin: float = 4.0, tries: int = 60) -> tuple[float, float] | None:
    """Top-left corner of a bw x bh box that overlaps no taken box (None if none found)."""
    if bw > width - 2 * margin or bh > height - 2 * margin:
        return None
    for _ in range(tries):
        x = rng.uniform(margin, width - bw - margin)
        y = rng.uniform(margin, height - bh - margin)
        if all(x + bw + margin <= a or a + c + margin <= x or y + bh + margin <= b or b + d + margin <= y
               for a, b, c, d in taken):
            taken.append((x, y, bw, bh))
            return (x, y)
    return None


def _draw_shape(canvas: np.ndarray, category: str, x0: float, y0: float, s: float, flip: bool,
                rng: np.random.Generator, colour_jitter: np.ndarray) -> tuple[list[Polygon], np.ndarray]:
    """Draw one shape (box top-left x0,y0; s pixels per unit) into canvas; return polygons and mask."""
    spec = SHAPES[category]
    aspect = spec["aspect"]
    height, width = canvas.shape[:2]

    def to_image(pts: Polygon) -> Polygon:
        return [(round(x0 + ((aspect - x) if flip else x) * s, 2), round(y0 + y * s, 2)) for x, y in pts]

    polygons = [to_image(p) for p in spec["outline"]()]
    mask_img = Image.new("L", (width, height), 0)
    mdraw = ImageDraw.Draw(mask_img)
    for poly in polygons:
        mdraw.polygon(poly, fill=255)
    mask = np.asarray(mask_img) > 0

    ys, xs = np.nonzero(mask)
    if len(ys) == 0:
        return polygons, mask
    top, bottom, left, right = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    colours = [np.clip(np.array(c) + colour_jitter, 0, 255) for c in spec["colours"]]
    patch = _texture(spec["texture"], bottom - top, right - left, colours, rng)
    layer = np.zeros((height, width, 3), dtype=np.float64)
    layer[top:bottom, left:right] = patch
    detail_img = Image.fromarray(np.clip(np.rint(layer), 0, 255).astype(np.uint8))
    _details(ImageDraw.Draw(detail_img), category, lambda x, y: to_image([(x, y)])[0], s, rng)
    detail = np.asarray(detail_img).astype(np.float64)
    canvas[mask] = detail[mask]
    return polygons, mask


def draw_scene(rng: np.random.Generator, categories: list[str], n_clutter: int,
               crowd_share: float, rle_share: float) -> tuple[Image.Image, Scene]:
    """Draw a scene with the given categories (1-3 instances each) on a random background."""
    width = int(rng.integers(20, 33)) * 20   # 400..640
    height = int(rng.integers(15, 25)) * 20  # 300..480
    if width == height:
        width += 20
    background = BACKGROUNDS[int(rng.integers(len(BACKGROUNDS)))]
    canvas = _background(background, height, width, rng)
    scene = Scene(width=width, height=height, background=background)
    taken: list[tuple[float, float, float, float]] = []
    short = min(width, height)

    for category in categories:
        n_inst = int(rng.choice([1, 2, 3], p=[0.6, 0.3, 0.1]))
        for _ in range(n_inst):
            jitter = rng.uniform(-18, 18, size=3)
            if rng.random() < crowd_share:
                instance = _draw_crowd(canvas, category, rng, taken, jitter, short)
            else:
                aspect = SHAPES[category]["aspect"]
                area = (rng.uniform(0.22, 0.42) * short) ** 2 / max(1, len(categories) * 0.6)
                s = math.sqrt(area / aspect)             # box height in pixels
                s = min(s, 0.9 * height, 0.9 * width / aspect)
                spot = _place(rng, taken, width, height, aspect * s, s)
                if spot is None:
                    continue
                polygons, mask = _draw_shape(canvas, category, spot[0], spot[1], s, bool(rng.random() < 0.5), rng, jitter)
                instance = Instance(category=category, polygons=polygons, mask=mask, rle=bool(rng.random() < rle_share))
            if instance is not None and instance.mask.any():
                scene.instances.append(instance)

    for _ in range(n_clutter):
        kind = CLUTTER[int(rng.integers(len(CLUTTER)))]
        aspect = SHAPES[kind]["aspect"]
        s = rng.uniform(0.15, 0.3) * short / math.sqrt(aspect)
        spot = _place(rng, taken, width, height, aspect * s, s)
        if spot is not None:
            _draw_shape(canvas, kind, spot[0], spot[1], s, False, rng, rng.uniform(-10, 10, size=3))
            scene.clutter.append(kind)

    image = Image.fromarray(np.clip(np.rint(canvas), 0, 255).astype(np.uint8), mode="RGB")
    return image, scene


def _draw_crowd(canvas: np.ndarray, category: str, rng: np.random.Generator, taken: list,
                jitter: np.ndarray, short: int) -> Instance | None:
    """A cluster of small copies in one region, annotated as one iscrowd instance (RLE)."""
    height, width = canvas.shape[:2]
    aspect = SHAPES[category]["aspect"]
    rw = rng.uniform(0.35, 0.5) * short * max(1.0, math.sqrt(aspect))
    rh = rng.uniform(0.3, 0.45) * short
    spot = _place(rng, taken, width, height, rw, rh)
    if spot is None:
        return None
    rx, ry = spot
    s = rh / 2.6
    cols = max(1, int(rw // (aspect * s * 1.05)))
    mask = np.zeros((height, width), dtype=bool)
    polygons: list[Polygon] = []
    for row in range(2):
        for col in range(cols):
            if rng.random() < 0.2 and mask.any():
                continue  # gaps make the cluster irregular
            x0 = rx + col * aspect * s * 1.05 + rng.uniform(0, 0.05) * s
            y0 = ry + row * s * 1.3 + rng.uniform(0, 0.2) * s
            if x0 + aspect * s > rx + rw or y0 + s > ry + rh:
                continue
            polys, m = _draw_shape(canvas, category, x0, y0, s, bool(rng.random() < 0.5), rng, jitter)
            polygons.extend(polys)
            mask |= m
    return Instance(category=category, polygons=polygons, mask=mask, iscrowd=True, rle=True)


# --- COCO annotation records -------------------------------------------------------

def uncompressed_rle(mask: np.ndarray) -> dict:
    """COCO's uncompressed RLE (used for iscrowd): run lengths over the column-major mask, zeros first."""
    flat = np.asarray(mask, dtype=np.uint8).flatten(order="F")
    change = np.flatnonzero(np.diff(flat)) + 1
    bounds = np.concatenate([[0], change, [flat.size]])
    counts = np.diff(bounds).tolist()
    if flat.size and flat[0] == 1:
        counts = [0] + counts
    return {"counts": counts, "size": [int(mask.shape[0]), int(mask.shape[1])]}


def annotation_record(instance: Instance, annotation_id: int, image_id: int, height: int, width: int) -> dict:
    """The COCO `annotations` entry: polygons, compressed RLE, or (crowd) uncompressed RLE."""
    fortran = np.asfortranarray(instance.mask.astype(np.uint8))
    exact = mask_utils.encode(fortran)
    if instance.iscrowd:
        segmentation = uncompressed_rle(instance.mask)
        rle = exact
    elif instance.rle:
        segmentation = {"size": [height, width], "counts": exact["counts"].decode("ascii")}
        rle = exact
    else:
        segmentation = [[coord for point in poly for coord in point] for poly in instance.polygons]
        rle = mask_utils.merge(mask_utils.frPyObjects(segmentation, height, width))
    bbox = [round(float(v), 2) for v in mask_utils.toBbox(rle)]
    return {
        "segmentation": segmentation,
        "area": float(mask_utils.area(rle)),
        "iscrowd": int(instance.iscrowd),
        "image_id": image_id,
        "bbox": bbox,
        "category_id": CATEGORY_BY_NAME[instance.category]["id"],
        "id": annotation_id,
    }
