# Test-set construction (the original's testdata_setup steps 0 to 6): one rule per step,
# each passing only its config slice, so a changed setting reruns that step and what follows.
# Every step also writes a small report under testdata/reports/ that the summary collects.

TESTDATA = f"{RESULTS}/testdata"
TEST_SPLIT = SPLITS["test"]
# the dataset slice the step reads (alignments_root: the workflow's own MFA output when it aligns)
DATASET_KEYS = ("source", "on_error", "max_rejected_share")
# instances files the dataset step reads: the test split's; for SpokenCOCO every used split's,
# since its indexes mix COCO splits (val2014 "restval" images in the train index)
DATASET_INSTANCES = [] if IS_DEMO else sorted(
    {instances_json(split) for split in (USED_SPLITS if config["dataset"]["source"] == "spokencoco" else [TEST_SPLIT])}
)


rule testdata_dataset:
    input:
        ready=corpus_ready(TEST_SPLIT),
        instances=DATASET_INSTANCES,
        alignments=ALIGNMENTS_INPUT,
    output:
        utterances=f"{TESTDATA}/utterances.csv",
        words=f"{TESTDATA}/words.csv",
        report=f"{TESTDATA}/reports/dataset.json",
        rejects=f"{TESTDATA}/rejects_dataset.csv",
    params:
        dataset=as_json({key: config["dataset"][key] for key in DATASET_KEYS} | {"alignments_root": ALIGNMENTS_ROOT}),
        speech_root=speech_root(),
        coco_root=coco_root(),
        split=TEST_SPLIT,
        out_dir=lambda wildcards, output: str(Path(output.utterances).parent),
        code=code_version("testdata", "corpus", "tables"),
    threads: 2
    resources:
        mem_mb=JOB_SIZES["testdata"].mem_mb,
        runtime=JOB_SIZES["testdata"].runtime,
    log:
        f"{LOGS}/testdata/dataset.log",
    benchmark:
        f"{BENCHMARKS}/testdata_dataset.tsv"
    conda:
        "../../envs/vgsalign.yaml"
    shell:
        "vgsalign testdata-dataset --dataset {params.dataset} --speech-root {params.speech_root}"
        " --coco-root {params.coco_root} --split {params.split} --out-dir {params.out_dir}"
        " --report {output.report} --rejects {output.rejects} --threads {threads} 2>&1 | tee {log}"


rule testdata_frames:
    input:
        utterances=rules.testdata_dataset.output.utterances,
        words=rules.testdata_dataset.output.words,
    output:
        frames=f"{TESTDATA}/frames.csv",
        report=f"{TESTDATA}/reports/frames.json",
    params:
        frames=as_json(config["frames"]),
        word_spans=as_json(config["word_spans"]),
        code=code_version("testdata", "corpus", "tables"),
    resources:
        mem_mb=JOB_SIZES["testdata"].mem_mb,
        runtime=JOB_SIZES["testdata"].runtime,
    log:
        f"{LOGS}/testdata/frames.log",
    benchmark:
        f"{BENCHMARKS}/testdata_frames.tsv"
    conda:
        "../../envs/vgsalign.yaml"
    shell:
        "vgsalign testdata-frames --utterances {input.utterances} --words {input.words} --frames {params.frames}"
        " --word-spans {params.word_spans}"
        " --out {output.frames} --report {output.report} 2>&1 | tee {log}"


rule testdata_nouns:
    input:
        frames=rules.testdata_frames.output.frames,
        tagger=tagger_manifest(),
    output:
        nouns=f"{TESTDATA}/nouns.csv",
        report=f"{TESTDATA}/reports/nouns.json",
    params:
        nouns=as_json(config["nouns"]),
        code=code_version("testdata", "corpus", "tables"),
    resources:
        mem_mb=JOB_SIZES["testdata"].mem_mb,
        runtime=JOB_SIZES["testdata"].runtime,
    log:
        f"{LOGS}/testdata/nouns.log",
    benchmark:
        f"{BENCHMARKS}/testdata_nouns.tsv"
    conda:
        "../../envs/vgsalign.yaml"
    shell:
        "vgsalign testdata-nouns --frames {input.frames} --tagger {input.tagger} --nouns {params.nouns}"
        " --out {output.nouns} --report {output.report} 2>&1 | tee {log}"


rule testdata_vocab:
    input:
        nouns=rules.testdata_nouns.output.nouns,
        vectors=vectors_file(),
    output:
        vocab=f"{TESTDATA}/vocab.csv",
        report=f"{TESTDATA}/reports/vocab.json",
    params:
        vocab=as_json(config["vocab"]),
        code=code_version("testdata", "corpus", "tables"),
    resources:
        mem_mb=JOB_SIZES["testdata"].mem_mb,
        runtime=JOB_SIZES["testdata"].runtime,
    log:
        f"{LOGS}/testdata/vocab.log",
    benchmark:
        f"{BENCHMARKS}/testdata_vocab.tsv"
    conda:
        "../../envs/vgsalign.yaml"
    shell:
        "vgsalign testdata-vocab --nouns {input.nouns} --vectors {input.vectors} --vocab {params.vocab}"
        " --out {output.vocab} --report {output.report} 2>&1 | tee {log}"


