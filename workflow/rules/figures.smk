# The suite's standard figures (PNG and PDF) from its table.parquet; the PNGs go into the HTML report.


rule figures:
    message:
        "figures of suite {SUITE.name}"
    input:
        f"{OUT}/table.parquet",
    output:
        report(
            directory(f"{OUT}/figures"),
            patterns=["{figure}.png"],
            caption="../report/figures.rst",
            category="Figures",
            labels={"figure": "{figure}"},
        ),
    log:
        f"{OUT}/logs/figures.log",
    params:
        cli=WGFBENCH,
    shell:
        "{params.cli} plot {input:q} --out {output:q} > {log:q} 2>&1"
