"""Agreement of an approximate fit (sampling.method: pathfinder) with full NUTS, from the workflow's tables.

    python bench/agreement.py results/nutnet408 results/nutnet408-pathfinder [--models mimix_nofactor]

Both folders are results/{dataset}/ of the same data and model, one run with NUTS and one with the
approximation. Prints one Markdown row per model (the README's table) and appends a JSON record to
bench/agreement.jsonl:

* global decisions: fraction of global tests (columns and terms) with the same decision, and the
  largest difference of posterior probabilities;
* local effects: correlation of the posterior means of beta; fraction of the approximate means
  that fall inside NUTS' 95% intervals, fraction of overlapping intervals; fraction of taxa with
  the same "interval excludes 0" call; ratio of interval widths (approximate / NUTS, median);
* variance decomposition: mean and largest absolute difference of the per-taxon shares.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
RESULTS_FILE = ROOT / "bench" / "agreement.jsonl"


def read(folder: Path, model: str, table: str) -> pd.DataFrame:
    return pd.read_csv(folder / model / f"{table}.tsv", sep="\t", keep_default_na=False, na_values=[""])


def agreement(nuts: Path, approx: Path, model: str) -> dict:
    g_n, g_a = read(nuts, model, "global_tests"), read(approx, model, "global_tests")
    g = g_n.merge(g_a, on=["test", "name"], suffixes=("_nuts", "_approx"))
    l_n, l_a = read(nuts, model, "local_tests"), read(approx, model, "local_tests")
    loc = l_n.merge(l_a, on=["taxon", "column"], suffixes=("_nuts", "_approx"))
    inside = (loc["mean_approx"] >= loc["lower_nuts"]) & (loc["mean_approx"] <= loc["upper_nuts"])
    # Spike-and-slab: a null taxon's NUTS interval is often exactly [0, 0], which no approximate
    # mean hits; overlap of the two intervals is the fairer agreement measure there.
    overlap = (loc["lower_approx"] <= loc["upper_nuts"]) & (loc["lower_nuts"] <= loc["upper_approx"])
    same_call = loc["interval_excludes_zero_nuts"] == loc["interval_excludes_zero_approx"]
    width = (loc["upper_approx"] - loc["lower_approx"]) / (loc["upper_nuts"] - loc["lower_nuts"])
    v_n, v_a = read(nuts, model, "variance/per_taxon"), read(approx, model, "variance/per_taxon")
    var = v_n.merge(v_a, on=["taxon", "source", "kind"], suffixes=("_nuts", "_approx"))
    var = var[var["kind"] == "share"]
    share_diff = (var["mean_nuts"] - var["mean_approx"]).abs()
    return {
        "model": model,
        "global_same_decision": float((g["decision_nuts"] == g["decision_approx"]).mean()),
        "global_max_prob_diff": float((g["posterior_prob_nuts"] - g["posterior_prob_approx"]).abs().max()),
        "beta_mean_correlation": float(np.corrcoef(loc["mean_nuts"], loc["mean_approx"])[0, 1]),
        "approx_mean_in_nuts_interval": float(inside.mean()),
        "intervals_overlap": float(overlap.mean()),
        "same_interval_call": float(same_call.mean()),
        "median_width_ratio": float(width.median()),
        "variance_share_mean_abs_diff": float(share_diff.mean()),
        "variance_share_max_abs_diff": float(share_diff.max()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("nuts", type=Path)
    parser.add_argument("approx", type=Path)
    parser.add_argument("--models", nargs="+", default=["mimix_nofactor"])
    args = parser.parse_args()
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout
    rows = [agreement(args.nuts, args.approx, model) for model in args.models]
    header = list(rows[0])
    print("| nuts | approx | " + " | ".join(header) + " |")
    print("|" + "---|" * (len(header) + 2))
    for row in rows:
        values = [f"{v:.3f}" if isinstance(v, float) else str(v) for v in row.values()]
        print(f"| {args.nuts.name} | {args.approx.name} | " + " | ".join(values) + " |")
        record = {"date": time.strftime("%Y-%m-%d"), "commit": commit.strip(), "nuts": str(args.nuts),
                  "approx": str(args.approx), **row}  # fmt: skip
        with RESULTS_FILE.open("a") as handle:
            handle.write(json.dumps(record) + "\n")


if __name__ == "__main__":
    main()
