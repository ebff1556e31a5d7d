# Inference on the fitted chains: diagnostics first, then tests, variance decomposition and
# latent structure per model; PERMANOVA (the baseline) once per dataset.


rule diagnostics:
    input:
        chains=lambda wildcards: chain_files(wildcards.model),
    output:
        quantities=f"{RESULTS}/{{model}}/diagnostics/quantities.tsv",
        chains=f"{RESULTS}/{{model}}/diagnostics/chains.tsv",
        verdict=f"{RESULTS}/{{model}}/diagnostics/verdict.tsv",
    log:
        f"{LOGS}/{{model}}/diagnostics.log",
    conda:
        "../../envs/analysis.yaml"
    resources:
        mem_mb=4000,
        runtime=30,
    params:
        thresholds=config["inference"]["diagnostics"],
    script:
        "../scripts/diagnostics.py"


rule global_tests:
    input:
        chains=lambda wildcards: chain_files(wildcards.model),
        terms=data_stage_outputs()["terms"],
        quantities=rules.diagnostics.output.quantities,
        verdict=rules.diagnostics.output.verdict,
    output:
        f"{RESULTS}/{{model}}/global_tests.tsv",
    log:
        f"{LOGS}/{{model}}/global_tests.log",
    conda:
        "../../envs/analysis.yaml"
    resources:
        mem_mb=4000,
        runtime=15,
    params:
        threshold=config["inference"]["global_tests"]["threshold"],
    script:
        "../scripts/global_tests.py"


rule local_tests:
    input:
        chains=lambda wildcards: chain_files(wildcards.model),
        taxa=data_stage_outputs()["taxa"],
        quantities=rules.diagnostics.output.quantities,
        verdict=rules.diagnostics.output.verdict,
    output:
        f"{RESULTS}/{{model}}/local_tests.tsv",
    log:
        f"{LOGS}/{{model}}/local_tests.log",
    conda:
        "../../envs/analysis.yaml"
    resources:
        mem_mb=4000,
        runtime=15,
    params:
        settings=config["inference"]["local_tests"],
    script:
        "../scripts/local_tests.py"


rule variance_decomposition:
    input:
        chains=lambda wildcards: chain_files(wildcards.model),
    output:
        per_taxon=f"{RESULTS}/{{model}}/variance/per_taxon.tsv",
        summary=f"{RESULTS}/{{model}}/variance/summary.tsv",
    log:
        f"{LOGS}/{{model}}/variance_decomposition.log",
    conda:
        "../../envs/analysis.yaml"
    resources:
        mem_mb=4000,
        runtime=15,
    params:
        interval_level=config["inference"]["variance"]["interval_level"],
    script:
        "../scripts/variance_decomposition.py"


rule latent_structure:
    input:
        chains=lambda wildcards: chain_files(wildcards.model),
        taxa=data_stage_outputs()["taxa"],
    output:
        # Only the factor models have loadings: the constraint keeps mimix_nofactor out.
        clusters=f"{RESULTS}/{{model,mimix|mimix_gaussian}}/latent/clusters.tsv",
        correlation=f"{RESULTS}/{{model}}/latent/correlation.tsv",
        factors=f"{RESULTS}/{{model}}/latent/factors.tsv",
    log:
        f"{LOGS}/{{model}}/latent_structure.log",
    conda:
        "../../envs/analysis.yaml"
    resources:
        mem_mb=4000,
        runtime=30,
    params:
        settings=config["inference"]["latent"],
    script:
        "../scripts/latent_structure.py"


rule permanova:
    input:
        counts=data_stage_outputs()["counts"],
        design=data_stage_outputs()["design"],
        terms=data_stage_outputs()["terms"],
        blocks=data_stage_outputs()["blocks"],
    output:
        f"{RESULTS}/permanova/permanova.tsv",
    log:
        f"{LOGS}/permanova.log",
    conda:
        "../../envs/analysis.yaml"
    resources:
        mem_mb=2000,
        runtime=30,
    params:
        settings=config["permanova"],
    script:
        "../scripts/permanova.py"


rule predictive_checks:
    input:
        **data_stage_outputs(),
        chains=lambda wildcards: chain_files(wildcards.model),
    output:
        checks=f"{RESULTS}/{{model}}/ppc/checks.tsv",
        summary=f"{RESULTS}/{{model}}/ppc/summary.tsv",
    log:
        f"{LOGS}/{{model}}/predictive_checks.log",
    conda:
        "../../envs/analysis.yaml"
    resources:
        mem_mb=4000,
        runtime=30,
    params:
        settings=config["inference"]["ppc"],
        nested_blocking=config["design"]["nested_blocking"],
    script:
        "../scripts/predictive_checks.py"
