# Model fitting: one job per chain and model.


rule fit_chain:
    input:
        **data_stage_outputs(),
    output:
        f"{RESULTS}/{{model}}/chains/{{chain}}.nc",
    log:
        f"{LOGS}/{{model}}/chain{{chain}}.log",
    conda:
        "../../envs/stan.yaml"
    threads: config["resources"]["fit"]["threads"]
    resources:
        mem_mb=config["resources"]["fit"]["mem_mb"],
        runtime=config["resources"]["fit"]["runtime"],
    params:
        sampling=config["sampling"],
        factors=config["model"]["factors"],
        nested_blocking=config["design"]["nested_blocking"],
    script:
        "../scripts/fit_chain.py"
