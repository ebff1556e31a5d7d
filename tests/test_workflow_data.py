"""The data stage through Snakemake on a tiny dataset, the failure path, lint and format."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
SNAKEMAKE = [sys.executable, "-m", "snakemake"]


def run_snakemake(workdir: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*SNAKEMAKE, "--snakefile", str(ROOT / "Snakefile"), "--cores", "1", *args],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=workdir,
    )


@pytest.fixture
def workdir(tmp_path: Path, tiny_input: dict) -> Path:
    """A working directory with a config for the tiny dataset (as a user's new study would be)."""
    config = {
        "dataset": "tiny",
        "input": tiny_input,
        "design": {"formula": "nutrient * fence", "blocking": ["site", "block"]},
        "filtering": {"min_depth": 100, "min_prevalence": 0.1},
    }
    (tmp_path / "study.yaml").write_text(yaml.safe_dump(config))
    return tmp_path


def test_data_stage_runs(workdir: Path) -> None:
    result = run_snakemake(workdir, "data", "--configfile", "study.yaml")
    assert result.returncode == 0, result.stderr[-3000:]
    out = workdir / "results" / "tiny" / "data"
    counts = pd.read_csv(out / "counts.tsv", sep="\t", index_col=0)
    assert counts.shape == (32, 6)  # t6 (prevalence 0.25) survives a 10% cut
    design = pd.read_csv(out / "design.tsv", sep="\t", index_col=0)
    assert list(design.columns) == ["nutrient[yes]", "fence[open]", "nutrient[yes]:fence[open]"]
    blocks = pd.read_csv(out / "blocks.tsv", sep="\t", index_col=0, dtype=str)
    assert sorted(blocks["block"].unique()) == ["A/1", "A/2", "B/1", "B/2"]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["samples_kept"] == 32 and summary["blocking_levels"] == 6
    assert (workdir / "logs" / "tiny" / "filter_counts.log").read_text().count("done in") >= 2


def test_bad_input_stops_before_anything_is_written(workdir: Path) -> None:
    metadata = Path(yaml.safe_load((workdir / "study.yaml").read_text())["input"]["metadata"])
    metadata.write_text(metadata.read_text().replace("s03\t", "zz3\t"))
    result = run_snakemake(workdir, "data", "--configfile", "study.yaml")
    assert result.returncode != 0
    assert "1 sample id(s) not in the metadata: 's03'" in result.stderr
    results = workdir / "results"
    leftovers = [p for p in results.rglob("*") if p.is_file()] if results.exists() else []
    assert leftovers == []


def test_config_override_changes_dataset_namespace(workdir: Path) -> None:
    result = run_snakemake(workdir, "data", "--configfile", "study.yaml", "--config", "dataset=tiny2")
    assert result.returncode == 0, result.stderr[-3000:]
    assert (workdir / "results" / "tiny2" / "data" / "counts.tsv").exists()
    assert not (workdir / "results" / "tiny").exists()


def test_missing_engine_stops_with_one_clear_line(workdir: Path) -> None:
    """Asking for CmdStan where there is none: the compile job fails with the install hint, no traceback."""
    from mimix.engines import cmdstan_available

    if cmdstan_available():
        pytest.skip("CmdStan is installed here, so engine cmdstanpy is available")
    target = "results/tiny/mimix_nofactor/compiled.json"
    result = run_snakemake(workdir, target, "--configfile", "study.yaml", "--config", "sampling={engine: cmdstanpy}")
    assert result.returncode != 0
    log = (workdir / "logs" / "tiny" / "mimix_nofactor" / "compile.log").read_text()
    errors = [line for line in log.splitlines() if "ERROR" in line]
    assert len(errors) == 1 and "conda install -c conda-forge cmdstan" in errors[0], log
    assert "Traceback" not in log and "Traceback" not in result.stderr
    assert not (workdir / target).exists()


def test_schema_rejects_unknown_option(workdir: Path) -> None:
    result = run_snakemake(workdir, "-n", "--configfile", "study.yaml", "--config", "dataset=bad name")
    assert result.returncode != 0
    assert "does not match" in result.stdout + result.stderr


def test_lint_is_clean() -> None:
    result = subprocess.run(
        [*SNAKEMAKE, "--lint", "--directory", str(ROOT)], capture_output=True, text=True, timeout=300, cwd=ROOT
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Lints for" not in result.stdout + result.stderr


def test_snakefmt_is_clean() -> None:
    files = [ROOT / "Snakefile", *sorted((ROOT / "workflow" / "rules").glob("*.smk"))]
    result = subprocess.run(
        [sys.executable, "-m", "snakefmt", "--check", *map(str, files)], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr
