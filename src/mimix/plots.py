"""Figures: a shared style (readable fonts, colour-blind-safe Okabe-Ito palette) and the plots.

Every plot function takes tidy tables and returns a matplotlib Figure; :func:`save_figure`
writes it as PNG and PDF. No plot function reads files.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless: figures are written to files, never shown
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

# Okabe & Ito (2008): distinguishable with every common form of colour blindness.
OKABE_ITO = {
    "black": "#000000",
    "orange": "#E69F00",
    "sky": "#56B4E9",
    "green": "#009E73",
    "yellow": "#F0E442",
    "blue": "#0072B2",
    "vermillion": "#D55E00",
    "purple": "#CC79A7",
    "grey": "#999999",
}
STATUS_COLOURS = {
    "kept": OKABE_ITO["blue"],
    "aggregated": OKABE_ITO["orange"],
    "trimmed": OKABE_ITO["vermillion"],
    "dropped": OKABE_ITO["grey"],
}

STYLE = {
    "font.size": 10,
    "axes.titlesize": 11,
    "axes.labelsize": 10,
    "xtick.labelsize": 9,
    "ytick.labelsize": 9,
    "legend.fontsize": 9,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "figure.dpi": 150,
    "savefig.dpi": 200,
    "savefig.bbox": "tight",
    "axes.prop_cycle": matplotlib.cycler(
        color=[OKABE_ITO[c] for c in ("blue", "orange", "green", "vermillion", "purple", "sky", "yellow", "black")]
    ),
}


def save_figure(figure: plt.Figure, png: str | Path, pdf: str | Path | None = None) -> None:
    """Write the figure as PNG (and PDF) and release its memory."""
    for path in (png, pdf):
        if path is not None:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            figure.savefig(path)
    plt.close(figure)


def data_stage_figure(samples: pd.DataFrame, taxa: pd.DataFrame, filtering: dict) -> plt.Figure:
    """Reads per sample before/after filtering, and prevalence vs abundance with the thresholds.

    ``samples``/``taxa`` are the data stage's samples.tsv/taxa.tsv tables; ``filtering`` the config section.
    """
    with plt.rc_context(STYLE):
        figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2), gridspec_kw={"width_ratios": [1.1, 1]})
        order = samples.sort_values("reads").reset_index(drop=True)
        x = np.arange(len(order))
        kept = order["status"] == "kept"
        left.vlines(x, order["reads_in_kept_taxa"], order["reads"], color=OKABE_ITO["grey"], lw=0.8)
        left.scatter(x[kept], order.loc[kept, "reads"], s=12, color=OKABE_ITO["blue"], label="all reads (kept sample)")
        left.scatter(
            x[kept],
            order.loc[kept, "reads_in_kept_taxa"],
            s=12,
            marker="_",
            color=OKABE_ITO["orange"],
            label="reads in kept taxa (excl. 'other')",
        )
        if (~kept).any():
            left.scatter(
                x[~kept],
                order.loc[~kept, "reads"],
                s=16,
                marker="x",
                color=OKABE_ITO["vermillion"],
                label="dropped sample",
            )
        left.axhline(
            filtering.get("min_depth", 0),
            color=OKABE_ITO["vermillion"],
            ls="--",
            lw=1,
            label=f"min_depth = {filtering.get('min_depth', 0):,}",
        )
        left.set_yscale("log")
        left.set_xlabel("samples, sorted by read depth")
        left.set_ylabel("reads per sample (log scale)")
        left.set_title(f"Read depth: {int(kept.sum())} of {len(order)} samples kept")
        left.legend(loc="upper left", frameon=False)

        abundance = taxa["mean_relative_abundance"].clip(lower=1e-7)
        for status, colour in STATUS_COLOURS.items():
            mask = taxa["status"] == status
            if mask.any():
                right.scatter(
                    abundance[mask],
                    taxa.loc[mask, "prevalence"],
                    s=10,
                    alpha=0.7,
                    color=colour,
                    label=f"{status} ({int(mask.sum())})",
                )
        right.axhline(
            filtering.get("min_prevalence", 0),
            color=OKABE_ITO["black"],
            ls="--",
            lw=1,
            label=f"min_prevalence = {filtering.get('min_prevalence', 0):g}",
        )
        if filtering.get("min_mean_relative_abundance", 0) > 0:
            right.axvline(
                filtering["min_mean_relative_abundance"],
                color=OKABE_ITO["black"],
                ls=":",
                lw=1,
                label=f"min mean rel. abundance = {filtering['min_mean_relative_abundance']:g}",
            )
        right.set_xscale("log")
        right.set_xlabel("mean relative abundance (log scale)")
        right.set_ylabel("prevalence (fraction of kept samples)")
        right.set_title(f"Taxa: {int((taxa['status'] == 'kept').sum())} of {len(taxa)} modelled individually")
        right.legend(loc="center right", frameon=False)
        figure.tight_layout()
    return figure
