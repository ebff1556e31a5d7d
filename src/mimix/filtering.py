"""Sample filtering and rarity trimming of taxa.

Order of operations (each step sees the result of the previous one):

1. drop samples with fewer than ``min_depth`` reads;
2. drop taxa with no reads in the remaining samples (always);
3. trim taxa below ``min_prevalence`` (fraction of samples with a non-zero count),
   ``min_total_count`` or ``min_mean_relative_abundance``;
4. keep at most ``max_taxa`` of the survivors, ranked by prevalence or abundance;
5. sum the trimmed (non-zero) taxa into one ``other`` column, so each sample keeps its
   total read count (switch off with ``aggregate_other: false``).

The default 10% prevalence cut follows MaAsLin 2 and ANCOM-BC.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from mimix.errors import InputError


@dataclass(frozen=True)
class FilterSettings:
    """Thresholds of the filtering step (the ``filtering`` section of the config)."""

    min_depth: int = 1000
    min_prevalence: float = 0.1
    min_total_count: int = 0
    min_mean_relative_abundance: float = 0.0
    max_taxa: int | None = None
    rank_taxa_by: str = "prevalence"  # or "abundance" (mean relative abundance)
    aggregate_other: bool = True
    other_label: str = "other"
    max_sample_drop_fraction: float = 0.25

    @classmethod
    def from_config(cls, section: dict) -> FilterSettings:
        return cls(**{k: v for k, v in section.items() if k in cls.__dataclass_fields__})


@dataclass
class FilterResult:
    """Filtered counts and what happened to every sample and taxon."""

    counts: pd.DataFrame  # kept samples x kept taxa (+ other)
    samples: pd.DataFrame  # per input sample: reads, reads_in_kept_taxa, status, reason
    taxa: pd.DataFrame  # per input taxon: prevalence, total_count, mean_relative_abundance, status, reason


def taxon_statistics(counts: pd.DataFrame) -> pd.DataFrame:
    """Prevalence, total count and mean relative abundance of each taxon."""
    totals = counts.sum(axis=1).replace(0, np.nan)
    return pd.DataFrame(
        {
            "prevalence": (counts > 0).mean(axis=0),
            "total_count": counts.sum(axis=0).astype(np.int64),
            "mean_relative_abundance": counts.div(totals, axis=0).mean(axis=0).fillna(0.0),
        }
    )


def filter_counts(counts: pd.DataFrame, settings: FilterSettings) -> FilterResult:
    """Apply the filtering steps; raise :class:`InputError` when too little data survives."""
    depth = counts.sum(axis=1)
    sample_status = pd.Series("kept", index=counts.index, dtype=object)
    sample_reason = pd.Series("", index=counts.index, dtype=object)
    shallow = depth < settings.min_depth
    sample_status[shallow] = "dropped"
    sample_reason[shallow] = [f"depth {d} < min_depth {settings.min_depth}" for d in depth[shallow]]
    kept_samples = counts.loc[~shallow]

    stats = taxon_statistics(kept_samples) if len(kept_samples) else taxon_statistics(counts) * 0
    taxon_status = pd.Series("kept", index=counts.columns, dtype=object)
    taxon_reason = pd.Series("", index=counts.columns, dtype=object)

    def mark(mask: pd.Series, status: str, reason: str) -> None:
        fresh = mask & (taxon_status == "kept")
        taxon_status[fresh] = status
        taxon_reason[fresh] = reason

    mark(stats["total_count"] == 0, "dropped", "no reads in the kept samples")
    mark(stats["prevalence"] < settings.min_prevalence, "trimmed", f"prevalence < {settings.min_prevalence}")
    mark(stats["total_count"] < settings.min_total_count, "trimmed", f"total count < {settings.min_total_count}")
    mark(
        stats["mean_relative_abundance"] < settings.min_mean_relative_abundance,
        "trimmed",
        f"mean relative abundance < {settings.min_mean_relative_abundance}",
    )
    if settings.max_taxa is not None:
        survivors = stats.loc[taxon_status == "kept"]
        key = "prevalence" if settings.rank_taxa_by == "prevalence" else "mean_relative_abundance"
        # Ties broken by total count, then by id, so the cut is deterministic.
        ranked = survivors.assign(_id=survivors.index).sort_values(
            [key, "total_count", "_id"], ascending=[False, False, True]
        )
        over = pd.Series(False, index=counts.columns)
        over[ranked.index[settings.max_taxa :]] = True
        mark(over, "trimmed", f"beyond max_taxa = {settings.max_taxa} by {settings.rank_taxa_by}")

    kept_taxa = taxon_status.index[taxon_status == "kept"]
    trimmed = taxon_status.index[taxon_status == "trimmed"]
    filtered = kept_samples[kept_taxa].copy()
    if settings.aggregate_other and len(trimmed) and kept_samples[trimmed].to_numpy().sum() > 0:
        if settings.other_label in filtered.columns:
            raise InputError(
                f"filtering.other_label: {settings.other_label!r} is already a taxon id; choose another label"
            )
        filtered[settings.other_label] = kept_samples[trimmed].sum(axis=1)
        taxon_status[trimmed] = "aggregated"
    filtered.columns.name = "taxon_id"

    samples = pd.DataFrame(
        {
            "reads": depth.astype(np.int64),
            "reads_in_kept_taxa": counts[kept_taxa].sum(axis=1).astype(np.int64),
            "status": sample_status,
            "reason": sample_reason,
        }
    )
    taxa = stats.assign(status=taxon_status, reason=taxon_reason)
    check_survivors(counts, filtered, samples, settings)
    return FilterResult(counts=filtered, samples=samples, taxa=taxa)


def check_survivors(
    counts: pd.DataFrame, filtered: pd.DataFrame, samples: pd.DataFrame, settings: FilterSettings
) -> None:
    """Refuse results too small to analyse or that silently lost many samples."""
    problems = []
    n_dropped = int((samples["status"] == "dropped").sum())
    if len(counts) and n_dropped / len(counts) > settings.max_sample_drop_fraction:
        problems.append(
            f"filtering: {n_dropped} of {len(counts)} samples have fewer than min_depth = {settings.min_depth} reads "
            f"(more than max_sample_drop_fraction = {settings.max_sample_drop_fraction}); lower filtering.min_depth "
            "or raise filtering.max_sample_drop_fraction"
        )
    if filtered.shape[0] == 0 or filtered.shape[1] == 0:
        problems.append(
            f"filtering: empty table after filtering ({filtered.shape[0]} samples x {filtered.shape[1]} taxa); "
            "lower filtering.min_depth / min_prevalence / min_total_count"
        )
    elif filtered.shape[1] < 2:
        problems.append(
            f"filtering: only {filtered.shape[1]} taxon left after filtering; compositions need at least 2: "
            "lower the trimming thresholds or set filtering.aggregate_other: true"
        )
    if problems:
        raise InputError(problems)
