"""Which quantities, and which taxa, mix slowly in a finished run: the worst elements by R-hat and
bulk ESS, per quantity, next to what the data say about each taxon.

    python bench/mixing.py RUN_DIR [--model mimix_gaussian] [--worst 15]

RUN_DIR is a ``bench/run.py`` working folder (``/tmp/mimix-bench-CASE-*``, with ``data/counts.tsv``
and ``MODEL/*.nc``) or a workflow results folder (``results/DATASET``, with ``data/counts.tsv`` and
``MODEL/chains/*.nc``). Per monitored quantity (as the workflow's diagnostics define them): the
number of elements, how many fail R-hat <= 1.01 / bulk ESS >= 100 per chain, the maximum R-hat and
the minimum ESS; then the worst elements with their taxon's prevalence (share of samples with a
nonzero count) and median relative abundance where nonzero; then the Spearman correlation between
the per-taxon R-hat of sigma2 and prevalence. Prints only; run by hand.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from mimix.diagnostics import Thresholds, combine_chains, quantity_diagnostics, read_chains  # noqa: E402


def chain_files(run_dir: Path, model: str) -> list[Path]:
    for folder in (run_dir / model / "chains", run_dir / model):
        files = sorted(folder.glob("*.nc"))
        if files:
            return files
    raise SystemExit(f"{run_dir}: no chain files of {model} (looked in {model}/chains and {model})")


def taxon_table(run_dir: Path) -> pd.DataFrame:
    """Prevalence and median nonzero relative abundance of each taxon, from the data stage's counts."""
    counts = pd.read_csv(run_dir / "data" / "counts.tsv", sep="\t", index_col=0)
    share = counts.div(counts.sum(axis=1), axis=0)
    return pd.DataFrame(
        {
            "prevalence": (counts > 0).mean(axis=0),
            "median_nonzero_share": share.where(counts > 0).median(axis=0),
        }
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--model", default="mimix_gaussian")
    parser.add_argument("--worst", type=int, default=15)
    args = parser.parse_args()

    files = chain_files(args.run_dir, args.model)
    posterior = combine_chains(read_chains(files)).posterior
    n_chains = posterior.sizes["chain"]
    table = quantity_diagnostics(posterior, Thresholds())
    taxa = taxon_table(args.run_dir)
    print(f"# {args.model}: {n_chains} chains x {posterior.sizes['draw']} draws ({len(files)} files)")
    by_quantity = table.groupby("quantity", sort=False).agg(
        elements=("ok", "size"),
        failing=("ok", lambda ok: int((~ok).sum())),
        max_rhat=("rhat", "max"),
        min_ess_bulk=("ess_bulk", "min"),
        median_ess_bulk=("ess_bulk", "median"),
    )
    print(by_quantity.to_string(float_format=lambda x: f"{x:.3f}" if x < 10 else f"{x:.0f}"))

    # element labels are coordinate values joined by "|", the taxon first (mimix.diagnostics.element_labels)
    per_taxon_quantities = ("sigma2", "lambda_diag", "eta", "beta")
    table["taxon"] = [
        str(index).split("|")[0] if quantity in per_taxon_quantities else ""
        for quantity, index in zip(table["quantity"], table["index"], strict=True)
    ]
    worst = table.sort_values("rhat", ascending=False).head(args.worst)
    worst = worst.join(taxa, on="taxon")
    columns = ["quantity", "index", "taxon", "mean", "sd", "rhat", "ess_bulk", "prevalence", "median_nonzero_share"]
    print(f"\n# the {args.worst} elements with the largest R-hat")
    print(worst[columns].to_string(index=False, float_format=lambda x: f"{x:.3g}"))

    if "sigma2" in posterior:
        per_taxon = table[table["quantity"] == "sigma2"].set_index("taxon")[["rhat", "ess_bulk"]].join(taxa)
        rho_rhat = per_taxon["rhat"].rank().corr(per_taxon["prevalence"].rank())
        rho_ess = per_taxon["ess_bulk"].rank().corr(per_taxon["prevalence"].rank())
        print(f"\n# sigma2 per taxon: Spearman(R-hat, prevalence) = {rho_rhat:.2f}, "
              f"Spearman(ESS, prevalence) = {rho_ess:.2f}")  # fmt: skip
        bins = pd.cut(per_taxon["prevalence"], [0, 0.2, 0.4, 0.6, 0.8, 1.0])
        print(per_taxon.groupby(bins, observed=True).agg(
            taxa=("rhat", "size"), median_rhat=("rhat", "median"), max_rhat=("rhat", "max"),
            median_ess=("ess_bulk", "median"), min_ess=("ess_bulk", "min"),
        ).to_string(float_format=lambda x: f"{x:.3f}" if x < 10 else f"{x:.0f}"))  # fmt: skip


if __name__ == "__main__":
    main()
