# Shared by all rule files - the validated config, output locations and input functions.
import copy
import sys
from pathlib import Path

import yaml
from snakemake.utils import validate

# The mimix package, when it is not pip-installed.
sys.path.insert(0, str(Path(workflow.basedir) / "src"))
from mimix.configuration import coerce_config_strings

SCHEMA = Path(workflow.basedir) / "workflow" / "schemas" / "config.schema.yaml"
if workflow.config_settings.configfiles:
    # A study's config file replaces the demo's (config/config.yaml) instead of being merged into
    # it: a study that names no taxonomy must not get the demo's. Options it leaves out take the
    # schema's defaults; --config overrides still apply on top.
    config.clear()
    config.update(copy.deepcopy(workflow.config_settings.overwrite_config))
# Nested --config values arrive as strings ('sampling={draws: 500}'); give them the schema's types.
config.update(coerce_config_strings(config, yaml.safe_load(SCHEMA.read_text())))
validate(config, schema=str(SCHEMA))

DATASET = config["dataset"]
RESULTS = f"results/{DATASET}"
LOGS = f"logs/{DATASET}"
DATA_TABLES = ("counts", "design", "terms", "blocks", "taxa", "samples")


# Cheap steps run where Snakemake runs (a cluster's login node); compiles, chains and the
# inference rules are submitted as jobs.
localrules:
    all,
    data,
    validate_inputs,
    filter_counts,
    plot_data_stage,
    summary,
    plot_diagnostics,
    plot_global_tests,
    plot_local_effects,
    plot_significant_effects,
    plot_variance,
    plot_latent_structure,
    plot_ppc,
    simulation_tables,
    plot_simulation,
    power_table,
    plot_power,


wildcard_constraints:
    model="|".join(config["models"]),
    chain=r"\d+",


def sampling_settings():
    """The sampling options that change draws; the log's progress interval (refresh) is left out so
    that changing it does not trigger a rerun of finished chains."""
    return {key: value for key, value in config["sampling"].items() if key != "refresh"}


# The study options one replicate reads. The lists of models, settings and the replicate count are
# left out: adding a model, a setting or replicates must not rerun the replicates already done.
SIMULATION_REPLICATE_KEYS = (
    "seed",
    "data",
    "permutations",
    "alpha",
    "threshold",
    "interval_level",
)
# The same for a power-analysis replicate (its size comes from the wildcard).
POWER_REPLICATE_KEYS = (
    "pilot",
    "data",
    "responding_fraction",
    "seed",
    "model",
    "threshold",
    "interval_level",
)


def options_read(section, keys):
    """The options of a config section that one replicate job reads (its params)."""
    return {key: config[section][key] for key in keys}


def simulation_compiled(wildcards):
    """The compile record a model replicate waits for (PERMANOVA needs none)."""
    if wildcards.method == "permanova":
        return []
    return f"{RESULTS}/simulation/compiled/{wildcards.method}.json"


def simulation_replicate_outputs():
    """One metrics row per setting, replicate and method of the simulation study."""
    from mimix.simstudy import study_settings

    grid = {
        key: config["simulation"][key]
        for key in ("dense", "error_var", "block_var", "form")
    }
    methods = [*config["simulation"]["models"]]
    if config["simulation"]["permanova"]:
        methods.append("permanova")
    return [
        f"{RESULTS}/simulation/replicates/{setting.name}/{replicate}/{method}.tsv"
        for setting in study_settings(grid)
        for replicate in range(1, config["simulation"]["replicates"] + 1)
        for method in methods
    ]


def power_inputs(wildcards):
    """The compiled model and, for a fitted pilot, its chains."""
    inputs = {
        "compiled": f"{RESULTS}/simulation/compiled/{config['power']['model']}.json"
    }
    if config["power"]["pilot"] != "simulator":
        inputs["pilot"] = chain_files(config["power"]["pilot"])
    return inputs


def power_replicate_outputs():
    """One result row per planned experiment size and replicate."""
    from mimix.power import experiment_sizes

    sizes = experiment_sizes(config["power"])
    return [
        f"{RESULTS}/power/replicates/{size.name}/{replicate}.tsv"
        for size in sizes
        for replicate in range(1, config["power"]["replicates"] + 1)
    ]


def data_stage_outputs():
    """The data stage's tables (keys as in mimix.datastage.TABLES)."""
    paths = {name: f"{RESULTS}/data/{name}.tsv" for name in DATA_TABLES}
    paths["summary"] = f"{RESULTS}/data/summary.json"
    return paths


def raw_inputs():
    """The user's input files named in the config (missing ones are reported by the validation rule)."""
    section = config["input"]
    if section["format"] == "mimix":
        folder = Path(section["mimix_dir"] or "")
        files = [folder / name for name in ("X.csv", "Y.csv", "Z.csv")]
        files += [folder / "tax.csv"] if (folder / "tax.csv").exists() else []
        return [str(f) for f in files if f.exists()]
    files = [section[key] for key in ("counts", "metadata", "taxonomy") if section[key]]
    return [f for f in files if Path(f).exists()]


def stan_sources(model):
    """The model's .stan file and the shared files it may include."""
    stan_dir = Path(workflow.basedir) / "workflow" / "stan"
    return [str(stan_dir / f"{model}.stan")] + sorted(
        str(p) for p in stan_dir.glob("include/*.stan")
    )


def chain_files(model):
    """Every chain file of one model."""
    chains = range(1, config["sampling"]["chains"] + 1)
    return [f"{RESULTS}/{model}/chains/{chain}.nc" for chain in chains]


# Models with loadings: the latent structure applies to them only.
FACTOR_MODELS = ("mimix", "mimix_gaussian")


def inference_outputs(model):
    """Inference outputs of one model (latent structure for the factor models only)."""
    tables = ["diagnostics/quantities", "diagnostics/chains", "diagnostics/verdict"]
    tables += ["global_tests", "local_tests", "variance/per_taxon", "variance/summary"]
    tables += ["ppc/checks", "ppc/summary"]
    if model in FACTOR_MODELS:
        tables += ["latent/clusters", "latent/correlation", "latent/factors"]
    return [f"{RESULTS}/{model}/{table}.tsv" for table in tables]


def latent_clusters(wildcards):
    """The subcommunity table that orders a factor model's taxa in its figures (none for mimix_nofactor)."""
    if wildcards.model in FACTOR_MODELS:
        return {"clusters": f"{RESULTS}/{wildcards.model}/latent/clusters.tsv"}
    return {}


def figure_outputs(model):
    """Figures of one model (PNG; each rule writes the PDF beside it); latent structure for factor models only."""
    names = [
        "diagnostics",
        "local_effects",
        "significant_effects",
        "variance_shares",
        "error_variance",
        "ppc",
    ]
    if model in FACTOR_MODELS:
        names.append("latent_structure")
    return [f"{RESULTS}/figures/{model}/{name}.png" for name in names]


def report_outputs():
    """The opening page, the dataset's global-tests figure and every model's figures."""
    targets = [f"{RESULTS}/report/summary.rst", f"{RESULTS}/figures/global_tests.png"]
    for model in config["models"]:
        targets += figure_outputs(model)
    return targets


def all_targets():
    targets = list(data_stage_outputs().values()) + [
        f"{RESULTS}/figures/data_stage.png"
    ]
    for model in config["models"]:
        targets += inference_outputs(model)
    targets.append(f"{RESULTS}/permanova/permanova.tsv")
    targets += report_outputs()
    return targets
