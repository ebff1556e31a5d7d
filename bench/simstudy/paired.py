"""Summarise a (possibly partial) simulation-study run method by method, on the settings every method ran.

When a slow model (the Dirichlet-Laplace `mimix`) ran on only some settings, comparing its averages
with other methods' averages over all 30 settings would mix method and setting effects; this
compares all methods on the common settings only:

    python bench/simstudy/paired.py results/simstudy/simulation/replicates --out bench/simstudy/paired.md

Prints (and writes with --out) a Markdown table: settings, null settings rejected, settings with
effects rejected, mean MSE x100, 95% interval coverage, TPR / TNR of the local tests, median max
R-hat, total divergences and median seconds per replicate.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "src"))
from mimix.datastage import read_rows  # noqa: E402
from mimix.simstudy import METHOD_ORDER  # noqa: E402


def read_replicates(folder: Path) -> pd.DataFrame:
    """Every replicate row under ``folder`` (setting/replicate/method.tsv)."""
    files = sorted(folder.glob("*/*/*.tsv"))
    if not files:
        raise SystemExit(f"{folder}: no replicate rows (expected SETTING/REPLICATE/METHOD.tsv)")
    return read_rows(files)


def common_settings(rows: pd.DataFrame, methods: list[str]) -> pd.DataFrame:
    """Rows of the (setting, replicate) pairs that every method in ``methods`` ran."""
    rows = rows[rows["method"].isin(methods)]
    counts = rows.groupby(["setting", "replicate"])["method"].nunique()
    complete = counts[counts == len(methods)].index
    return rows.set_index(["setting", "replicate"]).loc[complete].reset_index()


def summary(rows: pd.DataFrame) -> pd.DataFrame:
    """One line per method over the rows given."""
    out = []
    for method, part in rows.groupby("method"):
        null, effect = part[part["dense"] == 0], part[part["dense"] > 0]
        out.append({
            "method": method,
            "settings": part["setting"].nunique(),
            "null rejected": f"{int(null['rejected'].sum())} / {len(null)}",
            "effects rejected": f"{int(effect['rejected'].sum())} / {len(effect)}",
            "MSE x100": part["mse_x100"].mean(),
            "coverage": part["coverage"].mean(),
            "TPR": part["tpr"].mean(),
            "TNR": part["tnr"].mean(),
            "median max R-hat": part["max_rhat"].median(),
            "divergences": part["divergences"].sum(),
            "median s": part["seconds"].median(),
        })  # fmt: skip
    order = {m: i for i, m in enumerate(METHOD_ORDER)}
    return pd.DataFrame(out).sort_values("method", key=lambda s: s.map(order)).reset_index(drop=True)


def markdown(table: pd.DataFrame) -> str:
    shown = table.copy()
    for column in ("MSE x100", "coverage", "TPR", "TNR", "median max R-hat"):
        shown[column] = shown[column].map(lambda v: "-" if pd.isna(v) else f"{v:.2f}")
    shown["divergences"] = shown["divergences"].map(lambda v: "-" if pd.isna(v) else f"{v:.0f}")
    shown["median s"] = shown["median s"].map(lambda v: f"{v:.0f}")
    lines = ["| " + " | ".join(shown.columns) + " |", "|" + "|".join("---" for _ in shown.columns) + "|"]
    lines += ["| " + " | ".join(str(v) for v in row) + " |" for row in shown.itertuples(index=False)]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("replicates", type=Path, help="results/<dataset>/simulation/replicates")
    parser.add_argument("--out", type=Path, help="also write the Markdown here")
    args = parser.parse_args()
    rows = read_replicates(args.replicates)
    methods = sorted(rows["method"].unique(), key=lambda m: METHOD_ORDER.index(m) if m in METHOD_ORDER else 99)
    text = []
    for label, subset in (
        ("all settings each method ran", rows),
        ("settings every method ran", common_settings(rows, methods)),
    ):
        text.append(f"### {label}\n\n{markdown(summary(subset))}")
    report = "\n".join(text)
    print(report)
    if args.out:
        args.out.write_text(report)


if __name__ == "__main__":
    main()
