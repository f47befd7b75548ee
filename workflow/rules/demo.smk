# The built-in demo corpus: one job per split (every split listed in demo.n_images),
# each writing its images, COCO annotations, spoken captions and ground truth under
# results/<name>/corpus/ and, last, manifest_<split>.json (what later rules depend on).
# Jobs are deterministic: the same demo settings give byte-identical files, whatever
# the number of threads.

DEMO_SPLITS = sorted(config["demo"]["n_images"])


rule demo_corpus_split:
    output:
        f"{RESULTS}/corpus/manifest_{{split}}.json",
    wildcard_constraints:
        split="|".join(DEMO_SPLITS),
    params:
        demo=as_json(config["demo"]),
        out=lambda wildcards, output: str(Path(output[0]).parent),
        code=code_version("demo"),
    log:
        f"{LOGS}/demo/{{split}}.log",
    benchmark:
        f"{BENCHMARKS}/demo_corpus_split_{{split}}.tsv"
    threads: 2
    resources:
        mem_mb=JOB_SIZES["demo_corpus_split"].mem_mb,
        runtime=JOB_SIZES["demo_corpus_split"].runtime,
    conda:
        "../../envs/vgsalign.yaml"
    shell:
        "vgsalign demo-corpus-split --demo {params.demo} --split {wildcards.split} "
        "--out {params.out} --threads {threads} 2>&1 | tee {log}"


rule demo_corpus:
    input:
        expand(f"{RESULTS}/corpus/manifest_{{split}}.json", split=DEMO_SPLITS),
