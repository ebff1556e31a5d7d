# Figures of every model, the global-tests figure of the dataset and the report's opening page.
# Report categories are numbered in reading order (the report sorts them by name).


rule summary:
    input:
        data_summary=data_stage_outputs()["summary"],
        permanova=f"{RESULTS}/permanova/permanova.tsv",
        verdicts=expand(
            f"{RESULTS}/{{model}}/diagnostics/verdict.tsv", model=config["models"]
        ),
        chains=expand(
            f"{RESULTS}/{{model}}/diagnostics/chains.tsv", model=config["models"]
        ),
        global_tests=expand(
            f"{RESULTS}/{{model}}/global_tests.tsv", model=config["models"]
        ),
        local_tests=expand(
            f"{RESULTS}/{{model}}/local_tests.tsv", model=config["models"]
        ),
    output:
        report(
            f"{RESULTS}/report/summary.rst",
            caption="../report/opening_page.rst",
            category="0. Summary",
        ),
    log:
        f"{LOGS}/report/summary.log",
    conda:
        "../../envs/analysis.yaml"
    resources:
        mem_mb=1000,
        runtime=10,
    params:
        dataset=DATASET,
        models=config["models"],
        logs=LOGS,
    script:
        "../scripts/summary.py"


rule plot_diagnostics:
    input:
        chains=lambda wildcards: chain_files(wildcards.model),
        quantities=f"{RESULTS}/{{model}}/diagnostics/quantities.tsv",
        chain_table=f"{RESULTS}/{{model}}/diagnostics/chains.tsv",
    output:
        png=report(
            f"{RESULTS}/figures/{{model}}/diagnostics.png",
            caption="../report/diagnostics.rst",
            category="2. Convergence",
            subcategory="{model}",
        ),
        pdf=f"{RESULTS}/figures/{{model}}/diagnostics.pdf",
    log:
        f"{LOGS}/{{model}}/plot_diagnostics.log",
    conda:
        "../../envs/analysis.yaml"
    resources:
        mem_mb=4000,
        runtime=15,
    params:
        thresholds=config["inference"]["diagnostics"],
    script:
        "../scripts/plot_diagnostics.py"


rule plot_global_tests:
    input:
        tests=expand(f"{RESULTS}/{{model}}/global_tests.tsv", model=config["models"]),
        permanova=f"{RESULTS}/permanova/permanova.tsv",
    output:
        png=report(
            f"{RESULTS}/figures/global_tests.png",
            caption="../report/global_tests.rst",
            category="3. Global tests",
        ),
        pdf=f"{RESULTS}/figures/global_tests.pdf",
    log:
        f"{LOGS}/plot_global_tests.log",
    conda:
        "../../envs/analysis.yaml"
    resources:
        mem_mb=1000,
        runtime=10,
    params:
        models=config["models"],
    script:
        "../scripts/plot_global_tests.py"


rule plot_local_effects:
    input:
        unpack(latent_clusters),
        local=f"{RESULTS}/{{model}}/local_tests.tsv",
    output:
        png=report(
            f"{RESULTS}/figures/{{model}}/local_effects.png",
            caption="../report/local_effects.rst",
            category="4. Taxon effects",
            subcategory="{model}",
        ),
        pdf=f"{RESULTS}/figures/{{model}}/local_effects.pdf",
    log:
        f"{LOGS}/{{model}}/plot_local_effects.log",
    conda:
        "../../envs/analysis.yaml"
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        max_labelled=80,
    script:
        "../scripts/plot_local_effects.py"


rule plot_significant_effects:
    input:
        local=f"{RESULTS}/{{model}}/local_tests.tsv",
    output:
        png=report(
            f"{RESULTS}/figures/{{model}}/significant_effects.png",
            caption="../report/significant_effects.rst",
            category="4. Taxon effects",
            subcategory="{model}",
        ),
        pdf=f"{RESULTS}/figures/{{model}}/significant_effects.pdf",
    log:
        f"{LOGS}/{{model}}/plot_significant_effects.log",
    conda:
        "../../envs/analysis.yaml"
    resources:
        mem_mb=1000,
        runtime=10,
    params:
        max_taxa=40,
    script:
        "../scripts/plot_significant_effects.py"


rule plot_variance:
    input:
        per_taxon=f"{RESULTS}/{{model}}/variance/per_taxon.tsv",
        local=f"{RESULTS}/{{model}}/local_tests.tsv",
        quantities=f"{RESULTS}/{{model}}/diagnostics/quantities.tsv",
    output:
        shares_png=report(
            f"{RESULTS}/figures/{{model}}/variance_shares.png",
            caption="../report/variance_shares.rst",
            category="5. Variance decomposition",
            subcategory="{model}",
        ),
        shares_pdf=f"{RESULTS}/figures/{{model}}/variance_shares.pdf",
        scatter_png=report(
            f"{RESULTS}/figures/{{model}}/error_variance.png",
            caption="../report/error_variance.rst",
            category="5. Variance decomposition",
            subcategory="{model}",
        ),
        scatter_pdf=f"{RESULTS}/figures/{{model}}/error_variance.pdf",
    log:
        f"{LOGS}/{{model}}/plot_variance.log",
    conda:
        "../../envs/analysis.yaml"
    resources:
        mem_mb=1000,
        runtime=10,
    script:
        "../scripts/plot_variance.py"


rule plot_latent_structure:
    input:
        correlation=f"{RESULTS}/{{model}}/latent/correlation.tsv",
        clusters=f"{RESULTS}/{{model}}/latent/clusters.tsv",
        local=f"{RESULTS}/{{model}}/local_tests.tsv",
    output:
        # Only the factor models have a latent structure: the constraint keeps mimix_nofactor out.
        png=report(
            f"{RESULTS}/figures/{{model,mimix|mimix_gaussian}}/latent_structure.png",
            caption="../report/latent_structure.rst",
            category="6. Latent structure",
            subcategory="{model}",
        ),
        pdf=f"{RESULTS}/figures/{{model}}/latent_structure.pdf",
    log:
        f"{LOGS}/{{model}}/plot_latent_structure.log",
    conda:
        "../../envs/analysis.yaml"
    resources:
        mem_mb=2000,
        runtime=10,
    script:
        "../scripts/plot_latent_structure.py"


rule plot_ppc:
    input:
        checks=f"{RESULTS}/{{model}}/ppc/checks.tsv",
    output:
        png=report(
            f"{RESULTS}/figures/{{model}}/ppc.png",
            caption="../report/ppc.rst",
            category="7. Predictive checks",
            subcategory="{model}",
        ),
        pdf=f"{RESULTS}/figures/{{model}}/ppc.pdf",
    log:
        f"{LOGS}/{{model}}/plot_ppc.log",
    conda:
        "../../envs/analysis.yaml"
    resources:
        mem_mb=1000,
        runtime=10,
    params:
        interval_level=config["inference"]["ppc"]["interval_level"],
    script:
        "../scripts/plot_ppc.py"
