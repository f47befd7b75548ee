"""Stage settings: a config slice (JSON on the command line) into a small dataclass.

Rules pass exactly the config slice a stage uses through `params:` as JSON, so Snakemake
reruns the stage when that slice changes; the stage turns it into its own dataclass.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any, TypeVar

from .errors import InputError

T = TypeVar("T")


def settings_from_dict(cls: type[T], values: dict[str, Any], where: str = "settings") -> T:
    """Build dataclass `cls` from `values`, refusing unknown and missing keys by name."""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise InputError(where, f"unknown setting(s) {unknown} for {cls.__name__}; expected {sorted(fields)}")
    missing = [
        name for name, f in fields.items()
        if name not in values and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    ]
    if missing:
        raise InputError(where, f"missing setting(s) {missing} for {cls.__name__}")
    return cls(**values)


def settings_from_json(cls: type[T], text: str, where: str = "--settings") -> T:
    try:
        values = json.loads(text)
    except json.JSONDecodeError as err:
        raise InputError(where, f"not valid JSON ({err})") from None
    if not isinstance(values, dict):
        raise InputError(where, "expected a JSON object")
    return settings_from_dict(cls, values, where)
