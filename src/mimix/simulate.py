"""Simulated count data following the MIMIX paper's simulation design (Section 4).

Defaults reproduce the paper: N = 40 samples, K = 100 taxa, one blocking factor with
q = 5 levels of 8 samples, one binary treatment on half of the samples (balanced within
blocks), read depths m_i ~ Uniform{2500..5000}, mu = linspace(1, -1, K), block effects
~ N_K(0, AR1(0.9) * block_var), errors ~ N_K(0, AR1(0.9) * error_var), and

    theta_i = mu + beta x_i + block effect + error,   Y_i ~ Multinomial(m_i, softmax(theta_i)).

A fraction ``dense`` of taxa responds to the treatment, either ``grouped`` (runs of 5
adjacent taxa starting at positions 1, 6, 11, ...) or ``random`` (individual taxa), with
effect v ~ Uniform(-2, 2) shifted by sign(v), so |v| lies in (1, 3).

Extensions, all off by default: extra null treatments crossed with the first (their true
effect is zero), sites that group the blocks (block labels repeat across sites, as in
field data), and rare taxa with very low means (to exercise rarity trimming).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class SimulationSettings:
    """Parameters of one simulated dataset; defaults are the paper's."""

    n_samples: int = 40
    n_taxa: int = 100
    n_blocks: int = 5
    depth_min: int = 2500
    depth_max: int = 5000
    mu_start: float = 1.0
    mu_end: float = -1.0
    block_var: float = 1.0
    error_var: float = 1.0
    block_cor: float = 0.9
    error_cor: float = 0.9
    dense: float = 0.1
    form: str = "grouped"  # or "random"
    treatments: tuple[str, ...] = ("treatment",)  # the first has effects, the others are null
    levels: tuple[str, str] = ("control", "treated")
    n_sites: int = 0  # 0: blocks are not grouped in sites
    site_var: float = 1.0
    rare_taxa: int = 0
    rare_mu: float = -7.0
    seed: int = 1


@dataclass
class SimulatedData:
    """Counts, metadata and the true parameters of one simulated dataset."""

    counts: pd.DataFrame  # samples x taxa
    metadata: pd.DataFrame  # sample_id index; treatment and blocking columns
    beta: pd.DataFrame  # taxa x treatment columns (readable design names)
    taxonomy: pd.Series
    settings: SimulationSettings
    extra: dict = field(default_factory=dict)


def ar1_covariance(dim: int, correlation: float, variance: float) -> np.ndarray:
    """AR(1) covariance: variance * correlation^|i - j|."""
    lags = np.abs(np.subtract.outer(np.arange(dim), np.arange(dim)))
    return variance * correlation**lags


def true_effects(n_taxa: int, dense: float, form: str, rng: np.random.Generator) -> np.ndarray:
    """Treatment effects on the log-ratio scale: zero except for a ``dense`` fraction of taxa."""
    if not 0 <= dense <= 1:
        raise ValueError(f"dense must lie in [0, 1], got {dense}")
    beta = np.zeros(n_taxa)

    def effect() -> float:
        v = rng.uniform(-2, 2)
        return v + np.sign(v)

    if form == "grouped":
        starts = np.arange(0, n_taxa, 5)
        n_groups = int(round(dense * n_taxa / 5))
        for start in rng.permutation(starts)[:n_groups]:
            beta[start : start + 5] = effect()
    elif form == "random":
        for k in rng.permutation(n_taxa)[: int(round(dense * n_taxa))]:
            beta[k] = effect()
    else:
        raise ValueError(f"form must be 'grouped' or 'random', got {form!r}")
    return beta


