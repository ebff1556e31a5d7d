"""The documentation cannot rot: every shell block of docs/walkthrough.md runs, in order, in a copy of
the project, and the files it tells the reader to look at exist."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]
WALKTHROUGH = ROOT / "docs" / "walkthrough.md"
PROJECT_PARTS = ("Snakefile", "workflow", "config", "envs", "profiles", "resources", "src")


def shell_blocks(markdown: str) -> list[str]:
    return re.findall(r"```bash\n(.*?)```", markdown, flags=re.DOTALL)


def test_walkthrough_has_the_steps() -> None:
    blocks = shell_blocks(WALKTHROUGH.read_text())
    commands = "\n".join(blocks)
    assert len(blocks) >= 6
    for step in ("python -m mimix.simulate", "snakemake --cores 2 data", "snakemake --cores 2 --configfile",
                 "snakemake --report"):  # fmt: skip
        assert step in commands


def test_documents_link_to_existing_files() -> None:
    for doc in [*(ROOT / "docs").glob("*.md"), ROOT / "README.md"]:
        for target in re.findall(r"\]\(([^)#:]+?)(?:#[^)]*)?\)", doc.read_text()):
            assert (doc.parent / target).exists(), f"{doc.name} links to missing {target}"


@pytest.mark.slow
def test_walkthrough_commands_run(tmp_path: Path) -> None:
    project = tmp_path / "project"
    project.mkdir()
    for part in PROJECT_PARTS:
        source = ROOT / part
        if source.is_dir():
            shutil.copytree(source, project / part, ignore=shutil.ignore_patterns("__pycache__", "results"))
        else:
            shutil.copy(source, project / part)
    script = "set -euo pipefail\n" + "\n".join(shell_blocks(WALKTHROUGH.read_text()))
    env = dict(os.environ)
    # `python` and `snakemake` are the project's environment, as after `source .venv/bin/activate`.
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    env["PYTHONPATH"] = str(project / "src")
    result = subprocess.run(["bash", "-c", script], cwd=project, env=env, capture_output=True, text=True,
                            timeout=2400)  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-4000:]
    results = project / "results" / "my-study"
    assert (project / "my-study-report.html").stat().st_size > 100_000
    global_tests = pd.read_csv(results / "mimix_nofactor" / "global_tests.tsv", sep="\t")
    assert "nutrient" in set(global_tests["name"])
    # The walkthrough's printed lines are in the output: the verdict and the responding taxa.
    assert "worst_rhat" in result.stdout and "lfsr" in result.stdout
    for table in ("variance/per_taxon.tsv", "ppc/checks.tsv", "diagnostics/verdict.tsv"):
        assert (results / "mimix_nofactor" / table).exists()
    for table in ("latent/clusters.tsv", "latent/correlation.tsv", "latent/factors.tsv"):
        assert (results / "mimix_gaussian" / table).exists()


NUTNET_DATA = ROOT.parent / "shared" / "data" / "nutnet"


@pytest.mark.slow
@pytest.mark.skipif(not NUTNET_DATA.exists(), reason="the NutNet data (../shared/data/nutnet) is not on this machine")
def test_nutnet_example_commands(tmp_path: Path) -> None:
    """docs/nutnet.md: its data-stage command runs for real; the fit and report commands as a dry run
    (the fit itself takes about an hour: its numbers in the document come from a real run)."""
    blocks = shell_blocks((ROOT / "docs" / "nutnet.md").read_text())
    assert len(blocks) >= 2 and "config/nutnet.yaml" in blocks[0]
    project = tmp_path / "project"
    project.mkdir()
    for part in PROJECT_PARTS:
        source = ROOT / part
        copy = shutil.copytree if source.is_dir() else shutil.copy
        copy(source, project / part)
    (tmp_path / "shared").symlink_to(ROOT.parent / "shared")  # config/nutnet.yaml reads ../shared/data/nutnet
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    dry = [re.sub(r"^snakemake ", "snakemake --dry-run ", line) for block in blocks[1:] for line in block.splitlines()]
    script = "set -euo pipefail\n" + blocks[0] + "\n" + "\n".join(dry)
    result = subprocess.run(["bash", "-c", script], cwd=project, env=env, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    summary = (project / "results" / "nutnet" / "data" / "summary.json").read_text()
    assert '"samples_kept": 166' in summary
