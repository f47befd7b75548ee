"""Reading the report back in the tests: the page's numbers and images, and whether a
figure's texts are legible (inside the figure, not overlapping)."""

from __future__ import annotations

from html.parser import HTMLParser

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg


class Page(HTMLParser):
    """The page's numbers (spans of class value), images, table ids, tags used."""

    def __init__(self, text: str):
        super().__init__()
        self.values, self.images, self.ids, self.tags = [], [], set(), set()
        self._open: dict | None = None
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.tags.add(tag)
        if "id" in attrs:
            self.ids.add(attrs["id"])
        if tag == "img":
            self.images.append(attrs)
        if tag == "span" and attrs.get("class", "").startswith("value"):
            self._open = {**attrs, "text": ""}

    def handle_data(self, data):
        if self._open is not None:
            self._open["text"] += data

    def handle_endtag(self, tag):
        if tag == "span" and self._open is not None:
            self.values.append(self._open)
            self._open = None


# ---------------------------------------------------------------- legibility helpers


def drawn(fig):
    FigureCanvasAgg(fig)
    fig.canvas.draw()
    return fig.canvas.get_renderer()


def texts_outside_figure(fig) -> list:
    """Whether anything drawn (titles, labels, tick labels, legends) reaches outside the
    figure, where it would be cut: [] if not, else the bounding box of the drawing (inches)."""
    renderer = drawn(fig)
    box = fig.get_tightbbox(renderer)
    width, height = fig.get_size_inches()
    inside = box.x0 >= -0.02 and box.y0 >= -0.02 and box.x1 <= width + 0.02 and box.y1 <= height + 0.02
    return [] if inside else [box.bounds, (width, height)]


def overlapping(texts, renderer, axis: str) -> list[tuple[str, str]]:
    """Pairs of neighbouring texts whose boxes overlap along `axis`."""
    boxes = sorted(((t.get_window_extent(renderer), t.get_text()) for t in texts if t.get_text().strip()),
                   key=lambda b: b[0].y0 if axis == "y" else b[0].x0)
    pairs = []
    for (a, name_a), (b, name_b) in zip(boxes, boxes[1:]):
        if (axis == "y" and a.y1 > b.y0 + 0.5) or (axis == "x" and a.x1 > b.x0 + 0.5):
            pairs.append((name_a, name_b))
    return pairs


def many_categories(categories: pd.DataFrame, n: int) -> pd.DataFrame:
    rows = pd.concat([categories] * (n // len(categories) + 1), ignore_index=True).iloc[:n].copy()
    rows["category"] = [f"category name {k:02d}" for k in range(n)]
    rows["as_object_mean"] = np.linspace(0.05, 0.9, n)
    return rows
