"""MSCOCO instances files: a pycocotools index, and the image ids a split has."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

from ..errors import InputError


def open_coco(instances_json: Path):
    """A pycocotools COCO index of an instances file; a missing or malformed file is an InputError."""
    from pycocotools.coco import COCO

    if not instances_json.is_file():
        raise InputError(instances_json, "instances file not found")
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress
            return COCO(str(instances_json))
    except (json.JSONDecodeError, KeyError, TypeError, ValueError, AssertionError) as err:
        raise InputError(instances_json, f"not a COCO instances file ({type(err).__name__}: {err})") from None
