# One job per run of the suite: `wgfbench run` writes the run's record (and resumes from its checkpoint).
rule run:
    message:
        "run {wildcards.experiment}/{wildcards.method}/d{wildcards.dim}/s{wildcards.seed}"
    output:
        f"{OUT}/runs/{{experiment}}/{{method}}/d{{dim}}_s{{seed}}.parquet",
    log:
        f"{OUT}/logs/{{experiment}}/{{method}}/d{{dim}}_s{{seed}}.log",
    params:
        cli=WGFBENCH,
        suite=SUITE_FILE,
        checkpoint=f"{OUT}/checkpoints/{{experiment}}/{{method}}/d{{dim}}_s{{seed}}.pt",
        job="{experiment}/{method}/d{dim}/s{seed}",
        floors=f"{OUT}/floors",
    threads: 1
    resources:
        runtime=runtime_minutes,
        mem_mb=4000,
        gpu=gpus,
    # every value from the user (suite path, output folder, names) reaches the shell quoted (`:q`), so a path with
    # spaces, `$(...)` or backticks is a path and nothing else; the runner creates the checkpoint's folder itself
    shell:
        "{params.cli} run --suite {params.suite:q} --job {params.job:q} "
        "--out {output:q} --checkpoint {params.checkpoint:q} --floor-cache {params.floors:q} --threads {threads} "
        "2> {log:q}"
