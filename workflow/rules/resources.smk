# Offline resources, provisioned once under resources/: the POS tagger (NLTK's own data, or
# the model packaged in textblob-aptagger converted to NLTK's format) and the word vectors
# (a gensim KeyedVectors file). Nothing is downloaded. Each rule hashes its own module, so a
# change to the tagger code does not rerun the vectors.


rule tagger:
    output:
        tagger_manifest(),
    params:
        resources=as_json(config["resources"]),
        nltk_data=lambda wildcards, output: str(Path(output[0]).parent),
        code=code_version("resources/tagger"),
    resources:
        mem_mb=JOB_SIZES["tagger"].mem_mb,
        runtime=JOB_SIZES["tagger"].runtime,
    log:
        f"{LOGS}/resources/tagger.log",
    benchmark:
        f"{BENCHMARKS}/tagger.tsv"
    conda:
        "../../envs/vgsalign.yaml"
    shell:
        "vgsalign tagger --resources {params.resources} --nltk-data {params.nltk_data} 2>&1 | tee {log}"


rule word_vectors:
    output:
        vectors_file(),
    params:
        word_vectors=as_json(config["word_vectors"]),
        code=code_version("resources/vectors"),
    log:
        f"{LOGS}/resources/word_vectors.log",
    benchmark:
        f"{BENCHMARKS}/word_vectors.tsv"
    conda:
        "../../envs/vgsalign.yaml"
    resources:
        mem_mb=JOB_SIZES["word_vectors"].mem_mb,
        runtime=JOB_SIZES["word_vectors"].runtime,
    shell:
        "vgsalign word-vectors --word-vectors {params.word_vectors} --out {output} 2>&1 | tee {log}"


rule resources:
    input:
        tagger_manifest(),
        vectors_file(),
