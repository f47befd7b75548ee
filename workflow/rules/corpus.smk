# The state of each split's corpus (file names, sizes, mtimes; vgsalign.corpus.state), an
# input of every step that reads the corpus. The rule writes it the first time; after that,
# every workflow start compares it with the corpus and rewrites it only when a file was
# edited, added or deleted, so the steps that read the changed corpus rerun and nothing
# else does. One stat per corpus file per start (seconds for SPEECH-COCO on a local disk).

from vgsalign.corpus.state import refresh as refresh_corpus_state

if workflow.is_main_process:
    for _split in USED_SPLITS:
        if Path(corpus_state_file(_split)).is_file():
            refresh_corpus_state(corpus_state_file(_split), corpus_watch(_split))


rule corpus_state:
    input:
        # the demo corpus is made by a rule: its state is taken once it exists
        manifest=lambda w: [f"{RESULTS}/corpus/manifest_{w.split}.json"] if IS_DEMO else [],
    output:
        f"{RESULTS}/corpus/state_{{split}}.json",
    params:
        paths=lambda w: " ".join(shlex.quote(p) for p in corpus_watch(w.split)),
    wildcard_constraints:
        split="|".join(USED_SPLITS),
    resources:
        mem_mb=JOB_SIZES["corpus_state"].mem_mb,
        runtime=JOB_SIZES["corpus_state"].runtime,
    log:
        f"{LOGS}/corpus/state_{{split}}.log",
    benchmark:
        f"{BENCHMARKS}/corpus_state_{{split}}.tsv"
    conda:
        "../../envs/vgsalign.yaml"
    shell:
        "vgsalign corpus-state --paths {params.paths} --out {output} 2>&1 | tee {log}"
