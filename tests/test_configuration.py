"""Command-line config values get the schema's types (Snakemake hands nested --config values over as text)."""

from __future__ import annotations

from pathlib import Path

import yaml

from mimix.configuration import coerce_config_strings

SCHEMA = yaml.safe_load(
    (Path(__file__).resolve().parents[1] / "workflow" / "schemas" / "config.schema.yaml").read_text()
)


def test_nested_numbers_and_booleans_are_converted() -> None:
    config = {
        "dataset": "demo",
        "sampling": {"draws": "500", "adapt_delta": "0.95", "engine": "pystan"},
        "design": {"nested_blocking": "false", "blocking": ["site", "block"]},
        "inference": {"local_tests": {"interval_level": "0.9"}},
    }
    out = coerce_config_strings(config, SCHEMA)
    assert out["sampling"] == {"draws": 500, "adapt_delta": 0.95, "engine": "pystan"}
    assert out["design"] == {"nested_blocking": False, "blocking": ["site", "block"]}
    assert out["inference"]["local_tests"]["interval_level"] == 0.9
    assert config["sampling"]["draws"] == "500"  # the input is not modified


def test_strings_stay_strings_and_bad_numbers_are_left_for_the_validator() -> None:
    out = coerce_config_strings({"dataset": "123", "sampling": {"draws": "many"}}, SCHEMA)
    assert out == {"dataset": "123", "sampling": {"draws": "many"}}
