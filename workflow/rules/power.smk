# Power analysis (target: power): simulated experiments of the planned sizes, one job per size and
# replicate, fitted with one model; then the power table and curves.

POWER = config["power"]
POWER_RESULTS = f"{RESULTS}/power"
POWER_LOGS = f"{LOGS}/power"


wildcard_constraints:
    size=r"n\d+-b\d+-d\d+-e[0-9.]+",


rule power_replicate:
    input:
        unpack(power_inputs),
    output:
        f"{POWER_RESULTS}/replicates/{{size}}/{{replicate}}.tsv",
    log:
        f"{POWER_LOGS}/{{size}}/{{replicate}}.log",
    conda:
        "../../envs/simulation.yaml"
    threads: 1
    resources:
        mem_mb=config["resources"]["fit"]["mem_mb"],
        runtime=config["resources"]["fit"]["runtime"],
    params:
        power=options_read("power", POWER_REPLICATE_KEYS),
        sampling=sampling_settings(),
        factors=config["model"]["factors"],
    script:
        "../scripts/power_replicate.py"


rule power_table:
    input:
        power_replicate_outputs(),
    output:
        replicates=f"{POWER_RESULTS}/replicates.tsv",
        table=report(
            f"{POWER_RESULTS}/power.tsv",
            caption="../report/power_table.rst",
            category="9. Power analysis",
        ),
    log:
        f"{POWER_LOGS}/table.log",
    conda:
        "../../envs/analysis.yaml"
    resources:
        mem_mb=1000,
        runtime=10,
    script:
        "../scripts/power_table.py"


rule plot_power:
    input:
        table=rules.power_table.output.table,
    output:
        png=report(
            f"{POWER_RESULTS}/power.png",
            caption="../report/power_figure.rst",
            category="9. Power analysis",
        ),
        pdf=f"{POWER_RESULTS}/power.pdf",
    log:
        f"{POWER_LOGS}/figure.log",
    conda:
        "../../envs/analysis.yaml"
    resources:
        mem_mb=1000,
        runtime=10,
    params:
        threshold=POWER["threshold"],
        model=POWER["model"],
        pilot=POWER["pilot"],
    script:
        "../scripts/plot_power.py"


rule power:
    input:
        rules.power_table.output,
        rules.plot_power.output,
