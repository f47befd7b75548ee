"""HTML pieces of the report: escaped text, numbers that say where they come from, tables,
figures (embedded PNGs, also written as files), YAML blocks, and the style sheet.

Every number on the page is a `<span class="value">` with `data-source` (the result file,
relative to the results folder), `data-path` (key path or table cell) and `data-value`
(the exact value), so a test can compare the page with the files. A number the page
computes from a file (a chance-corrected score) carries `data-derived` (what was computed)
instead of `data-source`, with `data-table` and `data-path` naming its inputs.
"""

from __future__ import annotations

import base64
import html
import json
import math
from dataclasses import dataclass
from functools import cache
from importlib.resources import files
from pathlib import Path
from typing import Any, Sequence

import yaml

from ..atomic import atomic_path
from .figures import DPI, png_bytes


def esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


@cache
def style_sheet() -> str:
    """report.css, the package's style sheet, inlined into every page."""
    return files(__package__).joinpath("report.css").read_text(encoding="utf-8")


def format_number(value: Any, digits: int | None = 3) -> str:
    """Counts with thousands separators, shares with `digits` decimals, missing as an en dash."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if digits is None or (isinstance(value, int) and not isinstance(value, bool)):
        return f"{int(value):,}"
    return f"{float(value):.{digits}f}"


def _exact(value: Any, digits: int | None) -> str:
    if value is None:
        return ""
    return repr(float(value)) if digits is not None else str(int(value))


def number(value: Any, source: str, path: Sequence, digits: int | None = 3) -> str:
    """A number as shown, with where it comes from (data-source, data-path) and its exact value."""
    return (f'<span class="value" data-source="{esc(source)}" data-path="{esc(json.dumps(list(path)))}" '
            f'data-value="{esc(_exact(value, digits))}">{esc(format_number(value, digits))}</span>')


def derived_number(value: Any, derived: str, table: str, path: Sequence, digits: int = 3, css: str = "") -> str:
    """A number the page computed (`derived` names how) from the cell `path` of `table`."""
    classes = f"value {css}".strip()
    return (f'<span class="{classes}" data-derived="{esc(derived)}" data-table="{esc(table)}" '
            f'data-path="{esc(json.dumps(list(path)))}" data-value="{esc(_exact(value, digits))}">'
            f"{esc(format_number(value, digits))}</span>")


def table(header: Sequence[str], rows: Sequence[Sequence[str]], table_id: str, numeric_from: int = 1,
          caption: str = "") -> str:
    """An HTML table; cells are HTML already (escaped by their makers); columns from
    `numeric_from` on are right-aligned numbers."""
    def cell(tag: str, content: str, j: int) -> str:
        return f'<{tag}{" class=num" if j >= numeric_from else ""}>{content}</{tag}>'

    head = "".join(cell("th", esc(h), j) for j, h in enumerate(header))
    body = "\n".join("<tr>" + "".join(cell("td", c, j) for j, c in enumerate(row)) + "</tr>" for row in rows)
    title = f"<caption>{esc(caption)}</caption>" if caption else ""
    return f'<table id="{esc(table_id)}">{title}<thead><tr>{head}</tr></thead>\n<tbody>\n{body}\n</tbody></table>'


@dataclass
class Picture:
    name: str          # file stem under the figures folder
    title: str
    caption_html: str  # the caption, HTML already (vgsalign.report.captions)
    png: bytes
    width: int
    height: int
    full_size: bool = False    # shown at its own size, scrolling sideways, instead of shrunk to the page

    def html(self) -> str:
        data = base64.b64encode(self.png).decode("ascii")
        image = (f'<img src="data:image/png;base64,{data}" alt="{esc(self.title)}" '
                 f'width="{self.width}" height="{self.height}">')
        if self.full_size:
            image = f'<div class="full-size">{image}</div>'
        return (f'<figure id="figure-{esc(self.name)}">{image}'
                f"<figcaption><strong>{esc(self.title)}.</strong> {self.caption_html}</figcaption></figure>")


def picture(name: str, title: str, caption_html: str, fig, figures_dir: Path, full_size: bool = False) -> Picture:
    """Render a figure once: the PNG file for Snakemake's report and the bytes for the page."""
    png = png_bytes(fig, DPI)
    with atomic_path(figures_dir / f"{name}.png") as tmp:
        tmp.write_bytes(png)
    width, height = (int(round(v * DPI)) for v in fig.get_size_inches())
    return Picture(name, title, caption_html, png, width, height, full_size)


class _SettingsDumper(yaml.SafeDumper):
    """YAML with one key per line and lists of plain values on one line ([NN, NNS])."""


def _represent_list(dumper: yaml.SafeDumper, data: list):
    flat = all(not isinstance(v, (list, tuple, dict)) for v in data)
    return dumper.represent_sequence("tag:yaml.org,2002:seq", data, flow_style=flat)


_SettingsDumper.add_representer(list, _represent_list)


def yaml_block(heading: str, data: dict, sort_keys: bool = False) -> str:
    """A settings dictionary as readable YAML under a heading."""
    text = yaml.dump(data, Dumper=_SettingsDumper, sort_keys=sort_keys, width=110, default_flow_style=False)
    return f"<h3>{esc(heading)}</h3>\n<pre>{esc(text)}</pre>"


def document(title: str, header: str, sections: list[tuple[str, str, str]], contents_after: int = 1) -> str:
    """The whole page: header, then the sections (id, heading, body), with the table of
    contents after the first `contents_after` sections (the scores come first)."""
    toc = "".join(f'<li><a href="#{esc(sid)}">{esc(heading)}</a></li>' for sid, heading, _ in sections)
    parts = [f'<section id="{esc(sid)}"><h2>{esc(heading)}</h2>\n{content}\n</section>'
             for sid, heading, content in sections]
    parts.insert(contents_after, f'<nav><h2>Contents</h2><ol>{toc}</ol></nav>')
    body = "\n".join(parts)
    return (f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">\n'
            f"<title>{esc(title)}</title>\n<style>{style_sheet()}</style>\n</head>\n<body>\n<main>\n{header}\n"
            f"{body}\n</main>\n</body>\n</html>\n")
