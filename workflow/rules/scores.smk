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


# Several seeds (train.seeds; train.smk): every other seed's tensors are scored with the
# same settings, and one table and summary set the seeds side by side.
SEED_SCORES = f"{SEEDS}/seed_{{seed}}/scores"
SEED_TABLE = f"{SEEDS}/seed_scores.csv"
SEEDS_SUMMARY = f"{SEEDS}/summary.json"


use rule score_pairs as score_pairs_seed with:
    input:
        tensors=rules.tensors_dump_seed.output[0],
        pairs=f"{RESULTS}/testdata/pairs.csv",
        ready=corpus_ready(SPLITS["test"]),
        instances=[] if IS_DEMO else instances_json(SPLITS["test"]),
        retrieval=rules.train_model_seed.output.retrieval,
    output:
        pairs=f"{SEED_SCORES}/pair_scores.csv",
        excluded=f"{SEED_SCORES}/excluded_pairs.csv",
        categories=f"{SEED_SCORES}/category_scores.csv",
        confusion=[f"{SEED_SCORES}/confusion_{name}.csv" for name in SCORE_NAMES],
        confusion_counts=f"{SEED_SCORES}/confusion_counts.csv",
        summary=f"{SEED_SCORES}/summary.json",
    wildcard_constraints:
        seed=r"\d+",
    log:
        f"{LOGS}/seeds/seed_{{seed}}/score.log",
    benchmark:
        f"{BENCHMARKS}/score_pairs_seed_{{seed}}.tsv"


rule seeds_summary:
    input:
        scores=[f"{seed_folder(seed)}/scores/summary.json" for seed in compared_seeds()],
        retrieval=[f"{seed_folder(seed)}/train/retrieval.json" for seed in compared_seeds()],
        history=[f"{seed_folder(seed)}/train/history.csv" for seed in compared_seeds()],
    output:
        table=report(SEED_TABLE, caption="../report/scores_seeds.rst", category="Scores"),
        summary=SEEDS_SUMMARY,
    params:
        seeds=" ".join(str(seed) for seed in compared_seeds()),
        train_dirs=" ".join(f"{seed_folder(seed)}/train" for seed in compared_seeds()),
        scores_dirs=" ".join(f"{seed_folder(seed)}/scores" for seed in compared_seeds()),
        code=code_version("scores"),
    resources:
        mem_mb=JOB_SIZES["seeds_summary"].mem_mb,
        runtime=JOB_SIZES["seeds_summary"].runtime,
    log:
        f"{LOGS}/seeds/summary.log",
    benchmark:
        f"{BENCHMARKS}/seeds_summary.tsv"
    conda:
        "../../envs/vgsalign.yaml"
    shell:
        "vgsalign seeds-summary --seeds {params.seeds} --train-dirs {params.train_dirs}"
        " --scores-dirs {params.scores_dirs} --table {output.table} --summary {output.summary} 2>&1 | tee {log}"


rule scores:
    input:
        rules.score_pairs.output,
        expand(rules.score_pairs_seed.output, seed=EXTRA_SEEDS),
        rules.seeds_summary.output if compared_seeds() else [],
        rules.tensors.input,
