"""Figures: a shared style (readable fonts, colour-blind-safe Okabe-Ito palette) and the plots.

Every plot function takes tidy tables and returns a matplotlib Figure; :func:`save_figure`
writes it as PNG and PDF. No plot function reads files.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
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
            # STYLE's savefig settings apply inside its rc_context only: pass them here.
            figure.savefig(path, dpi=STYLE["savefig.dpi"], bbox_inches=STYLE["savefig.bbox"])
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


# ---------------------------------------------------------------------------------------------
# Shared helpers of the inference figures
# ---------------------------------------------------------------------------------------------

MODEL_COLOURS = {
    "mimix": OKABE_ITO["blue"],
    "mimix_gaussian": OKABE_ITO["orange"],
    "mimix_nofactor": OKABE_ITO["green"],
}
INCREASE, DECREASE, NEUTRAL = OKABE_ITO["vermillion"], OKABE_ITO["blue"], "#B0B0B0"
# Above this many taxa their names no longer fit on an axis: figures drop them or show the top ones.
MAX_LABELLED_TAXA = 80
LABEL_CHARS = 40


def short_label(text: object, width: int = LABEL_CHARS) -> str:
    """``text`` cut to ``width`` characters with an ellipsis (taxonomy labels can be very long)."""
    text = str(text)
    return text if len(text) <= width else text[: width - 1] + "…"


def wrap_name(name: str, width: int = 24) -> str:
    """A treatment column name broken at ``:`` (interactions) so it fits above a narrow panel."""
    if len(name) <= width:
        return name
    return ":\n".join(name.split(":"))


def model_colour(model: str, position: int = 0) -> str:
    cycle = [OKABE_ITO[c] for c in ("blue", "orange", "green", "purple", "sky", "vermillion")]
    return MODEL_COLOURS.get(model, cycle[position % len(cycle)])


def message_figure(title: str, message: str, size: tuple[float, float] = (7.0, 2.4)) -> plt.Figure:
    """A figure saying in words why there is nothing to plot (the rule still writes its output)."""
    with plt.rc_context(STYLE):
        figure, ax = plt.subplots(figsize=size)
        ax.set_axis_off()
        ax.set_title(title, loc="left")
        ax.text(0.5, 0.45, message, ha="center", va="center", fontsize=10, transform=ax.transAxes)
    return figure


def significant_taxa(local: pd.DataFrame) -> pd.Index:
    """Taxa whose credible interval excludes zero in at least one treatment column."""
    flagged = local.loc[_as_bool(local["interval_excludes_zero"]), "taxon"]
    return pd.Index(pd.unique(flagged.astype(str)))


def taxon_labels(local: pd.DataFrame) -> pd.Series:
    """Display label per taxon id (the id when the label is missing)."""
    first = local.assign(taxon=local["taxon"].astype(str)).drop_duplicates("taxon").set_index("taxon")
    ids = first.index.to_series()
    if "label" not in first:
        return ids
    labels = first["label"]
    return labels.where(labels.notna() & (labels.astype(str) != ""), ids).astype(str)


def taxon_order(local: pd.DataFrame, clusters: pd.DataFrame | None = None) -> list[str]:
    """Taxa in dendrogram order when the model has a latent structure, else by the first column's effect.

    Taxa missing from ``clusters`` go last, in effect order.
    """
    first = local["column"].iloc[0]
    by_effect = local[local["column"] == first].sort_values("mean", kind="stable")["taxon"].astype(str).tolist()
    if clusters is None or clusters.empty:
        return by_effect
    ordered = clusters.sort_values("order") if "order" in clusters else clusters
    present = set(by_effect)
    known = [t for t in ordered["taxon"].astype(str) if t in present]
    seen = set(known)
    return known + [t for t in by_effect if t not in seen]


def cluster_runs(clusters: pd.DataFrame, order: list[str]) -> list[tuple[int, int, int]]:
    """``(cluster, start, stop)`` runs of consecutive taxa of one subcommunity along ``order`` (stop exclusive)."""
    cluster_of = dict(zip(clusters["taxon"].astype(str), clusters["cluster"].astype(int), strict=True))
    runs: list[tuple[int, int, int]] = []
    for position, taxon in enumerate(order):
        label = cluster_of.get(taxon, -1)
        if runs and runs[-1][0] == label:
            runs[-1] = (label, runs[-1][1], position + 1)
        else:
            runs.append((label, position, position + 1))
    return runs


def _as_bool(values: pd.Series) -> pd.Series:
    """Booleans from a column read back from TSV (``True``/``False`` text or bools)."""
    if values.dtype == bool:
        return values
    return values.astype(str).str.strip().str.lower().isin(["true", "1"])


def all_reliable(table: pd.DataFrame) -> bool:
    return "reliable" not in table or bool(_as_bool(table["reliable"]).all())


CAUTION = "not every estimate passed the convergence diagnostics: read with caution"


def place_labels(
    ax: plt.Axes,
    x: np.ndarray,
    y: np.ndarray,
    texts: list[str],
    colour: str,
    obstacles: tuple[np.ndarray, np.ndarray] | None = None,
) -> int:
    """Label points without overlaps: each label takes the first free spot of eight around its point.

    Labels avoid each other and the points in ``obstacles`` (data coordinates). Labels that
    find no free spot inside the axes are left out; returns how many were placed. Call after
    the axes limits are final.
    """
    from matplotlib.text import Text
    from matplotlib.transforms import Bbox

    ax.figure.draw_without_rendering()  # run the layout engine first: positions must be final
    renderer = ax.figure.canvas.get_renderer()
    frame = ax.get_window_extent(renderer)
    taken: list = []
    if obstacles is not None:
        radius = 3.0 * ax.figure.dpi / 72  # about a marker's radius, in pixels
        points = ax.transData.transform(np.column_stack(obstacles))
        taken += [Bbox.from_extents(px - radius, py - radius, px + radius, py + radius) for px, py in points]
    offsets = [(6, 3), (6, -9), (-6, 3), (-6, -9), (10, 12), (-10, 12), (10, -18), (-10, -18)]
    placed = 0
    for xi, yi, text in zip(x, y, texts, strict=True):
        for dx, dy in offsets:
            label = ax.annotate(
                text,
                (xi, yi),
                xytext=(dx, dy),
                textcoords="offset points",
                ha="left" if dx > 0 else "right",
                va="center",
                fontsize=7.5,
                color=colour,
                bbox={"boxstyle": "square,pad=0.1", "fc": "white", "ec": "none", "alpha": 0.75},
                arrowprops={"arrowstyle": "-", "color": colour, "lw": 0.5, "shrinkA": 0, "shrinkB": 2},
            )
            # The text alone: the annotation's own extent includes the leader line to the point.
            label.update_positions(renderer)
            box = Text.get_window_extent(label, renderer).expanded(1.04, 1.2)
            fits = frame.x0 <= box.x0 and box.x1 <= frame.x1 and frame.y0 <= box.y0 and box.y1 <= frame.y1
            if fits and not any(box.overlaps(other) for other in taken):
                taken.append(box)
                placed += 1
                break
            label.remove()
    return placed


# ---------------------------------------------------------------------------------------------
# 1. Global tests: does a treatment change composition at all?
# ---------------------------------------------------------------------------------------------


def global_test_rows(tables: Sequence[pd.DataFrame]) -> list[tuple[str, str]]:
    """``(test, name)`` rows to show: every formula term, plus the columns when a term spans several."""
    combined = pd.concat(list(tables), ignore_index=True)
    terms = combined[combined["test"] == "term"]
    columns = combined[combined["test"] == "column"]
    rows = [("term", str(n)) for n in pd.unique(terms["name"])]
    if terms.empty or (terms["columns"].astype(int) > 1).any():
        rows += [("column", str(n)) for n in pd.unique(columns["name"])]
    return rows


def global_tests_figure(tests: Mapping[str, pd.DataFrame], permanova: pd.DataFrame | None = None) -> plt.Figure:
    """Posterior probability of an effect per term (and column) for every model, beside PERMANOVA p-values.

    ``tests`` maps model name to its global_tests table; ``permanova`` is the PERMANOVA table
    (term as index or column), or None to draw the MIMIX panel alone.
    """
    if not tests:
        return message_figure("Global tests", "no model results to show")
    rows = global_test_rows(list(tests.values()))
    both = len({test for test, _ in rows}) > 1
    labels = [f"{name} (column)" if both and test == "column" else name for test, name in rows]
    threshold = float(next(iter(tests.values()))["threshold"].iloc[0])
    n_rows, n_models = len(rows), len(tests)
    height = 1.9 + 0.42 * n_rows * max(1.0, n_models / 3)
    with plt.rc_context(STYLE):
        if permanova is not None:
            figure, (left, right) = plt.subplots(
                1, 2, figsize=(10.5, height), sharey=True, gridspec_kw={"width_ratios": [1.5, 1]}, layout="constrained"
            )
        else:
            figure, left = plt.subplots(figsize=(7, height), layout="constrained")
            right = None
        y = np.arange(n_rows, dtype=float)
        spread = 0.6 / max(n_models, 1)
        left.axvspan(threshold, 1.02, color=OKABE_ITO["vermillion"], alpha=0.07, lw=0)
        left.axvline(threshold, color=OKABE_ITO["vermillion"], ls="--", lw=1, label=f"threshold {threshold:g}")
        prior_drawn = False
        for m, (model, table) in enumerate(tests.items()):
            offset = (m - (n_models - 1) / 2) * spread
            keyed = table.assign(name=table["name"].astype(str)).set_index(["test", "name"])
            keyed = keyed[~keyed.index.duplicated()]
            colour = model_colour(model, m)
            for i, key in enumerate(rows):
                if key not in keyed.index:
                    continue
                row = keyed.loc[key]
                reliable = str(row["reliable"]).strip().lower() in ("true", "1")
                prob, mcse = float(row["posterior_prob"]), float(row["mcse"]) if pd.notna(row["mcse"]) else 0.0
                left.errorbar(
                    prob,
                    y[i] + offset,
                    xerr=2 * mcse,
                    fmt="o",
                    ms=7,
                    color=colour,
                    mfc=colour if reliable else "white",
                    mew=1.5,
                    label=model if i == 0 or key == rows[0] else None,
                )
                left.plot(
                    [row["prior_prob"]] * 2,
                    [y[i] + offset - spread / 2, y[i] + offset + spread / 2],
                    color=OKABE_ITO["grey"],
                    lw=1.5,
                    label=None if prior_drawn else "prior probability",
                )
                prior_drawn = True
        left.set_xlim(-0.02, 1.02)
        left.set_yticks(y, labels)
        left.set_ylim(n_rows - 0.5, -0.5)
        left.set_xlabel("posterior probability that the treatment affects composition")
        left.set_title("MIMIX global tests (hollow: failed diagnostics)", loc="left")
        handles, names = left.get_legend_handles_labels()
        unique = dict(zip(names, handles, strict=True))
        if right is not None:
            _permanova_panel(right, permanova, rows)
        figure.legend(
            unique.values(), unique.keys(), loc="outside lower center", ncol=min(len(unique), 5), frameon=False
        )
    return figure


def _permanova_panel(ax: plt.Axes, permanova: pd.DataFrame, rows: list[tuple[str, str]]) -> None:
    table = permanova.set_index("term") if "term" in permanova.columns else permanova
    table.index = table.index.astype(str)
    ax.axvline(0.05, color=OKABE_ITO["vermillion"], ls="--", lw=1, label="p = 0.05")
    shown = 0
    for i, (test, name) in enumerate(rows):
        if test != "term" or name not in table.index or pd.isna(table.loc[name, "p_value"]):
            continue
        p, r2 = float(table.loc[name, "p_value"]), float(table.loc[name, "r2"])
        ax.plot(p, i, "D", color=OKABE_ITO["black"], ms=6)
        ax.annotate(f"R² {r2:.2f}", (p, i), xytext=(7, 0), textcoords="offset points", va="center", fontsize=8)
        shown += 1
    ax.set_xscale("log")
    values = pd.to_numeric(table["p_value"], errors="coerce").dropna()
    ax.set_xlim(min(1e-3, float(values.min()) / 2) if len(values) else 1e-3, 1.6)
    ax.set_xlabel("PERMANOVA p-value (log scale)")
    ax.set_title("PERMANOVA (Bray-Curtis), same terms", loc="left")
    if not shown:
        ax.text(0.5, 0.5, "no PERMANOVA term matches", ha="center", va="center", transform=ax.transAxes)


# ---------------------------------------------------------------------------------------------
# 2. Local effects: which taxa respond, by how much?
# ---------------------------------------------------------------------------------------------


def local_effects_figure(
    local: pd.DataFrame, clusters: pd.DataFrame | None = None, max_labelled: int = MAX_LABELLED_TAXA
) -> plt.Figure:
    """Forest plot of every taxon's effect with its interval, one panel per treatment column.

    Taxa follow the subcommunity (dendrogram) order when ``clusters`` is given, shaded band by
    band, else the effect on the first column. Taxa whose interval excludes zero are coloured
    by direction. Above ``max_labelled`` taxa the names are dropped (see the significant-taxa figure).
    """
    columns = [str(c) for c in pd.unique(local["column"])]
    local = local.assign(taxon=local["taxon"].astype(str), column=local["column"].astype(str))
    order = taxon_order(local, clusters)
    n = len(order)
    labelled = n <= max_labelled
    position = {taxon: i for i, taxon in enumerate(order)}
    height = min(1.8 + 0.155 * n, 24) if labelled else 10.0
    width = min(2.2 + 2.7 * len(columns) + (2.0 if labelled else 0.0), 18)
    small = n > 150
    with plt.rc_context(STYLE):
        # A shared effect axis: every column's effects are on the same log-ratio scale.
        figure, axes = plt.subplots(
            1, len(columns), sharey=True, sharex=True, figsize=(width, height), squeeze=False, layout="constrained"
        )
        for ax, column in zip(axes[0], columns, strict=True):
            part = local[local["column"] == column]
            y = part["taxon"].map(position).to_numpy(dtype=float)
            significant = _as_bool(part["interval_excludes_zero"]).to_numpy()
            colours = np.where(part["mean"].to_numpy() > 0, INCREASE, DECREASE)
            if clusters is not None and not clusters.empty:
                for k, (_, start, stop) in enumerate(cluster_runs(clusters, order)):
                    if k % 2 == 0:
                        ax.axhspan(start - 0.5, stop - 0.5, color="#EDEDED", lw=0, zorder=0)
            ax.axvline(0, color=OKABE_ITO["black"], lw=0.8, zorder=1)
            quiet = ~significant
            ax.hlines(y[quiet], part["lower"][quiet], part["upper"][quiet], color=NEUTRAL, lw=0.6 if small else 1.2)
            ax.scatter(part["mean"][quiet], y[quiet], s=3 if small else 10, color=NEUTRAL, zorder=2)
            ax.hlines(
                y[significant],
                part["lower"][significant],
                part["upper"][significant],
                color=colours[significant],
                lw=1.0 if small else 1.8,
                zorder=3,
            )
            ax.scatter(
                part["mean"][significant], y[significant], s=6 if small else 16, color=colours[significant], zorder=4
            )
            ax.set_title(f"{wrap_name(column)}\n{int(significant.sum())} of {len(part)} taxa respond", fontsize=10)
            ax.set_xlabel("effect (log-ratio scale)")
        first = axes[0, 0]
        first.set_ylim(n - 0.5, -0.5)
        if labelled:
            names = taxon_labels(local).reindex(order).fillna(pd.Series(order, index=order))
            first.set_yticks(np.arange(n), [short_label(v) for v in names], fontsize=7.5 if n > 40 else 8.5)
        else:
            first.set_yticks([])
            how = "subcommunity order (grey bands)" if clusters is not None else f"ordered by effect on {columns[0]}"
            first.set_ylabel(f"{n} taxa, {how}; names in the significant-taxa figure")
        note = f"\n({CAUTION})" if not all_reliable(local) else ""
        figure.suptitle(
            "Effect of each treatment on every taxon: posterior mean and 95% interval\n"
            "coloured: interval excludes 0 (red up, blue down)" + note,
            fontsize=10,
        )
    return figure


def significant_effects_figure(local: pd.DataFrame, max_taxa: int = 40) -> plt.Figure:
    """Only the taxa whose interval excludes zero in some column, named, with their effects in every column.

    Taxa are grouped by the column of their strongest effect and sorted by it; above
    ``max_taxa`` responding taxa the strongest ``max_taxa`` are shown.
    """
    responding = significant_taxa(local)
    if responding.empty:
        columns = ", ".join(str(c) for c in pd.unique(local["column"]))
        return message_figure(
            "Responding taxa",
            f"No taxon's 95% interval excludes zero in any treatment column\n({columns}).",
        )
    local = local.assign(taxon=local["taxon"].astype(str), column=local["column"].astype(str))
    columns = [str(c) for c in pd.unique(local["column"])]
    flagged = local[_as_bool(local["interval_excludes_zero"])].copy()
    flagged["strength"] = flagged["mean"].abs()
    strongest = flagged.sort_values("strength", ascending=False).drop_duplicates("taxon")
    # Round robin over the columns (strongest first in each), so every column keeps its best responders.
    flagged["within"] = flagged.groupby("column")["strength"].rank(ascending=False, method="first")
    picked = flagged.sort_values(["within", "strength"], ascending=[True, False])["taxon"].drop_duplicates()
    kept = strongest.set_index("taxon").loc[picked.head(max_taxa)].reset_index()
    kept["rank"] = kept["column"].map({c: i for i, c in enumerate(columns)})
    order = kept.sort_values(["rank", "mean"])["taxon"].tolist()
    n = len(order)
    position = {taxon: i for i, taxon in enumerate(order)}
    names = taxon_labels(local).reindex(order)
    with plt.rc_context(STYLE):
        figure, axes = plt.subplots(
            1,
            len(columns),
            sharey=True,
            sharex=True,
            figsize=(min(3.0 + 2.7 * len(columns), 18), 1.9 + 0.22 * n),
            squeeze=False,
            layout="constrained",
        )
        for ax, column in zip(axes[0], columns, strict=True):
            part = local[(local["column"] == column) & local["taxon"].isin(position)]
            y = part["taxon"].map(position).to_numpy(dtype=float)
            significant = _as_bool(part["interval_excludes_zero"]).to_numpy()
            colours = np.where(~significant, NEUTRAL, np.where(part["mean"].to_numpy() > 0, INCREASE, DECREASE))
            ax.axvline(0, color=OKABE_ITO["black"], lw=0.8)
            ax.hlines(y, part["lower"], part["upper"], color=colours, lw=1.8)
            ax.scatter(part["mean"], y, s=22, color=colours, zorder=3)
            total = int(flagged["column"].eq(column).sum())
            ax.set_title(f"{wrap_name(column)}\n{int(significant.sum())} of {total} responding shown", fontsize=10)
            ax.set_xlabel("effect (log-ratio)\nfold change = exp(effect)")
            ax.grid(axis="y", color="#EEEEEE", lw=0.6)
        axes[0, 0].set_yticks(np.arange(n), [short_label(v) for v in names])
        axes[0, 0].set_ylim(n - 0.5, -0.5)
        shown = f"{n} of {len(responding)}, the strongest of each column" if len(responding) > n else f"all {n}"
        note = f"\n{CAUTION}" if not all_reliable(local) else ""
        figure.suptitle(
            f"Taxa responding to a treatment ({shown}): 95% interval excludes 0 in at least one column;\n"
            "grey: not distinguishable from 0 in that column" + note,
            fontsize=10,
        )
    return figure


# ---------------------------------------------------------------------------------------------
# 3. Variance decomposition
# ---------------------------------------------------------------------------------------------


def source_name(source: str) -> str:
    if source.startswith("blocking:"):
        return f"{source.split(':', 1)[1]} (blocking factor)"
    return {"latent": "latent factors", "error": "taxon-specific error"}.get(source, source)


def _source_colours(sources: list[str]) -> dict[str, str]:
    blocking = [OKABE_ITO[c] for c in ("sky", "blue", "purple", "yellow", "black")]
    colours, b = {}, 0
    for source in sources:
        if source == "latent":
            colours[source] = OKABE_ITO["green"]
        elif source == "error":
            colours[source] = OKABE_ITO["grey"]
        else:
            colours[source] = blocking[b % len(blocking)]
            b += 1
    return colours


def variance_shares_figure(
    per_taxon: pd.DataFrame, labels: Mapping[str, str] | None = None, max_labelled: int = MAX_LABELLED_TAXA
) -> plt.Figure:
    """Each taxon's variance split into blocking factors, latent factors and error (posterior mean shares).

    Taxa are sorted by their error share. Above ``max_labelled`` taxa the bars become a
    columns-per-taxon area without names.
    """
    shares = per_taxon[per_taxon["kind"] == "share"].assign(taxon=lambda t: t["taxon"].astype(str))
    sources = [str(s) for s in pd.unique(shares["source"])]
    wide = shares.pivot(index="taxon", columns="source", values="mean").reindex(columns=sources).fillna(0.0)
    wide = wide.sort_values("error" if "error" in wide else sources[-1], kind="stable")
    colours = _source_colours(sources)
    n = len(wide)
    labelled = n <= max_labelled
    averages = ", ".join(f"{source_name(s)} {wide[s].mean():.0%}" for s in sources)
    with plt.rc_context(STYLE):
        if labelled:
            figure, ax = plt.subplots(figsize=(8.5, min(2.0 + 0.16 * n, 24)), layout="constrained")
            left = np.zeros(n)
            y = np.arange(n)
            for source in sources:
                ax.barh(y, wide[source], left=left, color=colours[source], height=0.85, label=source_name(source))
                left += wide[source].to_numpy()
            known = dict(labels) if labels is not None else {}
            names = [short_label(known.get(t, t)) for t in wide.index]
            ax.set_yticks(y, names, fontsize=7.5 if n > 40 else 8.5)
            ax.set_ylim(n - 0.5, -0.5)
            ax.set_xlim(0, 1)
            ax.set_xlabel("share of the taxon's variance (posterior mean)")
        else:
            figure, ax = plt.subplots(figsize=(11, 4.8), layout="constrained")
            bottom = np.zeros(n)
            x = np.arange(n)
            for source in sources:
                ax.bar(x, wide[source], bottom=bottom, width=1.0, color=colours[source], label=source_name(source))
                bottom += wide[source].to_numpy()
            ax.set_xlim(-0.5, n - 0.5)
            ax.set_ylim(0, 1)
            ax.set_xticks([])
            ax.set_xlabel(f"{n} taxa, sorted by their error share")
            ax.set_ylabel("share of the taxon's variance (posterior mean)")
        ax.set_title(f"Variance decomposition per taxon\naverage over taxa: {averages}", loc="left", fontsize=10)
        figure.legend(loc="outside lower center", ncol=min(len(sources), 4), frameon=False)
    return figure


def error_variance_figure(
    per_taxon: pd.DataFrame,
    sigma2: pd.Series,
    local: pd.DataFrame | None = None,
    max_labels: int = 20,
) -> plt.Figure:
    """The paper's scatter: each taxon's error variance (posterior mean sigma2) against eta.

    ``eta`` is the share of the taxon's variance routed through the latent factors; models
    without factors have no eta and show the blocking factors' combined share instead.
    Responding taxa (interval excludes zero) are coloured, the ``max_labels`` strongest named.
    """
    sources = set(per_taxon["source"].astype(str))
    y_source = "eta" if "eta" in sources else "blocking_total"
    y_table = per_taxon[per_taxon["source"] == y_source].assign(taxon=lambda t: t["taxon"].astype(str))
    y = y_table.set_index("taxon")["mean"]
    sigma2 = sigma2.copy()
    sigma2.index = sigma2.index.astype(str)
    sigma2 = sigma2[~sigma2.index.duplicated()]
    y = y[~y.index.duplicated()]
    taxa = [t for t in y.index if t in sigma2.index]
    if not taxa:
        return message_figure("Error variance vs eta", "no taxon has both an error variance and a variance share")
    x, y = sigma2.reindex(taxa).to_numpy(dtype=float), y.reindex(taxa).to_numpy(dtype=float)
    responding = significant_taxa(local) if local is not None else pd.Index([])
    hit = np.isin(taxa, responding)
    with plt.rc_context(STYLE):
        figure, ax = plt.subplots(figsize=(7.5, 5.6), layout="constrained")
        ax.scatter(x[~hit], y[~hit], s=14, color=NEUTRAL, label="no detectable treatment effect")
        if hit.any():
            ax.scatter(x[hit], y[hit], s=26, color=INCREASE, label="responds to a treatment (95% interval excludes 0)")
        positive = x[np.isfinite(x) & (x > 0)]
        if len(positive) and positive.max() / positive.min() > 20:
            ax.set_xscale("log")
        ax.set_ylim(-0.03, 1.08)
        ax.set_xlabel("taxon-specific error variance σ²ₖ (posterior mean)")
        if y_source == "eta":
            ax.set_ylabel("ηₖ: share of variance through the latent factors\n(blocking included; posterior mean)")
        else:
            ax.set_ylabel("share of variance from the blocking factors\n(this model has no latent factors)")
        figure.legend(loc="outside lower center", ncol=2, frameon=False, fontsize=8)
        named = 0
        if hit.any():
            strength = (
                local[local["taxon"].astype(str).isin(responding)]
                .assign(strength=lambda t: t["mean"].abs(), taxon=lambda t: t["taxon"].astype(str))
                .groupby("taxon")["strength"]
                .max()
            )
            chosen = [t for t in strength.sort_values(ascending=False).index if t in set(taxa)][:max_labels]
            names = taxon_labels(local)
            index = [taxa.index(t) for t in chosen]
            texts = [short_label(names.get(t, t), 28) for t in chosen]
            named = place_labels(ax, x[index], y[index], texts, INCREASE, obstacles=(x[hit], y[hit]))
        title = f"Error variance vs {'eta' if y_source == 'eta' else 'blocking share'} of {len(taxa)} taxa"
        if hit.any():
            title += f"; {int(hit.sum())} responding, {named} named"
        ax.set_title(title, loc="left")
    return figure


# ---------------------------------------------------------------------------------------------
# 4. Latent structure
# ---------------------------------------------------------------------------------------------


def latent_structure_figure(
    correlation: pd.DataFrame,
    clusters: pd.DataFrame,
    local: pd.DataFrame | None = None,
    max_labelled: int = 70,
) -> plt.Figure:
    """Taxon correlation through the latent factors, clustered, with subcommunities outlined.

    A strip left of the heatmap marks, per treatment column, the taxa whose interval excludes
    zero (red: increase, blue: decrease). Names are shown up to ``max_labelled`` taxa.
    """
    from matplotlib.colors import ListedColormap
    from matplotlib.patches import Rectangle

    order = [str(t) for t in correlation.index]
    matrix = correlation.to_numpy(dtype=float)
    k = len(order)
    labelled = k <= max_labelled
    columns = [str(c) for c in pd.unique(local["column"])] if local is not None else []
    marks = np.zeros((k, max(len(columns), 1)))
    if local is not None:
        table = local.assign(taxon=local["taxon"].astype(str), column=local["column"].astype(str))
        table = table[_as_bool(table["interval_excludes_zero"])]
        position = {t: i for i, t in enumerate(order)}
        for row in table.itertuples(index=False):
            if row.taxon in position:
                marks[position[row.taxon], columns.index(row.column)] = 1 if row.mean > 0 else -1
    runs = cluster_runs(clusters, order)
    multi = [r for r in runs if r[2] - r[1] > 1]
    side = 9.5 if labelled else 9.0
    with plt.rc_context(STYLE):
        figure = plt.figure(figsize=(side + (2.2 if labelled else 0.6), side), layout="constrained")
        grid = figure.add_gridspec(1, 3, width_ratios=[0.045 * max(len(columns), 1) * 9.0 / side, 1, 0.035])
        strip, heat, bar = (figure.add_subplot(grid[0, i]) for i in range(3))
        strip.imshow(
            marks, aspect="auto", cmap=ListedColormap([DECREASE, "white", INCREASE]), vmin=-1, vmax=1,
            interpolation="nearest",
        )  # fmt: skip
        image = heat.imshow(matrix, cmap="RdBu_r", vmin=-1, vmax=1, aspect="auto", interpolation="nearest")
        min_size = max(2, k // 40)
        tops = [(label, start, stop) for label, start, stop in multi if stop - start >= min_size]
        for _, start, stop in multi:
            heat.add_patch(Rectangle((start - 0.5, start - 0.5), stop - start, stop - start, fill=False, lw=1.3))
        # With hundreds of taxa, boundary lines of every small subcommunity would hide the strip's marks.
        for _, start, stop in multi if labelled else tops:
            strip.axhline(start - 0.5, color=OKABE_ITO["black"], lw=0.6)
            strip.axhline(stop - 0.5, color=OKABE_ITO["black"], lw=0.6)
        heat.set_xticks([(start + stop - 1) / 2 for _, start, stop in tops], [str(label) for label, _, _ in tops])
        heat.xaxis.tick_top()
        heat.tick_params(axis="x", labelsize=8, length=0)
        heat.set_yticks([])
        heat.set_xlabel("subcommunity (outlined; numbered when large enough)", fontsize=9)
        heat.xaxis.set_label_position("top")
        strip.set_xticks(range(len(columns)), [wrap_name(c, 12) for c in columns], rotation=90, fontsize=8)
        if labelled:
            names = clusters.assign(taxon=clusters["taxon"].astype(str)).set_index("taxon")
            texts = names["label"].reindex(order).fillna(pd.Series(order, index=order)) if "label" in names else order
            strip.set_yticks(np.arange(k), [short_label(t, 32) for t in texts], fontsize=7 if k > 40 else 8)
        else:
            strip.set_yticks([])
            strip.set_ylabel(f"{k} taxa in dendrogram order")
        strip.set_title("responds", fontsize=9)
        for spine in ("top", "right"):
            strip.spines[spine].set_visible(True)
        figure.colorbar(image, cax=bar, label="correlation through the latent factors")
        heat.set_title(
            f"Taxon correlation through the latent factors: {len(multi)} subcommunities of 2 or more taxa",
            loc="left",
            fontsize=10,
            pad=22,
        )
    return figure


# ---------------------------------------------------------------------------------------------
# 5. Posterior predictive checks
# ---------------------------------------------------------------------------------------------

STATISTIC_NAMES = {
    "prop_zero": "proportion of zero counts",
    "prop_le2": "proportion of counts ≤ 2",
    "max_share": "share of the most abundant taxon",
    "shannon": "Shannon diversity",
    "simpson": "Gini-Simpson diversity",
    "bray_curtis_similarity": "mean Bray-Curtis similarity",
    "jaccard_similarity": "mean Jaccard similarity",
}


def ppc_figure(checks: pd.DataFrame, interval_level: float = 0.95) -> plt.Figure:
    """Observed statistic against its posterior predictive interval, units sorted by the observed value.

    One panel per statistic (per sample or per group of replicate samples), as in the paper.
    """
    if checks.empty:
        return message_figure("Posterior predictive checks", "no check statistics to show")
    statistics = [str(s) for s in pd.unique(checks["statistic"])]
    n_cols = 2 if len(statistics) > 1 else 1
    n_rows = int(np.ceil(len(statistics) / n_cols))
    with plt.rc_context(STYLE):
        figure, axes = plt.subplots(
            n_rows, n_cols, figsize=(11 if n_cols == 2 else 6.5, 0.8 + 2.6 * n_rows), squeeze=False,
            layout="constrained",
        )  # fmt: skip
        for ax, statistic in zip(axes.ravel(), statistics, strict=False):
            part = checks[checks["statistic"] == statistic].sort_values("observed", kind="stable")
            level = str(part["level"].iloc[0]) if "level" in part else "sample"
            x = np.arange(len(part))
            inside = _as_bool(part["inside"]).to_numpy()
            many = len(part) > 150
            ax.vlines(x, part["lower"], part["upper"], color=NEUTRAL, lw=0.5 if many else 1.6)
            ax.scatter(x, part["predicted_mean"], marker="_", s=8 if many else 30, color=OKABE_ITO["black"], lw=0.8)
            ax.scatter(x[inside], part["observed"][inside], s=4 if many else 14, color=OKABE_ITO["blue"], zorder=3)
            ax.scatter(
                x[~inside], part["observed"][~inside], s=10 if many else 22, marker="x", color=INCREASE, zorder=4
            )
            name = STATISTIC_NAMES.get(statistic, statistic)
            unit = "group" if level == "group" else "sample"
            ax.set_title(f"{name} (per {unit}): {inside.mean():.0%} of {len(part)} inside", loc="left", fontsize=10)
            ax.set_xlabel(f"{unit}s, sorted by observed value")
            ax.set_xticks([])
        for ax in axes.ravel()[len(statistics) :]:
            ax.set_axis_off()
        handles = [
            plt.Line2D([], [], color=NEUTRAL, lw=3, label=f"{interval_level:.0%} predictive interval"),
            plt.Line2D([], [], color=OKABE_ITO["black"], marker="_", ls="", ms=10, label="predictive mean"),
            plt.Line2D([], [], color=OKABE_ITO["blue"], marker="o", ls="", label="observed, inside"),
            plt.Line2D([], [], color=INCREASE, marker="x", ls="", label="observed, outside"),
        ]
        figure.legend(handles=handles, loc="outside lower center", ncol=4, frameon=False)
    return figure


# ---------------------------------------------------------------------------------------------
# 6. Convergence diagnostics
# ---------------------------------------------------------------------------------------------


def worst_elements(quantities: pd.DataFrame, n: int = 3) -> pd.DataFrame:
    """The ``n`` monitored elements with the highest R-hat (NaN R-hat, i.e. constant elements, skipped)."""
    measured = quantities[pd.to_numeric(quantities["rhat"], errors="coerce").notna()]
    return measured.sort_values(["rhat", "ess_bulk"], ascending=[False, True]).head(n)


def element_coords(posterior, quantity: str, index: str) -> dict | None:
    """Coordinates selecting one element (``index`` as the diagnostics table writes it), or None."""
    if quantity not in posterior:
        return None
    dims = [d for d in posterior[quantity].dims if d not in ("chain", "draw")]
    parts = str(index).split("|") if dims else []
    if len(parts) != len(dims):
        return None
    coords = {}
    for dim, part in zip(dims, parts, strict=True):
        values = posterior[quantity][dim].values
        match = [v for v in values if str(v) == part]
        if not match:
            return None
        coords[dim] = [match[0]]
    return coords


def diagnostics_figure(
    quantities: pd.DataFrame,
    chains: pd.DataFrame,
    idata=None,
    thresholds: Mapping | None = None,
    n_worst: int = 3,
) -> plt.Figure:
    """R-hat and ESS distributions, divergences and E-BFMI per chain, energy plot and rank plots of the worst.

    ``idata`` (all chains combined) gives the energy and rank plots; without it only the
    table-based panels are drawn.
    """
    import arviz as az

    thresholds = dict(thresholds or {})
    rhat_max = float(thresholds.get("rhat_max", 1.01))
    n_chains = max(len(chains), 1)
    ess_min = float(thresholds.get("ess_bulk_per_chain_min", 100)) * n_chains
    ebfmi_min = float(thresholds.get("ebfmi_min", 0.3))
    n_rows = 3 if idata is not None else 2
    with plt.rc_context(STYLE):
        figure = plt.figure(figsize=(12, 3.3 * n_rows), layout="constrained")
        grid = figure.add_gridspec(n_rows, 3)
        rhat = pd.to_numeric(quantities["rhat"], errors="coerce").dropna()
        ax = figure.add_subplot(grid[0, 0])
        if len(rhat):
            ax.hist(rhat, bins=40, color=OKABE_ITO["blue"])
        ax.axvline(rhat_max, color=INCREASE, ls="--", lw=1, label=f"limit {rhat_max:g}")
        ax.set_title(f"R-hat: {int((rhat > rhat_max).sum())} of {len(rhat)} elements above limit", loc="left")
        ax.set_xlabel("rank-normalized split R-hat")
        ax.set_ylabel("elements")
        ax.legend(frameon=False)

        ax = figure.add_subplot(grid[0, 1])
        for column, colour, name in (
            ("ess_bulk", OKABE_ITO["blue"], "bulk"),
            ("ess_tail", OKABE_ITO["orange"], "tail"),
        ):
            values = pd.to_numeric(quantities[column], errors="coerce").dropna()
            values = values[values > 0]
            if len(values):
                bins = np.geomspace(max(values.min(), 1), max(values.max(), 2), 40)
                ax.hist(values, bins=bins, histtype="step", lw=1.5, color=colour, label=f"{name} ESS")
        ax.set_xscale("log")
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())  # minor labels collide on short ranges
        ax.axvline(ess_min, color=INCREASE, ls="--", lw=1, label=f"bulk limit {ess_min:g}")
        low = int((pd.to_numeric(quantities["ess_bulk"], errors="coerce") < ess_min).sum())
        ax.set_title(f"Effective sample size: {low} elements below limit", loc="left")
        ax.set_xlabel("ESS (log scale)")
        ax.legend(frameon=False, fontsize=8)

        ax = figure.add_subplot(grid[0, 2])
        labels = [str(c) for c in chains["chain"]] if "chain" in chains else [str(i + 1) for i in range(len(chains))]
        x = np.arange(len(chains))
        divergences = pd.to_numeric(chains["divergences"], errors="coerce").fillna(0).to_numpy()
        hits = pd.to_numeric(chains.get("treedepth_hits", pd.Series(0, index=chains.index)), errors="coerce")
        ax.bar(x - 0.2, divergences, width=0.4, color=INCREASE, label="divergent transitions")
        ax.bar(x + 0.2, hits.fillna(0).to_numpy(), width=0.4, color=OKABE_ITO["orange"], label="max tree depth hits")
        ax.set_xticks(x, labels)
        ax.set_xlabel("chain")
        ax.set_ylabel("transitions")
        ax.set_title(f"Sampler warnings: {int(divergences.sum())} divergences", loc="left")
        ax.legend(frameon=False, fontsize=8)
        if divergences.sum() == 0 and hits.fillna(0).sum() == 0:
            ax.set_ylim(0, 1)

        ax = figure.add_subplot(grid[1, 0])
        ebfmi = pd.to_numeric(chains.get("ebfmi", pd.Series(np.nan, index=chains.index)), errors="coerce")
        ax.bar(x, ebfmi.fillna(0).to_numpy(), color=np.where(ebfmi < ebfmi_min, INCREASE, OKABE_ITO["blue"]))
        ax.axhline(ebfmi_min, color=INCREASE, ls="--", lw=1, label=f"limit {ebfmi_min:g}")
        ax.set_xticks(x, labels)
        ax.set_xlabel("chain")
        ax.set_ylabel("E-BFMI")
        ax.set_title("Energy Bayesian fraction of missing information", loc="left")
        top = float(np.nanmax([*ebfmi.to_numpy(dtype=float), ebfmi_min, 0.5]))
        ax.set_ylim(0, 1.3 * top)
        ax.legend(frameon=False, loc="upper right")

        ax = figure.add_subplot(grid[1, 1])
        if idata is not None and "sample_stats" in idata.groups() and "energy" in idata.sample_stats:
            az.plot_energy(idata, ax=ax, legend=True, textsize=9)
            ax.set_title("Energy: marginal vs transition (should overlap)", loc="left")
        else:
            seconds = pd.to_numeric(chains.get("sampling_seconds", pd.Series(np.nan, index=chains.index)))
            ax.bar(x, seconds.fillna(0).to_numpy(), color=OKABE_ITO["sky"])
            ax.set_xticks(x, labels)
            ax.set_title("Sampling time per chain (s)", loc="left")

        ax = figure.add_subplot(grid[1, 2])
        steps = pd.to_numeric(chains.get("mean_n_steps", pd.Series(np.nan, index=chains.index)), errors="coerce")
        ax.bar(x, steps.fillna(0).to_numpy(), color=OKABE_ITO["sky"])
        ax.set_xticks(x, labels)
        ax.set_xlabel("chain")
        ax.set_ylabel("leapfrog steps per draw")
        if "sampling_seconds" in chains:
            seconds = pd.to_numeric(chains["sampling_seconds"], errors="coerce")
            for xi, s, value in zip(x, steps.fillna(0), seconds, strict=True):
                if pd.notna(value):
                    ax.annotate(f"{value:.0f} s", (xi, s), xytext=(0, 2), textcoords="offset points", ha="center")
        ax.set_title("Cost per chain (label: sampling time)", loc="left")

        if idata is not None:
            worst = worst_elements(quantities, n_worst)
            for j in range(n_worst):
                ax = figure.add_subplot(grid[2, j])
                if j >= len(worst):
                    ax.set_axis_off()
                    continue
                row = worst.iloc[j]
                coords = element_coords(idata.posterior, row["quantity"], row["index"])
                name = f"{row['quantity']}[{row['index']}]" if row["index"] else str(row["quantity"])
                if coords is None:
                    ax.set_axis_off()
                    ax.text(0.5, 0.5, f"{short_label(name)}\nnot in the chains", ha="center", transform=ax.transAxes)
                    continue
                az.plot_rank(idata, var_names=[row["quantity"]], coords=coords, ax=ax)
                ax.set_title("")  # ArviZ's centred title; ours, on the left, names the element
                ax.set_title(
                    f"rank plot {short_label(name, 34)}\nR-hat {row['rhat']:.3f}, bulk ESS {row['ess_bulk']:.0f}",
                    loc="left",
                    fontsize=9,
                )
        figure.suptitle("Convergence diagnostics (rank plots: the elements with the highest R-hat)", fontsize=11)
    return figure


# ---------------------------------------------------------------------------------------------
# The report's opening page
# ---------------------------------------------------------------------------------------------

STEP_FINISHED = re.compile(r"step finished in ([0-9.]+) s")


def step_seconds(log_text: str) -> float | None:
    """Duration of a step from its log (the last ``step finished in X s`` line), or None."""
    found = STEP_FINISHED.findall(log_text)
    return float(found[-1]) if found else None


def step_times(logs: Mapping[str, str]) -> pd.DataFrame:
    """Run time per step from log texts keyed by their path relative to the log folder.

    Chain logs (``<model>/chain<n>``) are summed per model into one ``<model>/fit_chain`` row.
    Columns: step, jobs, seconds (total), longest (seconds of the longest job).
    """
    rows = []
    for name, text in logs.items():
        seconds = step_seconds(text)
        if seconds is None:
            continue
        step = re.sub(r"chain\d+$", "fit_chain", name.removesuffix(".log"))
        rows.append({"step": step, "seconds": seconds})
    if not rows:
        return pd.DataFrame(columns=["step", "jobs", "seconds", "longest"])
    table = pd.DataFrame(rows).groupby("step", sort=False)["seconds"].agg(jobs="size", seconds="sum", longest="max")
    return table.reset_index()


def duration(seconds: float) -> str:
    """``12.3 s``, ``4 min 05 s`` or ``1 h 02 min``."""
    if not np.isfinite(seconds):
        return "unknown"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(int(round(seconds)), 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def _literal(text: object) -> str:
    """Inline literal in reStructuredText (names with brackets, underscores or stars stay as they are)."""
    return f"``{str(text).replace('`', chr(39))}``"


def _rst_table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = [".. list-table::", "   :header-rows: 1", ""]
    for row in [header, *rows]:
        lines.append(f"   * - {row[0]}")
        lines += [f"     - {cell}" for cell in row[1:]]
    return [*lines, ""]


def _section(title: str) -> list[str]:
    return [title, "-" * len(title), ""]


def global_sentence(row: pd.Series) -> str:
    """One sentence answering a global test, e.g. ``nutrient: posterior probability 0.98 ... affects composition``."""
    prob, threshold = float(row["posterior_prob"]), float(row["threshold"])
    answer = "affects composition" if str(row["decision"]) == "reject" else "no evidence that it affects composition"
    what = "term" if row["test"] == "term" else "column"
    sentence = (
        f"{_literal(row['name'])} ({what}): posterior probability {prob:.3g} of an effect "
        f"(threshold {threshold:g}, prior {float(row['prior_prob']):.2g}) — {answer}"
    )
    if str(row.get("reliable", True)).strip().lower() not in ("true", "1"):
        sentence += " (diagnostics failed: not reliable)"
    return sentence


def responding_counts(local: pd.DataFrame) -> pd.DataFrame:
    """Per treatment column: taxa, responding (interval excludes 0), up, down, FDR discoveries."""
    table = local.assign(hit=_as_bool(local["interval_excludes_zero"]))
    table["up"] = table["hit"] & (table["mean"] > 0)
    table["down"] = table["hit"] & (table["mean"] < 0)
    table["fdr"] = _as_bool(table["fdr_discovery"]) if "fdr_discovery" in table else False
    grouped = table.groupby("column", sort=False)
    return grouped.agg(
        taxa=("taxon", "size"), responding=("hit", "sum"), up=("up", "sum"), down=("down", "sum"), fdr=("fdr", "sum")
    ).reset_index()


@dataclass
class ModelReport:
    """The tables of one model that the opening page summarizes (any may be None when missing)."""

    verdict: pd.DataFrame | None = None
    global_tests: pd.DataFrame | None = None
    local_tests: pd.DataFrame | None = None
    chains: pd.DataFrame | None = None


def summary_page(
    dataset: str,
    data_summary: Mapping,
    models: Mapping[str, ModelReport],
    permanova: pd.DataFrame | None = None,
    times: pd.DataFrame | None = None,
) -> str:
    """The report's opening page (reStructuredText): data, models, convergence, answers, responders, run time."""
    lines = [f"Results for {_literal(dataset)}", "=" * (len(dataset) + 16), ""]
    s = data_summary
    lines += _section("Data after filtering")
    lines.append(
        f"{s.get('samples_kept', '?')} of {s.get('samples_in', '?')} samples and {s.get('taxa_kept', '?')} of "
        f"{s.get('taxa_in', '?')} taxa modelled individually; {s.get('taxa_aggregated_into_other', 0)} rare taxa "
        f"summed into one 'other' column and {s.get('taxa_dropped_or_trimmed', 0)} dropped or trimmed, so the "
        f"models see {s.get('model_columns', '?')} taxon columns."
    )
    columns = s.get("treatment_columns", [])
    blocking = s.get("blocking_factors", [])
    lines.append("")
    lines.append(
        f"Treatment columns ({len(columns)}): {', '.join(_literal(c) for c in columns) or 'none'}. "
        f"Blocking factors: {', '.join(_literal(b) for b in blocking) or 'none'}"
        + (f" ({s['blocking_levels']} levels)." if "blocking_levels" in s else ".")
    )
    lines.append("")

    lines += _section("Models and convergence")
    for model, result in models.items():
        verdict = result.verdict
        if verdict is None or verdict.empty:
            lines.append(f"* {_literal(model)}: no diagnostics yet")
            continue
        row = verdict.iloc[0]
        passed = str(row["passed"]).strip().lower() in ("true", "1")
        size = ""
        if "chains" in row and "draws" in row:
            size = f" ({int(row['chains'])} chains, {int(row['draws'])} draws in total)"
        status = "**passed**" if passed else "**FAILED** — its tests are marked not reliable"
        message = re.sub(r"^(passed|FAILED): ", "", str(row.get("message", ""))).replace("*", "\\*")
        lines.append(f"* {_literal(model)}{size}: {status}. {message}")
    lines.append("")

    lines += _section("Global tests: does a treatment change community composition?")
    for model, result in models.items():
        table = result.global_tests
        if table is None or table.empty:
            continue
        rows = global_test_rows([table])
        keyed = table.assign(name=table["name"].astype(str)).set_index(["test", "name"], drop=False)
        keyed = keyed[~keyed.index.duplicated()]
        lines.append(f"{_literal(model)}:")
        lines.append("")
        lines += [f"* {global_sentence(keyed.loc[key])}" for key in rows if key in keyed.index]
        lines.append("")
    if permanova is not None and not permanova.empty:
        table = permanova.set_index("term") if "term" in permanova.columns else permanova
        tested = table[pd.to_numeric(table["p_value"], errors="coerce").notna()]
        parts = [f"{_literal(t)} p = {float(r['p_value']):.3g} (R² {float(r['r2']):.2f})" for t, r in tested.iterrows()]
        lines.append("PERMANOVA (Bray-Curtis, for comparison): " + "; ".join(parts) + ".")
        lines.append("")

    lines += _section("Responding taxa per treatment column")
    local_models = {m: r.local_tests for m, r in models.items() if r.local_tests is not None}
    if local_models:
        counts = {m: responding_counts(t).set_index("column") for m, t in local_models.items()}
        all_columns = list(dict.fromkeys(c for table in counts.values() for c in table.index))
        body = []
        for column in all_columns:
            cells = [_literal(column)]
            for table in counts.values():
                if column in table.index:
                    r = table.loc[column]
                    cells.append(
                        f"{int(r['responding'])} of {int(r['taxa'])} ({int(r['up'])} up, {int(r['down'])} down; "
                        f"{int(r['fdr'])} FDR discoveries)"
                    )
                else:
                    cells.append("—")
            body.append(cells)
        lines += _rst_table(["column", *[_literal(m) for m in counts]], body)
        lines.append(
            "A taxon responds when its 95% credible interval excludes zero (the paper's rule); FDR discoveries "
            "control the Bayesian false sign rate. Effects are relative to the other taxa (log-ratio scale)."
        )
        lines.append("")

    lines += _section("Run time")
    rows = []
    for model, result in models.items():
        chains = result.chains
        if chains is not None and "sampling_seconds" in chains:
            seconds = pd.to_numeric(chains["sampling_seconds"], errors="coerce").dropna()
            if len(seconds):
                rows.append(
                    [f"sampling {_literal(model)}", str(len(seconds)), duration(seconds.sum()), duration(seconds.max())]
                )
    if times is not None:
        for row in times.itertuples(index=False):
            rows.append([_literal(row.step), str(int(row.jobs)), duration(row.seconds), duration(row.longest)])
    if rows:
        lines += _rst_table(["step", "jobs", "total", "longest job"], rows)
        lines.append("Sampling rows come from the chains; the others from the step logs (wall-clock per job).")
    else:
        lines.append("No timings found.")
    lines.append("")
    return "\n".join(lines)


