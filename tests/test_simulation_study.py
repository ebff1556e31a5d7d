"""The simulation study: settings, seeds, metrics, aggregation, tables, Figure 2 and a miniature run."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from mimix import simstudy
from mimix.errors import InputError
from mimix.plots import save_figure, simulation_figure
from mimix.simstudy import StudySetting

ROOT = Path(__file__).resolve().parents[1]


def test_paper_design_has_30_settings_with_one_null_form() -> None:
    settings = simstudy.study_settings()
    assert len(settings) == 30 and len({s.name for s in settings}) == 30
    nulls = [s for s in settings if s.dense == 0]
    assert len(nulls) == 6 and {s.form for s in nulls} == {"grouped"}
    assert all(StudySetting.from_name(s.name) == s for s in settings)


def test_replicate_seeds_depend_on_setting_and_replicate_only() -> None:
    a = simstudy.replicate_seed(1, "dense0.1-error1-block1-grouped", 1)
    assert a == simstudy.replicate_seed(1, "dense0.1-error1-block1-grouped", 1)
    others = {
        simstudy.replicate_seed(1, "dense0.1-error1-block1-grouped", 2),
        simstudy.replicate_seed(1, "dense0.1-error4-block1-grouped", 1),
        simstudy.replicate_seed(2, "dense0.1-error1-block1-grouped", 1),
    }
    assert a not in others and len(others) == 3


def test_simulator_options_are_typed_and_checked() -> None:
    assert simstudy.simulator_options({"n_taxa": "20", "depth_min": 100}) == {"n_taxa": 20, "depth_min": 100}
    with pytest.raises(InputError, match="simulation.data.dense: not a simulator option here"):
        simstudy.simulator_options({"dense": 0.5})
    with pytest.raises(InputError, match="simulation.data.n_taxa: 'many' is not a int"):
        simstudy.simulator_options({"n_taxa": "many"})
    settings = simstudy.simulation_settings(StudySetting(0.2, 4.0, 1.0, "random"), 9, {"n_taxa": 20})
    assert (settings.n_taxa, settings.dense, settings.error_var, settings.form, settings.seed) == (
        20, 0.2, 4.0, "random", 9,
    )  # fmt: skip


def test_local_metrics_on_a_hand_made_case() -> None:
    # Three taxa: the first responds (+2) and is found; the second is null and wrongly declared;
    # the third is null and its interval covers 0. 400 draws, narrow normal around each mean.
    rng = np.random.default_rng(0)
    means = np.array([2.0, 1.0, 0.05])
    draws = means + 0.1 * rng.standard_normal((400, 3))
    metrics = simstudy.local_metrics(draws, np.array([2.0, 0.0, 0.0]))
    assert metrics["tpr"] == 1.0 and metrics["tnr"] == 0.5
    assert metrics["n_responding"] == 1 and metrics["n_declared"] == 2
    assert metrics["coverage"] == pytest.approx(2 / 3)
    # MSE x100 is dominated by the null taxon at 1.0: 100 * (1 + small) / 3.
    assert metrics["mse_x100"] == pytest.approx(100 * np.mean((draws.mean(0) - [2, 0, 0]) ** 2))
    assert np.isnan(simstudy.local_metrics(draws, np.zeros(3))["tpr"])  # no responders: undefined


def rows_for_aggregation() -> pd.DataFrame:
    rows = []
    for dense in (0.0, 0.2):
        for replicate in (1, 2):
            for method, rejected in (("mimix_nofactor", dense > 0 or replicate == 1), ("permanova", dense > 0)):
                rows.append({
                    "setting": StudySetting(dense, 1.0, 1.0, "grouped").name, "replicate": replicate,
                    "method": method, "dense": dense, "error_var": 1.0, "block_var": 1.0, "form": "grouped",
                    "seed": 1, "global_stat": 0.5, "rejected": rejected, "mse_x100": 2.0 * replicate,
                    "coverage": 0.9, "tpr": np.nan if dense == 0 else 0.5, "tnr": 1.0, "n_responding": 0,
                    "n_declared": 0, "max_rhat": 1.0 + 0.01 * replicate, "divergences": 0, "seconds": 1.0,
                })  # fmt: skip
    return pd.DataFrame(rows)


def test_aggregate_rates_and_table1() -> None:
    rejection, table1 = simstudy.aggregate(rows_for_aggregation())
    rate = rejection.set_index(["dense", "method"])["rejection_rate"]
    assert rate[(0.0, "mimix_nofactor")] == 0.5 and rate[(0.0, "permanova")] == 0.0
    assert rate[(0.2, "mimix_nofactor")] == 1.0
    se = rejection.set_index(["dense", "method"])["rejection_se"]
    assert se[(0.0, "mimix_nofactor")] == pytest.approx(np.sqrt(0.25 / 2))
    assert set(table1["method"]) == {"mimix_nofactor"}  # PERMANOVA has no effect estimates
    assert table1["mse_x100"].tolist() == [3.0, 3.0] and table1["max_rhat"].tolist() == [1.02, 1.02]
    markdown = simstudy.table1_markdown(table1)
    assert markdown.splitlines()[0].startswith("| dense | error var | block var | form | method |")
    assert "| 20% | 1 | 1 | grouped | mimix_nofactor | 2 | 3.00 | 0.900 | 0.500 | 1.000 | 1.02 |" in markdown
    assert "| 0% |" in markdown and "| - |" in markdown  # undefined TPR under the null
    latex = simstudy.table1_latex(table1)
    assert latex.startswith(r"\begin{tabular}") and r"mimix\_nofactor" in latex and latex.count(r"\\") == 3


def test_figure2_is_a_valid_image(tmp_path: Path) -> None:
    rejection, _ = simstudy.aggregate(rows_for_aggregation())
    png, pdf = tmp_path / "f.png", tmp_path / "f.pdf"
    save_figure(simulation_figure(rejection), png, pdf)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and pdf.read_bytes()[:4] == b"%PDF"
    assert png.stat().st_size > 10_000


@pytest.mark.slow
def test_miniature_study_separates_null_and_strong_effect(tmp_path: Path) -> None:
    """2 settings x 2 replicates x (no-factor model + PERMANOVA) through Snakemake."""
    config = {
        "dataset": "ministudy",
        "models": ["mimix_nofactor"],
        "simulation": {
            # dense 0.4 of 25 taxa: 2 groups of 5 responding taxa with |effect| in (1, 3): strong.
            "dense": [0.0, 0.4], "error_var": [1.0], "block_var": [1.0], "form": ["grouped"],
            "replicates": 2, "models": ["mimix_nofactor"], "permutations": 199,
            "data": {"n_samples": 16, "n_taxa": 25, "n_blocks": 2},
        },
        "sampling": {"engine": "pystan", "chains": 2, "warmup": 200, "draws": 200, "seed": 5},
    }  # fmt: skip
    (tmp_path / "study.yaml").write_text(yaml.safe_dump(config))
    command = [sys.executable, "-m", "snakemake", "--snakefile", str(ROOT / "Snakefile"), "--cores", "2",
               "simulation", "--configfile", "study.yaml"]  # fmt: skip
    result = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=1800)
    assert result.returncode == 0, result.stderr[-4000:]
    out = tmp_path / "results" / "ministudy" / "simulation"
    metrics = pd.read_csv(out / "metrics.tsv", sep="\t")
    assert len(metrics) == 8 and set(metrics["method"]) == {"mimix_nofactor", "permanova"}
    rejection = pd.read_csv(out / "rejection_rates.tsv", sep="\t").set_index(["dense", "method"])
    # Strong effects in 10 of 25 taxa with 16 samples: both methods reject in both replicates; the
    # null is rejected by MIMIX in neither (its prior probability of any effect is ~0.5 and the
    # posterior falls well below 0.9 without signal).
    assert rejection.loc[(0.4, "mimix_nofactor"), "rejection_rate"] == 1.0
    assert rejection.loc[(0.4, "permanova"), "rejection_rate"] == 1.0
    assert rejection.loc[(0.0, "mimix_nofactor"), "rejection_rate"] == 0.0
    strong = metrics[(metrics["dense"] == 0.4) & (metrics["method"] == "mimix_nofactor")]
    assert (strong["tpr"] > 0.5).all() and (strong["coverage"] > 0.7).all()
    table1 = pd.read_csv(out / "table1.tsv", sep="\t")
    assert list(table1.columns[:5]) == ["dense", "error_var", "block_var", "form", "method"]
    assert (out / "table1.md").read_text().startswith("| dense |")
    assert (out / "table1.tex").read_text().startswith(r"\begin{tabular}")
    assert (out / "figure2.png").read_bytes()[:4] == b"\x89PNG"

    # Growing the study (a third replicate, another setting, another model) runs only the new jobs:
    # the replicates already done keep their rows (before, every one of them was rerun because the
    # whole study config was a param of each replicate).
    config["simulation"].update(replicates=3, error_var=[1.0, 4.0], models=["mimix_nofactor", "mimix_gaussian"])
    (tmp_path / "grown.yaml").write_text(yaml.safe_dump(config))
    dry = subprocess.run([*command[:-1], "grown.yaml", "--dry-run", "--quiet", "rules"], cwd=tmp_path,
                         capture_output=True, text=True, timeout=600)  # fmt: skip
    assert dry.returncode == 0, dry.stderr[-4000:]
    counts = dict(re.findall(r"^(\w+)\s+(\d+)$", dry.stdout, flags=re.MULTILINE))
    # 4 settings x 3 replicates x 3 methods = 36 rows, of which the first study made 8.
    assert int(counts["simulation_replicate"]) == 36 - 8, dry.stdout
