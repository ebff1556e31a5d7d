"""Config values given on the command line, made to match the schema's types before validation.

Snakemake parses nested ``--config`` values (``--config 'sampling={draws: 500}'``) with YAML's base
loader, so every nested scalar arrives as a string and the schema would reject ``'500'``. Users expect
that command to work, so strings are converted where the schema asks for a number or a boolean.
"""

from __future__ import annotations

from typing import Any

TRUE_WORDS = {"true", "yes", "on"}
FALSE_WORDS = {"false", "no", "off"}


def _coerce_scalar(value: str, types: list[str]) -> Any:
    text = value.strip()
    if "boolean" in types and text.lower() in TRUE_WORDS | FALSE_WORDS:
        return text.lower() in TRUE_WORDS
    if "integer" in types:
        try:
            return int(text)
        except ValueError:
            pass
    if "number" in types:
        try:
            number = float(text)
        except ValueError:
            return value
        return int(number) if number.is_integer() and "integer" in types else number
    if "null" in types and text.lower() in {"null", "none", "~"}:
        return None
    return value


def coerce_config_strings(config: Any, schema: dict) -> Any:
    """A copy of ``config`` with strings turned into the numbers/booleans the schema expects.

    Only plain ``type``/``properties``/``items`` schemas are followed (what the workflow's schema uses);
    a string that does not parse is left alone so the validator reports it with its usual message.
    """
    types = schema.get("type", [])
    types = [types] if isinstance(types, str) else list(types)
    if isinstance(config, dict):
        properties = schema.get("properties", {})
        extra = schema.get("additionalProperties")
        out = {}
        for key, value in config.items():
            sub = properties.get(key, extra if isinstance(extra, dict) else {})
            out[key] = coerce_config_strings(value, sub)
        return out
    if isinstance(config, list):
        items = schema.get("items", {})
        return [coerce_config_strings(value, items if isinstance(items, dict) else {}) for value in config]
    if isinstance(config, str) and "string" not in types and types:
        return _coerce_scalar(config, types)
    return config
