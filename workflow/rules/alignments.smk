# Word alignments for SpokenCOCO (docs/real-data.md). `alignments_corpus` writes a split as the
# Montreal Forced Aligner's input corpus (one folder per speaker, a wav link and a .lab
# transcript per utterance). With dataset.mfa.run the workflow also runs `mfa align` on the
# test split and the test set reads its TextGrids; otherwise it reads dataset.alignments_root,
# aligned by hand with the command the guide gives.

ALIGNMENTS = f"{RESULTS}/alignments"
IS_SPOKENCOCO = config["dataset"]["source"] == "spokencoco"
RUN_MFA = IS_SPOKENCOCO and config["dataset"]["mfa"]["run"]
# the TextGrid folder the test set reads, and the rule output it waits for (none: given by hand)
ALIGNMENTS_ROOT = f"{ALIGNMENTS}/textgrids/{SPLITS['test']}" if RUN_MFA else config["dataset"]["alignments_root"]
ALIGNMENTS_INPUT = [ALIGNMENTS_ROOT] if RUN_MFA else []

JOB_SIZES["alignments_corpus"] = JobSize(mem_mb_base=2000, runtime_min_base=30)
# MFA on SpokenCOCO's 25,000 val captions: hours on a few cores
JOB_SIZES["alignments_mfa"] = JobSize(mem_mb_base=16000, runtime_min_base=12 * 60)


rule alignments_corpus:
    input:
        ready=lambda w: corpus_ready(w.split),
    output:
        directory(f"{ALIGNMENTS}/mfa_corpus/{{split}}"),
    params:
        speech_root=speech_root(),
        code=code_version("corpus"),
    wildcard_constraints:
        split="|".join(USED_SPLITS),
    resources:
        mem_mb=JOB_SIZES["alignments_corpus"].mem_mb,
        runtime=JOB_SIZES["alignments_corpus"].runtime,
    log:
        f"{LOGS}/alignments/corpus_{{split}}.log",
    benchmark:
        f"{BENCHMARKS}/alignments_corpus_{{split}}.tsv"
    conda:
        "../../envs/vgsalign.yaml"
    shell:
        "vgsalign alignments-corpus --speech-root {params.speech_root} --split {wildcards.split}"
        " --out {output} 2>&1 | tee {log}"


# MFA runs from dataset.mfa.command: `mfa` on PATH, or in envs/mfa.yaml's environment
# with `--use-conda`, or `conda run -n <env> mfa`; its models downloaded beforehand.
rule alignments_mfa:
    input:
        rules.alignments_corpus.output,
    output:
        directory(f"{ALIGNMENTS}/textgrids/{{split}}"),
    params:
        mfa=config["dataset"]["mfa"]["command"],
        dictionary=config["dataset"]["mfa"]["dictionary"],
        acoustic_model=config["dataset"]["mfa"]["acoustic_model"],
    wildcard_constraints:
        split="|".join(USED_SPLITS),
    threads: 8
    resources:
        mem_mb=JOB_SIZES["alignments_mfa"].mem_mb,
        runtime=JOB_SIZES["alignments_mfa"].runtime,
    log:
        f"{LOGS}/alignments/mfa_{{split}}.log",
    benchmark:
        f"{BENCHMARKS}/alignments_mfa_{{split}}.tsv"
    conda:
        "../../envs/mfa.yaml"
    shell:
        "{params.mfa} align {input} {params.dictionary} {params.acoustic_model} {output}"
        " --output_format long_textgrid --clean -j {threads} 2>&1 | tee {log}"


rule alignments:
    input:
        [f"{ALIGNMENTS}/mfa_corpus/{SPLITS['test']}"] + ALIGNMENTS_INPUT if IS_SPOKENCOCO else [],
