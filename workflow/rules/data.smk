# Data stage: validation, then filtering and rarity trimming.


rule validate_inputs:
    input:
        raw_inputs(),
    output:
        f"{RESULTS}/data/validation.json",
    log:
        f"{LOGS}/validate_inputs.log",
    conda:
        "../../envs/data.yaml"
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        input=config["input"],
        design=config["design"],
        filtering=config["filtering"],
    script:
        "../scripts/validate_inputs.py"


rule filter_counts:
    input:
        raw=raw_inputs(),
        validation=rules.validate_inputs.output[0],
    output:
        **data_stage_outputs(),
    log:
        f"{LOGS}/filter_counts.log",
    conda:
        "../../envs/data.yaml"
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        input=config["input"],
        design=config["design"],
        filtering=config["filtering"],
    script:
        "../scripts/filter_counts.py"


rule plot_data_stage:
    input:
        samples=f"{RESULTS}/data/samples.tsv",
        taxa=f"{RESULTS}/data/taxa.tsv",
    output:
        png=report(
            f"{RESULTS}/figures/data_stage.png",
            caption="../report/data_stage.rst",
            category="1. Data",
        ),
        pdf=f"{RESULTS}/figures/data_stage.pdf",
    log:
        f"{LOGS}/plot_data_stage.log",
    conda:
        "../../envs/analysis.yaml"
    resources:
        mem_mb=1000,
        runtime=10,
    params:
        filtering=config["filtering"],
    script:
        "../scripts/plot_data_stage.py"


rule data:
    input:
        **data_stage_outputs(),
        figure=f"{RESULTS}/figures/data_stage.png",