rule testdata_labels:
    input:
        utterances=rules.testdata_dataset.output.utterances,
    output:
        labels=f"{TESTDATA}/labels.csv",
        report=f"{TESTDATA}/reports/labels.json",
    params:
        instances=instances_json(TEST_SPLIT),
        code=code_version("testdata", "corpus", "tables"),
    resources:
        mem_mb=JOB_SIZES["testdata"].mem_mb,
        runtime=JOB_SIZES["testdata"].runtime,
    log:
        f"{LOGS}/testdata/labels.log",
    benchmark:
        f"{BENCHMARKS}/testdata_labels.tsv"
    conda:
        "../../envs/vgsalign.yaml"
    shell:
        "vgsalign testdata-labels --instances {params.instances} --utterances {input.utterances}"
        " --out {output.labels} --report {output.report} 2>&1 | tee {log}"


rule testdata_similarities:
    input:
        vocab=rules.testdata_vocab.output.vocab,
        labels=rules.testdata_labels.output.labels,
        vectors=vectors_file(),
    output:
        similarities=f"{TESTDATA}/similarities.csv",
        report=f"{TESTDATA}/reports/similarities.json",
    params:
        code=code_version("testdata", "corpus", "tables"),
    resources:
        mem_mb=JOB_SIZES["testdata"].mem_mb,
        runtime=JOB_SIZES["testdata"].runtime,
    log:
        f"{LOGS}/testdata/similarities.log",
    benchmark:
        f"{BENCHMARKS}/testdata_similarities.tsv"
    conda:
        "../../envs/vgsalign.yaml"
    shell:
        "vgsalign testdata-similarities --vocab {input.vocab} --labels {input.labels} --vectors {input.vectors}"
        " --out {output.similarities} --report {output.report} 2>&1 | tee {log}"


rule testdata_histogram:
    input:
        similarities=rules.testdata_similarities.output.similarities,
    output:
        f"{TESTDATA}/similarities.png",
    params:
        match=as_json(config["match"]),
        word_vectors=as_json(config["word_vectors"]),
        code=code_version("testdata", "corpus", "tables"),
    resources:
        mem_mb=JOB_SIZES["testdata"].mem_mb,
        runtime=JOB_SIZES["testdata"].runtime,
    log:
        f"{LOGS}/testdata/histogram.log",
    benchmark:
        f"{BENCHMARKS}/testdata_histogram.tsv"
    conda:
        "../../envs/vgsalign.yaml"
    shell:
        "vgsalign testdata-histogram --similarities {input.similarities} --match {params.match}"
        " --word-vectors {params.word_vectors} --out {output} 2>&1 | tee {log}"


rule testdata_pairs:
    input:
        similarities=rules.testdata_similarities.output.similarities,
        vocab=rules.testdata_vocab.output.vocab,
        utterances=rules.testdata_dataset.output.utterances,
    output:
        pairs=f"{TESTDATA}/pairs.csv",
        report=f"{TESTDATA}/reports/pairs.json",
    params:
        match=as_json(config["match"]),
        code=code_version("testdata", "corpus", "tables"),
    resources:
        mem_mb=JOB_SIZES["testdata"].mem_mb,
        runtime=JOB_SIZES["testdata"].runtime,
    log:
        f"{LOGS}/testdata/pairs.log",
    benchmark:
        f"{BENCHMARKS}/testdata_pairs.tsv"
    conda:
        "../../envs/vgsalign.yaml"
    shell:
        "vgsalign testdata-pairs --similarities {input.similarities} --vocab {input.vocab} --utterances {input.utterances}"
        " --match {params.match} --out {output.pairs} --report {output.report} 2>&1 | tee {log}"


rule testdata_summary:
    input:
        pairs=rules.testdata_pairs.output.pairs,
        reports=[f"{TESTDATA}/reports/{step}.json" for step in
                 ("dataset", "frames", "nouns", "vocab", "labels", "similarities", "pairs")],
    output:
        json=f"{TESTDATA}/summary.json",
        md=f"{TESTDATA}/summary.md",
    params:
        reports=lambda wildcards, input: str(Path(input.reports[0]).parent),
        code=code_version("testdata", "tables"),
    resources:
        mem_mb=JOB_SIZES["testdata"].mem_mb,
        runtime=JOB_SIZES["testdata"].runtime,
    log:
        f"{LOGS}/testdata/summary.log",
    benchmark:
        f"{BENCHMARKS}/testdata_summary.tsv"
    conda:
        "../../envs/vgsalign.yaml"
    shell:
        "vgsalign testdata-summary --reports {params.reports} --pairs {input.pairs}"
        " --out-json {output.json} --out-md {output.md} 2>&1 | tee {log}"


# Each target lists every file of its stage and of the stages before it, so that a plain
# `snakemake scores` rebuilds an intermediate file that was deleted (Snakemake does not
# regenerate a missing intermediate on its own while the files after it are up to date).
rule testdata:
    input:
        rules.testdata_dataset.output,
        rules.testdata_frames.output,
        rules.testdata_nouns.output,
        rules.testdata_vocab.output,
        rules.testdata_labels.output,
        rules.testdata_similarities.output,
        rules.testdata_histogram.output,
        rules.testdata_pairs.output,
        rules.testdata_summary.output,
