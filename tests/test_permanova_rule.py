"""The PERMANOVA rule's script: design from the data stage tables, strata, and the tidy output table."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from test_diagnostics import run_script

from mimix.permanova import permanova, permanova_design

SETTINGS = {"distance": "braycurtis", "permutations": 199, "strata": None, "seed": 1}


def data_stage(folder: Path) -> dict[str, str]:
    """Data stage tables of a 2 x 2 factorial in 2 sites x 2 nested blocks, 2 samples per cell and block."""
    rng = np.random.default_rng(8)
    rows, design, blocks = [], [], []
    for site in ("A", "B"):
        for block in ("1", "2"):
            for nutrient in (0.0, 1.0):
                for fence in (0.0, 1.0):
                    for _ in range(2):
                        sample = f"s{len(rows) + 1:02d}"
                        rows.append(sample)
                        design.append([nutrient, fence, nutrient * fence])
                        blocks.append([site, f"{site}/{block}"])
    counts = pd.DataFrame(rng.poisson(50, size=(len(rows), 5)), index=rows, columns=[f"t{k}" for k in range(5)])
    counts["t0"] += (np.array(design)[:, 0] * 100).astype(int)  # a nutrient effect
    tables = {
        "counts": counts,
        "design": pd.DataFrame(design, index=rows, columns=["nutrient[yes]", "fence[in]", "nutrient[yes]:fence[in]"]),
        "blocks": pd.DataFrame(blocks, index=rows, columns=["site", "block"]),
    }
    paths = {}
    for name, table in tables.items():
        table.index.name = "sample_id"
        paths[name] = str(folder / f"{name}.tsv")
        table.to_csv(paths[name], sep="\t")
    paths["terms"] = str(folder / "terms.tsv")
    Path(paths["terms"]).write_text(
        "term\tcolumn\nnutrient\tnutrient[yes]\nfence\tfence[in]\nnutrient:fence\tnutrient[yes]:fence[in]\n"
    )
    return paths


def test_design_has_treatment_terms_then_dummy_coded_blocks(tmp_path: Path) -> None:
    paths = data_stage(tmp_path)
    design = pd.read_csv(paths["design"], sep="\t", index_col=0)
    blocks = pd.read_csv(paths["blocks"], sep="\t", index_col=0, dtype=str)
    terms = pd.read_csv(paths["terms"], sep="\t", dtype=str)
    built = permanova_design(design, terms, blocks)
    assert [name for name, _ in built] == ["nutrient", "fence", "nutrient:fence", "site", "block"]
    np.testing.assert_array_equal(built[0][1], design[["nutrient[yes]"]].to_numpy())
    # site: levels A, B -> one column "is B"; block: A/1, A/2, B/1, B/2 -> three columns (A/1 dropped).
    np.testing.assert_array_equal(built[3][1][:, 0], (blocks["site"] == "B").to_numpy(dtype=float))
    assert built[4][1].shape == (32, 3)
    np.testing.assert_array_equal(built[4][1].sum(axis=1), (blocks["block"] != "A/1").to_numpy(dtype=float))


def test_script_table_matches_direct_call(tmp_path: Path) -> None:
    paths = data_stage(tmp_path)
    out = tmp_path / "permanova.tsv"
    run_script("permanova", paths, {"out": str(out)}, {"settings": SETTINGS}, tmp_path)
    table = pd.read_csv(out, sep="\t", index_col="term")
    assert list(table.columns) == ["df", "sum_of_squares", "r2", "F", "p_value"]
    assert list(table.index) == ["nutrient", "fence", "nutrient:fence", "site", "block", "Residual", "Total"]
    # Nested blocks: 4 block levels - 1 = 3 columns, of which 1 is aliased with site: 2 df.
    assert table["df"].tolist() == [1, 1, 1, 1, 2, 25, 31]
    design = permanova_design(
        pd.read_csv(paths["design"], sep="\t", index_col=0),
        pd.read_csv(paths["terms"], sep="\t", dtype=str),
        pd.read_csv(paths["blocks"], sep="\t", index_col=0, dtype=str),
    )
    counts = pd.read_csv(paths["counts"], sep="\t", index_col=0)
    direct = permanova(counts.to_numpy(), design, n_perm=199, seed=1)
    np.testing.assert_allclose(table["sum_of_squares"], direct["SumOfSqs"], rtol=1e-12)
    np.testing.assert_allclose(table["p_value"].iloc[:5], direct["Pr(>F)"].iloc[:5])
    assert table.loc["nutrient", "p_value"] == pytest.approx(1 / 200)  # the planted effect beats every permutation


def test_strata_by_blocking_factor(tmp_path: Path) -> None:
    # The script must hand the site labels to the permutations: same p-values as a direct call with strata.
    paths = data_stage(tmp_path)
    out = tmp_path / "permanova.tsv"
    run_script("permanova", paths, {"out": str(out)}, {"settings": {**SETTINGS, "strata": "site"}}, tmp_path)
    table = pd.read_csv(out, sep="\t", index_col="term")
    blocks = pd.read_csv(paths["blocks"], sep="\t", index_col=0, dtype=str)
    design = permanova_design(
        pd.read_csv(paths["design"], sep="\t", index_col=0), pd.read_csv(paths["terms"], sep="\t", dtype=str), blocks
    )
    counts = pd.read_csv(paths["counts"], sep="\t", index_col=0).to_numpy()
    stratified = permanova(counts, design, n_perm=199, seed=1, strata=blocks["site"].to_numpy())
    free = permanova(counts, design, n_perm=199, seed=1)
    np.testing.assert_allclose(table["p_value"].iloc[:5], stratified["Pr(>F)"].iloc[:5])
    assert not np.allclose(stratified["Pr(>F)"].iloc[:5], free["Pr(>F)"].iloc[:5])
    assert "strata site" in (tmp_path / "permanova.log").read_text()


def test_unknown_strata_stops_with_a_clear_message(tmp_path: Path) -> None:
    paths = data_stage(tmp_path)
    with pytest.raises(SystemExit) as stop:
        run_script(
            "permanova", paths, {"out": str(tmp_path / "x.tsv")}, {"settings": {**SETTINGS, "strata": "plot"}}, tmp_path
        )
    assert stop.value.code == 1
    log = (tmp_path / "permanova.log").read_text()
    assert "permanova.strata is 'plot', not a blocking factor; use one of site, block or none" in log
    assert not (tmp_path / "x.tsv").exists()
