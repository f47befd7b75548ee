"""Stage settings: a config slice (JSON on the command line) into a small dataclass.

Rules pass exactly the config slice a stage uses through `params:` as JSON, so Snakemake
reruns the stage when that slice changes; the stage turns it into its own dataclass.
Given `section` (the slice's dotted config path, e.g. "scores"), keys the slice leaves out
take the schema's defaults (src/vgsalign/config.schema.yaml), so a hand-run step needs
only the settings it changes; unknown keys are refused by name either way.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any, TypeVar

from .errors import InputError

T = TypeVar("T")


def settings_from_dict(cls: type[T], values: dict[str, Any], where: str = "settings", section: str | None = None) -> T:
    """Build dataclass `cls` from `values`, refusing unknown and missing keys by name.

    With `section`, the fields of `cls` that `values` lacks are filled from the schema's
    defaults of that config section first.
    """
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise InputError(where, f"unknown setting(s) {unknown} for {cls.__name__}; expected {sorted(fields)}")
    values = dict(values)
    if section is not None:
        from .config import section_defaults  # the schema is read only when defaults are asked for

        defaults = section_defaults(section)
        values.update({name: defaults[name] for name in fields if name not in values and name in defaults})
    missing = [
        name for name, f in fields.items()
        if name not in values and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    ]
    if missing:
        raise InputError(where, f"missing setting(s) {missing} for {cls.__name__}")
    return cls(**values)


def json_object(text: str, where: str) -> dict[str, Any]:
    """A JSON object given as text (a command-line option), or one line naming `where`."""
    try:
        values = json.loads(text)
    except json.JSONDecodeError as err:
        raise InputError(where, f"not valid JSON ({err})") from None
    if not isinstance(values, dict):
        raise InputError(where, "expected a JSON object")
    return values


def settings_from_json(cls: type[T], text: str, where: str = "settings", section: str | None = None) -> T:
    """`settings_from_dict` on a JSON object given as text (a command-line option)."""
    return settings_from_dict(cls, json_object(text, where), where, section=section)
