"""Load the configured inputs and check everything before any expensive step.

:func:`prepare_dataset` is the single entry point used by both the validation rule and
the filtering rule: it reads the inputs named in the config, checks their consistency,
filters, and builds the design and blocking structure of the analysed samples. Every
problem becomes one line of an :class:`~mimix.errors.InputError`; as many problems as
can be found are reported together.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import pandas as pd

from mimix import readers
from mimix.design import Blocks, Design, build_blocks, build_design
from mimix.errors import InputError, truncated_list
from mimix.filtering import FilterResult, FilterSettings, filter_counts


@dataclass
class PreparedData:
    """Everything the model stage needs, for the samples and taxa that survived filtering."""

    raw: readers.RawDataset
    filtered: FilterResult
    design: Design
    blocks: Blocks

    @property
    def counts(self) -> pd.DataFrame:
        return self.filtered.counts

    def taxa_table(self) -> pd.DataFrame:
        """Per input taxon: statistics, filter status, lineage and a readable label."""
        taxa = self.filtered.taxa.copy()
        lineage = self.raw.taxonomy.reindex(taxa.index) if self.raw.taxonomy is not None else None
        taxa.insert(0, "lineage", lineage if lineage is not None else pd.NA)
        taxa.insert(0, "label", [readers.taxon_label(t, None if lineage is None else lineage[t]) for t in taxa.index])
        return taxa

    def summary(self) -> dict:
        samples, taxa = self.filtered.samples, self.filtered.taxa
        return {
            "samples_in": int(len(samples)),
            "samples_kept": int((samples["status"] == "kept").sum()),
            "taxa_in": int(len(taxa)),
            "taxa_kept": int((taxa["status"] == "kept").sum()),
            "taxa_aggregated_into_other": int((taxa["status"] == "aggregated").sum()),
            "taxa_dropped_or_trimmed": int(taxa["status"].isin(["dropped", "trimmed"]).sum()),
            "model_columns": int(self.counts.shape[1]),
            "treatment_columns": list(self.design.X.columns),
            "terms": self.design.terms,
            "blocking_factors": list(self.blocks.labels.columns),
            "blocking_levels": int(len(self.blocks.levels)),
        }


def read_inputs(input_cfg: dict) -> readers.RawDataset:
    """Read counts, metadata and taxonomy in the configured format."""
    fmt = input_cfg.get("format", "table")
    if fmt == "mimix":
        return readers.read_mimix_folder(
            input_cfg["mimix_dir"], input_cfg.get("mimix_x_names"), input_cfg.get("mimix_z_names")
        )
    problems: list[str] = []
    counts = taxonomy = metadata = None
    column_types: dict[str, str] = {}
    try:
        if fmt == "biom":
            counts, taxonomy = readers.read_biom(input_cfg["counts"])
        else:
            counts = readers.read_count_table(input_cfg["counts"], input_cfg.get("orientation", "samples_as_rows"))
    except InputError as err:
        problems += err.problems
    try:
        metadata, column_types = readers.read_metadata(input_cfg["metadata"])
    except InputError as err:
        problems += err.problems
    if input_cfg.get("taxonomy"):
        try:
            taxonomy = readers.read_taxonomy(input_cfg["taxonomy"], None if counts is None else counts.columns)
        except InputError as err:
            problems += err.problems
    if problems:
        raise InputError(problems)
    return readers.RawDataset(
        counts=counts,
        metadata=metadata,
        taxonomy=taxonomy,
        column_types=column_types,
        sources={k: str(input_cfg.get(k)) for k in ("counts", "metadata", "taxonomy")},
    )


def match_samples(raw: readers.RawDataset, sample_matching: str = "strict") -> readers.RawDataset:
    """Align counts and metadata on their sample ids.

    ``strict`` (default) refuses ids present in only one file, listing both sides;
    ``intersect`` keeps the shared samples (the others are listed in the log by the caller).
    """
    counts, metadata = raw.counts, raw.metadata
    only_counts = [s for s in counts.index if s not in metadata.index]
    only_metadata = [s for s in metadata.index if s not in counts.index]
    problems = []
    if sample_matching == "strict":
        if only_counts:
            problems.append(
                f"{raw.sources.get('counts')}: {len(only_counts)} sample id(s) not in the metadata: "
                f"{truncated_list(only_counts)}; add them to {raw.sources.get('metadata')} or remove them "
                "(or set input.sample_matching: intersect)"
            )
        if only_metadata:
            problems.append(
                f"{raw.sources.get('metadata')}: {len(only_metadata)} sample id(s) not in the count table: "
                f"{truncated_list(only_metadata)}; remove them from the metadata "
                "(or set input.sample_matching: intersect)"
            )
    shared = [s for s in counts.index if s in metadata.index]
    if not shared:
        problems.append(
            f"{raw.sources.get('counts')} and {raw.sources.get('metadata')} share no sample ids "
            f"(counts: {truncated_list(counts.index, 3)}; metadata: {truncated_list(metadata.index, 3)}); "
            "check the orientation option and the id columns"
        )
    if problems:
        raise InputError(problems)
    return dataclasses.replace(raw, counts=counts.loc[shared], metadata=metadata.loc[shared])


def check_zero_totals(raw: readers.RawDataset) -> None:
    """Samples with no reads at all carry no information and usually mean a broken export."""
    empty = raw.counts.index[raw.counts.sum(axis=1) == 0]
    if len(empty):
        raise InputError(
            f"{raw.sources.get('counts')}: {len(empty)} sample(s) with zero total count: {truncated_list(empty)}; "
            "remove them from the count table"
        )


def prepare_dataset(input_cfg: dict, design_cfg: dict, filtering_cfg: dict) -> PreparedData:
    """Read, validate, filter and build the design; raise InputError listing every problem."""
    raw = match_samples(read_inputs(input_cfg), input_cfg.get("sample_matching", "strict"))
    check_zero_totals(raw)
    filtered = filter_counts(raw.counts, FilterSettings.from_config(filtering_cfg))
    kept = filtered.counts.index
    metadata = raw.metadata.loc[kept]
    formula = design_cfg.get("formula") or raw.default_formula
    blocking = design_cfg.get("blocking")
    if blocking is None:
        blocking = raw.default_blocking or []
    if not formula:
        raise InputError("design.formula: no formula given; name the treatment columns, e.g. 'nutrient * fence'")
    problems = []
    design = blocks = None
    try:
        design = build_design(
            metadata,
            formula,
            column_types=raw.column_types,
            categorical=design_cfg.get("categorical", []),
            reference_levels=design_cfg.get("reference_levels", {}),
        )
    except InputError as err:
        problems += err.problems
    try:
        blocks = build_blocks(metadata, list(blocking), design_cfg.get("nested_blocking", True))
    except InputError as err:
        problems += err.problems
    if problems:
        raise InputError(problems)
    return PreparedData(raw=raw, filtered=filtered, design=design, blocks=blocks)
