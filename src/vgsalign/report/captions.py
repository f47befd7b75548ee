"""The captions of the report's figures, from one file (captions.yaml, package data).

The HTML page shows them under its figures; workflow/report/*.rst, the captions of
Snakemake's `report()`, are generated from the same file (`--write DIR`), and a test
checks that the committed ones equal what this module generates. In the YAML, text in
backticks names a file or a setting: <code> on the page, an inline literal in RST.
"""

from __future__ import annotations

import argparse
import html
import re
import sys
import textwrap
from dataclasses import dataclass
from functools import cache
from importlib.resources import files
from pathlib import Path

import yaml

from ..atomic import write_text
from ..errors import InputError

_CODE = re.compile(r"`([^`]+)`")
_HEADER = ".. Generated from src/vgsalign/report/captions.yaml by `python -m vgsalign.report.captions`; edit that file.\n\n"


@dataclass(frozen=True)
class Caption:
    name: str
    rst: str       # file name under workflow/report/
    text: str      # with `code` spans

    def html(self) -> str:
        """The caption as HTML: escaped, code spans as <code>."""
        parts = _CODE.split(self.text)
        return "".join(f"<code>{html.escape(p)}</code>" if k % 2 else html.escape(p) for k, p in enumerate(parts))

    def rst_text(self) -> str:
        """The caption as an RST file (code spans as inline literals, lines of at most 88)."""
        body = _CODE.sub(r"``\1``", self.text)
        return _HEADER + textwrap.fill(body, width=88, break_long_words=False, break_on_hyphens=False) + "\n"


@cache
def captions() -> dict[str, Caption]:
    """Every caption by name, from captions.yaml."""
    data = yaml.safe_load(files(__package__).joinpath("captions.yaml").read_text(encoding="utf-8"))
    return {name: Caption(name, entry["rst"], " ".join(str(entry["text"]).split())) for name, entry in data.items()}


def caption(name: str) -> Caption:
    return captions()[name]


def stale_rst(folder: Path) -> list[str]:
    """The .rst files of `folder` that differ from the generated ones (or are missing)."""
    stale = []
    for entry in captions().values():
        path = folder / entry.rst
        if not path.is_file() or path.read_text(encoding="utf-8") != entry.rst_text():
            stale.append(str(path))
    return stale


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m vgsalign.report.captions",
                                     description="Write or check the Snakemake report captions (.rst).")
    action = parser.add_mutually_exclusive_group(required=True)
    action.add_argument("--write", type=Path, metavar="DIR", help="write every caption's .rst into DIR")
    action.add_argument("--check", type=Path, metavar="DIR", help="exit 2 if DIR's .rst differ from captions.yaml")
    args = parser.parse_args(argv)
    if args.write:
        for entry in captions().values():
            write_text(entry.rst_text(), args.write / entry.rst)
        print(f"wrote {len(captions())} captions into {args.write}")
        return 0
    stale = stale_rst(args.check)
    if stale:
        raise InputError(args.check, f"captions differ from captions.yaml: {', '.join(stale)}; "
                                     "run python -m vgsalign.report.captions --write " + str(args.check))
    print(f"{args.check}: {len(captions())} captions up to date")
    return 0


if __name__ == "__main__":
    from ..cli import run_main

    sys.exit(run_main("captions", main))
