# The paper's simulation study (target: simulation): one job per replicate and method, then the
# rejection rates, Table 1 and Figure 2. Run with --configfile config/simulation.yaml.

SIMULATION = config["simulation"]
SIM_RESULTS = f"{RESULTS}/simulation"
SIM_LOGS = f"{LOGS}/simulation"


wildcard_constraints:
    setting=r"dense[0-9.]+-error[0-9.]+-block[0-9.]+-(grouped|random)",
    replicate=r"\d+",
    method="|".join(
        sorted({*SIMULATION["models"], config["power"]["model"], "permanova"})
    ),


# Each model is compiled once before its replicates start (parallel first builds of one program
# would race in the engines' caches).
rule simulation_compile:
    input:
        lambda wildcards: stan_sources(wildcards.method),
    output:
        f"{SIM_RESULTS}/compiled/{{method}}.json",
    log:
        f"{SIM_LOGS}/compile_{{method}}.log",
    conda:
        "../../envs/simulation.yaml"
    resources:
        mem_mb=2000,
        runtime=30,
    params:
        engine=config["sampling"]["engine"],
        factors=config["model"]["factors"],
        data=SIMULATION["data"],
    script:
        "../scripts/simulation_compile.py"


rule simulation_replicate:
    input:
        simulation_compiled,
    output:
        f"{SIM_RESULTS}/replicates/{{setting}}/{{replicate}}/{{method}}.tsv",
    log:
        f"{SIM_LOGS}/{{setting}}/{{replicate}}/{{method}}.log",
    conda:
        "../../envs/simulation.yaml"
    threads: 1
    resources:
        mem_mb=config["resources"]["fit"]["mem_mb"],
        runtime=config["resources"]["fit"]["runtime"],
    params:
        simulation=options_read("simulation", SIMULATION_REPLICATE_KEYS),
        sampling=sampling_settings(),
        factors=config["model"]["factors"],
    script:
        "../scripts/simulation_replicate.py"


rule simulation_tables:
    input:
        simulation_replicate_outputs(),
    output:
        metrics=f"{SIM_RESULTS}/metrics.tsv",
        rejection=report(
            f"{SIM_RESULTS}/rejection_rates.tsv",
            caption="../report/simulation_tables.rst",
            category="8. Simulation study",
        ),
        table1=f"{SIM_RESULTS}/table1.tsv",
        table1_md=f"{SIM_RESULTS}/table1.md",
        table1_tex=f"{SIM_RESULTS}/table1.tex",
    log:
        f"{SIM_LOGS}/tables.log",
    conda:
        "../../envs/analysis.yaml"
    resources:
        mem_mb=1000,
        runtime=10,
    script:
        "../scripts/simulation_tables.py"


rule plot_simulation:
    input:
        rejection=rules.simulation_tables.output.rejection,
    output:
        png=report(
            f"{SIM_RESULTS}/figure2.png",
            caption="../report/simulation_figure.rst",
            category="8. Simulation study",
        ),
        pdf=f"{SIM_RESULTS}/figure2.pdf",
    log:
        f"{SIM_LOGS}/figure2.log",
    conda:
        "../../envs/analysis.yaml"
    resources:
        mem_mb=1000,
        runtime=10,
    params:
        threshold=SIMULATION["threshold"],
        alpha=SIMULATION["alpha"],
    script:
        "../scripts/plot_simulation.py"


rule simulation:
    input:
        rules.simulation_tables.output,
        rules.plot_simulation.output,
