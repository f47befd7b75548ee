# Alignment and glancing scores of the test pairs (see workflow/rules/common.smk for shared
# paths and helpers). `vgsalign score-pairs` also runs by hand on any model's tensors (docs/scores.md).

SCORES = f"{RESULTS}/scores"
SCORE_NAMES = ["as_object", "as_word", "gs_object", "gs_word"]   # vgsalign.scores.alignment.SCORE_NAMES


rule score_pairs:
    input:
        tensors=f"{RESULTS}/tensors/tensors.h5",
        pairs=f"{RESULTS}/testdata/pairs.csv",
        ready=corpus_ready(SPLITS["test"]),
        # the demo corpus declares only its manifest; a real corpus's JSON is a plain input
        instances=[] if IS_DEMO else instances_json(SPLITS["test"]),
        retrieval=f"{RESULTS}/train/retrieval.json",
    output:
        pairs=f"{SCORES}/pair_scores.csv",
        excluded=f"{SCORES}/excluded_pairs.csv",
        categories=report(
            f"{SCORES}/category_scores.csv",
            caption="../report/scores_categories.rst",
            category="Scores",
        ),
        confusion=[f"{SCORES}/confusion_{name}.csv" for name in SCORE_NAMES],
        confusion_counts=f"{SCORES}/confusion_counts.csv",
        summary=report(
            f"{SCORES}/summary.json",
            caption="../report/scores_summary.rst",
            category="Scores",
        ),
    params:
        instances=instances_json(SPLITS["test"]),
        scores=as_json(config["scores"]),
        frames=as_json(config["frames"]),
        out_dir=lambda w, output: str(Path(output.summary).parent),
        code=code_version("scores"),
    threads: 8
    resources:
        mem_mb=JOB_SIZES["score_pairs"].mem_mb,
        runtime=JOB_SIZES["score_pairs"].runtime,
    log:
        f"{LOGS}/scores/score.log",
    benchmark:
        f"{BENCHMARKS}/score_pairs.tsv"
    conda:
        "../../envs/vgsalign.yaml"
    shell:
        "vgsalign score-pairs --tensors {input.tensors} --pairs {input.pairs} --instances {params.instances}"
        " --retrieval {input.retrieval} --scores {params.scores} --frames {params.frames}"
        " --threads {threads} --out {params.out_dir} 2>&1 | tee {log}"


rule scores:
    input:
        rules.score_pairs.output,
        rules.tensors.input,
