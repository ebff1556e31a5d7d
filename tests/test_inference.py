"""Global and local tests on hand-made draws with answers worked out by hand; their rules' scripts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from test_diagnostics import iid_chains, make_chain, run_script, write_chains

from mimix import inference
from mimix.diagnostics import combine_chains, diagnose
from mimix.inference import global_tests, lfsr, local_tests, prior_any_inclusion, svalues

TERMS = {"a": ["a[x]"], "b": ["b[x]"]}


def test_prior_probability_by_hand() -> None:
    # Beta(1, c) prior: P(none of n on) = c / (c + n).
    assert prior_any_inclusion(5, 5) == pytest.approx(0.5)  # factor model, L = 5
    assert prior_any_inclusion(2, 3) == pytest.approx(2 / 5)
    assert prior_any_inclusion(2, 3, n_columns=2) == pytest.approx(1 - (3 / 5) ** 2)
    assert prior_any_inclusion(40, 40, n_columns=3) == pytest.approx(1 - 0.5**3)


def posterior_with(global_prob: np.ndarray, term_prob: np.ndarray, n_factors: int | None = 2):
    """Two chains of 4 draws each: global_prob (2, 4, 2 columns), term_prob (2, 4, 2 terms)."""
    chains = []
    for c in range(2):
        draws = {"global_prob": global_prob[c], "term_prob": term_prob[c], "sigma2": np.ones((4, 3))}
        if n_factors:
            draws["Lambda"] = np.ones((4, n_factors, 3))
        chains.append(make_chain(draws, chain=c + 1))
    return combine_chains(chains).posterior


def test_global_tests_by_hand() -> None:
    column_a = np.array([[0.9, 0.7, 1.0, 0.6], [1.0, 1.0, 0.9, 0.9]])  # mean 0.875
    column_b = np.full((2, 4), 0.2)
    term_prob = np.stack([column_a, np.full((2, 4), 0.96)], axis=-1)
    posterior = posterior_with(np.stack([column_a, column_b], axis=-1), term_prob)
    table = global_tests(posterior, {"a": ["a[x]"], "b": ["b[x]", "extra"]}, threshold=0.9).set_index(["test", "name"])
    a = table.loc[("column", "a[x]")]
    assert a["posterior_prob"] == pytest.approx(0.875)
    assert a["prior_prob"] == pytest.approx(0.5)  # L = 2 factors: 2 / (2 + 2)
    assert a["bayes_factor"] == pytest.approx(0.875 / 0.125)  # prior odds 1
    assert a["decision"] == "retain"  # 0.875 is not above 0.9
    b_term = table.loc[("term", "b")]
    assert b_term["columns"] == 2
    assert b_term["prior_prob"] == pytest.approx(0.75)  # 1 - (1/2)^2
    assert b_term["bayes_factor"] == pytest.approx((0.96 / 0.04) / 3.0)
    assert b_term["decision"] == "reject"
    assert b_term["mcse"] == 0.0  # constant draws have no Monte Carlo error
    assert table.loc[("column", "b[x]"), "bayes_factor"] == pytest.approx(0.25)


def test_global_tests_no_factor_prior_and_certainty() -> None:
    # No factor dim: K = 3 taxa share pi ~ Beta(1, 3): prior 3 / 6. Probability 1 everywhere: BF infinite.
    ones = np.ones((2, 4, 2))
    table = global_tests(posterior_with(ones, ones, n_factors=None), TERMS)
    assert table["prior_prob"].tolist() == pytest.approx([0.5] * 4)
    assert np.isinf(table["bayes_factor"]).all()
    assert (table["decision"] == "reject").all()
    explicit = global_tests(posterior_with(ones * 0.5, ones * 0.5), TERMS, n_indicators=2, concentration=3)
    assert explicit["prior_prob"].tolist() == pytest.approx([0.4] * 4)
    assert explicit["bayes_factor"].tolist() == pytest.approx([1 / (0.4 / 0.6)] * 4)


def test_lfsr_counts_exact_zeros_for_neither_sign() -> None:
    # A spike: 6 of 10 draws exactly 0, 3 positive, 1 negative -> P(>0) 0.3, P(<0) 0.1, lfsr 0.7.
    draws = np.array([0, 0, 0, 0, 0, 0, 1.0, 2.0, 3.0, -1.0])
    positive, negative, false_sign = lfsr(draws)
    assert (positive, negative, false_sign) == pytest.approx((0.3, 0.1, 0.7))


def test_svalues_and_fdr_set_by_hand() -> None:
    # Sorted lfsr 0.01, 0.02, 0.04, 0.2, 0.5: running means 0.01, 0.015, 0.0233, 0.0675, 0.154.
    values = np.array([0.2, 0.01, 0.5, 0.04, 0.02])
    s = svalues(values)
    assert s == pytest.approx([0.0675, 0.01, 0.154, 0.07 / 3, 0.015])
    assert (s <= 0.05).tolist() == [False, True, False, True, True]
    # Ties enter together: alone, the first 0.08 would give mean 0.045 <= 0.05, but with its twin 0.0567.
    tied = svalues(np.array([0.08, 0.01, 0.08]))
    assert tied == pytest.approx([0.17 / 3, 0.01, 0.17 / 3])
    assert (tied <= 0.05).tolist() == [False, True, False]


def local_posterior() -> tuple:
    """beta draws over 2 chains x 50 draws for taxa t1, t2, other and columns a[x], b[x]."""
    draws = np.zeros((2, 50, 3, 2))
    values = np.arange(100, dtype=float).reshape(2, 50)  # 0..99 over both chains
    draws[:, :, 0, 0] = values + 1  # t1 a: 1..100, all positive
    draws[:, :, 1, 0] = -(values + 1) / 100  # t2 a: all negative
    draws[:, :, 2, 0] = values - 49.5  # other a: symmetric about 0
    draws[:, :, 0, 1] = np.where(values < 90, 0.0, 1.0)  # t1 b: spike at 0 in 90% of draws
    chains = [make_chain({"beta": draws[c]}, chain=c + 1) for c in range(2)]
    return combine_chains(chains).posterior["beta"], draws.reshape(100, 3, 2)


def test_local_tests_by_hand() -> None:
    beta, flat = local_posterior()
    taxa = pd.DataFrame(
        {"label": ["Genus1 (t1)", "Genus2 (t2)"], "lineage": ["k__A; g__1", "k__A; g__2"]}, index=["t1", "t2"]
    )
    table = local_tests(beta, interval_level=0.9, fdr_level=0.05, taxa=taxa).set_index(["taxon", "column"])
    t1 = table.loc[("t1", "a[x]")]
    assert t1["mean"] == pytest.approx(50.5)
    assert t1["median"] == pytest.approx(50.5)
    # numpy's linear quantile of 1..100 at 0.05: position 0.05 * 99 = 4.95 -> 5.95; at 0.95 -> 95.05.
    assert (t1["lower"], t1["upper"]) == pytest.approx((5.95, 95.05))
    assert t1["fold_change"] == pytest.approx(np.exp(50.5))
    assert t1["fold_change_upper"] == pytest.approx(np.exp(95.05))
    assert t1["prob_positive"] == 1.0 and t1["lfsr"] == 0.0 and t1["direction"] == "positive"
    assert t1["interval_excludes_zero"] and t1["fdr_discovery"]
    assert (t1["label"], t1["lineage"]) == ("Genus1 (t1)", "k__A; g__1")
    t2 = table.loc[("t2", "a[x]")]
    assert t2["direction"] == "negative" and t2["interval_excludes_zero"] and t2["fdr_discovery"]
    other = table.loc[("other", "a[x]")]
    assert other["lfsr"] == pytest.approx(0.5) and not other["interval_excludes_zero"]
    assert (other["label"], other["lineage"]) == ("other", "")  # not in the taxa table
    # Column a[x]: lfsr 0, 0, 0.5 -> s-values 0, 0, 1/6: two discoveries.
    assert table.xs("a[x]", level="column")["fdr_discovery"].tolist() == [True, True, False]
    spike = table.loc[("t1", "b[x]")]
    assert spike["prob_positive"] == pytest.approx(0.1) and spike["lfsr"] == pytest.approx(0.9)
    assert not spike["interval_excludes_zero"] and not spike["fdr_discovery"]
    assert spike["sd"] == pytest.approx(flat[:, 0, 1].std(ddof=1))
    assert table.loc[("t2", "b[x]"), "direction"] == "none"  # all draws exactly 0
    assert list(table.reset_index().columns) == inference.LOCAL_COLUMNS


def test_reliable_needs_passed_verdict_and_ok_element() -> None:
    chains = iid_chains(n_chains=2, n_draws=500)
    chains[1].posterior["beta"].loc[{"taxon": "t2", "column": "b[x]"}] += 5.0
    result = diagnose(chains)
    table = local_tests(combine_chains(chains).posterior["beta"])
    marked = inference.mark_local_reliable(table, result.quantities, passed=True).set_index(["taxon", "column"])
    assert not marked.loc[("t2", "b[x]"), "reliable"]
    assert marked["reliable"].sum() == 5
    failed = inference.mark_local_reliable(table, result.quantities, passed=False)
    assert not failed["reliable"].any()


def test_scripts_write_global_and_local_tables(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    chains = iid_chains(
        n_chains=2,
        n_draws=300,
        global_prob=rng.uniform(size=(2, 300, 2)),
        term_prob=np.ones((2, 300, 2)),
    )
    paths = write_chains(chains, tmp_path / "chains")
    diag = {name: str(tmp_path / f"{name}.tsv") for name in ("quantities", "chains", "verdict")}
    thresholds = {"rhat_max": 1.05, "ess_bulk_per_chain_min": 50, "max_divergences": 0, "ebfmi_min": 0.3}
    run_script("diagnostics", {"chains": paths}, diag, {"thresholds": thresholds}, tmp_path)
    (tmp_path / "terms.tsv").write_text("term\tcolumn\na\ta[x]\nb\tb[x]\n")
    (tmp_path / "taxa.tsv").write_text("taxon_id\tlabel\tlineage\tstatus\nt1\tG1 (t1)\tk__A\tkept\n")
    inputs = {"chains": paths, "quantities": diag["quantities"], "verdict": diag["verdict"]}
    run_script(
        "global_tests", {**inputs, "terms": str(tmp_path / "terms.tsv")}, {"out": str(tmp_path / "global.tsv")},
        {"threshold": 0.9}, tmp_path,
    )  # fmt: skip
    global_table = pd.read_csv(tmp_path / "global.tsv", sep="\t")
    assert list(global_table.columns) == inference.GLOBAL_COLUMNS
    assert global_table["reliable"].all()  # term_prob is constant 1: OK, not a failure
    assert global_table.loc[global_table["test"] == "term", "decision"].tolist() == ["reject", "reject"]
    run_script(
        "local_tests", {**inputs, "taxa": str(tmp_path / "taxa.tsv")}, {"out": str(tmp_path / "local.tsv")},
        {"settings": {"interval_level": 0.95, "fdr_level": 0.05}}, tmp_path,
    )  # fmt: skip
    local_table = pd.read_csv(tmp_path / "local.tsv", sep="\t", keep_default_na=False)
    assert list(local_table.columns) == inference.LOCAL_COLUMNS
    assert len(local_table) == 6
    assert local_table["label"].tolist()[:3] == ["G1 (t1)", "G1 (t1)", "t2"]
