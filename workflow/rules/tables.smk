# The suite's tables from all its records: table.md (and its HTML rendering for the report), table.parquet,
# summary.parquet and metrics.parquet (the long view: one row per run, step and metric).

rule table:
    message:
        "tables of suite {SUITE.name}"
    input:
        RECORDS,
    output:
        md=f"{OUT}/table.md",
        html=report(
            f"{OUT}/table.html",
            caption="../report/table.rst",
            category="Tables",
            labels={"table": "every experiment of the suite"},
        ),
        parquet=f"{OUT}/table.parquet",
        summary=f"{OUT}/summary.parquet",
        metrics=f"{OUT}/metrics.parquet",
    log:
        f"{OUT}/logs/table.log",
    params:
        cli=WGFBENCH,
        title=f"Suite {SUITE.name}",
        out=folder_of_table,
        spread=spread_option,
    shell:
        "{params.cli} table {input:q} --out {params.out:q} --title {params.title:q} {params.spread} > {log:q} 2>&1"
