# Model fitting: one job per chain and model.


rule compile_model:
    input:
        **data_stage_outputs(),
        stan=lambda wildcards: stan_sources(wildcards.model),
    output:
        f"{RESULTS}/{{model}}/compiled.json",
    log:
        f"{LOGS}/{{model}}/compile.log",
    conda:
        "../../envs/stan.yaml"
    resources:
        mem_mb=3000,
        runtime=30,
    params:
        engine=config["sampling"]["engine"],
        factors=config["model"]["factors"],
        nested_blocking=config["design"]["nested_blocking"],
    script:
        "../scripts/compile_model.py"


rule fit_chain:
    input:
        **data_stage_outputs(),
        compiled=rules.compile_model.output[0],
    output:
        f"{RESULTS}/{{model}}/chains/{{chain}}.nc",
    log:
        f"{LOGS}/{{model}}/chain{{chain}}.log",
    benchmark:
        f"{LOGS}/{{model}}/chain{{chain}}.benchmark.tsv"
    conda:
        "../../envs/stan.yaml"
    threads: config["resources"]["fit"]["threads"]
    resources:
        mem_mb=config["resources"]["fit"]["mem_mb"],
        runtime=config["resources"]["fit"]["runtime"],
    params:
        sampling=sampling_settings(),
        factors=config["model"]["factors"],
        nested_blocking=config["design"]["nested_blocking"],
    script:
        "../scripts/fit_chain.py"
