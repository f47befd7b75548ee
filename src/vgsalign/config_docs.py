"""Texts generated from the config schema, so that defaults and meanings have one source:

- `defaults_yaml`: the full default config as commented YAML (`vgsalign check-config --defaults`);
- `config_markdown`: docs/config.md, every key with its default, allowed values and meaning
  (`python -m vgsalign.config_docs > docs/config.md`; a test keeps the file in step).
"""

from __future__ import annotations

import textwrap

import yaml

from .config import CROSS_CHECKS, SCHEMA_PATH, resolve_ref, load_schema

WIDTH = 92


def _flow(value) -> str:
    """A value as one line of YAML (flow style)."""
    return yaml.safe_dump(value, default_flow_style=True, width=10**6).splitlines()[0]


def _sections(node: dict, schema: dict, path: tuple[str, ...] = ()):
    """(dotted key, resolved property schema) of every key under `node`, depth first."""
    for name, prop in node.get("properties", {}).items():
        yield (*path, name), resolve_ref(prop, schema)
        yield from _sections(resolve_ref(prop, schema), schema, (*path, name))


def _is_section(prop: dict) -> bool:
    return "properties" in prop


def _comment(text: str, indent: str) -> list[str]:
    return textwrap.wrap(" ".join(text.split()), WIDTH - len(indent) - 2, break_on_hyphens=False,
                         initial_indent=f"{indent}# ", subsequent_indent=f"{indent}# ")


def defaults_yaml(schema: dict | None = None) -> str:
    """The whole default config as YAML, each key preceded by its meaning as a comment."""
    schema = load_schema() if schema is None else schema
    lines = _comment(schema.get("description", ""), "")
    for path, prop in _sections(schema, schema):
        indent = "  " * (len(path) - 1)
        if len(path) == 1:
            lines.append("")
        lines += _comment(prop.get("description", ""), indent)
        value = "" if _is_section(prop) else " " + _flow(prop["default"])
        lines.append(f"{indent}{path[-1]}:{value}")
    return "\n".join(lines) + "\n"


def _number_bounds(prop: dict) -> list[str]:
    bounds = []
    for key, sign in (("minimum", ">="), ("exclusiveMinimum", ">"), ("maximum", "<="), ("exclusiveMaximum", "<")):
        if key in prop:
            bounds.append(f"{sign} {prop[key]}")
    return bounds


def allowed_values(prop: dict, schema: dict) -> str:
    """What a key accepts, in words (from its enum, type, bounds, pattern, items)."""
    prop = resolve_ref(prop, schema)
    if "enum" in prop:
        return "one of " + ", ".join(f"`{v}`" for v in prop["enum"])
    kind = prop.get("type")
    if isinstance(kind, list) and "null" in kind:
        rest = {**prop, "type": [k for k in kind if k != "null"][0]}
        return f"{allowed_values(rest, schema)}, or null"
    if kind == "boolean":
        return "true or false"
    if kind in ("integer", "number"):
        return " ".join(["an integer" if kind == "integer" else "a number", " and ".join(_number_bounds(prop))]).strip()
    if kind == "string":
        return f"text matching `{prop['pattern']}`" if "pattern" in prop else "non-empty text" if prop.get("minLength") else "text"
    if kind == "array":
        low, high = prop.get("minItems"), prop.get("maxItems")
        count = f"{low}" if low == high and low else "one or more" if low == 1 else f"at least {low}" if low else "any number of"
        distinct = " distinct" if prop.get("uniqueItems") else ""
        return f"a list of {count}{distinct} items, each {allowed_values(prop.get('items', {}), schema)}"
    if kind == "object" and isinstance(prop.get("additionalProperties"), dict):
        names = prop.get("propertyNames", {}).get("pattern")
        key = f"names matching `{names}`" if names else "names"
        return f"a mapping of {key} to {allowed_values(prop['additionalProperties'], schema)}"
    return "any value"


def _cell(text: str) -> str:
    """Text for a Markdown table cell: one line, pipes escaped, <...> shown as written."""
    parts = " ".join(text.split()).replace("|", "\\|").split("`")
    return "`".join(p.replace("<", "&lt;").replace(">", "&gt;") if i % 2 == 0 else p for i, p in enumerate(parts))


INTRO = """\
# Configuration

<!-- Generated from src/vgsalign/config.schema.yaml by `python -m vgsalign.config_docs > docs/config.md`;
edit the schema, not this file. -->

Every setting of vgsalign, with its default, the values it accepts and what it means. A
config file sets only what differs from these defaults: the workflow fills every key a file
leaves out from `src/vgsalign/config.schema.yaml` before any rule reads it, so each step gets
complete settings. `config.yaml` is the demo run's short config.

Files given as `snakemake --configfile base.yaml overlay.yaml` are layered: a later file
overrides an earlier one key by key (mappings merge, lists and other values are replaced),
e.g. `--configfile config.yaml config/original_model.yaml` for the original model's sizes.

`vgsalign check-config base.yaml overlay.yaml` checks files layered the same way, without
running anything: every problem is printed once, on one line naming the key, the value and
what is expected, schema violations and problems between keys together.
`vgsalign check-config --defaults` prints the whole default config as commented YAML.

Checks between keys (they stop the workflow at startup):
"""


def config_markdown(schema: dict | None = None) -> str:
    """docs/config.md: one table per top-level section."""
    schema = load_schema() if schema is None else schema
    out = [INTRO]
    for _, check in CROSS_CHECKS:
        out += textwrap.wrap(" ".join(check.__doc__.split()), WIDTH, initial_indent="- ", subsequent_indent="  ",
                             break_on_hyphens=False)
    for name, prop in schema["properties"].items():
        section = resolve_ref(prop, schema)
        out += ["", f"## `{name}`", "", _cell(section.get("description", "")), "",
                "| key | default | allowed values | meaning |", "| --- | --- | --- | --- |"]
        for path, leaf in _sections(section, schema, (name,)):
            if _is_section(leaf):
                continue
            out.append(f"| `{'.'.join(path)}` | `{_flow(leaf['default'])}` | {_cell(allowed_values(leaf, schema))} "
                       f"| {_cell(leaf.get('description', ''))} |")
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    print(config_markdown(load_schema(SCHEMA_PATH)), end="")