def simulate(settings: SimulationSettings) -> SimulatedData:
    """Draw one dataset. The same settings (incl. seed) give the same data on any machine."""
    s = settings
    if s.n_samples % s.n_blocks:
        raise ValueError(f"n_samples ({s.n_samples}) must be a multiple of n_blocks ({s.n_blocks})")
    if s.n_sites and s.n_blocks % s.n_sites:
        raise ValueError(f"n_blocks ({s.n_blocks}) must be a multiple of n_sites ({s.n_sites})")
    rng = np.random.default_rng(s.seed)
    n, k_main = s.n_samples, s.n_taxa
    k_all = k_main + s.rare_taxa
    per_block = n // s.n_blocks

    # Samples are grouped by block; inside a block the treatments form a balanced factorial.
    block = np.repeat(np.arange(s.n_blocks), per_block)
    within = np.tile(np.arange(per_block), s.n_blocks)
    x = np.column_stack([(within >> j) & 1 for j in range(len(s.treatments))]).astype(float)

    beta = np.zeros((k_all, len(s.treatments)))
    beta[:k_main, 0] = true_effects(k_main, s.dense, s.form, rng)
    mu = np.concatenate([np.linspace(s.mu_start, s.mu_end, k_main), np.full(s.rare_taxa, s.rare_mu)])
    block_effects = rng.multivariate_normal(
        np.zeros(k_all), ar1_covariance(k_all, s.block_cor, s.block_var), s.n_blocks
    )
    theta_mean = mu + x @ beta.T + block_effects[block]
    if s.n_sites:
        site = block % s.n_sites
        site_effects = rng.multivariate_normal(
            np.zeros(k_all), ar1_covariance(k_all, s.block_cor, s.site_var), s.n_sites
        )
        theta_mean += site_effects[site]
    errors = rng.multivariate_normal(np.zeros(k_all), ar1_covariance(k_all, s.error_cor, s.error_var), n)
    theta = theta_mean + errors
    probabilities = np.exp(theta - theta.max(axis=1, keepdims=True))
    probabilities /= probabilities.sum(axis=1, keepdims=True)
    depth = rng.integers(s.depth_min, s.depth_max + 1, size=n)
    counts = np.vstack([rng.multinomial(depth[i], probabilities[i]) for i in range(n)])

    sample_ids = pd.Index([f"sample{i + 1:03d}" for i in range(n)], name="sample_id")
    taxon_ids = pd.Index([f"taxon{k + 1:03d}" for k in range(k_all)], name="taxon_id")
    metadata = pd.DataFrame(index=sample_ids)
    for j, name in enumerate(s.treatments):
        metadata[name] = np.where(x[:, j] == 1, s.levels[1], s.levels[0])
    if s.n_sites:
        metadata["site"] = [chr(ord("A") + b % s.n_sites) for b in block]
        # Block labels restart in every site, as in field designs ("block 1" of site A and of site B).
        metadata["block"] = [str(b // s.n_sites + 1) for b in block]
    else:
        metadata["block"] = [str(b + 1) for b in block]
    columns = [f"{name}[{s.levels[1]}]" for name in s.treatments]
    taxonomy = pd.Series(
        [f"k__Simulated; p__Phylum{k % 3 + 1}; g__Genus{k // 5 + 1}; s__Species{k + 1}" for k in range(k_all)],
        index=taxon_ids,
        name="lineage",
    )
    return SimulatedData(
        counts=pd.DataFrame(counts, index=sample_ids, columns=taxon_ids),
        metadata=metadata,
        beta=pd.DataFrame(beta, index=taxon_ids, columns=columns),
        taxonomy=taxonomy,
        settings=settings,
        extra={"mu": mu, "depth": depth, "theta": theta},
    )


def write_dataset(data: SimulatedData, folder: str | Path) -> dict[str, Path]:
    """Write counts, metadata, taxonomy and the truth as the workflow's own TSV inputs."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = {
        "counts": folder / "counts.tsv",
        "metadata": folder / "metadata.tsv",
        "taxonomy": folder / "taxonomy.tsv",
        "truth": folder / "true_beta.tsv",
        "settings": folder / "settings.tsv",
    }
    data.counts.to_csv(paths["counts"], sep="\t")
    data.metadata.to_csv(paths["metadata"], sep="\t")
    data.taxonomy.rename_axis("Feature ID").rename("Taxon").to_csv(paths["taxonomy"], sep="\t")
    data.beta.to_csv(paths["truth"], sep="\t")
    pd.Series({k: str(v) for k, v in asdict(data.settings).items()}, name="value").rename_axis("setting").to_csv(
        paths["settings"], sep="\t"
    )
    return paths


def write_qiime_style(data: SimulatedData, folder: str | Path) -> dict[str, Path]:
    """Write the dataset as a QIIME 2 user has it: a BIOM 2.1 (HDF5) feature table with taxonomy and
    a QIIME 2 metadata file (``sample-id`` header and a ``#q2:types`` row), plus the true effects."""
    import biom

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = {"biom": folder / "feature-table.biom", "metadata": folder / "sample-metadata.tsv",
             "truth": folder / "true_beta.tsv"}  # fmt: skip
    lineages = [[rank.strip() for rank in str(text).split(";")] for text in data.taxonomy.reindex(data.counts.columns)]
    table = biom.Table(
        data.counts.to_numpy().T,
        observation_ids=list(data.counts.columns),
        sample_ids=list(data.counts.index),
        observation_metadata=[{"taxonomy": lineage} for lineage in lineages],
    )
    with biom.util.biom_open(str(paths["biom"]), "w") as handle:
        table.to_hdf5(handle, generated_by="mimix.simulate")
    metadata = data.metadata.rename_axis("sample-id").reset_index()
    types = ["#q2:types"] + ["categorical"] * (metadata.shape[1] - 1)
    lines = ["\t".join(metadata.columns), "\t".join(types)]
    lines += ["\t".join(str(v) for v in row) for row in metadata.itertuples(index=False)]
    paths["metadata"].write_text("\n".join(lines) + "\n")
    data.beta.to_csv(paths["truth"], sep="\t")
    return paths


def main(argv: list[str] | None = None) -> None:
    """Command line: ``python -m mimix.simulate OUTDIR [--n-taxa 100 --seed 1 ...]``."""
    import argparse

    defaults = SimulationSettings()
    parser = argparse.ArgumentParser(description="Simulate counts by the MIMIX paper's design.")
    parser.add_argument("outdir", help="folder for counts.tsv, metadata.tsv, taxonomy.tsv, true_beta.tsv")
    parser.add_argument(
        "--biom", action="store_true", help="write feature-table.biom + sample-metadata.tsv (QIIME 2 style) instead"
    )
    for name, value in asdict(defaults).items():
        flag = "--" + name.replace("_", "-")
        if isinstance(value, tuple):
            parser.add_argument(flag, nargs="+", default=list(value))
        else:
            parser.add_argument(flag, type=type(value), default=value)
    args = vars(parser.parse_args(argv))
    outdir, as_biom = args.pop("outdir"), args.pop("biom")
    settings = SimulationSettings(**{k: tuple(v) if isinstance(v, list) else v for k, v in args.items()})
    data = simulate(settings)
    paths = write_qiime_style(data, outdir) if as_biom else write_dataset(data, outdir)
    print(f"wrote {', '.join(str(p) for p in paths.values())}")


if __name__ == "__main__":
    main()
