"""The conda environments pin exactly the versions the pip install path pins."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
ENV_FILES = sorted((ROOT / "envs").glob("*.yaml"))


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def pip_pins() -> dict[str, str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    requirements = project["dependencies"] + [r for group in project["optional-dependencies"].values() for r in group]
    pins = {}
    for requirement in requirements:
        name, _, version = requirement.partition("==")
        assert version, f"pyproject.toml: {requirement!r} is not pinned with =="
        pins[normalize(name)] = version
    return pins


def test_there_are_env_files() -> None:
    assert {p.stem for p in ENV_FILES} >= {"data", "stan", "analysis"}


@pytest.mark.parametrize("env_file", ENV_FILES, ids=lambda p: p.name)
def test_env_pins_match_pip(env_file: Path) -> None:
    env = yaml.safe_load(env_file.read_text())
    assert env["channels"][:2] == ["conda-forge", "bioconda"] and "nodefaults" in env["channels"]
    pins = pip_pins()
    checked = 0
    for dependency in env["dependencies"]:
        entries = dependency["pip"] if isinstance(dependency, dict) else [dependency]
        for entry in entries:
            name, sep, version = entry.partition("==")
            assert sep, f"{env_file.name}: {entry!r} is not pinned with =="
            key = normalize(name)
            if key in pins:
                assert version == pins[key], f"{env_file.name}: {name}=={version} but pyproject pins {pins[key]}"
                checked += 1
            else:
                # Only the interpreter, pip and CmdStan itself are conda-only.
                assert key in {"python", "pip", "cmdstan"}, f"{env_file.name}: {name} is not pinned in pyproject.toml"
    assert checked >= 5