# ---------------------------------------------------------------- simulation study

METHOD_LABELS = {
    "mimix": "MIMIX (Dirichlet-Laplace)",
    "mimix_gaussian": "MIMIX (Gaussian loadings)",
    "mimix_nofactor": "MIMIX (no factors)",
    "permanova": "PERMANOVA",
}


def simulation_figure(rejection: pd.DataFrame, threshold: float = 0.9, alpha: float = 0.05) -> plt.Figure:
    """The paper's Figure 2: rejection rate against the % of responding taxa, one line per method.

    Facets: block variance (rows) x error variance (columns); solid lines the grouped form, dashed
    the random form (the dense-0 null is shared by both, so each line starts there). Bars are
    +/- one binomial standard error of the rate from the replicates.
    """
    blocks = sorted(rejection["block_var"].unique())
    errors = sorted(rejection["error_var"].unique())
    forms = list(dict.fromkeys(rejection["form"]))
    methods = [m for m in METHOD_LABELS if m in set(rejection["method"])]
    methods += sorted(set(rejection["method"]) - set(methods))
    null = rejection[rejection["dense"] == 0]
    span = max(100 * float(rejection["dense"].max()), 1.0)
    with plt.rc_context(STYLE):
        figure, axes = plt.subplots(
            len(blocks), len(errors), figsize=(2.6 * len(errors) + 1.2, 2.3 * len(blocks) + 0.9),
            sharex=True, sharey=True, squeeze=False,
        )  # fmt: skip
        for r, block in enumerate(blocks):
            for c, error in enumerate(errors):
                ax = axes[r, c]
                cell = rejection[(rejection["block_var"] == block) & (rejection["error_var"] == error)]
                cell_null = null[(null["block_var"] == block) & (null["error_var"] == error)]
                for position, method in enumerate(methods):
                    for form, style in zip(forms, ("-", "--", ":"), strict=False):
                        rows = cell[(cell["method"] == method) & ((cell["form"] == form) | (cell["dense"] == 0))]
                        rows = pd.concat([rows[rows["dense"] > 0], cell_null[cell_null["method"] == method]])
                        rows = rows.drop_duplicates("dense").sort_values("dense")
                        if rows.empty:
                            continue
                        # Methods are dodged sideways so that equal rates stay visible.
                        dodge = (position - (len(methods) - 1) / 2) * 0.012 * span
                        ax.errorbar(
                            100 * rows["dense"] + dodge, rows["rejection_rate"], yerr=rows["rejection_se"],
                            color=model_colour(method, position) if method != "permanova" else OKABE_ITO["black"],
                            linestyle=style, marker="o", markersize=3.5, capsize=2, linewidth=1.3,
                            label=f"{METHOD_LABELS.get(method, method)}, {form}",
                        )  # fmt: skip
                ax.axhline(alpha, color=OKABE_ITO["grey"], linewidth=0.8, linestyle=":")
                ax.set_ylim(-0.03, 1.03)
                ax.set_title(f"block var {block:g}, error var {error:g}", fontsize=9)
                if r == len(blocks) - 1:
                    ax.set_xlabel("responding taxa (dense, %)")
                if c == 0:
                    ax.set_ylabel("rejection rate")
        handles, labels = axes[0, 0].get_legend_handles_labels()
        figure.legend(handles, labels, loc="lower center", ncol=min(4, len(labels)), frameon=False,
                      bbox_to_anchor=(0.5, -0.02 - 0.035 * ((len(labels) - 1) // 4)))  # fmt: skip
        replicates = int(rejection["replicates"].min())
        figure.suptitle(
            f"Global test rejection rates, {replicates} replicate(s) per setting\nMIMIX rejects when "
            f"P(effect) > {threshold:g}, PERMANOVA when p < {alpha:g} (dotted line: {alpha:g})",
            fontsize=10,
        )
        figure.tight_layout(rect=(0, 0.06 + 0.035 * ((len(labels) - 1) // 4), 1, 0.95))
    return figure


# ---------------------------------------------------------------- power analysis


def power_figure(table: pd.DataFrame, threshold: float = 0.9, model: str = "", pilot: str = "") -> plt.Figure:
    """Power, responding taxa found and false discoveries against the total number of samples."""
    keys = ["blocks", "depth", "effect"]
    groups = list(table.groupby(keys, sort=True))
    panels = (
        ("power", "P(detect treatment)"),
        ("true_found", "responding taxa found"),
        ("false_found", "false discoveries"),
    )
    with plt.rc_context(STYLE):
        figure, axes = plt.subplots(1, 3, figsize=(11, 3.6))
        for position, ((blocks, depth, effect), rows) in enumerate(groups):
            rows = rows.sort_values("n_samples")
            colour = model_colour("", position)
            label = f"{blocks} blocks, {depth:,} reads, effect {effect:g}"
            for ax, (column, _) in zip(axes, panels, strict=True):
                ax.plot(rows["n_samples"], rows[column], marker="o", color=colour, label=label)
                ax.fill_between(
                    rows["n_samples"], rows[f"{column}_lower"], rows[f"{column}_upper"], color=colour, alpha=0.18
                )
            axes[1].plot(rows["n_samples"], rows["n_responding"], color=colour, linestyle=":", linewidth=1)
        axes[0].axhline(0.8, color=OKABE_ITO["grey"], linestyle="--", linewidth=0.8)
        axes[0].set_ylim(-0.03, 1.03)
        for ax in axes[1:]:  # counts: from 0, and at least 0..1 so that all-zero lines sit on the axis
            ax.set_ylim(-0.05 * max(ax.get_ylim()[1], 1), max(ax.get_ylim()[1], 1))
        for ax, (_, ylabel) in zip(axes, panels, strict=True):
            ax.set_xlabel("samples in the experiment")
            ax.set_ylabel(ylabel)
        axes[1].set_title("dotted: taxa that truly respond", fontsize=9)
        axes[0].legend(loc="lower right", frameon=False, fontsize=8)
        replicates = int(table["replicates"].min())
        figure.suptitle(
            f"Power analysis: {model or 'model'} on {replicates} simulated experiment(s) per size "
            f"(pilot: {pilot or 'simulator'}; detection when P(effect) > {threshold:g})",
            fontsize=10,
        )
        figure.tight_layout()
    return figure
