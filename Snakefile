# MIMIX workflow: a table of contents. Rules live in workflow/rules/*.smk.
from snakemake.utils import min_version

min_version("9.0")


configfile: "config/config.yaml"


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/fit.smk"
include: "workflow/rules/inference.smk"
include: "workflow/rules/report.smk"
include: "workflow/rules/simulation.smk"
include: "workflow/rules/power.smk"


rule all:
    default_target: True
    input:
        all_targets(),
