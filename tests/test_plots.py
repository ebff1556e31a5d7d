"""Figures are written as valid, non-empty PNG and PDF files, also for edge cases.

The inference figures are drawn from fake tables shaped like the inference rules' outputs
(:func:`fake_results`): demo size (35 taxa, 3 treatment columns, 2 blocking factors) and the
edge case of one treatment column, one blocking factor, no responding taxa and the no-factor
model (no latent tables, no eta). The plot scripts are run once each through the rules' stand-in.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from test_diagnostics import make_chain, run_script, write_chains

from mimix import plots
from mimix.diagnostics import diagnose
from mimix.plots import data_stage_figure, save_figure

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
DEMO_COLUMNS = ["nutrient[treated]", "fence[treated]", "nutrient[treated]:fence[treated]"]


def assert_valid_png(path: Path) -> None:
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC and len(data) > 5_000  # a blank figure is ~3 kB


def assert_figure_files(figure, folder: Path, name: str = "f") -> None:
    png, pdf = folder / f"{name}.png", folder / f"{name}.pdf"
    save_figure(figure, png, pdf)
    assert_valid_png(png)
    assert pdf.read_bytes()[:4] == b"%PDF" and pdf.stat().st_size > 1_000


@pytest.mark.parametrize("with_dropped", [True, False])
def test_data_stage_figure(tmp_path: Path, with_dropped: bool) -> None:
    samples = pd.DataFrame(
        {
            "reads": [500, 3000, 4000, 5200],
            "reads_in_kept_taxa": [400, 2900, 3800, 5000],
            "status": ["dropped" if with_dropped else "kept", "kept", "kept", "kept"],
            "reason": ["", "", "", ""],
        },
        index=["a", "b", "c", "d"],
    )
    taxa = pd.DataFrame(
        {
            "prevalence": [1.0, 0.5, 0.05, 0.0],
            "mean_relative_abundance": [0.6, 0.3, 0.001, 0.0],
            "status": ["kept", "kept", "aggregated", "dropped"],
        },
        index=["t1", "t2", "t3", "t4"],
    )
    figure = data_stage_figure(
        samples, taxa, {"min_depth": 1000, "min_prevalence": 0.1, "min_mean_relative_abundance": 0.01}
    )
    save_figure(figure, tmp_path / "f.png", tmp_path / "f.pdf")
    assert_valid_png(tmp_path / "f.png")
    assert (tmp_path / "f.pdf").read_bytes()[:4] == b"%PDF"


# ---------------------------------------------------------------------------------------------
# Fake inference outputs
# ---------------------------------------------------------------------------------------------


def fake_results(
    n_taxa: int = 35,
    columns: list[str] | None = None,
    blocking: tuple[str, ...] = ("site", "block"),
    responding: int = 10,
    factor_model: bool = True,
    n_samples: int = 40,
    seed: int = 1,
) -> dict[str, pd.DataFrame]:
    """Tables shaped like one model's inference outputs (as the rules write and the scripts read them)."""
    rng = np.random.default_rng(seed)
    columns = DEMO_COLUMNS if columns is None else columns
    taxa = [f"taxon{k:03d}" for k in range(1, n_taxa)] + ["other"]
    labels = {t: f"Species{k} (g__Genus{k % 7}; {t})" for k, t in enumerate(taxa, start=1)}
    rows = []
    for j, column in enumerate(columns):
        hits = set(rng.choice(n_taxa, size=responding, replace=False)) if j == 0 and responding else set()
        for k, taxon in enumerate(taxa):
            mean = rng.choice([-1, 1]) * rng.uniform(0.6, 1.5) if k in hits else rng.normal(0, 0.08)
            sd = rng.uniform(0.1, 0.25)
            lower, upper = mean - 2 * sd, mean + 2 * sd
            rows.append({
                "taxon": taxon, "column": column, "label": labels[taxon], "lineage": "k__Bacteria",
                "mean": mean, "median": mean, "sd": sd, "lower": lower, "upper": upper,
                "prob_positive": float(mean > 0), "prob_negative": float(mean < 0), "lfsr": 0.01 if k in hits else 0.4,
                "svalue": 0.01 if k in hits else 0.4, "direction": "positive" if mean > 0 else "negative",
                "interval_excludes_zero": bool(lower > 0 or upper < 0), "fdr_discovery": k in hits,
                "fold_change": np.exp(mean), "fold_change_lower": np.exp(lower), "fold_change_upper": np.exp(upper),
                "reliable": True,
            })  # fmt: skip
    local = pd.DataFrame(rows)
    global_rows = []
    for test, names in (("column", columns), ("term", [c.replace("[treated]", "") for c in columns])):
        for j, name in enumerate(names):
            prob = 0.99 if j == 0 and responding else float(rng.uniform(0.05, 0.4))
            global_rows.append({
                "test": test, "name": name, "columns": 1, "posterior_prob": prob, "mcse": 0.01, "prior_prob": 0.5,
                "posterior_odds": prob / (1 - prob), "prior_odds": 1.0, "bayes_factor": prob / (1 - prob),
                "threshold": 0.9, "decision": "reject" if prob > 0.9 else "retain", "reliable": j != 2,
            })  # fmt: skip
    global_tests = pd.DataFrame(global_rows)
    share_sources = [f"blocking:{b}" for b in blocking] + (["latent"] if factor_model else []) + ["error"]
    shares = rng.dirichlet(np.ones(len(share_sources)), size=n_taxa)
    per_taxon_rows = []
    for k, taxon in enumerate(taxa):
        values = dict(zip(share_sources, shares[k], strict=True))
        values["blocking_total"] = sum(values[f"blocking:{b}"] for b in blocking)
        if factor_model:
            values["eta"] = values["blocking_total"] + values["latent"]
        for source, value in values.items():
            kind = "share" if source in share_sources else "combined"
            per_taxon_rows.append({
                "taxon": taxon, "source": source, "kind": kind, "mean": value,
                "lower": max(0, value - 0.1), "upper": min(1, value + 0.1),
            })  # fmt: skip
    per_taxon = pd.DataFrame(per_taxon_rows)
    quantities = pd.DataFrame({
        "quantity": ["sigma2"] * n_taxa + ["beta"] * (n_taxa * len(columns)) + ["global_prob"] * len(columns),
        "index": taxa + [f"{t}|{c}" for t in taxa for c in columns] + columns,
    })  # fmt: skip
    quantities["mean"] = np.where(quantities["quantity"] == "sigma2", rng.lognormal(-1, 1, len(quantities)), 0.0)
    quantities["sd"] = 0.1
    quantities["rhat"] = 1 + np.abs(rng.normal(0, 0.004, len(quantities)))
    quantities["ess_bulk"] = rng.uniform(150, 4000, len(quantities))
    quantities["ess_tail"] = rng.uniform(150, 4000, len(quantities))
    quantities["mcse_mean"] = 0.01
    quantities["ok"] = quantities["rhat"] <= 1.01
    quantities["problem"] = ""
    chains = pd.DataFrame({
        "chain": [1, 2, 3, 4], "draws": 500, "divergences": [0, 2, 0, 0], "treedepth_hits": [0, 0, 5, 0],
        "max_treedepth": 10, "ebfmi": [0.9, 0.8, 0.25, 1.0], "mean_step_size": 0.1, "mean_n_steps": [31, 63, 63, 31],
        "mean_acceptance_rate": 0.9, "sampling_seconds": [12.0, 20.5, 19.1, 11.2],
    })  # fmt: skip
    verdict = pd.DataFrame(
        [{"passed": False, "chains": 4, "draws": 2000, "message": "FAILED: 2 divergent transition(s) in chain(s) 2"}],
        index=pd.Index(["mimix"], name="model"),
    )
    statistics = [("prop_zero", "sample"), ("shannon", "sample"), ("max_share", "sample")]
    statistics += [("bray_curtis_similarity", "group")]
    check_rows = []
    for statistic, level in statistics:
        units = n_samples if level == "sample" else max(n_samples // 4, 2)
        observed = rng.uniform(0.1, 0.9, units)
        centre = observed + rng.normal(0, 0.05, units)
        for u in range(units):
            lower, upper = centre[u] - 0.08, centre[u] + 0.08
            check_rows.append({
                "statistic": statistic, "level": level, "unit": f"u{u}", "observed": observed[u],
                "predicted_mean": centre[u], "lower": lower, "upper": upper,
                "inside": bool(lower <= observed[u] <= upper), "ppp": 0.5,
            })  # fmt: skip
    tables = {
        "local": local,
        "global": global_tests,
        "per_taxon": per_taxon,
        "quantities": quantities,
        "chains": chains,
        "verdict": verdict,
        "checks": pd.DataFrame(check_rows),
        "permanova": pd.DataFrame(
            {
                "term": [*global_tests.loc[global_tests["test"] == "term", "name"], *blocking, "Residual", "Total"],
                "df": 1.0,
                "sum_of_squares": 1.0,
                "r2": 0.1,
                "F": 2.0,
                "p_value": [*rng.uniform(0.001, 0.8, len(columns) + len(blocking)), np.nan, np.nan],
            }
        ),  # fmt: skip
    }
    if factor_model:
        loadings = rng.normal(size=(3, n_taxa)) * (rng.uniform(size=(3, n_taxa)) > 0.5)
        cov = loadings.T @ loadings + np.eye(n_taxa) * 0.05
        sd = np.sqrt(np.diag(cov))
        correlation = cov / np.outer(sd, sd)
        from mimix.latent import cluster_labels, dendrogram_order, renumber_in_order

        order = dendrogram_order(correlation)
        cluster = renumber_in_order(cluster_labels(correlation, 0.5), order)
        ordered = [taxa[i] for i in order]
        tables["correlation"] = pd.DataFrame(correlation[np.ix_(order, order)], index=ordered, columns=ordered)
        sizes = pd.Series(cluster).value_counts()
        tables["clusters"] = pd.DataFrame({
            "taxon": ordered, "label": [labels[t] for t in ordered], "order": np.arange(1, n_taxa + 1),
            "cluster": cluster[order], "cluster_size": sizes.reindex(cluster[order]).to_numpy(),
            "stability": 0.9, "cluster_stability": 0.9, "max_co_assignment_outside": 0.1,
        })  # fmt: skip
    return tables


EDGE = {"columns": ["nutrient[treated]"], "blocking": ("site",), "responding": 0, "factor_model": False}


@pytest.fixture(params=["demo", "edge"])
def results(request) -> dict[str, pd.DataFrame]:
    """Demo-sized tables, and the edge case: one column, one blocking factor, nothing responds, no factors."""
    return fake_results() if request.param == "demo" else fake_results(**EDGE)


# ---------------------------------------------------------------------------------------------
# One test per figure
# ---------------------------------------------------------------------------------------------


def test_global_tests_figure(tmp_path: Path, results: dict) -> None:
    other = results["global"].assign(posterior_prob=lambda t: t["posterior_prob"] * 0.9)
    assert_figure_files(plots.global_tests_figure({"mimix": results["global"], "mimix_gaussian": other},
                                                  results["permanova"]), tmp_path)  # fmt: skip
    assert_figure_files(plots.global_tests_figure({"mimix": results["global"]}, None), tmp_path, "alone")


def test_global_test_rows_add_columns_only_for_multi_column_terms(results: dict) -> None:
    table = results["global"]
    assert {test for test, _ in plots.global_test_rows([table])} == {"term"}
    wide = table.assign(columns=np.where(table["test"] == "term", 2, 1))
    assert {test for test, _ in plots.global_test_rows([wide])} == {"term", "column"}


def test_local_effects_figure(tmp_path: Path, results: dict) -> None:
    figure = plots.local_effects_figure(results["local"], results.get("clusters"))
    assert_figure_files(figure, tmp_path)


def test_significant_effects_figure(tmp_path: Path, results: dict) -> None:
    assert_figure_files(plots.significant_effects_figure(results["local"]), tmp_path)


def test_variance_shares_figure(tmp_path: Path, results: dict) -> None:
    labels = plots.taxon_labels(results["local"])
    assert_figure_files(plots.variance_shares_figure(results["per_taxon"], labels), tmp_path)


def test_error_variance_figure(tmp_path: Path, results: dict) -> None:
    quantities = results["quantities"]
    sigma2 = quantities[quantities["quantity"] == "sigma2"].set_index("index")["mean"]
    assert_figure_files(plots.error_variance_figure(results["per_taxon"], sigma2, results["local"]), tmp_path)


def test_latent_structure_figure(tmp_path: Path) -> None:
    tables = fake_results()
    figure = plots.latent_structure_figure(tables["correlation"], tables["clusters"], tables["local"])
    assert_figure_files(figure, tmp_path)
    no_hits = fake_results(columns=["nutrient[treated]"], responding=0)
    figure = plots.latent_structure_figure(no_hits["correlation"], no_hits["clusters"], no_hits["local"])
    assert_figure_files(figure, tmp_path, "edge")


def test_ppc_figure(tmp_path: Path, results: dict) -> None:
    assert_figure_files(plots.ppc_figure(results["checks"]), tmp_path)
    one = results["checks"][results["checks"]["statistic"] == "shannon"]
    assert_figure_files(plots.ppc_figure(one), tmp_path, "one")


def fake_chains(n_chains: int = 4, n_draws: int = 200, seed: int = 3) -> list:
    rng = np.random.default_rng(seed)
    chains = []
    for c in range(n_chains):
        drift = 0.3 * c  # chains that disagree a little: R-hat above 1 for beta
        posterior = {
            "beta": rng.normal(drift, 1, size=(n_draws, 3, 2)),
            "sigma2": np.exp(rng.normal(size=(n_draws, 3))),
        }
        stats = {"diverging": rng.uniform(size=n_draws) < 0.01}
        chains.append(make_chain(posterior, chain=c + 1, stats=stats))
    return chains


def test_diagnostics_figure(tmp_path: Path) -> None:
    from mimix.diagnostics import combine_chains

    chains = fake_chains()
    result = diagnose(chains)
    figure = plots.diagnostics_figure(result.quantities, result.chains, combine_chains(chains), {"rhat_max": 1.01})
    assert_figure_files(figure, tmp_path)
    assert_figure_files(plots.diagnostics_figure(result.quantities, result.chains, None), tmp_path, "tables_only")


def test_element_coords_selects_one_element() -> None:
    from mimix.diagnostics import combine_chains

    posterior = combine_chains(fake_chains(n_chains=1, n_draws=10)).posterior
    assert plots.element_coords(posterior, "beta", "t2|b[x]") == {"taxon": ["t2"], "column": ["b[x]"]}
    assert plots.element_coords(posterior, "beta", "t9|b[x]") is None
    assert plots.element_coords(posterior, "lambda_diag", "t1") is None


def test_message_figures_for_empty_inputs(tmp_path: Path) -> None:
    assert_figure_files(plots.significant_effects_figure(fake_results(**EDGE)["local"]), tmp_path, "none")
    assert_figure_files(plots.ppc_figure(pd.DataFrame(columns=["statistic"])), tmp_path, "empty")


# ---------------------------------------------------------------------------------------------
# Helpers and the opening page
# ---------------------------------------------------------------------------------------------


def test_taxon_order_follows_clusters_then_effect() -> None:
    tables = fake_results()
    order = plots.taxon_order(tables["local"], tables["clusters"])
    assert order == tables["clusters"]["taxon"].tolist()
    by_effect = plots.taxon_order(tables["local"])
    first = tables["local"][tables["local"]["column"] == DEMO_COLUMNS[0]].set_index("taxon")["mean"]
    assert first.reindex(by_effect).is_monotonic_increasing


def test_cluster_runs() -> None:
    clusters = pd.DataFrame({"taxon": ["a", "b", "c", "d"], "cluster": [1, 1, 2, 3]})
    assert plots.cluster_runs(clusters, ["a", "b", "c", "d"]) == [(1, 0, 2), (2, 2, 3), (3, 3, 4)]


def test_step_times_sum_chains_per_model() -> None:
    logs = {
        "filter_counts.log": "x INFO step finished in 0.3 s\n",
        "mimix/chain1.log": "step finished in 10.0 s",
        "mimix/chain2.log": "step finished in 14.5 s",
        "broken.log": "Traceback",
    }
    times = plots.step_times(logs).set_index("step")
    assert times.loc["mimix/fit_chain", "jobs"] == 2
    assert times.loc["mimix/fit_chain", "seconds"] == pytest.approx(24.5)
    assert times.loc["mimix/fit_chain", "longest"] == pytest.approx(14.5)
    assert "broken" not in times.index
    assert plots.duration(3725) == "1 h 02 min" and plots.duration(65) == "1 min 05 s"


def test_summary_page_answers_each_question(results: dict) -> None:
    data_summary = {"samples_in": 40, "samples_kept": 40, "taxa_in": 36, "taxa_kept": 34, "model_columns": 35,
                    "treatment_columns": DEMO_COLUMNS, "blocking_factors": ["site", "block"]}  # fmt: skip
    report = plots.ModelReport(results["verdict"], results["global"], results["local"], results["chains"])
    times = pd.DataFrame({"step": ["filter_counts"], "jobs": [1], "seconds": [0.3], "longest": [0.3]})
    page = plots.summary_page("demo", data_summary, {"mimix": report}, results["permanova"], times)
    assert "posterior probability" in page and "threshold 0.9" in page
    assert "FAILED" in page and "sampling ``mimix``" in page and "``filter_counts``" in page
    from docutils.core import publish_parts

    html = publish_parts(page, writer="html", settings_overrides={"report_level": 2, "halt_level": 2})
    assert "<table" in html["body"]


# ---------------------------------------------------------------------------------------------
# The scripts, as the rules run them
# ---------------------------------------------------------------------------------------------


def write_tables(tables: dict, folder: Path) -> dict[str, str]:
    """The fake tables as the inference rules write them (first column as the index)."""
    folder.mkdir(parents=True, exist_ok=True)
    keys = {"local": "taxon", "global": "test", "per_taxon": "taxon", "quantities": "quantity", "chains": "chain",
            "checks": "statistic", "permanova": "term", "clusters": "taxon"}  # fmt: skip
    paths = {}
    for name, table in tables.items():
        path = folder / f"{name}.tsv"
        if name in keys:
            table.set_index(keys[name]).to_csv(path, sep="\t")
        else:
            table.to_csv(path, sep="\t")
        paths[name] = str(path)
    return paths


def test_plot_scripts_write_their_figures(tmp_path: Path) -> None:
    tables = write_tables(fake_results(), tmp_path / "mimix")
    edge = write_tables(fake_results(**EDGE), tmp_path / "mimix_nofactor")
    figures = tmp_path / "figures"

    def outputs(name: str) -> dict[str, str]:
        return {"png": str(figures / f"{name}.png"), "pdf": str(figures / f"{name}.pdf")}

    run_script("plot_global_tests", {"tests": [tables["global"], edge["global"]], "permanova": tables["permanova"]},
               outputs("global"), {"models": ["mimix", "mimix_nofactor"]}, tmp_path)  # fmt: skip
    for paths, model in ((tables, "mimix"), (edge, "mimix_nofactor")):
        clusters = {"clusters": paths["clusters"]} if "clusters" in paths else {}
        wildcards = {"model": model}
        run_script("plot_local_effects", {"local": paths["local"], **clusters}, outputs(f"local_{model}"),
                   {"max_labelled": 80}, tmp_path, wildcards)  # fmt: skip
        run_script("plot_significant_effects", {"local": paths["local"]}, outputs(f"sig_{model}"),
                   {"max_taxa": 40}, tmp_path, wildcards)  # fmt: skip
        run_script("plot_variance", {"per_taxon": paths["per_taxon"], "local": paths["local"],
                                     "quantities": paths["quantities"]},
                   {**{f"shares_{k}": v for k, v in outputs(f"shares_{model}").items()},
                    **{f"scatter_{k}": v for k, v in outputs(f"scatter_{model}").items()}},
                   {}, tmp_path, wildcards)  # fmt: skip
        run_script("plot_ppc", {"checks": paths["checks"]}, outputs(f"ppc_{model}"), {"interval_level": 0.95},
                   tmp_path, wildcards)  # fmt: skip
    run_script("plot_latent_structure", {"correlation": tables["correlation"], "clusters": tables["clusters"],
                                         "local": tables["local"]}, outputs("latent"), {}, tmp_path)  # fmt: skip
    chain_paths = write_chains(fake_chains(n_chains=2, n_draws=100), tmp_path / "chains")
    run_script("diagnostics", {"chains": chain_paths},
               {"quantities": str(tmp_path / "q.tsv"), "chains": str(tmp_path / "c.tsv"),
                "verdict": str(tmp_path / "v.tsv")}, {"thresholds": {}}, tmp_path)  # fmt: skip
    run_script("plot_diagnostics", {"chains": chain_paths, "quantities": str(tmp_path / "q.tsv"),
                                    "chain_table": str(tmp_path / "c.tsv")}, outputs("diagnostics"),
               {"thresholds": {"rhat_max": 1.01}}, tmp_path)  # fmt: skip
    for png in sorted(figures.glob("*.png")):
        assert_valid_png(png)
    assert len(list(figures.glob("*.png"))) == len(list(figures.glob("*.pdf"))) == 13

    summary = {"samples_in": 40, "samples_kept": 40, "treatment_columns": DEMO_COLUMNS}
    (tmp_path / "summary.json").write_text(json.dumps(summary))
    logs = tmp_path / "logs"
    (logs / "mimix").mkdir(parents=True)
    (logs / "mimix" / "chain1.log").write_text("step finished in 3.0 s\n")
    run_script("summary", {"data_summary": str(tmp_path / "summary.json"), "permanova": tables["permanova"],
                           "verdicts": [tables["verdict"], edge["verdict"]], "global_tests": [tables["global"],
                           edge["global"]], "local_tests": [tables["local"], edge["local"]],
                           "chains": [tables["chains"], edge["chains"]]}, {"page": str(tmp_path / "summary.rst")},
               {"models": ["mimix", "mimix_nofactor"], "dataset": "demo", "logs": str(logs)}, tmp_path)  # fmt: skip
    page = (tmp_path / "summary.rst").read_text()
    assert "``mimix_nofactor``" in page and "fit_chain" in page
