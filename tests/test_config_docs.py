"""Every option of the config schema is documented in config/README.md; the demo config is valid."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from snakemake.utils import validate

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = ROOT / "workflow" / "schemas" / "config.schema.yaml"


def option_paths(node: dict, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    paths = []
    for name, child in node.get("properties", {}).items():
        path = (*prefix, name)
        paths += option_paths(child, path) if child.get("properties") else [path]
    return paths


@pytest.mark.parametrize("path", option_paths(yaml.safe_load(SCHEMA.read_text())), ids=".".join)
def test_option_documented(path: tuple[str, ...]) -> None:
    docs = (ROOT / "config" / "README.md").read_text()
    # Documented either by its full dotted name or by its leaf name in its section's table.
    assert f"`{'.'.join(path)}`" in docs or f"| `{path[-1]}` |" in docs, f"{'.'.join(path)} is not in config/README.md"


def test_demo_config_is_valid_and_defaults_fill_in() -> None:
    config = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    validate(config, str(SCHEMA))
    assert config["sampling"]["engine"] in {"auto", "cmdstanpy", "pystan"}
    assert config["inference"]["global_tests"]["threshold"] == 0.9
